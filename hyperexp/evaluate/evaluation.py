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
from hyperexp.evaluate.measures import (
    as_channel_last_unit,
    correlation_matrix,
    correlations_with_batches,
    paired_2d,
    paired_images,
)
from hyperexp.evaluate.metrics import attribute_correlations, extract_features, project_on_boundaries
from hyperexp.evaluate.registry import MetricInputs, Scores, score
from hyperexp.generate import render
from hyperexp.generate.facesketch import ATTRIBUTES

# Fixed, so every run is identified among the same distractors; a two-word seed, so that the draws
# share no stream with data seeded by a small integer (a simulation with seed 0 draws its stimuli
# from default_rng(0)).
DISTRACTOR_SEED = (0x44495354, 0x52414354)


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
    """The end-of-run metrics (:data:`~hyperexp.evaluate.registry.METRICS`), each computed once per
    test trial: latent and image metrics always; top-1 identification among the test stimuli and
    ``distractors`` latents drawn from the generators' prior N(0, I) with a fixed seed (and their
    rendered images); attribute correlations from InterFaceGAN boundaries (``attribute_boundaries``,
    names from the file names) or from the generator's own ground truth (facesketch's
    ``attributes``); feature similarity with a TorchScript ``feature_extractor``."""

    def __init__(
        self, feature_extractor: str | None = None, attribute_boundaries: Sequence[str] = (), distractors: int = 100
    ):
        if distractors < 0:
            raise InputError(f"evaluate.distractors: must be >= 0, got {distractors}")
        self.distractors = distractors
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

    def distractor_latents(self, latent_dim: int) -> np.ndarray:
        """(distractors, latent_dim) draws from N(0, I): the same for every run (a fixed seed)."""
        return np.random.default_rng(DISTRACTOR_SEED).standard_normal((self.distractors, latent_dim))

    def attribute_scores(self, true, predicted, generator) -> tuple[tuple | None, list[str]]:
        """(true, predicted) (N, A) attribute scores and their names: projections on the boundaries,
        else the generator's own attributes, else none."""
        if self.boundaries is not None:
            return tuple(project_on_boundaries(z, self.boundaries) for z in (true, predicted)), self.attribute_names
        if not hasattr(generator, "attributes"):
            return None, []
        device = module_device(generator)
        with torch.no_grad():
            scores = tuple(
                generator.attributes(torch.as_tensor(z, dtype=torch.float32, device=device)).double().cpu().numpy()
                for z in (true, predicted)
            )
        return scores, list(ATTRIBUTES)

    def __call__(
        self, true_latents, predicted_latents, stimuli, reconstructions, generator, batch_size: int = 16
    ) -> Scores:
        """Latents (N, D); images as rendered for display (uint8 (N, H, W, 3)); ``batch_size``:
        distractor latents rendered at a time. Returns the run-level values (with ``attr_r/<name>``
        per attribute) and the per-trial columns."""
        true, predicted = paired_2d(true_latents, predicted_latents, "latents")
        images = paired_images(stimuli, reconstructions)
        distractors = self.distractor_latents(true.shape[1])
        rendered = (
            as_channel_last_unit(render(generator, batch, batch_size), "distractor images")
            for batch in batches_of(distractors, batch_size)
        )
        attributes, names = self.attribute_scores(true, predicted, generator)
        inputs = MetricInputs(
            latents=(true, predicted),
            images=images,
            latent_distractors=correlation_matrix(distractors, predicted),
            image_distractors=correlations_with_batches(images[1], rendered),
            attributes=attributes,
            features=tuple(extract_features(x, self.extractor) for x in images) if self.extractor else None,
        )
        summary, per_trial = score(inputs)
        if attributes is not None:
            summary.update(attribute_correlations(inputs, names))
        return Scores(summary, per_trial)


def batches_of(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
