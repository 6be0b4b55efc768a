"""The report's files, and their upload to a run: ``report.md`` and ``report.html`` (the same
report, the HTML self-contained), ``report.csv`` (each group's estimates), ``differences.csv``,
``experiments.csv``, ``runs.csv`` (the spread over runs) and the figures that apply."""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mlflow import MlflowClient

from hyperexp.atomic import atomic_path, atomic_write
from hyperexp.report import figures
from hyperexp.report.compare import Analysis, analyse
from hyperexp.report.document import Block, Heading, Image, Paragraph, Raw, to_html, to_markdown
from hyperexp.report.queries import RunRecord
from hyperexp.report.sections import (
    convergence_blocks,
    difference_blocks,
    experiment_blocks,
    group_table,
    method_paragraph,
    preliminary_paragraph,
    spread_blocks,
    unfinished_blocks,
)
from hyperexp.report.statistics import Estimate
from hyperexp.report.summary import DEFAULT_METRICS, GroupSummary, logged_metrics, summary_table
from hyperexp.report.trials import GroupTrials
from hyperexp.track.outbox import send

RUN_STATISTICS = ("mean", "sd", "n")  # runs.csv: the columns of each metric, <metric>_<statistic>
ESTIMATE_COLUMNS = ("value", "low", "high", "p", "p_holm", "n_trials", "n_experiments", "method")


def _csv_value(value: float | int | str | None) -> str | float | int:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([_csv_value(value) for value in row] for row in rows)
    return path


def _estimate_cells(e: Estimate) -> list:
    return [e.value, e.low, e.high, e.p, e.p_adjusted, e.n_trials, e.n_experiments, e.method]


def write_runs_csv(table: Sequence[GroupSummary], path: Path) -> Path:
    """Columns ``group``, ``pool_size``, ``n_runs`` and ``<metric>_mean``, ``_sd``, ``_n`` per metric."""
    metrics = list(table[0].metrics) if table else []
    header = ["group", "pool_size", "n_runs"] + [f"{m}_{s}" for m in metrics for s in RUN_STATISTICS]
    rows = [
        [row.group, row.pool_size, row.n_runs] + [getattr(row.metrics[m], s) for m in metrics for s in RUN_STATISTICS]
        for row in table
    ]
    return _write_rows(path, header, rows)


def write_statistics_csvs(analysis: Analysis, out_dir: Path) -> dict[str, Path]:
    """``report.csv`` (group estimates), ``differences.csv`` (experiment ``all``: over every
    experiment, then each one's) and ``experiments.csv``."""
    groups = [
        [g.group, g.pool_size, g.n_runs, g.fit_seconds, m, *_estimate_cells(e)]
        for g in analysis.groups
        for m, e in g.estimates.items()
    ]
    paths = {
        "csv": _write_rows(
            out_dir / "report.csv", ["group", "pool_size", "n_runs", "fit_seconds", "metric", *ESTIMATE_COLUMNS], groups
        )
    }
    differences = []
    for c in analysis.comparisons:
        for metric, overall in c.differences.items():
            differences.append([c.group, c.baseline, metric, "all", *_estimate_cells(overall)])
            if len(c.test_sets) > 1:
                differences += [
                    [c.group, c.baseline, metric, label, *_estimate_cells(e)]
                    for label, e in zip(c.experiments, c.per_experiment[metric])
                ]
        if c.agreement is not None:
            differences.append([c.group, c.baseline, "prediction_cosine", "all", *_estimate_cells(c.agreement)])
    header = ["group", "baseline", "metric", "experiment", *ESTIMATE_COLUMNS]
    paths["differences_csv"] = _write_rows(out_dir / "differences.csv", header, differences)
    experiments = [
        [g.group, m, label, *_estimate_cells(e)]
        for g in analysis.groups
        for m, each in g.per_experiment.items()
        for label, e in zip(g.experiments, each)
    ]
    header = ["group", "metric", "experiment", *ESTIMATE_COLUMNS]
    paths["experiments_csv"] = _write_rows(out_dir / "experiments.csv", header, experiments)
    return paths


FIGURE_FILES = {
    "pool_size": "metric_vs_pool_size.png",
    "estimates": "estimates.png",
    "differences": "differences.png",
    "loss_curves": "loss_curves.png",
}


def draw_figures(analysis: Analysis, records: Sequence[RunRecord], out_dir: Path) -> dict[str, Path]:
    """The figures that apply: estimates (against pool size when it varies), differences when
    there are comparisons, loss curves when some run trained over epochs."""
    paths = {}
    if analysis.groups and analysis.metrics:
        if figures.pool_size_varies(analysis.groups):
            paths["pool_size"] = figures.plot_against_pool_size(analysis, out_dir / FIGURE_FILES["pool_size"])
        else:
            paths["estimates"] = figures.plot_estimates(analysis, out_dir / FIGURE_FILES["estimates"])
    if analysis.comparisons:
        paths["differences"] = figures.plot_differences(analysis, out_dir / FIGURE_FILES["differences"])
    if analysis.convergence:
        flagged = {run_id for run_id, drop in analysis.convergence.items() if drop.still_falling}
        paths["loss_curves"] = figures.plot_loss_curves(records, flagged, out_dir / FIGURE_FILES["loss_curves"])
    for name in set(FIGURE_FILES.values()) - {path.name for path in paths.values()}:
        (out_dir / name).unlink(missing_ok=True)  # an earlier report's figure that no longer applies
    return paths


CAPTIONS = {
    "estimates": "Each group's estimate with its 95% interval (axis from 0 to 1)",
    "pool_size": "Estimates with 95% intervals against pool size",
    "differences": "Paired differences with 95% intervals; the grey line is no difference",
    "loss_curves": "Test loss per epoch of each trained run",
}


def report_blocks(
    analysis: Analysis, records: Sequence[RunRecord], table: Sequence[GroupSummary], figure_paths: dict[str, Path]
) -> list[Block]:
    n_finished = sum(r.finished for r in records)
    blocks: list[Block] = [
        Paragraph(
            f"Groups: {len(table)}; finished runs: {n_finished}; jobs not finished: {len(records) - n_finished}. "
            "Files: [report.csv](report.csv) (estimates), [differences.csv](differences.csv), "
            "[experiments.csv](experiments.csv), [runs.csv](runs.csv)."
        )
    ]
    if analysis.groups and analysis.metrics:
        blocks += [p for p in (preliminary_paragraph(analysis),) if p]
        blocks += [Heading("Groups"), method_paragraph(analysis), group_table(analysis)]
        blocks += difference_blocks(analysis) + experiment_blocks(analysis)
    else:
        blocks.append(Paragraph("No finished run logged per-trial metrics (`per_trial.csv`): no intervals."))
    blocks += spread_blocks(table, logged_metrics(table, DEFAULT_METRICS))
    blocks += convergence_blocks(analysis, records) + unfinished_blocks(records)
    if figure_paths:
        blocks.append(Heading("Figures"))
        blocks += [Image(path, CAPTIONS[name]) for name, path in figure_paths.items()]
    return blocks


def write_report(
    records: Sequence[RunRecord],
    trials: dict[str, GroupTrials],
    out_dir: str | Path,
    title: str = "Sweep report",
    baseline: str | None = None,
    appendix: str = "",
) -> dict[str, Path]:
    """Analyse the runs and write every report file into ``out_dir``; ``trials``: the per-trial
    values (:func:`hyperexp.report.trials.load_trials`); ``appendix``: markdown to end with.
    Returns name -> path of the files written."""
    out_dir = Path(out_dir)
    table = summary_table(records)
    analysis = analyse(records, trials, baseline)
    paths = {**write_statistics_csvs(analysis, out_dir), "runs_csv": write_runs_csv(table, out_dir / "runs.csv")}
    figure_paths = draw_figures(analysis, records, out_dir)
    paths.update(figure_paths)
    blocks = [Heading(title, level=1), *report_blocks(analysis, records, table, figure_paths)]
    blocks += [Raw(appendix)] if appendix else []
    paths["markdown"] = out_dir / "report.md"
    atomic_write(paths["markdown"], to_markdown(blocks).encode())
    paths["html"] = out_dir / "report.html"
    atomic_write(paths["html"], to_html(blocks, title).encode())
    return paths


def log_report_to_run(
    run_id: str,
    paths: Mapping[str, Path] | Iterable[Path],
    tracking_uri: str | None = None,
    artifact_path: str = "report",
) -> None:
    """Attach the report files to a run (a sweep's parent run, ended) as artifacts under ``artifact_path``."""
    with tempfile.TemporaryDirectory(prefix="hyperexp-report-") as folder:
        for path in paths.values() if isinstance(paths, Mapping) else paths:
            shutil.copy2(path, folder)
        send(
            MlflowClient(tracking_uri),
            run_id,
            {"kind": "artifacts", "local_dir": folder, "artifact_path": artifact_path},
        )
