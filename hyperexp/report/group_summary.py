"""A sweep's result on its parent run: per group, the headline metrics' mean over the finished jobs
and the half-width of its 95% confidence interval (Student's t over seeds), as run metrics under
``summary/`` (MLflow's charts order sections by name: after the jobs' ``learning/`` curves); for an
Optuna study, its best trial (``optimization_results.yaml``)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from scipy import stats

from hyperexp.report.queries import RunRecord
from hyperexp.report.summary import DEFAULT_METRICS, summary_table
from hyperexp.track.runs import Run

SUMMARY = "summary/"  # sorts after the curves' section (learning/)
BEST_KEY = SUMMARY + "best/validation_loss"
OPTUNA_RESULTS = "optimization_results.yaml"  # what hydra-optuna-sweeper writes into the sweep folder
NOT_IN_KEYS = re.compile(r"[^\w\-. /]")  # characters MLflow refuses in a metric key


def group_label(group: str) -> str:
    """``data=subject1,decoder.optimizer.lr=0.001`` -> ``subject1 optimizer.lr 0.001``: a config
    choice by its option, any other key by its name without the group, as a metric key prefix."""
    parts = []
    for item in group.split(","):
        key, _, value = item.partition("=")
        parts.append(value if value and "." not in key else f"{key.split('.', 1)[-1]} {value}".strip())
    return NOT_IN_KEYS.sub("_", " ".join(parts))


def ci95_half_width(sd: float, n: int) -> float:
    return float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def group_metrics(records: Sequence[RunRecord], metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """``summary/<group>/<metric>`` (the mean) and ``summary/<group>/<metric>_ci95`` (where n >= 2) per group."""
    values = {}
    for row in summary_table(records, metrics):
        for metric, summary in row.metrics.items():
            if summary.n == 0:
                continue
            values[f"{SUMMARY}{group_label(row.group)}/{metric}"] = summary.mean
            if summary.n >= 2:
                values[f"{SUMMARY}{group_label(row.group)}/{metric}_ci95"] = ci95_half_width(summary.sd, summary.n)
    return values


def log_group_summary(parent: Run, records: Sequence[RunRecord]) -> dict[str, float]:
    values = group_metrics(records)
    parent.log_metrics(values, 0)
    parent.flush()
    return values


def log_study_result(parent: Run, sweep_dir: Path) -> None:
    """The best trial of an Optuna study: ``summary/best/validation_loss``, tag ``best_params``, the file."""
    path = Path(sweep_dir) / OPTUNA_RESULTS
    if not path.is_file():
        return
    result = yaml.safe_load(path.read_text())
    parent.log_text(path.read_text(), OPTUNA_RESULTS)
    if "best_value" in result:
        parent.log_metrics({BEST_KEY: float(result["best_value"])}, 0)
        parent.flush()
        parent.set_tags({"best_params": " ".join(f"{key}={value}" for key, value in result["best_params"].items())})
