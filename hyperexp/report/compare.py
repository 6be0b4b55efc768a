"""A sweep's comparison: each group's per-trial estimates, the paired differences between groups,
how much their predictions agree, and which runs had not converged.

Comparisons are each group against a named baseline (``report.baseline=data=subject1``, the CLI's
``--baseline``), or, without one, every pair of groups (the later minus the earlier).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hyperexp.errors import InputError
from hyperexp.evaluate.convergence import TailDrop, tail_drop
from hyperexp.evaluate.trials import rowwise_cosine
from hyperexp.report.queries import RunRecord
from hyperexp.report.statistics import Estimate, available_metrics, group_estimate, holm, paired_estimate
from hyperexp.report.summary import by_pool_size, group_runs, pool_sizes_of_groups
from hyperexp.report.trials import GroupTrials

FIT_SECONDS = "timing/fit_seconds"
AGREEMENT = "prediction_cosine"  # per trial: cosine of the two groups' predicted latents


@dataclass
class GroupResult:
    group: str
    pool_size: int | None
    n_runs: int
    estimates: dict[str, Estimate]  # metric -> over its experiments
    per_experiment: dict[str, list[Estimate]]  # metric -> one per experiment
    fit_seconds: float  # mean over runs; NaN when not logged
    preliminary: bool  # some run's loss was still falling at the end
    experiments: list[str] = field(default_factory=list)  # labels, in the order of ``per_experiment``


@dataclass
class Comparison:
    group: str
    baseline: str
    test_sets: list[str]
    differences: dict[str, Estimate]  # metric -> group - baseline
    per_experiment: dict[str, list[Estimate]]
    agreement: Estimate | None = None  # mean per-trial cosine of the two groups' predictions
    preliminary: bool = False
    experiments: list[str] = field(default_factory=list)  # labels of ``test_sets``


@dataclass
class Analysis:
    metrics: list[str]
    groups: list[GroupResult]
    comparisons: list[Comparison]
    baseline: str | None
    convergence: dict[str, TailDrop] = field(default_factory=dict)  # run id -> its test loss's tail

    @property
    def n_experiments(self) -> int:
        return max((e.n_experiments for g in self.groups for e in g.estimates.values()), default=0)


def convergence_of(records: Sequence[RunRecord], key: str = "test_loss") -> dict[str, TailDrop]:
    """Run id -> the tail of its per-epoch ``key`` (finished runs trained over several epochs)."""
    tails = {}
    for record in records:
        points = record.histories.get(key, []) if record.finished else []
        drop = tail_drop([value for _, value in points])
        if drop is not None:
            tails[record.run_id] = drop
    return tails


def _items(label: str) -> set[str]:
    return {item.strip() for item in label.split(",") if item.strip()}


def spec_matches(spec: str, group: str) -> bool:
    """Whether ``group``'s label is ``spec`` or holds all of its ``key=value`` items."""
    return spec == group or _items(spec) <= _items(group)


def resolve_group(spec: str, groups: Sequence[str], setting: str = "report.baseline") -> str:
    """The one group that ``spec`` names (:func:`spec_matches`); ``setting`` names it in errors."""
    if spec in groups:
        return spec
    matches = [group for group in groups if spec_matches(spec, group)]
    if len(matches) != 1:
        found = "no group" if not matches else f"{len(matches)} groups"
        raise InputError(f"{setting}: {spec!r} matches {found}; groups: {', '.join(groups)}")
    return matches[0]


def comparison_pairs(groups: Sequence[str], baseline: str | None) -> list[tuple[str, str]]:
    if baseline is not None:
        return [(group, baseline) for group in groups if group != baseline]
    return [(later, earlier) for index, earlier in enumerate(groups) for later in groups[index + 1 :]]


def _mean_fit_seconds(members: Sequence[RunRecord]) -> float:
    values = [r.run_metrics[FIT_SECONDS] for r in members if FIT_SECONDS in r.run_metrics]
    return float(np.mean(values)) if values else math.nan


def _group_result(group: str, members, trials: GroupTrials, metrics, flagged: set[str]) -> GroupResult:
    experiments = list(trials.experiments.values())
    estimates, per_experiment = {}, {}
    for metric in metrics:
        estimates[metric], per_experiment[metric] = group_estimate(experiments, metric)
    return GroupResult(
        group,
        pool_sizes_of_groups(members),
        len(members),
        estimates,
        per_experiment,
        _mean_fit_seconds(members),
        any(r.run_id in flagged for r in members),
        [trials.labels.get(key, key) for key in trials.experiments],
    )


def _agreement(group: GroupTrials, baseline: GroupTrials, test_sets: list[str]) -> Estimate | None:
    if not all(key in group.predictions and key in baseline.predictions for key in test_sets):
        return None
    cosines = [{AGREEMENT: rowwise_cosine(group.predictions[k], baseline.predictions[k])} for k in test_sets]
    return group_estimate(cosines, AGREEMENT)[0]


def _compare(group: GroupTrials, baseline: GroupTrials, metrics, preliminary: bool) -> Comparison | None:
    test_sets = group.common_test_sets(baseline)
    if not test_sets:
        return None  # not tested on the same trials: no paired comparison
    differences, per_experiment = {}, {}
    for metric in metrics:
        pairs = [(group.experiments[k], baseline.experiments[k]) for k in test_sets]
        differences[metric], per_experiment[metric] = paired_estimate(*zip(*pairs), metric)
    agreement = _agreement(group, baseline, test_sets)
    labels = [group.labels.get(key, key) for key in test_sets]
    return Comparison(
        group.group, baseline.group, test_sets, differences, per_experiment, agreement, preliminary, labels
    )


def _adjust(comparisons: list[Comparison]) -> None:
    """Holm's correction over every p-value of the report's main comparisons (all metrics)."""
    cells = [(c, metric) for c in comparisons for metric in c.differences]
    adjusted = holm([c.differences[metric].p for c, metric in cells])
    for (comparison, metric), p in zip(cells, adjusted):
        comparison.differences[metric] = comparison.differences[metric].adjusted(p)


def analyse(records: Sequence[RunRecord], trials: dict[str, GroupTrials], baseline: str | None = None) -> Analysis:
    """Estimates of every group with per-trial values, and the paired comparisons between them."""
    finished = group_runs(r for r in records if r.finished and r.group in trials)
    convergence = convergence_of(records)
    flagged = {run_id for run_id, drop in convergence.items() if drop.still_falling}
    metrics = available_metrics([e for g in trials.values() for e in g.experiments.values()])
    groups = by_pool_size(
        [_group_result(name, members, trials[name], metrics, flagged) for name, members in finished.items()]
    )
    names = [g.group for g in groups]
    if baseline is not None:
        baseline = resolve_group(baseline, names)
    preliminary = {g.group: g.preliminary for g in groups}
    comparisons = []
    for name, reference in comparison_pairs(names, baseline):
        found = _compare(trials[name], trials[reference], metrics, preliminary[name] or preliminary[reference])
        comparisons += [found] if found else []
    _adjust(comparisons)
    return Analysis(metrics, groups, comparisons, baseline, convergence)
