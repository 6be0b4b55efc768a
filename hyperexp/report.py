"""Compare the jobs of a sweep: ``python -m hyperexp.report TARGET [--tracking-uri URI] [--out DIR]``.

Reads the runs from MLflow, summarises each group's ``final/<metric>`` values over seeds
(mean, sample sd with ddof=1, n) and writes ``report.md``, ``report.csv`` and figures.
Only FINISHED runs enter the statistics; the other jobs are listed in the report.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
from matplotlib.ticker import MaxNLocator
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"
DEFAULT_METRICS = ("latent_similarity", "latent_cosine", "ssim", "attribute_similarity")
LOSS_KEYS = ("train_loss", "test_loss")
PARENT_FILE = "mlflow_parent_run.txt"
FINAL_PREFIX = "final/"
NO_GROUP = "(no group)"
PAGE_SIZE = 500


@dataclass
class RunRecord:
    run_id: str
    group: str
    seed: int | None
    pool_size: int | None
    status: str
    metrics: dict[str, float]  # final metrics, without the "final/" prefix
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(step, value)]
    run_name: str = ""
    start_time: int = 0
    parent_run_id: str | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"


def _optional_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _record(run: Run) -> RunRecord:
    tags, params = run.data.tags, run.data.params
    seed = _optional_int(tags.get("seed"))
    if seed is None:
        seed = _optional_int(params.get("trainer.seed"))
    pool_size = _optional_int(tags.get("pool_size"))
    if pool_size is None and tags.get("subjects"):
        pool_size = len([s for s in tags["subjects"].split(",") if s.strip()])
    metrics = {k[len(FINAL_PREFIX) :]: v for k, v in run.data.metrics.items() if k.startswith(FINAL_PREFIX)}
    return RunRecord(
        run_id=run.info.run_id,
        group=tags.get("group") or NO_GROUP,
        seed=seed,
        pool_size=pool_size,
        status=run.info.status,
        metrics=metrics,
        run_name=run.info.run_name or "",
        start_time=run.info.start_time or 0,
        parent_run_id=tags.get("mlflow.parentRunId"),
        error=tags.get("error", "").splitlines()[0] if tags.get("error") else "",
    )


def _quoted(value: str) -> str:
    if "'" in value and '"' in value:
        raise ValueError(f"cannot search for a value with both quote kinds: {value!r}")
    return f'"{value}"' if "'" in value else f"'{value}'"


def check_store(tracking_uri: str) -> None:
    """A SQLite URI must name an existing file: MLflow would otherwise create an empty store."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix) :]).is_file():
        raise FileNotFoundError(f"no MLflow store at {Path(tracking_uri[len(prefix) :]).resolve()}")


def collect_runs(
    tracking_uri: str,
    sweep: str | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    histories: Sequence[str] = LOSS_KEYS,
) -> list[RunRecord]:
    """The runs matching all given criteria (sweep tag, experiment name, parent run), oldest first.

    A run that is the parent of another matched run is left out (it holds no job's results).
    ``histories``: per-epoch metrics to load for each run (``()`` to skip those queries).
    """
    if sweep is None and experiment is None and parent_run_id is None:
        raise ValueError("give a sweep, an experiment or a parent run id")
    check_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        experiment_ids = [found.experiment_id] if found else []
    else:
        experiment_ids, token = [], None
        while True:
            page = client.search_experiments(max_results=PAGE_SIZE, page_token=token)
            experiment_ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                break
    clauses = []
    if sweep is not None:
        clauses.append(f"tags.sweep = {_quoted(sweep)}")
    if parent_run_id is not None:
        clauses.append(f"tags.`mlflow.parentRunId` = {_quoted(parent_run_id)}")
    runs, token = [], None
    while experiment_ids:
        page = client.search_runs(experiment_ids, " and ".join(clauses), max_results=PAGE_SIZE, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    records = [_record(run) for run in runs]
    parents = {r.parent_run_id for r in records}
    records = [r for r in records if r.run_id not in parents]
    records.sort(key=lambda r: (r.start_time, r.run_id))
    for record in records:
        for key in histories:
            points = sorted((m.step, m.value) for m in client.get_metric_history(record.run_id, key))
            if points:
                record.histories[key] = points
    return records


def _groups(records: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """Group label -> its runs, groups in first-seen order."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    return groups


def _group_pool_size(records: Sequence[RunRecord]) -> int | None:
    sizes = {r.pool_size for r in records}
    return sizes.pop() if len(sizes) == 1 else None


def _metric_names(records: Sequence[RunRecord]) -> list[str]:
    found = {name for r in records if r.finished for name in r.metrics}
    return [m for m in DEFAULT_METRICS if m in found] + sorted(found - set(DEFAULT_METRICS))


def summary_table(records: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per group: ``group``, ``pool_size``, ``n_runs`` (finished runs) and for each metric
    ``<metric>_mean``, ``<metric>_sd`` (ddof=1; NaN below two values) and ``<metric>_n``.

    Rows go by pool size when all groups have one and they differ, else in first-seen order; a
    group whose jobs all failed keeps its row, with n_runs 0.
    """
    metrics = list(metrics) if metrics is not None else _metric_names(records)
    rows = []
    for group, members in _groups(records).items():
        finished = [r for r in members if r.finished]
        row: dict[str, object] = {
            "group": group,
            "pool_size": _group_pool_size(finished or members),
            "n_runs": len(finished),
        }
        for metric in metrics:
            values = np.array([r.metrics[metric] for r in finished if metric in r.metrics], dtype=float)
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_sd"] = values.std(ddof=1) if len(values) > 1 else math.nan
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    columns = ["group", "pool_size", "n_runs"] + [f"{m}_{s}" for m in metrics for s in ("mean", "sd", "n")]
    table = pd.DataFrame(rows, columns=columns)
    sizes = table["pool_size"]
    if len(table) and sizes.notna().all() and sizes.nunique() > 1:
        table = table.sort_values("pool_size", kind="stable").reset_index(drop=True)
    return table


def _cell(mean: float, sd: float, n: int, n_runs: int) -> str:
    if n == 0:
        return "–"
    text = f"{mean:.4g}" if math.isnan(sd) else f"{mean:.4g} ± {sd:.4g}"
    return text if n == n_runs else f"{text} (n={n})"


def markdown_table(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    """``mean ± sd`` cells with 4 significant digits; the pool size column only when known."""
    with_pool = table["pool_size"].notna().any()
    header = ["group"] + (["pool size"] if with_pool else []) + ["n"] + list(metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.itertuples(index=False):
        row = row._asdict()
        cells = [str(row["group"]).replace("|", "\\|")]
        if with_pool:
            cells.append("" if pd.isna(row["pool_size"]) else str(int(row["pool_size"])))
        cells.append(str(row["n_runs"]))
        cells += [_cell(row[f"{m}_mean"], row[f"{m}_sd"], row[f"{m}_n"], row["n_runs"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def _colours(groups: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {group: cmap(index % cmap.N) for index, group in enumerate(groups)}


def plot_metrics_by_group(
    table: pd.DataFrame, records: Sequence[RunRecord], metrics: Sequence[str], path: Path
) -> Path:
    """Each metric's group mean ± sd, with the single runs as dots."""
    columns = min(len(metrics), 2)
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(min(max(5.0, 0.8 * len(table)), 14.0) * columns, 3.6 * rows))
    groups = list(table["group"])
    positions = np.arange(len(groups))
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.errorbar(
            positions,
            table[f"{metric}_mean"],
            yerr=table[f"{metric}_sd"].fillna(0),
            fmt="o",
            capsize=4,
            color="black",
            zorder=3,
        )
        for position, group in zip(positions, groups):
            values = [r.metrics[metric] for r in records if r.finished and r.group == group and metric in r.metrics]
            axes.plot(np.full(len(values), position + 0.12), values, ".", alpha=0.5, color="tab:blue")
        axes.set_xticks(positions, groups, rotation=30, ha="right", fontsize=8)
        axes.set(title=metric, xlim=(-0.5, len(groups) - 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def plot_loss_curves(records: Sequence[RunRecord], path: Path, key: str = "test_loss") -> Path:
    """``key`` per epoch, one line per finished run, one colour per group."""
    finished = [r for r in records if r.finished and key in r.histories]
    colours = _colours(list(_groups(finished)))
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
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _series_label(group: str) -> str:
    """The group label without its pool-size settings (``k=v`` items naming subjects), so that
    groups differing only in pool size share one line in the pool-size figure."""
    kept = [item for item in group.split(",") if "subjects=" not in item]
    return ",".join(kept) or "all"


def _groups_by(table: pd.DataFrame, key) -> dict[str, pd.DataFrame]:
    labels = [key(group) for group in table["group"]]
    return {label: table[[each == label for each in labels]] for label in dict.fromkeys(labels)}


def plot_metric_vs_pool_size(table: pd.DataFrame, metrics: Sequence[str], path: Path) -> Path:
    """Group mean ± sd against pool size; groups differing only in pool size joined by a line."""
    known = table[table["pool_size"].notna()]
    series = _groups_by(known, _series_label)
    colours = _colours(list(series))
    figure = Figure(figsize=(6 * min(len(metrics), 2), 3.8 * math.ceil(len(metrics) / 2)))
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(math.ceil(len(metrics) / 2), min(len(metrics), 2), index + 1)
        for label, rows in series.items():
            rows = rows.sort_values("pool_size")
            axes.errorbar(
                rows["pool_size"],
                rows[f"{metric}_mean"],
                yerr=rows[f"{metric}_sd"].fillna(0),
                fmt="o-",
                capsize=4,
                color=colours[label],
                label=label,
            )
        axes.set(title=metric, xlabel="pool size (subjects)")
        axes.set_xticks(sorted(known["pool_size"].unique()))
        if len(series) > 1:
            axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def write_report(
    records: Sequence[RunRecord],
    out_dir: str | Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    title: str = "Sweep report",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` (every final metric) and the figures of ``metrics``
    (those the runs logged) into ``out_dir``; returns name -> path of the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summary_table(records)
    present = [m for m in metrics if f"{m}_n" in table and table[f"{m}_n"].sum() > 0]
    paths = {"csv": write_csv(table, out_dir / "report.csv")}
    if present:
        paths["metrics_by_group"] = plot_metrics_by_group(table, records, present, out_dir / "metrics_by_group.png")
    if any(r.finished and "test_loss" in r.histories for r in records):
        paths["loss_curves"] = plot_loss_curves(records, out_dir / "loss_curves.png")
    if present and table["pool_size"].nunique() > 1:
        paths["metric_vs_pool_size"] = plot_metric_vs_pool_size(table, present, out_dir / "metric_vs_pool_size.png")

    finished = [r for r in records if r.finished]
    unfinished = [r for r in records if not r.finished]
    lines = [
        f"# {title}",
        "",
        f"Groups: {len(table)}; finished runs: {len(finished)}; jobs not finished: {len(unfinished)}.",
        "Cells: mean ± sd over seeds (sample sd, ddof=1); n: finished runs. "
        "Every final metric, with separate mean/sd/n columns: [report.csv](report.csv).",
        "",
    ]
    lines += [markdown_table(table, present), ""] if present else ["No finished run logged the chosen metrics.", ""]
    lines += ["## Jobs not in the statistics", ""]
    for r in unfinished:
        seed = "?" if r.seed is None else r.seed
        lines.append(
            f"- `{r.run_id}` {r.run_name} (group {r.group}, seed {seed}): {r.status}"
            + (f": {r.error}" if r.error else "")
        )
    lines += ["None: every job finished."] if not unfinished else []
    figures = [(name, path) for name, path in paths.items() if path.suffix == ".png"]
    lines += ["", "## Figures", ""] + [f"![{name}]({path.name})" for name, path in figures]
    paths["markdown"] = out_dir / "report.md"
    paths["markdown"].write_text("\n".join(lines) + "\n")
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


class TargetNotFound(Exception):
    pass


def resolve_target(target: str, tracking_uri: str) -> tuple[list[RunRecord], Path, str | None]:
    """TARGET -> (records, default output folder, parent run id if known).

    Tried in turn: a folder whose ``mlflow_parent_run.txt`` names the parent run, or whose name
    is the sweep id; then TARGET as a sweep id; then as an experiment name.
    """
    folder = Path(target)
    records: list[RunRecord] = []
    parent_run_id = None
    out_dir = Path("outputs") / "reports" / target.replace("/", "_")
    if folder.is_dir():
        parent_file = folder / PARENT_FILE
        if parent_file.is_file() and parent_file.read_text().strip():
            parent_run_id = parent_file.read_text().strip()
            records = collect_runs(tracking_uri, parent_run_id=parent_run_id)
        if not records:
            parent_run_id = None
            records = collect_runs(tracking_uri, sweep=folder.resolve().name)
        if records:
            out_dir = folder
    # a folder that holds no sweep (e.g. the package folder "hyperexp") may still name one
    records = records or collect_runs(tracking_uri, sweep=target) or collect_runs(tracking_uri, experiment=target)
    if not records:
        raise TargetNotFound(f"no runs match {target!r} in {tracking_uri} (not a sweep id, sweep folder or experiment)")
    parents = {r.parent_run_id for r in records}
    if parent_run_id is None and len(parents) == 1:
        parent_run_id = parents.pop()
    return records, out_dir, parent_run_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperexp.report", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="sweep id (the 'sweep' tag), Hydra sweep folder, or experiment name")
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI)
    parser.add_argument(
        "--out", type=Path, help="output folder (default: the sweep folder, else outputs/reports/TARGET)"
    )
    parser.add_argument("--no-log", action="store_true", help="do not attach the report to the sweep's parent run")
    args = parser.parse_args(argv)
    try:
        records, out_dir, parent_run_id = resolve_target(args.target, args.tracking_uri)
    except (TargetNotFound, FileNotFoundError, ValueError) as error:
        print(f"hyperexp.report: error: {error}", file=sys.stderr)
        return 1
    if len({r.parent_run_id for r in records}) > 1:
        print(f"hyperexp.report: warning: {args.target!r} matches runs of several parent runs", file=sys.stderr)
    paths = write_report(records, args.out or out_dir, title=f"Sweep report: {args.target}")
    if parent_run_id and not args.no_log:
        try:
            log_report_to_run(parent_run_id, paths, args.tracking_uri)
        except (MlflowException, OSError) as error:  # the files are written; attaching them is a bonus
            print(f"hyperexp.report: warning: report not logged to run {parent_run_id}: {error}", file=sys.stderr)
    print(f"report: {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
