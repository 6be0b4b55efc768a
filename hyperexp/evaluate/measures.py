"""The arithmetic behind the metrics: checked inputs and one value per test trial (pure NumPy).

Image convention: images are (N, H, W, 3) channel-last, float in [0, 1]. Also accepted and
converted: uint8 (divided by 255) and channel-first (N, 3, H, W) arrays or torch tensors.

Correlation conventions: a Pearson r involving a constant vector is undefined; it is set to 0
inside identification (so a constant prediction scores chance) and excluded from the averaged
Pearson metrics (``latent_pearson``, ``attribute_similarity``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from skimage.metrics import structural_similarity


def to_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # NumPy has no bfloat16; widen it (other dtypes convert as they are).
        return (array.float() if array.dtype == torch.bfloat16 else array).numpy()
    return np.asarray(array)


def paired_2d(true, pred, what: str) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(to_numpy(true), dtype=np.float64)
    pred = np.asarray(to_numpy(pred), dtype=np.float64)
    if true.ndim != 2 or true.shape != pred.shape:
        raise ValueError(
            f"{what}: true and pred must both be (N, D) with equal shapes, got {true.shape} and {pred.shape}"
        )
    if true.shape[0] < 2 or true.shape[1] == 0:
        raise ValueError(f"{what}: need at least 2 trials and 1 dimension, got shape {true.shape}")
    if not (np.all(np.isfinite(true)) and np.all(np.isfinite(pred))):
        raise ValueError(f"{what}: inputs contain NaN or infinite values")
    return true, pred


def as_channel_last_unit(images, name: str) -> np.ndarray:
    """Convert images to the module convention: float64 (N, H, W, 3) in [0, 1]."""
    array = to_numpy(images)
    if array.ndim != 4 or 3 not in (array.shape[1], array.shape[3]):
        raise ValueError(f"{name}: expected (N, H, W, 3) or (N, 3, H, W) images, got shape {array.shape}")
    if array.shape[3] != 3:
        array = np.moveaxis(array, 1, -1)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: images must be uint8 or float in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: images contain NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(f"{name}: float images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return np.clip(array, 0.0, 1.0)


def paired_images(true_images, pred_images) -> tuple[np.ndarray, np.ndarray]:
    true = as_channel_last_unit(true_images, "true images")
    pred = as_channel_last_unit(pred_images, "pred images")
    if true.shape != pred.shape:
        raise ValueError(f"true and pred images differ in shape: {true.shape} vs {pred.shape}")
    if true.shape[0] < 2:
        raise ValueError(f"need at least 2 trials of images, got {true.shape[0]}")
    return true, pred


def standardise_rows(values: np.ndarray) -> np.ndarray:
    """Rows scaled so that ``a @ b.T`` is their Pearson r; constant rows become all zero."""
    centred = values - values.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def correlation_matrix(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(N, M) matrix whose [i, j] is Pearson r between pred row i and true (candidate) row j."""
    return standardise_rows(pred) @ standardise_rows(true).T


def correlations_with_batches(pred: np.ndarray, batches: Iterable[np.ndarray]) -> np.ndarray:
    """(N, K) Pearson r of each pred row with each row of the candidate batches, one batch held
    at a time (candidate images at a generator's full size need not all fit in memory)."""
    standardised = standardise_rows(pred.reshape(len(pred), -1))
    columns = [standardised @ standardise_rows(batch.reshape(len(batch), -1)).T for batch in batches]
    return np.concatenate(columns, axis=1) if columns else np.zeros((len(pred), 0))


def identification_per_trial(correlations: np.ndarray) -> np.ndarray:
    """(N,) two-way identification of each trial: the fraction of the other N-1 trials j it beats
    (corr[i, i] > corr[i, j]; ties count half). Chance is 0.5."""
    matched = np.diag(correlations)[:, None]
    wins = (matched > correlations) + 0.5 * (matched == correlations)
    return (wins.sum(axis=1) - np.diag(wins)) / (correlations.shape[0] - 1)


def top1_per_trial(correlations: np.ndarray, distractors: np.ndarray) -> np.ndarray:
    """(N,) whether each trial's own stimulus is the best of all candidates (the N test stimuli
    and K distractors) for its prediction; a tie for best counts 1 / (tied candidates), the
    expected score of a random pick among them. Chance is 1 / (N + K)."""
    matched = np.diag(correlations)[:, None]
    candidates = np.concatenate([correlations, distractors], axis=1)
    beaten_by = (candidates > matched).sum(axis=1)
    tied = (candidates == matched).sum(axis=1)  # includes the trial's own stimulus
    return np.where(beaten_by == 0, 1.0 / tied, 0.0)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosine similarity of each row pair; 0 where a row is zero."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide(np.sum(a * b, axis=1), norms, out=np.zeros(a.shape[0]), where=norms > 0)


def columnwise_pearson(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(D,) Pearson r of each column across rows; NaN where either column is constant."""
    true_centred = true - true.mean(axis=0)
    pred_centred = pred - pred.mean(axis=0)
    norms = np.linalg.norm(true_centred, axis=0) * np.linalg.norm(pred_centred, axis=0)
    numerators = np.sum(true_centred * pred_centred, axis=0)
    return np.divide(numerators, norms, out=np.full(true.shape[1], np.nan), where=norms > 0)


def mean_defined(values: np.ndarray) -> float:
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if defined.size else float("nan")


def ssim_per_trial(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(N,) skimage SSIM of each image pair (RGB, data_range 1); H and W must be >= 7."""
    return np.array([structural_similarity(t, p, channel_axis=-1, data_range=1.0) for t, p in zip(true, pred)])
