"""The spread over runs: per group, each final metric over the finished runs (mean, sample sd, n).

This is the spread of decoder seeds (and of simulated experiments when they are swept), shown for
reference; the uncertainty of a comparison is over test trials (:mod:`.statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hyperexp.evaluate.registry import METRICS
from hyperexp.report.queries import RunRecord

DEFAULT_METRICS = tuple(m.name for m in METRICS if m.headline)  # the registry's headline metrics, in its order


@dataclass(frozen=True)
class MetricSummary:
    mean: float  # NaN without values
    sd: float  # sample sd (ddof=1); NaN below two values
    n: int


@dataclass
class GroupSummary:
    group: str
    pool_size: int | None  # None when the group's runs disagree or do not say
    n_runs: int  # finished runs
    metrics: dict[str, MetricSummary]


def group_runs(records: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """Group label -> its runs, groups in first-seen order."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    return groups


def metric_names(records: Sequence[RunRecord]) -> list[str]:
    """The final metrics of the finished runs: the default ones first, then the others by name."""
    found = {name for r in records if r.finished for name in r.metrics}
    return [m for m in DEFAULT_METRICS if m in found] + sorted(found - set(DEFAULT_METRICS))


def pool_sizes_of_groups(records: Sequence[RunRecord]) -> int | None:
    """The pool size the runs share, or None when they disagree or do not say."""
    sizes = {r.pool_size for r in records}
    return sizes.pop() if len(sizes) == 1 else None


def by_pool_size(rows: list) -> list:
    """Rows (with a ``pool_size``) by pool size when all have one and they differ, else as they are
    (the sort is stable: equal sizes keep first-seen order)."""
    sizes = [row.pool_size for row in rows]
    if None not in sizes and len(set(sizes)) > 1:
        return sorted(rows, key=lambda row: row.pool_size)
    return list(rows)


def _summarise(values: list[float]) -> MetricSummary:
    array = np.array(values, dtype=float)
    mean = float(array.mean()) if len(array) else math.nan
    sd = float(array.std(ddof=1)) if len(array) > 1 else math.nan
    return MetricSummary(mean, sd, len(array))


def summary_table(records: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> list[GroupSummary]:
    """One row per group, summarising ``metrics`` (default: :func:`metric_names`) over its finished runs.

    Rows go by pool size when all groups have one and they differ, else in first-seen order; a
    group whose jobs all failed keeps its row, with n_runs 0.
    """
    metrics = list(metrics) if metrics is not None else metric_names(records)
    table = []
    for group, members in group_runs(records).items():
        finished = [r for r in members if r.finished]
        summaries = {m: _summarise([r.metrics[m] for r in finished if m in r.metrics]) for m in metrics}
        table.append(GroupSummary(group, pool_sizes_of_groups(finished or members), len(finished), summaries))
    return by_pool_size(table)


def pool_sizes(table: Sequence[GroupSummary]) -> list[int]:
    """The distinct known pool sizes of the groups, ascending."""
    return sorted({row.pool_size for row in table if row.pool_size is not None})


def logged_metrics(table: Sequence[GroupSummary], metrics: Sequence[str]) -> list[str]:
    """Those of ``metrics`` that at least one finished run logged."""
    return [m for m in metrics if any(m in row.metrics and row.metrics[m].n for row in table)]
