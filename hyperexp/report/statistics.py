"""Statistics over test trials: each group's metric with a 95% interval, and paired differences.

The unit of variance is the test trial, and in simulation the simulated experiment; decoder seeds
are not (their spread is reported apart, :mod:`.summary`).

- One experiment (one test set): the interval is a BCa bootstrap over the test trials
  (``scipy.stats.bootstrap``); a paired difference resamples the same trials of both groups, and
  its p-value is a paired permutation test (``scipy.stats.permutation_test``: the two groups'
  values swapped within each trial).
- Several experiments (``data.simulation.seed`` swept: new stimuli, subjects and noise each): each
  experiment's statistic comes from its own trials, and the interval and p-value are those of a
  one-sample t over the k experiment-level values (the between-experiment interval, k - 1 degrees
  of freedom); each experiment's trial-level interval and permutation test are listed as well.

A metric's statistic is its run-level definition in the metric registry
(:data:`hyperexp.evaluate.METRICS`): the mean over trials of its per-trial values, or a function of
another column's mean (``latent_similarity`` = 1 / (1 + mean ``latent_mse``)). p-values of a report
are corrected together by Holm's method (:func:`holm`).

Intervals respect a metric's range (the registry's ``low``, ``high``; for a difference, the
difference of the ranges): a t interval over a few experiments can reach past it (identification
near 1), and is then cut at the bound. Cutting loses no coverage: the true value lies in the range,
so it lies in the cut interval whenever it lies in the t interval. (A percentile bootstrap over
k = 3 experiment values, the alternative, has only 10 distinct resamples and undercovers.)
Bootstrap intervals over trials stay within the range by construction.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from hyperexp.evaluate.registry import BY_NAME, Metric, trial_metrics

CONFIDENCE = 0.95
N_RESAMPLES = 9999
RANDOM_SEED = 0  # fixed, so that a report is reproducible

Trials = Mapping[str, np.ndarray]  # per-trial column -> (N,) values of one experiment
Statistic = Callable[..., np.ndarray]  # statistic(values, axis=-1), vectorised as scipy wants it


def metric_of(name: str) -> Metric:
    """The registry's entry; a name outside it (e.g. a report's own per-trial column such as the
    agreement of two groups' predictions) is the plain mean of its column, unbounded."""
    return BY_NAME.get(name) or Metric(name, name, (), None, -np.inf, np.inf, per_trial=lambda inputs: None)


def column_of(metric: str) -> str:
    return metric_of(metric).column


def statistic_of(metric: str) -> Statistic:
    return metric_of(metric).statistic


def value_range(metric: str, difference: bool = False) -> tuple[float, float]:
    """The values a metric's statistic (or a difference of two of them) can take."""
    entry = metric_of(metric)
    return (entry.low - entry.high, entry.high - entry.low) if difference else (entry.low, entry.high)


def available_metrics(experiments: Sequence[Trials]) -> list[str]:
    """The registry's compared per-trial metrics whose column every experiment has, in its order."""
    return [m.name for m in trial_metrics() if experiments and all(m.column in e for e in experiments)]


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% interval; ``p`` (two-sided) for a difference against zero."""

    value: float
    low: float
    high: float
    n_trials: int  # test trials per experiment (the smallest, if they differ)
    n_experiments: int
    p: float = float("nan")
    p_adjusted: float = float("nan")

    @property
    def method(self) -> str:
        if self.n_experiments > 1:
            return f"t over {self.n_experiments} simulated experiments"
        return f"bootstrap over {self.n_trials} trials"

    def adjusted(self, p_adjusted: float) -> Estimate:
        return Estimate(self.value, self.low, self.high, self.n_trials, self.n_experiments, self.p, p_adjusted)

    def within(self, bounds: tuple[float, float]) -> Estimate:
        """The interval cut at the bounds of the values the statistic can take."""
        low, high = (float(np.clip(end, *bounds)) for end in (self.low, self.high))
        return Estimate(self.value, low, high, self.n_trials, self.n_experiments, self.p, self.p_adjusted)


def _rng() -> np.random.Generator:
    return np.random.default_rng(RANDOM_SEED)


def _bootstrap_interval(samples: tuple, statistic: Statistic, paired: bool = False) -> tuple[float, float]:
    """The BCa interval; the percentile interval where BCa is undefined (nearly degenerate data)."""
    settings = dict(n_resamples=N_RESAMPLES, confidence_level=CONFIDENCE, paired=paired, vectorized=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (stats.DegenerateDataWarning, RuntimeWarning))
        interval = stats.bootstrap(samples, statistic, method="BCa", rng=_rng(), **settings).confidence_interval
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        interval = stats.bootstrap(samples, statistic, method="percentile", rng=_rng(), **settings).confidence_interval
    return float(interval.low), float(interval.high)


def over_trials(values: np.ndarray, metric: str) -> Estimate:
    """One experiment's statistic with a BCa bootstrap interval over its trials."""
    statistic = statistic_of(metric)
    value = float(statistic(values))
    if np.ptp(values) == 0:  # no spread to resample (BCa is undefined)
        return Estimate(value, value, value, len(values), 1)
    low, high = _bootstrap_interval((values,), statistic)
    return Estimate(value, low, high, len(values), 1).within(value_range(metric))


def paired_over_trials(values: np.ndarray, baseline: np.ndarray, metric: str) -> Estimate:
    """statistic(values) - statistic(baseline) over the same trials: paired BCa bootstrap interval
    and paired permutation p-value."""
    statistic = statistic_of(metric)

    def difference(a, b, axis=-1):
        return statistic(a, axis=axis) - statistic(b, axis=axis)

    value = float(difference(values, baseline))
    if np.all(values == baseline):
        return Estimate(value, value, value, len(values), 1, p=1.0)
    test = stats.permutation_test(
        (values, baseline), difference, permutation_type="samples", n_resamples=N_RESAMPLES, vectorized=True, rng=_rng()
    )
    if np.ptp(values - baseline) == 0:  # a constant shift: every resample gives the same difference
        low = high = value
    else:
        low, high = _bootstrap_interval((values, baseline), difference, paired=True)
    return Estimate(value, low, high, len(values), 1, p=float(test.pvalue)).within(value_range(metric, True))


def over_experiments(values: Sequence[float], n_trials: int, difference: bool, metric: str | None = None) -> Estimate:
    """Mean of k experiment-level values with the one-sample t interval, cut at ``metric``'s range
    (and, for a difference, the t-test p-value against zero)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if np.ptp(values) == 0:
        return Estimate(mean, mean, mean, n_trials, len(values), p=1.0 if difference and mean == 0 else float("nan"))
    test = stats.ttest_1samp(values, 0.0)
    interval = test.confidence_interval(CONFIDENCE)
    p = float(test.pvalue) if difference else float("nan")
    estimate = Estimate(mean, float(interval.low), float(interval.high), n_trials, len(values), p=p)
    return estimate if metric is None else estimate.within(value_range(metric, difference))


def group_estimate(experiments: Sequence[Trials], metric: str) -> tuple[Estimate, list[Estimate]]:
    """A group's estimate over its experiments, and each experiment's own (over its trials)."""
    column = column_of(metric)
    each = [over_trials(np.asarray(e[column]), metric) for e in experiments]
    if len(each) == 1:
        return each[0], each
    n_trials = min(e.n_trials for e in each)
    return over_experiments([e.value for e in each], n_trials, difference=False, metric=metric), each


def paired_estimate(
    experiments: Sequence[Trials], baselines: Sequence[Trials], metric: str
) -> tuple[Estimate, list[Estimate]]:
    """The difference group - baseline over experiments paired by test set (same order), and each
    experiment's own paired difference over its trials."""
    column = column_of(metric)
    each = [
        paired_over_trials(np.asarray(e[column]), np.asarray(b[column]), metric) for e, b in zip(experiments, baselines)
    ]
    if len(each) == 1:
        return each[0], each
    n_trials = min(e.n_trials for e in each)
    return over_experiments([e.value for e in each], n_trials, difference=True, metric=metric), each


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=float)
    defined = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(len(p), np.nan)
    order = defined[np.argsort(p[defined], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
