"""Per-trial metrics: one value per test trial, so that reports can put intervals over trials and
pair two runs trial by trial (:mod:`hyperexp.report.statistics`).

The mean over trials of each value is the run-level metric of :mod:`.metrics` of the same name
(``latent_similarity`` is 1/(1 + mean of ``latent_mse``), so it is not a per-trial column).
A trial's identification is the fraction of the other N-1 trials it wins against.
"""

from __future__ import annotations

import hashlib

import numpy as np
from skimage.metrics import structural_similarity

from hyperexp.evaluate.metrics import _correlation_matrix, _paired_2d, _paired_images

PER_TRIAL_FILE = "per_trial.csv"


def stimulus_set_key(true_latents) -> str:
    """A short content key of the test stimuli: runs with the same key were tested on the same trials."""
    latents = np.ascontiguousarray(np.asarray(true_latents, dtype=np.float32))
    return hashlib.sha256(latents.tobytes() + str(latents.shape).encode()).hexdigest()[:12]


def identification_per_trial(correlations: np.ndarray) -> np.ndarray:
    """(N,) fraction of the other trials j that trial i beats (corr[i, i] > corr[i, j]; ties count half)."""
    matched = np.diag(correlations)[:, None]
    wins = (matched > correlations) + 0.5 * (matched == correlations)
    return (wins.sum(axis=1) - np.diag(wins)) / (correlations.shape[0] - 1)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosine similarity of each row pair; 0 where a row is zero."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide(np.sum(a * b, axis=1), norms, out=np.zeros(a.shape[0]), where=norms > 0)


def latent_trial_metrics(true, pred) -> dict[str, np.ndarray]:
    """``latent_mse``, ``latent_cosine`` and ``latent_identification`` of each trial, latents (N, D)."""
    true, pred = _paired_2d(true, pred, "latent_trial_metrics")
    return {
        "latent_mse": np.mean((true - pred) ** 2, axis=1),
        "latent_cosine": rowwise_cosine(true, pred),
        "latent_identification": identification_per_trial(_correlation_matrix(true, pred)),
    }


def image_trial_metrics(true_images, pred_images) -> dict[str, np.ndarray]:
    """``pixel_correlation``, ``ssim`` and ``pixel_identification`` of each trial (images as in :mod:`.metrics`)."""
    true, pred = _paired_images(true_images, pred_images)
    n = true.shape[0]
    correlations = _correlation_matrix(true.reshape(n, -1), pred.reshape(n, -1))
    ssim = [structural_similarity(t, p, channel_axis=-1, data_range=1.0) for t, p in zip(true, pred)]
    return {
        "pixel_correlation": np.diag(correlations).copy(),
        "ssim": np.array(ssim),
        "pixel_identification": identification_per_trial(correlations),
    }
