"""One MLflow run per job: its lifetime (FINISHED, KILLED or FAILED), params and batched metrics."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunInfo, RunStatus
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from hyperexp.track.liveness import Heartbeat, process_tags
from hyperexp.track.outbox import Outbox
from hyperexp.track.resume import CONFIG_FILE, checkpoint_of
from hyperexp.track.store import setup_experiment

MAX_PARAM_LENGTH = 6000  # MLflow refuses longer param values
TRAIN_LOSS_KEY = "learning/train_loss"  # logged every epoch (track/preview.py)
_last_run_id: str | None = None


class MetricBuffer:
    """Collects metrics and sends them with one ``log_batch`` (which MLflow splits to its limits)
    instead of one call each; through the run's outbox when it has one."""

    def __init__(self, run_id: str, outbox: Outbox | None = None):
        self.run_id, self.outbox = run_id, outbox
        self.pending: list[Metric] = []

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.pending.extend(Metric(key, float(value), now, step) for key, value in metrics.items())

    def flush(self) -> None:
        if self.outbox is not None:
            self.outbox.log_batch(metrics=self.pending)
        else:
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


def open_run(experiment_id: str, run_name: str, tags: Mapping[str, str], run_id=None, parent_run_id=None):
    """Create a run (a child of ``parent_run_id`` if given) or set an existing one RUNNING again, as
    MLflow's active run (``mlflow.log_input`` and ``mlflow.pytorch.log_model`` write to it); one
    request to the store. A continued run keeps its description (with any note on how it ended)."""
    global _last_run_id
    tags = {**tags, **process_tags()}
    if run_id is not None:
        tags.pop(MLFLOW_RUN_NOTE, None)
        run = mlflow.start_run(run_id=run_id, tags=tags)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags, parent_run_id=parent_run_id)
    _last_run_id = run.info.run_id
    return run


def last_run_id() -> str | None:
    """The run this process opened last (for the message after a stop)."""
    return _last_run_id


@dataclass
class TrackedRun:
    """An open run: ``info`` as MLflow's ``Run.info``; everything it logs goes through ``outbox``."""

    info: RunInfo
    outbox: Outbox


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    run_id: str | None = None,
    parent_run_id: str | None = None,
    system_metrics: bool = False,
    folder: str | Path | None = None,
    outage_wait_s: float = 120.0,
) -> Iterator[TrackedRun]:
    """An MLflow run that ends FINISHED on success, KILLED on Ctrl-C/SIGTERM (raised as
    KeyboardInterrupt) and FAILED on any other exception, with the traceback logged.
    ``run_id`` continues an existing run (resume); ``parent_run_id`` makes it a child run;
    ``system_metrics``: MLflow samples CPU, memory (and GPU) use into ``system/*`` while it runs.
    Its writes queue in ``folder`` (a temporary folder if None) until the store has them
    (:mod:`hyperexp.track.outbox`); a heartbeat tells later starts that the process lives. The run
    is also MLflow's active run (``mlflow.log_input``, ``mlflow.pytorch.log_model`` use it)."""
    run = open_run(experiment_id, run_name, tags, run_id, parent_run_id)
    uri = mlflow.get_tracking_uri()
    outbox = Outbox(folder or tempfile.mkdtemp(prefix="hyperexp-outbox-"), run.info.run_id, uri)
    heartbeat = Heartbeat(uri, run.info.run_id)
    sampler = SystemMetricsMonitor(run.info.run_id, resume_logging=run_id is not None) if system_metrics else None
    if sampler is not None:
        sampler.start()
    status = RunStatus.FINISHED
    try:
        yield TrackedRun(run.info, outbox)
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    except BaseException as error:
        status = RunStatus.FAILED
        outbox.log_text("".join(traceback.format_exception(error)), "error/traceback.txt")
        outbox.set_tag("error", f"{type(error).__name__}: {error}"[:5000])
        raise
    finally:
        heartbeat.stop()
        if sampler is not None:
            sampler.finish()
        outbox.set_terminated(RunStatus.to_string(status))
        delivered = outbox.close(outage_wait_s)
        leave_active_run(RunStatus.to_string(status), delivered)
        if not delivered:
            report_undelivered(outbox, folder)


def leave_active_run(status: str, delivered: bool) -> None:
    """End MLflow's active run; its status was delivered by the outbox already (or, with the store
    gone, waits there), so a store that does not answer is no error here."""
    if delivered:
        mlflow.end_run(status)
    else:
        with contextlib.suppress(Exception):  # the active run is left first, then the store is written
            mlflow.end_run(status)


def report_undelivered(outbox: Outbox, folder) -> None:
    where = Path(folder).parent if folder else outbox.folder
    print(
        f"hyperexp: warning: tracking store {outbox.tracking_uri} did not answer ({outbox.last_error}); "
        f"{len(outbox.pending)} updates of run {outbox.run_id} are kept in {outbox.folder}; "
        f"upload them with: python -m hyperexp.track sync {where}",
        file=sys.stderr,
    )


@dataclass
class JobRun:
    """The MLflow run of one job: its id, its outbox and metric buffer, the checkpoint it resumes
    from, and how many epochs the run has logged already (on a resume)."""

    run_id: str
    outbox: Outbox
    metrics: MetricBuffer
    resume_from: dict | None
    logged_epochs: int = 0


def logged_epochs(run_id: str, resume_from: dict) -> int:
    """The last epoch whose metrics a resumed run already holds (at least its checkpoint's: those
    were queued before the checkpoint was written); epochs up to it are not logged again."""
    steps = [metric.step for metric in MlflowClient().get_metric_history(run_id, TRAIN_LOSS_KEY)]
    return max([int(resume_from["epoch"]), *steps])


@contextlib.contextmanager
def job_run(tracking, job, resume: str | None, folder: str | Path | None = None) -> Iterator[JobRun]:
    """Open (or, with ``resume``, continue) the run of ``job`` (a naming.JobIdentity) in
    ``tracking``'s store and experiment; a new run gets the job's params and its whole config as
    ``config.yaml``, a continued one must have been made with the same config. Its writes queue in
    ``folder/outbox`` until the store has them."""
    experiment_id = setup_experiment(tracking.uri, tracking.experiment, tracking.artifact_root)
    state = checkpoint_of(resume, job.config) if resume else None
    outbox_folder = Path(folder) / "outbox" if folder is not None else None
    with tracked_run(
        experiment_id,
        job.name,
        job.tags,
        resume,
        job.parent_run_id,
        system_metrics=tracking.get("system_metrics", False),
        folder=outbox_folder,
        outage_wait_s=tracking.get("outage_wait_s", 120.0),
    ) as active:
        run_id = active.info.run_id
        if state is None:
            active.outbox.log_batch(params=[(key, value[:MAX_PARAM_LENGTH]) for key, value in job.params.items()])
            active.outbox.log_text(yaml.safe_dump(job.config, sort_keys=False), CONFIG_FILE)
        done = logged_epochs(run_id, state) if state is not None else 0
        yield JobRun(run_id, active.outbox, MetricBuffer(run_id, active.outbox), state, done)
