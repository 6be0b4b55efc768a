"""Evaluation stage: metrics of decoded latents and reconstructed images, and image grids.

:mod:`hyperexp.evaluate.metrics` holds the pure metric functions; this module chooses which of
them a training run reports: cheap latent metrics on the device every epoch, and at the end
latent, image, attribute and (when a feature extractor is configured) feature metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from hyperexp.evaluate.metrics import (
    attribute_metrics,
    feature_metrics,
    image_metrics,
    latent_metrics,
    load_boundaries,
    load_feature_extractor,
    project_on_boundaries,
)

log = logging.getLogger("hyperexp")


def cheap_latent_metrics(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-epoch test metrics as device scalars (no host sync): the paper's latent similarity
    1/(1+MSE) and the mean cosine similarity of predicted and true latents."""
    mse = torch.mean((prediction - target) ** 2)
    cosine = torch.nn.functional.cosine_similarity(prediction, target, dim=1).mean()
    return {"latent_similarity": 1.0 / (1.0 + mse), "latent_cosine": cosine}


def final_metrics(
    true_latents: np.ndarray,
    predicted_latents: np.ndarray,
    stimuli: torch.Tensor,
    reconstructions: torch.Tensor,
    generator: torch.nn.Module,
    attribute_boundaries: list[str] | None = None,
    feature_extractor: str | None = None,
) -> dict[str, float]:
    """All end-of-run metrics. Images are (N, 3, H, W) in [-1, 1] as generators return them.

    Attributes come from the generator itself when it has ground truth (facesketch's
    ``attributes``), else from InterFaceGAN boundary files; feature similarity needs a
    TorchScript feature extractor and is skipped with a log line when none is configured.
    """
    stimuli_unit, reconstructions_unit = (
        (images.float().clamp(-1, 1) + 1) / 2 for images in (stimuli, reconstructions)
    )
    metrics = {**latent_metrics(true_latents, predicted_latents), **image_metrics(stimuli_unit, reconstructions_unit)}
    if attribute_boundaries:
        boundaries = load_boundaries(list(attribute_boundaries), latent_dim=true_latents.shape[1])
        names = [Path(path).stem for path in attribute_boundaries]
        true_attr, pred_attr = (project_on_boundaries(z, boundaries) for z in (true_latents, predicted_latents))
        metrics.update(attribute_metrics(true_attr, pred_attr, names))
    elif hasattr(generator, "attributes"):
        from hyperexp.generate.facesketch import ATTRIBUTES

        with torch.no_grad():
            true_attr, pred_attr = (
                generator.attributes(torch.as_tensor(z)).cpu().numpy() for z in (true_latents, predicted_latents)
            )
        metrics.update(attribute_metrics(true_attr, pred_attr, list(ATTRIBUTES)))
    if feature_extractor:
        extractor = load_feature_extractor(feature_extractor)
        metrics.update(feature_metrics(stimuli_unit, reconstructions_unit, extractor))
    else:
        log.info("feature similarity skipped: set evaluate.feature_extractor=/path/to/extractor.pt (TorchScript)")
    return metrics
