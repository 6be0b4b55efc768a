"""Decoding metrics: pure functions over the N test trials (no file I/O, no logging; the files a
run needs are loaded by :mod:`hyperexp.evaluate.evaluation`). Every returned key is a plain
string usable as an MLflow metric key and every value a Python float.

Image convention: images are (N, H, W, 3) channel-last, float in [0, 1]. Also accepted and
converted: uint8 (divided by 255) and channel-first (N, 3, H, W) arrays or torch tensors.

Correlation conventions: a Pearson r involving a constant vector is undefined; it is set to
0 inside identification (so a constant prediction scores chance, 0.5) and excluded from the
averaged Pearson metrics (``latent_pearson``, ``attribute_similarity``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from skimage.metrics import structural_similarity

from hyperexp.device import module_device

__all__ = [
    "attribute_metrics",
    "feature_metrics",
    "image_metrics",
    "latent_metrics",
    "project_on_boundaries",
    "two_way_identification",
]

# Characters MLflow accepts in metric keys.
_METRIC_KEY_PATTERN = re.compile(r"^[\w\-. /]+$")


# ----------------------------------------------------------------------------- helpers


def _to_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # NumPy has no bfloat16; widen it (other dtypes convert as they are).
        return (array.float() if array.dtype == torch.bfloat16 else array).numpy()
    return np.asarray(array)


def _paired_2d(true, pred, what: str) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(_to_numpy(true), dtype=np.float64)
    pred = np.asarray(_to_numpy(pred), dtype=np.float64)
    if true.ndim != 2 or true.shape != pred.shape:
        raise ValueError(
            f"{what}: true and pred must both be (N, D) with equal shapes, got {true.shape} and {pred.shape}"
        )
    if true.shape[0] < 2 or true.shape[1] == 0:
        raise ValueError(f"{what}: need at least 2 trials and 1 dimension, got shape {true.shape}")
    if not (np.all(np.isfinite(true)) and np.all(np.isfinite(pred))):
        raise ValueError(f"{what}: inputs contain NaN or infinite values")
    return true, pred


def _standardise_rows(values: np.ndarray) -> np.ndarray:
    """Rows scaled so that ``a @ b.T`` is their Pearson r; constant rows become all zero."""
    centred = values - values.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def _correlation_matrix(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(N, N) matrix whose [i, j] is Pearson r between pred row i and true row j."""
    return _standardise_rows(pred) @ _standardise_rows(true).T


def _identification_from_correlations(correlations: np.ndarray) -> float:
    # Pair (i, j) is won when pred i correlates more with true i than with true j; ties count half.
    matched = np.diag(correlations)[:, None]
    wins = (matched > correlations) + 0.5 * (matched == correlations)
    n = correlations.shape[0]
    return float((wins.sum() - np.trace(wins)) / (n * (n - 1)))


def _columnwise_pearson(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(D,) Pearson r of each column across rows; NaN where either column is constant."""
    true_centred = true - true.mean(axis=0)
    pred_centred = pred - pred.mean(axis=0)
    norms = np.linalg.norm(true_centred, axis=0) * np.linalg.norm(pred_centred, axis=0)
    numerators = np.sum(true_centred * pred_centred, axis=0)
    return np.divide(numerators, norms, out=np.full(true.shape[1], np.nan), where=norms > 0)


def _mean_rowwise_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of cosine similarity; a zero row contributes 0."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines = np.divide(np.sum(a * b, axis=1), norms, out=np.zeros(a.shape[0]), where=norms > 0)
    return float(cosines.mean())


def _mean_defined(values: np.ndarray) -> float:
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if defined.size else float("nan")


# ----------------------------------------------------------------------------- identification


def two_way_identification(true, pred) -> float:
    """Two-way identification accuracy by Pearson correlation.

    For every ordered pair i != j, prediction i scores 1 if it correlates more with true
    i than with true j, 0.5 on a tie, else 0; the result is the mean over the N(N-1) pairs
    (chance = 0.5, perfect = 1.0).

    Args:
        true, pred: (N, F) arrays, N >= 2 (for images, flatten each trial first).
    """
    true, pred = _paired_2d(true, pred, "two_way_identification")
    return _identification_from_correlations(_correlation_matrix(true, pred))


# ----------------------------------------------------------------------------- latents


def latent_metrics(true, pred) -> dict[str, float]:
    """Metrics between true and decoded latents, both (N, D) with N >= 2.

    latent_mse: mean squared error over all elements.
    latent_similarity: 1 / (1 + latent_mse), the HYPER paper's latent similarity.
    latent_cosine: mean over trials of the cosine similarity.
    latent_pearson: mean over dimensions of Pearson r across trials (constant dimensions excluded;
        NaN if all are constant).
    latent_identification: :func:`two_way_identification` of the latents.
    """
    true, pred = _paired_2d(true, pred, "latent_metrics")
    mse = float(np.mean((true - pred) ** 2))
    return {
        "latent_mse": mse,
        "latent_similarity": 1.0 / (1.0 + mse),
        "latent_cosine": _mean_rowwise_cosine(true, pred),
        "latent_pearson": _mean_defined(_columnwise_pearson(true, pred)),
        "latent_identification": _identification_from_correlations(_correlation_matrix(true, pred)),
    }


# ----------------------------------------------------------------------------- images


def _as_channel_last_unit(images, name: str) -> np.ndarray:
    """Convert images to the module convention: float64 (N, H, W, 3) in [0, 1]."""
    array = _to_numpy(images)
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


def _paired_images(true_images, pred_images) -> tuple[np.ndarray, np.ndarray]:
    true = _as_channel_last_unit(true_images, "true images")
    pred = _as_channel_last_unit(pred_images, "pred images")
    if true.shape != pred.shape:
        raise ValueError(f"true and pred images differ in shape: {true.shape} vs {pred.shape}")
    if true.shape[0] < 2:
        raise ValueError(f"need at least 2 trials of images, got {true.shape[0]}")
    return true, pred


def image_metrics(true_images, pred_images) -> dict[str, float]:
    """Pixel-space metrics between true and reconstructed images (see module image convention).

    pixel_correlation: mean over trials of Pearson r between flattened images.
    ssim: mean over trials of skimage SSIM (RGB, data_range 1); H and W must be >= 7.
    pixel_identification: :func:`two_way_identification` on flattened images.
    """
    true, pred = _paired_images(true_images, pred_images)
    n = true.shape[0]
    correlations = _correlation_matrix(true.reshape(n, -1), pred.reshape(n, -1))
    ssim_values = [
        structural_similarity(true_image, pred_image, channel_axis=-1, data_range=1.0)
        for true_image, pred_image in zip(true, pred)
    ]
    return {
        "pixel_correlation": float(np.mean(np.diag(correlations))),
        "ssim": float(np.mean(ssim_values)),
        "pixel_identification": _identification_from_correlations(correlations),
    }


# ----------------------------------------------------------------------------- attributes


def attribute_metrics(true, pred, names: Sequence[str]) -> dict[str, float]:
    """Per-attribute Pearson r across trials between true and predicted attribute scores.

    Args:
        true, pred: (N, A) attribute scores (e.g. from :func:`project_on_boundaries`).
        names: A unique attribute names, each a valid MLflow key fragment.

    Returns:
        ``attr_r/<name>`` for each attribute (NaN when either column is constant) and
        ``attribute_similarity``, their mean over the defined ones.
    """
    true, pred = _paired_2d(true, pred, "attribute_metrics")
    names = list(names)
    if len(names) != true.shape[1]:
        raise ValueError(f"got {len(names)} attribute names for {true.shape[1]} attribute columns")
    if len(set(names)) != len(names):
        raise ValueError(f"attribute names must be unique, got {names}")
    for name in names:
        if not isinstance(name, str) or not _METRIC_KEY_PATTERN.match(name):
            raise ValueError(f"attribute name {name!r} is not usable in a metric key")
    correlations = _columnwise_pearson(true, pred)
    metrics = {f"attr_r/{name}": float(r) for name, r in zip(names, correlations)}
    metrics["attribute_similarity"] = _mean_defined(correlations)
    return metrics


def project_on_boundaries(latents, boundaries) -> np.ndarray:
    """Signed distance of each latent to each InterFaceGAN hyperplane through the origin.

    Args:
        latents: (N, D) latents. boundaries: (A, D) boundary normals (normalised here).

    Returns:
        (N, A) attribute scores ``latents @ unit_normals.T``.
    """
    latents = np.asarray(_to_numpy(latents), dtype=np.float64)
    boundaries = np.asarray(_to_numpy(boundaries), dtype=np.float64)
    if latents.ndim != 2 or boundaries.ndim != 2 or latents.shape[1] != boundaries.shape[1]:
        raise ValueError(f"expected latents (N, D) and boundaries (A, D), got {latents.shape} and {boundaries.shape}")
    norms = np.linalg.norm(boundaries, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("every boundary normal must be finite and non-zero")
    return latents @ (boundaries / norms).T


# ----------------------------------------------------------------------------- features


def feature_metrics(true_images, pred_images, extractor: torch.nn.Module, batch_size: int = 16) -> dict[str, float]:
    """Similarity of true and reconstructed images in a feature extractor's space.

    The extractor receives float32 (B, 3, H, W) batches in [0, 1] (images follow the module
    convention first); any resizing or normalisation belongs inside the extractor. Its
    outputs are flattened per trial. It runs in eval mode without gradients and its
    training flag is restored afterwards. Callers without a configured extractor skip this
    metric with a note.

    feature_cosine: mean over trials of cosine similarity of the feature vectors.
    feature_similarity: 1 / (1 + MSE) over all feature elements.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    true, pred = _paired_images(true_images, pred_images)
    device = module_device(extractor)
    was_training = extractor.training
    extractor.eval()

    def extract(images: np.ndarray) -> np.ndarray:
        batches = []
        for start in range(0, images.shape[0], batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size].transpose(0, 3, 1, 2)))
            features = extractor(batch.to(device=device, dtype=torch.float32))
            batches.append(features.reshape(features.shape[0], -1).double().cpu().numpy())
        return np.concatenate(batches)

    try:
        with torch.no_grad():
            true_features, pred_features = extract(true), extract(pred)
    finally:
        extractor.train(was_training)
    if not (np.all(np.isfinite(true_features)) and np.all(np.isfinite(pred_features))):
        raise ValueError("feature extractor produced NaN or infinite features")
    mse = float(np.mean((true_features - pred_features) ** 2))
    return {
        "feature_cosine": _mean_rowwise_cosine(true_features, pred_features),
        "feature_similarity": 1.0 / (1.0 + mse),
    }
