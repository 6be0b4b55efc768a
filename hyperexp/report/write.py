"""The report's files: ``report.md`` (tables, unfinished jobs, figures), ``report.csv`` and figures,
and their upload to a run."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mlflow import MlflowClient

from hyperexp.atomic import atomic_path, atomic_write
from hyperexp.report.figures import plot_loss_curves, plot_metric_vs_pool_size, plot_metrics_by_group
from hyperexp.report.queries import RunRecord
from hyperexp.report.summary import DEFAULT_METRICS, GroupSummary, logged_metrics, pool_sizes, summary_table

STATISTICS = ("mean", "sd", "n")  # the CSV columns of each metric, <metric>_<statistic>


def _csv_value(value: float | int | str | None) -> str | float | int:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def write_csv(table: Sequence[GroupSummary], path: Path) -> Path:
    """Columns ``group``, ``pool_size``, ``n_runs`` and ``<metric>_mean``, ``_sd``, ``_n`` per metric;
    empty cells where a value is unknown. Every row summarises the same metrics."""
    metrics = list(table[0].metrics) if table else []
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["group", "pool_size", "n_runs"] + [f"{m}_{s}" for m in metrics for s in STATISTICS])
        for row in table:
            values = [getattr(row.metrics[m], s) for m in metrics for s in STATISTICS]
            writer.writerow([_csv_value(v) for v in (row.group, row.pool_size, row.n_runs, *values)])
    return path


def _cell(mean: float, sd: float, n: int, n_runs: int) -> str:
    if n == 0:
        return "–"
    text = f"{mean:.4g}" if math.isnan(sd) else f"{mean:.4g} ± {sd:.4g}"
    return text if n == n_runs else f"{text} (n={n})"


def markdown_table(table: Sequence[GroupSummary], metrics: Sequence[str]) -> str:
    """``mean ± sd`` cells with 4 significant digits; the pool size column only when known."""
    with_pool = bool(pool_sizes(table))
    header = ["group"] + (["pool size"] if with_pool else []) + ["n"] + list(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [row.group.replace("|", "\\|")]
        if with_pool:
            cells.append("" if row.pool_size is None else str(row.pool_size))
        cells.append(str(row.n_runs))
        cells += [_cell(s.mean, s.sd, s.n, row.n_runs) for s in (row.metrics[m] for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _unfinished_job_lines(records: Sequence[RunRecord]) -> list[str]:
    unfinished = [r for r in records if not r.finished]
    if not unfinished:
        return ["None: every job finished."]
    return [
        f"- `{r.run_id}` {r.run_name} (group {r.group}, seed {'?' if r.seed is None else r.seed}): {r.status}"
        + (f": {r.error}" if r.error else "")
        for r in unfinished
    ]


def write_report(
    records: Sequence[RunRecord],
    out_dir: str | Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    title: str = "Sweep report",
    appendix: str = "",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` (every final metric) and the figures of ``metrics``
    (those the runs logged) into ``out_dir``; ``appendix``: markdown to end ``report.md`` with.
    Returns name -> path of the files written."""
    out_dir = Path(out_dir)
    table = summary_table(records)
    present = logged_metrics(table, metrics)
    paths = {"csv": write_csv(table, out_dir / "report.csv")}
    if present:
        paths["metrics_by_group"] = plot_metrics_by_group(table, records, present, out_dir / "metrics_by_group.png")
    if any(r.finished and "test_loss" in r.histories for r in records):
        paths["loss_curves"] = plot_loss_curves(records, out_dir / "loss_curves.png")
    if present and len(pool_sizes(table)) > 1:
        paths["metric_vs_pool_size"] = plot_metric_vs_pool_size(table, present, out_dir / "metric_vs_pool_size.png")

    n_finished = sum(r.finished for r in records)
    lines = [
        f"# {title}",
        "",
        f"Groups: {len(table)}; finished runs: {n_finished}; jobs not finished: {len(records) - n_finished}.",
        "Cells: mean ± sd over seeds (sample sd, ddof=1); n: finished runs. "
        "Every final metric, with separate mean/sd/n columns: [report.csv](report.csv).",
        "",
    ]
    lines += [markdown_table(table, present), ""] if present else ["No finished run logged the chosen metrics.", ""]
    lines += ["## Jobs not in the statistics", ""] + _unfinished_job_lines(records)
    figures = [(name, path) for name, path in paths.items() if path.suffix == ".png"]
    lines += ["", "## Figures", ""] + [f"![{name}]({path.name})" for name, path in figures]
    lines += ["", appendix] if appendix else []
    paths["markdown"] = out_dir / "report.md"
    atomic_write(paths["markdown"], ("\n".join(lines) + "\n").encode())
    return paths


def log_report_to_run(
    run_id: str,
    paths: Mapping[str, Path] | Iterable[Path],
    tracking_uri: str | None = None,
    artifact_path: str = "report",
) -> None:
    """Attach the report files to a run (a sweep's parent run) as artifacts under ``artifact_path``."""
    client = MlflowClient(tracking_uri)
    for path in paths.values() if isinstance(paths, Mapping) else paths:
        client.log_artifact(run_id, str(path), artifact_path)
