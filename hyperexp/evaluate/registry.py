"""Every metric a run reports, listed once: :data:`METRICS`.

Evaluation, the per-trial file (``per_trial.csv``), the reports' statistics and the UI read this
list. A metric is one of three kinds:

- per trial (``per_trial``): one value per test trial, a column of ``per_trial.csv``; the run's
  value is their mean, and reports put intervals over the trials;
- of a column (``of`` and ``transform``): the run's value is ``transform(mean of that column)``,
  e.g. ``latent_similarity = 1 / (1 + mean latent_mse)``; reports treat it like a per-trial metric;
- over trials (``over_trials``): defined on the whole test set only (a correlation across trials).

Each computes once from :class:`MetricInputs`, which holds the checked inputs and shares what
several metrics need (correlation matrices). To add a metric, add one :class:`Metric` here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from hyperexp.evaluate import measures


@dataclass
class MetricInputs:
    """What the metrics read; each part is optional, a metric runs when the parts it ``needs`` are set.

    latents: (true, predicted), each (N, D). images: (stimuli, reconstructions), images as in
    :mod:`.measures`. latent_distractors / image_distractors: (N, K) Pearson r of each prediction
    with each of K distractor latents / images (:func:`measures.correlations_with_batches`).
    attributes: (true, predicted) (N, A) attribute scores; features: (true, predicted) (N, F).
    """

    latents: tuple[np.ndarray, np.ndarray] | None = None
    images: tuple[np.ndarray, np.ndarray] | None = None
    latent_distractors: np.ndarray | None = None
    image_distractors: np.ndarray | None = None
    attributes: tuple[np.ndarray, np.ndarray] | None = None
    features: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.latents is not None:
            self.latents = measures.paired_2d(*self.latents, "latents")
        if self.images is not None:
            self.images = measures.paired_images(*self.images)
        if self.attributes is not None:
            self.attributes = measures.paired_2d(*self.attributes, "attributes")
        if self.features is not None:
            if not all(np.all(np.isfinite(side)) for side in self.features):
                raise ValueError("feature extractor produced NaN or infinite features")
            self.features = measures.paired_2d(*self.features, "features")

    def has(self, needs: Sequence[str]) -> bool:
        return all(getattr(self, part) is not None for part in needs)

    @cached_property
    def latent_correlations(self) -> np.ndarray:
        true, pred = self.latents
        return measures.correlation_matrix(true, pred)

    @cached_property
    def image_correlations(self) -> np.ndarray:
        true, pred = self.images
        n = len(true)
        return measures.correlation_matrix(true.reshape(n, -1), pred.reshape(n, -1))

    @cached_property
    def attribute_correlations(self) -> np.ndarray:
        """(A,) Pearson r across trials of each attribute; NaN where a column is constant."""
        return measures.columnwise_pearson(*self.attributes)

    def n_candidates(self) -> int:
        """Test stimuli plus distractors: the candidates of top-1 identification."""
        distractors = self.latent_distractors if self.latent_distractors is not None else self.image_distractors
        return distractors.shape[0] + distractors.shape[1]


def _latent_mse(inputs: MetricInputs) -> np.ndarray:
    true, pred = inputs.latents
    return np.mean((true - pred) ** 2, axis=1)


def _feature_mse(inputs: MetricInputs) -> np.ndarray:
    true, pred = inputs.features
    return np.mean((true - pred) ** 2, axis=1)


def _similarity(mean_mse: float) -> float:
    return 1.0 / (1.0 + mean_mse)


@dataclass(frozen=True)
class Metric:
    """One metric: how it is computed, which way is better and the values it can take."""

    name: str
    description: str
    needs: tuple[str, ...]  # the parts of MetricInputs it reads
    higher_is_better: bool | None  # None: a reference value (a chance level), not a score
    low: float  # the range of the run-level value (and of each experiment's statistic)
    high: float
    per_trial: Callable[[MetricInputs], np.ndarray] | None = None
    of: str | None = None  # the per-trial metric whose column mean ``transform`` maps to this one
    transform: Callable[[float], float] | None = None
    over_trials: Callable[[MetricInputs], float] | None = None
    compared: bool = True  # reports compare groups on it (with per-trial statistics when it has a column)
    chance: float | None = None  # its value for a decoder that knows nothing, where that is fixed
    headline: bool = False  # shown first, and summarised per group on a sweep's parent run

    @property
    def column(self) -> str | None:
        """The per-trial column its run-level value comes from (None: defined over trials only)."""
        return self.name if self.per_trial is not None else self.of

    def statistic(self, column_values: np.ndarray, axis: int = -1) -> np.ndarray:
        """The run-level value from per-trial values (vectorised along ``axis``, as scipy wants)."""
        mean = np.mean(column_values, axis=axis)
        return self.transform(mean) if self.transform is not None else mean

    def clip(self, value: float) -> float:
        return float(min(max(value, self.low), self.high))


INF = math.inf
_LATENTS, _IMAGES = ("latents",), ("images",)

METRICS: tuple[Metric, ...] = (
    Metric("latent_mse", "mean squared error of the latents", _LATENTS, False, 0.0, INF, _latent_mse, compared=False),
    Metric(
        "latent_similarity",
        "1 / (1 + latent_mse), the HYPER paper's latent similarity",
        _LATENTS,
        True,
        0.0,
        1.0,
        of="latent_mse",
        transform=_similarity,
        headline=True,
    ),
    Metric(
        "latent_cosine",
        "cosine of predicted and true latent, mean over trials",
        _LATENTS,
        True,
        -1.0,
        1.0,
        lambda inputs: measures.rowwise_cosine(*inputs.latents),
        headline=True,
    ),
    Metric(
        "latent_identification",
        "two-way identification by latent correlation among the test trials (chance 0.5)",
        _LATENTS,
        True,
        0.0,
        1.0,
        lambda inputs: measures.identification_per_trial(inputs.latent_correlations),
        chance=0.5,
    ),
    Metric(
        "ssim",
        "structural similarity of stimulus and reconstruction (RGB), mean over trials",
        _IMAGES,
        True,
        -1.0,
        1.0,
        lambda inputs: measures.ssim_per_trial(*inputs.images),
        headline=True,
    ),
    Metric(
        "pixel_correlation",
        "Pearson r of stimulus and reconstruction pixels, mean over trials",
        _IMAGES,
        True,
        -1.0,
        1.0,
        lambda inputs: np.diag(inputs.image_correlations).copy(),
    ),
    Metric(
        "pixel_identification",
        "two-way identification by pixel correlation among the test trials (chance 0.5)",
        _IMAGES,
        True,
        0.0,
        1.0,
        lambda inputs: measures.identification_per_trial(inputs.image_correlations),
        chance=0.5,
    ),
    Metric(
        "latent_identification_top1",
        "share of trials whose own latent correlates best with the prediction, among the test latents "
        "and the distractors (chance: identification_top1_chance)",
        ("latents", "latent_distractors"),
        True,
        0.0,
        1.0,
        lambda inputs: measures.top1_per_trial(inputs.latent_correlations, inputs.latent_distractors),
    ),
    Metric(
        "pixel_identification_top1",
        "share of trials whose own stimulus correlates best with the reconstruction, among the test "
        "stimuli and the distractor images (chance: identification_top1_chance)",
        ("images", "image_distractors"),
        True,
        0.0,
        1.0,
        lambda inputs: measures.top1_per_trial(inputs.image_correlations, inputs.image_distractors),
    ),
    Metric(
        "identification_top1_chance",
        "chance level of the top-1 identifications: 1 / (test trials + distractors)",
        ("latents", "latent_distractors"),
        None,
        0.0,
        1.0,
        over_trials=lambda inputs: 1.0 / inputs.n_candidates(),
        compared=False,
    ),
    Metric(
        "latent_pearson",
        "Pearson r across trials of each latent dimension, mean over dimensions",
        _LATENTS,
        True,
        -1.0,
        1.0,
        over_trials=lambda inputs: measures.mean_defined(measures.columnwise_pearson(*inputs.latents)),
    ),
    Metric(
        "attribute_similarity",
        "Pearson r across trials of each face attribute, mean over attributes (each: attr_r/<name>)",
        ("attributes",),
        True,
        -1.0,
        1.0,
        over_trials=lambda inputs: measures.mean_defined(inputs.attribute_correlations),
        headline=True,
    ),
    Metric(
        "feature_mse",
        "mean squared error of the feature network's outputs",
        ("features",),
        False,
        0.0,
        INF,
        _feature_mse,
        compared=False,
    ),
    Metric(
        "feature_cosine",
        "cosine of the feature network's outputs for stimulus and reconstruction, mean over trials",
        ("features",),
        True,
        -1.0,
        1.0,
        lambda inputs: measures.rowwise_cosine(*inputs.features),
    ),
    Metric(
        "feature_similarity",
        "1 / (1 + feature_mse)",
        ("features",),
        True,
        0.0,
        1.0,
        of="feature_mse",
        transform=_similarity,
    ),
)
BY_NAME = {metric.name: metric for metric in METRICS}


def metric(name: str) -> Metric:
    return BY_NAME[name]


def trial_metrics() -> list[Metric]:
    """The compared metrics with per-trial values (reports' intervals and paired differences), in order."""
    return [m for m in METRICS if m.compared and m.column is not None]


class Scores(NamedTuple):
    summary: dict[str, float]  # metric -> run-level value
    per_trial: dict[str, np.ndarray]  # per-trial column -> (N,)


def score(inputs: MetricInputs, only: Sequence[str] | None = None) -> Scores:
    """Every metric whose inputs are present (or those of ``only``), each computed once: the
    per-trial columns (those the metrics need), and the run-level values from them."""
    chosen = [m for m in METRICS if inputs.has(m.needs) and (only is None or m.name in only)]
    per_trial: dict[str, np.ndarray] = {}
    for m in chosen:
        if m.column is not None and m.column not in per_trial:
            per_trial[m.column] = np.asarray(BY_NAME[m.column].per_trial(inputs), dtype=np.float64)
    summary = {}
    for m in chosen:
        column_values = per_trial[m.column] if m.column is not None else None
        summary[m.name] = float(m.over_trials(inputs) if column_values is None else m.statistic(column_values))
    return Scores(summary, per_trial)
