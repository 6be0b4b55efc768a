"""Decoding metrics as pure functions over the N test trials (no file I/O, no logging), each a view
of the metric registry (:mod:`.registry`, where every metric is defined once). Every returned key
is a plain string usable as an MLflow metric key and every value a Python float.

Images and correlations follow the conventions of :mod:`.measures`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from hyperexp.device import module_device
from hyperexp.evaluate import measures
from hyperexp.evaluate.registry import MetricInputs, score

__all__ = [
    "attribute_metrics",
    "extract_features",
    "feature_metrics",
    "image_metrics",
    "latent_metrics",
    "project_on_boundaries",
    "two_way_identification",
]

ATTRIBUTE_PREFIX = "attr_r/"  # the per-attribute correlations: attr_r/<name>
# Characters MLflow accepts in metric keys.
_METRIC_KEY_PATTERN = re.compile(r"^[\w\-. /]+$")


def two_way_identification(true, pred) -> float:
    """Two-way identification accuracy by Pearson correlation.

    For every ordered pair i != j, prediction i scores 1 if it correlates more with true
    i than with true j, 0.5 on a tie, else 0; the result is the mean over the N(N-1) pairs
    (chance = 0.5, perfect = 1.0).

    Args:
        true, pred: (N, F) arrays, N >= 2 (for images, flatten each trial first).
    """
    true, pred = measures.paired_2d(true, pred, "two_way_identification")
    return float(measures.identification_per_trial(measures.correlation_matrix(true, pred)).mean())


def latent_metrics(true, pred) -> dict[str, float]:
    """The registry's latent metrics between true and decoded latents, both (N, D) with N >= 2:
    latent_mse, latent_similarity, latent_cosine, latent_identification, latent_pearson."""
    return score(MetricInputs(latents=(true, pred))).summary


def image_metrics(true_images, pred_images) -> dict[str, float]:
    """The registry's image metrics: ssim, pixel_correlation, pixel_identification."""
    return score(MetricInputs(images=(true_images, pred_images))).summary


def check_attribute_names(names: Sequence[str], n_columns: int) -> list[str]:
    names = list(names)
    if len(names) != n_columns:
        raise ValueError(f"got {len(names)} attribute names for {n_columns} attribute columns")
    if len(set(names)) != len(names):
        raise ValueError(f"attribute names must be unique, got {names}")
    for name in names:
        if not isinstance(name, str) or not _METRIC_KEY_PATTERN.match(name):
            raise ValueError(f"attribute name {name!r} is not usable in a metric key")
    return names


def attribute_correlations(inputs: MetricInputs, names: Sequence[str]) -> dict[str, float]:
    """``attr_r/<name>``: Pearson r across trials of each attribute (NaN when a column is constant)."""
    names = check_attribute_names(names, inputs.attributes[0].shape[1])
    return {f"{ATTRIBUTE_PREFIX}{name}": float(r) for name, r in zip(names, inputs.attribute_correlations)}


def attribute_metrics(true, pred, names: Sequence[str]) -> dict[str, float]:
    """Per-attribute Pearson r across trials between true and predicted attribute scores.

    Args:
        true, pred: (N, A) attribute scores (e.g. from :func:`project_on_boundaries`).
        names: A unique attribute names, each a valid MLflow key fragment.

    Returns:
        ``attr_r/<name>`` for each attribute (NaN when either column is constant) and
        ``attribute_similarity``, their mean over the defined ones.
    """
    inputs = MetricInputs(attributes=(true, pred))
    return {**attribute_correlations(inputs, names), **score(inputs).summary}


def project_on_boundaries(latents, boundaries) -> np.ndarray:
    """Signed distance of each latent to each InterFaceGAN hyperplane through the origin.

    Args:
        latents: (N, D) latents. boundaries: (A, D) boundary normals (normalised here).

    Returns:
        (N, A) attribute scores ``latents @ unit_normals.T``.
    """
    latents = np.asarray(measures.to_numpy(latents), dtype=np.float64)
    boundaries = np.asarray(measures.to_numpy(boundaries), dtype=np.float64)
    if latents.ndim != 2 or boundaries.ndim != 2 or latents.shape[1] != boundaries.shape[1]:
        raise ValueError(f"expected latents (N, D) and boundaries (A, D), got {latents.shape} and {boundaries.shape}")
    norms = np.linalg.norm(boundaries, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("every boundary normal must be finite and non-zero")
    return latents @ (boundaries / norms).T


def extract_features(images: np.ndarray, extractor: torch.nn.Module, batch_size: int = 16) -> np.ndarray:
    """(N, F) flattened outputs of a feature network for images (float64 (N, H, W, 3) in [0, 1]).

    The extractor receives float32 (B, 3, H, W) batches in [0, 1]; any resizing or normalisation
    belongs inside it. It runs in eval mode without gradients; its training flag is restored.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = module_device(extractor)
    was_training = extractor.training
    extractor.eval()
    batches = []
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size].transpose(0, 3, 1, 2)))
                features = extractor(batch.to(device=device, dtype=torch.float32))
                batches.append(features.reshape(features.shape[0], -1).double().cpu().numpy())
    finally:
        extractor.train(was_training)
    return np.concatenate(batches)


def feature_metrics(true_images, pred_images, extractor: torch.nn.Module, batch_size: int = 16) -> dict[str, float]:
    """Similarity of true and reconstructed images in a feature extractor's space (the registry's
    feature metrics: feature_mse, feature_cosine, feature_similarity = 1 / (1 + feature_mse)).
    Callers without a configured extractor skip these metrics with a note."""
    true, pred = measures.paired_images(true_images, pred_images)
    features = tuple(extract_features(images, extractor, batch_size) for images in (true, pred))
    return score(MetricInputs(features=features)).summary
