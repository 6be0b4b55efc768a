"""The report's figures, each drawn only where it applies: group estimates with their 95% intervals
on an axis from 0 to 1 (every per-trial metric is bounded by 1), or against pool size when the
sweep varies it; paired differences against zero; per-epoch test loss of trained runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
from matplotlib.ticker import MaxNLocator

from hyperexp.atomic import atomic_path
from hyperexp.report.compare import Analysis, Comparison, GroupResult
from hyperexp.report.queries import RunRecord
from hyperexp.report.statistics import Estimate
from hyperexp.report.summary import group_runs

PANEL_METRICS = 4  # the first metrics of a report get a panel each


def _colours(labels: Sequence[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10"]
    return {label: cmap(index % cmap.N) for index, label in enumerate(labels)}


def _panels(metrics: Sequence[str], width: float, height: float) -> tuple[Figure, list]:
    """A figure of ``width`` x ``height`` panels, one per metric, two a row; and [(metric, axes)]."""
    columns, rows = min(len(metrics), 2), math.ceil(len(metrics) / 2)
    figure = Figure(figsize=(width * columns, height * rows))
    return figure, [(metric, figure.add_subplot(rows, columns, index + 1)) for index, metric in enumerate(metrics)]


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    return path


def _error_bars(estimates: Sequence[Estimate]) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([e.value for e in estimates])
    return values, np.array([[e.value - e.low for e in estimates], [e.high - e.value for e in estimates]])


def _bounded_axis(axes, estimates: Sequence[Estimate]) -> None:
    """From 0 (or below, if an interval is) to 1: differences in proportion to the scale."""
    axes.set_ylim(min(0.0, *(e.low for e in estimates)) - 0.02, max(1.0, *(e.high for e in estimates)) + 0.02)


def plot_estimates(analysis: Analysis, path: Path) -> Path:
    """Each group's estimate with its 95% interval, one panel per metric."""
    metrics = analysis.metrics[:PANEL_METRICS]
    groups = analysis.groups
    figure, panels = _panels(metrics, min(max(5.0, 0.9 * len(groups)), 12.0), 3.8)
    positions = np.arange(len(groups))
    for metric, axes in panels:
        estimates = [g.estimates[metric] for g in groups]
        values, errors = _error_bars(estimates)
        axes.errorbar(positions, values, yerr=errors, fmt="o", capsize=4, color="black")
        axes.set_xticks(positions, [g.group for g in groups], rotation=30, ha="right", fontsize=8)
        axes.set(title=f"{metric} (95% interval)", xlim=(-0.5, len(groups) - 0.5))
        _bounded_axis(axes, estimates)
    return _save(figure, path)


def series_label(group: str) -> str:
    """The group label without its pool-size settings (``k=v`` items naming subjects), so that
    groups differing only in pool size share one line in the pool-size figure."""
    kept = [item for item in group.split(",") if "subjects=" not in item]
    return ",".join(kept) or "hyperaligned average"


def _series(groups: Sequence[GroupResult]) -> dict[str, list[GroupResult]]:
    series: dict[str, list[GroupResult]] = {}
    for group in groups:
        series.setdefault(series_label(group.group), []).append(group)
    return {name: sorted(members, key=lambda g: g.pool_size) for name, members in series.items()}


def pool_size_varies(groups: Sequence[GroupResult]) -> bool:
    """Whether some groups differ only in pool size (a pool-size sweep), not just in what they are."""
    series = _series([g for g in groups if g.pool_size is not None])
    return any(len({g.pool_size for g in members}) > 1 for members in series.values())


def plot_against_pool_size(analysis: Analysis, path: Path) -> Path:
    """Estimates with 95% intervals against pool size (log 2 axis); a series with a single pool
    size (a reference such as the noise-free ceiling) is a horizontal band across the panel."""
    metrics = analysis.metrics[:PANEL_METRICS]
    series = _series([g for g in analysis.groups if g.pool_size is not None])
    sizes = sorted({g.pool_size for g in analysis.groups if g.pool_size is not None})
    colours = _colours(list(series))
    figure, panels = _panels(metrics, 6.0, 4.0)
    for metric, axes in panels:
        shown = []
        for label, members in series.items():
            estimates = [g.estimates[metric] for g in members]
            shown += estimates
            if len({g.pool_size for g in members}) == 1:
                (reference,) = estimates[:1]
                axes.axhspan(reference.low, reference.high, color=colours[label], alpha=0.25)
                axes.axhline(reference.value, color=colours[label], linestyle="--", label=label)
                continue
            values, errors = _error_bars(estimates)
            sizes_here = [g.pool_size for g in members]
            axes.errorbar(sizes_here, values, yerr=errors, fmt="o-", capsize=4, color=colours[label], label=label)
        axes.set_xscale("log", base=2)
        axes.set_xticks(sizes, [str(s) for s in sizes])
        axes.set(title=f"{metric} (95% interval)", xlabel="pool size (subjects)")
        _bounded_axis(axes, shown)
        axes.legend(fontsize=8)
    return _save(figure, path)


def comparison_label(comparison: Comparison) -> str:
    return f"{comparison.group} − {comparison.baseline}"


def plot_differences(analysis: Analysis, path: Path) -> Path:
    """Each paired difference with its 95% interval, against a line at zero; one panel per metric."""
    metrics = analysis.metrics[:PANEL_METRICS]
    comparisons = analysis.comparisons
    figure, panels = _panels(metrics, 6.0, max(2.4, 0.45 * len(comparisons) + 1.2))
    positions = np.arange(len(comparisons))[::-1]  # the first comparison on top
    for index, (metric, axes) in enumerate(panels):
        values, errors = _error_bars([c.differences[metric] for c in comparisons])
        axes.errorbar(values, positions, xerr=errors, fmt="o", capsize=4, color="black")
        axes.axvline(0.0, color="grey", linewidth=1)
        labels = [comparison_label(c) for c in comparisons] if index % 2 == 0 else [""] * len(comparisons)
        axes.set_yticks(positions, labels, fontsize=8)
        axes.set(title=f"{metric}: paired difference (95% interval)", ylim=(-0.7, len(comparisons) - 0.3))
    return _save(figure, path)


def plot_loss_curves(records: Sequence[RunRecord], flagged: set[str], path: Path, key: str = "test_loss") -> Path:
    """``key`` per epoch, one line per finished run, one colour per group; runs whose loss was still
    falling at the end are dashed."""
    finished = [r for r in records if r.finished and len(r.histories.get(key, [])) > 1]
    colours = _colours(list(group_runs(finished)))
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    labelled = set()
    for record in finished:
        steps, values = zip(*record.histories[key])
        label = None if record.group in labelled else record.group
        labelled.add(record.group)
        style = "--" if record.run_id in flagged else "-"
        axes.plot(steps, values, style, color=colours[record.group], alpha=0.8, linewidth=1, label=label)
    positive = all(v > 0 for r in finished for _, v in r.histories[key])
    title = f"{key} per run (dashed: still falling at the end)" if flagged else f"{key} per run"
    axes.set(xlabel="epoch", ylabel=key, title=title, yscale="log" if positive else "linear")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(fontsize=8)
    return _save(figure, path)
