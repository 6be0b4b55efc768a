"""One MLflow run per job: its lifetime (FINISHED, KILLED or FAILED), params and batched metrics."""

from __future__ import annotations

import contextlib
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

from hyperexp.track.resume import CONFIG_FILE, checkpoint_of
from hyperexp.track.store import setup_experiment

MAX_PARAM_LENGTH = 6000  # MLflow refuses longer param values


class MetricBuffer:
    """Collects metrics and sends them with one ``log_batch`` (which MLflow splits to its limits)
    instead of one call each."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.pending: list[Metric] = []

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.pending.extend(Metric(key, float(value), now, step) for key, value in metrics.items())

    def flush(self) -> None:
        MlflowClient().log_batch(self.run_id, metrics=self.pending)
        self.pending.clear()


def log_params(run_id: str, params: Mapping[str, str]) -> None:
    """Log ``params`` in one ``log_batch``, values cut to MLflow's length limit."""
    MlflowClient().log_batch(run_id, params=[Param(key, value[:MAX_PARAM_LENGTH]) for key, value in params.items()])


def git_commit(folder: str | Path = ".") -> str:
    """The checked-out commit, with '-dirty' when tracked files changed; 'unknown' outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    run_id: str | None = None,
    parent_run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED on success, KILLED on Ctrl-C/SIGTERM (raised as
    KeyboardInterrupt) and FAILED on any other exception, with the traceback logged.
    ``run_id`` continues an existing run (resume); ``parent_run_id`` makes it a child run;
    ``system_metrics``: MLflow samples CPU, memory (and GPU) use into ``system/*`` while it runs."""
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, tags=dict(tags), log_system_metrics=system_metrics)
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            tags=dict(tags),
            parent_run_id=parent_run_id,
            log_system_metrics=system_metrics,
        )
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as error:
        with contextlib.suppress(Exception):  # the original error matters more than a failed upload
            mlflow.log_text("".join(traceback.format_exception(error)), "error/traceback.txt")
            mlflow.set_tag("error", f"{type(error).__name__}: {error}"[:5000])
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


@dataclass
class JobRun:
    """The MLflow run of one job: its id, its metric buffer, and the checkpoint it resumes from."""

    run_id: str
    metrics: MetricBuffer
    resume_from: dict | None


@contextlib.contextmanager
def job_run(tracking, job, resume: str | None) -> Iterator[JobRun]:
    """Open (or, with ``resume``, continue) the run of ``job`` (a naming.JobIdentity) in
    ``tracking``'s store and experiment; a new run gets the job's params and its whole config as
    ``config.yaml``, a continued one must have been made with the same config."""
    experiment_id = setup_experiment(tracking.uri, tracking.experiment, tracking.artifact_root)
    state = checkpoint_of(resume, job.config) if resume else None
    system_metrics = tracking.get("system_metrics", False)
    with tracked_run(experiment_id, job.name, job.tags, resume, job.parent_run_id, system_metrics) as active:
        run_id = active.info.run_id
        if state is None:
            log_params(run_id, job.params)
            MlflowClient().log_dict(run_id, job.config, CONFIG_FILE)
        yield JobRun(run_id, MetricBuffer(run_id), state)
