"""The report's figures: metrics by group, loss curves per run, metrics against pool size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
from matplotlib.ticker import MaxNLocator

from hyperexp.atomic import atomic_path
from hyperexp.report.queries import RunRecord
from hyperexp.report.summary import GroupSummary, group_runs, pool_sizes


def _colours(labels: Sequence[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10"]
    return {label: cmap(index % cmap.N) for index, label in enumerate(labels)}


def _means_and_errors(rows: Sequence[GroupSummary], metric: str) -> tuple[list[float], list[float]]:
    """Group means and sds as error bars (0 where a group has too few runs for an sd)."""
    summaries = [row.metrics[metric] for row in rows]
    return [s.mean for s in summaries], [0.0 if math.isnan(s.sd) else s.sd for s in summaries]


def _metric_panels(metrics: Sequence[str], width: float, height: float) -> tuple[Figure, list]:
    """A figure of ``width`` x ``height`` panels, one per metric, two a row; and [(metric, axes)]."""
    columns, rows = min(len(metrics), 2), math.ceil(len(metrics) / 2)
    figure = Figure(figsize=(width * columns, height * rows))
    return figure, [(metric, figure.add_subplot(rows, columns, index + 1)) for index, metric in enumerate(metrics)]


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    return path


def plot_metrics_by_group(
    table: Sequence[GroupSummary], records: Sequence[RunRecord], metrics: Sequence[str], path: Path
) -> Path:
    """Each metric's group mean ± sd, with the single runs as dots."""
    figure, panels = _metric_panels(metrics, min(max(5.0, 0.8 * len(table)), 14.0), 3.6)
    groups = [row.group for row in table]
    positions = np.arange(len(groups))
    for metric, axes in panels:
        means, errors = _means_and_errors(table, metric)
        axes.errorbar(positions, means, yerr=errors, fmt="o", capsize=4, color="black", zorder=3)
        for position, group in zip(positions, groups):
            values = [r.metrics[metric] for r in records if r.finished and r.group == group and metric in r.metrics]
            axes.plot(np.full(len(values), position + 0.12), values, ".", alpha=0.5, color="tab:blue")
        axes.set_xticks(positions, groups, rotation=30, ha="right", fontsize=8)
        axes.set(title=metric, xlim=(-0.5, len(groups) - 0.5))
    return _save(figure, path)


def plot_loss_curves(records: Sequence[RunRecord], path: Path, key: str = "test_loss") -> Path:
    """``key`` per epoch, one line per finished run, one colour per group."""
    finished = [r for r in records if r.finished and key in r.histories]
    colours = _colours(list(group_runs(finished)))
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    labelled = set()
    for record in finished:
        steps, values = zip(*record.histories[key])
        label = None if record.group in labelled else record.group
        labelled.add(record.group)
        axes.plot(steps, values, color=colours[record.group], alpha=0.8, linewidth=1, label=label)
    positive = all(v > 0 for r in finished for _, v in r.histories[key])
    axes.set(xlabel="epoch", ylabel=key, title=f"{key} per run", yscale="log" if positive else "linear")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(fontsize=8)
    return _save(figure, path)


def _series_label(group: str) -> str:
    """The group label without its pool-size settings (``k=v`` items naming subjects), so that
    groups differing only in pool size share one line in the pool-size figure."""
    kept = [item for item in group.split(",") if "subjects=" not in item]
    return ",".join(kept) or "all"


def _series(rows: Sequence[GroupSummary]) -> dict[str, list[GroupSummary]]:
    """Series label -> its rows by pool size, labels in first-seen order."""
    series: dict[str, list[GroupSummary]] = {}
    for row in rows:
        series.setdefault(_series_label(row.group), []).append(row)
    return {name: sorted(members, key=lambda row: row.pool_size) for name, members in series.items()}


def plot_metric_vs_pool_size(table: Sequence[GroupSummary], metrics: Sequence[str], path: Path) -> Path:
    """Group mean ± sd against pool size; groups differing only in pool size joined by a line."""
    series = _series([row for row in table if row.pool_size is not None])
    colours = _colours(list(series))
    figure, panels = _metric_panels(metrics, 6.0, 3.8)
    for metric, axes in panels:
        for label, members in series.items():
            means, errors = _means_and_errors(members, metric)
            sizes = [row.pool_size for row in members]
            axes.errorbar(sizes, means, yerr=errors, fmt="o-", capsize=4, color=colours[label], label=label)
        axes.set(title=metric, xlabel="pool size (subjects)")
        axes.set_xticks(pool_sizes(table))
        if len(series) > 1:
            axes.legend(fontsize=8)
    return _save(figure, path)
