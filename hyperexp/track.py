"""Experiment tracking with MLflow: one run per job, metrics logged in batches.

The default store is SQLite (``runs/mlflow.db``) with artifacts under ``runs/artifacts``;
``tracking.uri`` may also point at an MLflow tracking server (``http://host:port``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

MAX_METRICS_PER_BATCH = 1000  # MLflow's limits for one log_batch call
MAX_PARAMS_PER_BATCH = 100


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {'a.b.c': 'value'} with string values, as MLflow params."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def tracking_uri(uri: str) -> str:
    """Make a SQLite URI absolute (``sqlite:///runs/mlflow.db`` is relative to the current folder)
    and create its folder; other URIs pass unchanged."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = Path(uri[len(prefix) :]).resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{path.parent}: cannot create the tracking store's folder ({error.strerror})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{path}: the tracking store is not writable")
    return prefix + str(path)


def setup_experiment(uri: str, experiment: str, artifact_root: str | None = None) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment``, creating it if needed.

    Processes that open a new SQLite store at once race on creating its schema ("database is
    locked", half-made tables), so the first opening of a SQLite store holds a file lock beside
    it. Several jobs may also create the same experiment at once: the loser uses the winner's.
    """
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    if not uri.startswith("sqlite:///"):
        return _get_or_create_experiment(uri, experiment, artifact_root)
    try:
        with FileLock(uri[len("sqlite:///") :] + ".lock"):
            return _get_or_create_experiment(uri, experiment, artifact_root)
    except (OSError, mlflow.exceptions.MlflowException) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{uri[len('sqlite:///') :]}: cannot open the tracking store ({first_line[:300]})") from None


def _get_or_create_experiment(uri: str, experiment: str, artifact_root: str | None) -> str:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    # A tracking server chooses where artifacts go; a local store keeps them under artifact_root.
    remote = uri.startswith(("http://", "https://", "databricks"))
    location = Path(artifact_root).resolve().as_uri() if artifact_root and not remote else None
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


class MetricBuffer:
    """Collects metrics and sends them in a few ``log_batch`` calls instead of one call each."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.pending: list[Metric] = []

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.pending.extend(Metric(key, float(value), now, step) for key, value in metrics.items())

    def flush(self) -> None:
        client = MlflowClient()
        for start in range(0, len(self.pending), MAX_METRICS_PER_BATCH):
            client.log_batch(self.run_id, metrics=self.pending[start : start + MAX_METRICS_PER_BATCH])
        self.pending.clear()


def log_params(run_id: str, params: Mapping[str, str]) -> None:
    items = [Param(key, value[:6000]) for key, value in params.items()]
    client = MlflowClient()
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


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
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED on success, KILLED on Ctrl-C/SIGTERM (raised as
    KeyboardInterrupt) and FAILED on any other exception, with the traceback logged.
    ``run_id`` continues an existing run (resume); ``parent_run_id`` makes it a child run."""
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, tags=dict(tags))
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags=dict(tags), parent_run_id=parent_run_id
        )
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as error:
        with contextlib.suppress(Exception):
            mlflow.log_text("".join(traceback.format_exception(error)), "error/traceback.txt")
            mlflow.set_tag("error", f"{type(error).__name__}: {error}"[:5000])
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
