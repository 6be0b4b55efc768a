"""What a run measures: per-epoch curves on held-out rows, and the end-of-run metrics.

:class:`Evaluation` is built from ``conf/evaluate`` before any work starts, so a missing or
malformed feature network or boundary file is refused up front with one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hyperexp.decode.losses import l2_loss
from hyperexp.device import module_device
from hyperexp.errors import InputError
from hyperexp.evaluate.metrics import (
    attribute_metrics,
    feature_metrics,
    image_metrics,
    latent_metrics,
    project_on_boundaries,
)
from hyperexp.evaluate.trials import image_trial_metrics, latent_trial_metrics
from hyperexp.generate.facesketch import ATTRIBUTES


def load_boundaries(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Stack InterFaceGAN boundary files (each a (D,) or (1, D) finite ``.npy``) into (A, D) float64."""
    rows = []
    for path in paths:
        try:
            boundary = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:  # missing, pickled or malformed .npy
            raise InputError(f"{path}: cannot read as an attribute boundary .npy ({error})") from None
        if not isinstance(boundary, np.ndarray) or boundary.ndim not in (1, 2) or boundary.size != boundary.shape[-1]:
            raise InputError(f"{path}: a boundary must have shape (D,) or (1, D), got {np.shape(boundary)}")
        boundary = boundary.astype(np.float64).reshape(-1)
        if not np.all(np.isfinite(boundary)) or not np.any(boundary):
            raise InputError(f"{path}: a boundary must be finite and non-zero")
        rows.append(boundary)
    if len({row.shape for row in rows}) > 1:
        raise InputError(f"evaluate.attribute_boundaries: boundaries differ in length {sorted({len(r) for r in rows})}")
    return np.stack(rows)


def _last_line(error: Exception) -> str:
    """TorchScript errors end with the Python-level cause after many lines of traceback."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def load_feature_extractor(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A TorchScript feature network on the CPU, in eval mode."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such feature extractor file (evaluate.feature_extractor)")
    try:
        extractor = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError/ValueError variants for bad archives
        raise InputError(f"{path}: not a loadable TorchScript network ({str(error).splitlines()[0]})") from None
    return extractor.eval()


@torch.no_grad()
def check_feature_extractor(extractor: torch.nn.Module, path: str | os.PathLike, image_size: int) -> None:
    """Run the network once on a grey batch of the generator's images, as :func:`feature_metrics`
    will call it, so that one that cannot take them is refused before training, not after."""
    probe = torch.full((2, 3, image_size, image_size), 0.5)
    expected = f"float32 (B, 3, {image_size}, {image_size}) images in [0, 1]"
    try:
        features = extractor(probe)
    except Exception as error:  # whatever the scripted code raises
        raise InputError(f"{path}: the feature network fails on {expected} ({_last_line(error)})") from None
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        got = features.dtype if isinstance(features, torch.Tensor) else type(features).__name__
        raise InputError(f"{path}: the feature network must return a float tensor, got {got}")
    if features.ndim == 0 or features.shape[0] != len(probe) or features[0].numel() == 0:
        shape = tuple(features.shape)
        raise InputError(f"{path}: the feature network must return (B, ...) features for {expected}, got {shape}")


class EpochMetrics:
    """Held-out rows scored after every epoch, as device scalars (no host sync); per split (``test``,
    ``validation``): ``<split>_loss``, the latent L2 loss whatever the training objective, so runs
    compare (the paper's latent similarity is 1/(1 + 2 x test_loss)), and ``<split>_latent_cosine``,
    the mean cosine of predicted and true latents."""

    def __init__(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        self.splits = splits

    @torch.no_grad()
    def __call__(self, predict) -> dict[str, torch.Tensor]:
        values = {}
        for name, (x, t) in self.splits.items():
            prediction = predict(x)
            values[f"{name}_loss"] = l2_loss(prediction, t)
            values[f"{name}_latent_cosine"] = torch.nn.functional.cosine_similarity(prediction, t, dim=1).mean()
        return values


class Evaluation:
    """The end-of-run metrics: latent and image metrics always; attribute correlations from
    InterFaceGAN boundaries (``attribute_boundaries``, names from the file names) or from the
    generator's own ground truth (facesketch's ``attributes``); feature similarity with a
    TorchScript ``feature_extractor``."""

    def __init__(self, feature_extractor: str | None = None, attribute_boundaries: Sequence[str] = ()):
        self.extractor_path = feature_extractor
        self.extractor = load_feature_extractor(feature_extractor) if feature_extractor else None
        self.boundaries = load_boundaries(attribute_boundaries) if attribute_boundaries else None
        self.attribute_names = [Path(path).stem for path in attribute_boundaries]
        if len(set(self.attribute_names)) != len(self.attribute_names):
            raise InputError(f"evaluate.attribute_boundaries: file names must differ, got {self.attribute_names}")

    def check_latent_dim(self, latent_dim: int) -> None:
        if self.boundaries is not None and self.boundaries.shape[1] != latent_dim:
            raise InputError(
                f"evaluate.attribute_boundaries: boundaries are {self.boundaries.shape[1]}-d, latents {latent_dim}-d"
            )

    def check_image_size(self, image_size: int) -> None:
        """The feature network takes the generator's images (square, ``image_size`` pixels)."""
        if self.extractor is not None:
            check_feature_extractor(self.extractor, self.extractor_path, image_size)

    def __call__(self, true_latents, predicted_latents, stimuli, reconstructions, generator) -> dict[str, float]:
        """Latents (N, D); images as rendered for display (uint8 (N, H, W, 3))."""
        metrics = {**latent_metrics(true_latents, predicted_latents), **image_metrics(stimuli, reconstructions)}
        if self.boundaries is not None:
            true_attr, pred_attr = (
                project_on_boundaries(z, self.boundaries) for z in (true_latents, predicted_latents)
            )
            metrics.update(attribute_metrics(true_attr, pred_attr, self.attribute_names))
        elif hasattr(generator, "attributes"):
            with torch.no_grad():
                true_attr, pred_attr = (
                    generator.attributes(torch.as_tensor(z, device=module_device(generator))).cpu().numpy()
                    for z in (true_latents, predicted_latents)
                )
            metrics.update(attribute_metrics(true_attr, pred_attr, list(ATTRIBUTES)))
        if self.extractor is not None:
            metrics.update(feature_metrics(stimuli, reconstructions, self.extractor))
        return metrics

    def per_trial(self, true_latents, predicted_latents, stimuli, reconstructions) -> dict[str, np.ndarray]:
        """The latent and image metrics of each test trial (:mod:`.trials`), for the reports' statistics."""
        return {
            **latent_trial_metrics(true_latents, predicted_latents),
            **image_trial_metrics(stimuli, reconstructions),
        }
