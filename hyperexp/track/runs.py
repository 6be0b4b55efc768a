"""One MLflow run: its lifetime (FINISHED, KILLED or FAILED with the reason) and what it logs.

The run is created with one request to the store; everything after that (params, metrics,
images, artifacts, dataset inputs, the decoder model, its heartbeat, system metrics and its end)
goes through its outbox (:mod:`hyperexp.track.outbox`), so that a store that does not answer
delays what the run logs and loses none of it.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus
from mlflow.tracking.context import registry as context_registry
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from hyperexp.track.liveness import Heartbeat, process_tags
from hyperexp.track.outbox import Outbox, send
from hyperexp.track.system_metrics import SystemMetrics

log = logging.getLogger("hyperexp")

MAX_PARAM_LENGTH = 6000  # MLflow refuses longer param values
ERROR_TAG = "error"  # why a FAILED run failed, one line (the traceback: error/traceback.txt)


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


class Run:
    """An open run. Metrics collect until ``flush`` (one ``log_batch``, which MLflow splits to its
    limits); ``resume_from`` is the checkpoint a continued run starts from, ``logged_epochs`` the
    epochs it holds already; ``failure`` set before the block ends makes it end FAILED."""

    def __init__(self, run_id: str, outbox: Outbox):
        self.run_id, self.outbox = run_id, outbox
        self.resume_from: dict | None = None
        self.logged_epochs = 0
        self.pending: list[Metric] = []
        self.failure: str | None = None

    def log_params(self, params: Mapping[str, str]) -> None:
        """Params, values cut to MLflow's length limit."""
        self.outbox.log_batch(params=[(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> list[Metric]:
        """Collect ``metrics`` at ``step`` for the next ``flush``; returns them as MLflow entities."""
        now = int(time.time() * 1000)
        added = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.pending.extend(added)
        return added

    def flush(self) -> None:
        if self.pending:
            self.outbox.log_batch(metrics=self.pending)
        self.pending = []

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.outbox.log_batch(tags=list(tags.items()))

    def tag_checkpoint(self, path: Path) -> None:
        """Record where the run's latest checkpoint is (what a resume reads back)."""
        self.set_tags({"checkpoint": str(path)})

    def log_text(self, text: str, artifact_file: str) -> None:
        self.outbox.log_text(text, artifact_file)

    def log_image(self, image, key: str, step: int) -> None:
        self.outbox.log_image(image, key, step)

    @contextlib.contextmanager
    def staged_artifacts(self, artifact_path: str | None = None) -> Iterator[Path]:
        """A folder whose files become the run's artifacts (under ``artifact_path``) when the block
        ends. It lives in the run's outbox, which removes it once the store has them (or keeps it
        for ``track sync``)."""
        folder = Path(tempfile.mkdtemp(prefix="artifacts-", dir=self.outbox.folder))
        yield folder
        self.outbox.log_artifacts(folder, artifact_path)

    def log_datasets(self, data) -> None:
        """One dataset input per split of ``data`` (a DecodingData), training first."""
        from hyperexp.track.datasets import dataset_inputs

        self.outbox.log_inputs(dataset_inputs(data))

    def log_model(self, decoder, x_example, metrics: list[Metric], description: str) -> None:
        """The decoder as the run's logged model (:mod:`hyperexp.track.model`), saved now, with
        ``metrics`` (the test metrics) and ``description``."""
        from hyperexp.track.model import MODEL_NAME, decoder_model_saver

        step = max((metric.step for metric in metrics), default=0)
        tags = {MLFLOW_RUN_NOTE: description}
        self.outbox.log_model(decoder_model_saver(decoder, x_example), MODEL_NAME, step, metrics, tags)


@contextlib.contextmanager
def opened_run(
    tracking_uri: str,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    run_id: str | None = None,
    parent_run_id: str | None = None,
    folder: str | Path | None = None,
    system_metrics: bool = False,
    outage_wait_s: float = 120.0,
) -> Iterator[Run]:
    """A new run (a child of ``parent_run_id`` if given) or, with ``run_id``, an existing one
    running again. It ends FINISHED on success, KILLED on Ctrl-C/SIGTERM (raised as
    KeyboardInterrupt) and FAILED on any other exception (tag ``error`` and the traceback) or when
    ``run.failure`` was set. Its writes queue in ``folder`` (a temporary folder if None) until the
    store has them; a heartbeat tells later starts that the process lives; ``system_metrics``:
    CPU, memory (and GPU) use sampled into ``system/*``."""
    tags = {**tags, **process_tags()}
    client, continued = MlflowClient(tracking_uri), run_id is not None
    if not continued:
        tags.update({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {})
        run_id = client.create_run(
            experiment_id, tags=context_registry.resolve_tags(tags), run_name=run_name
        ).info.run_id
    outbox = Outbox(folder or tempfile.mkdtemp(prefix="hyperexp-outbox-"), run_id, tracking_uri)
    run = Run(run_id, outbox)
    if continued:  # running again; it keeps its description (with any note on how it ended)
        outbox.set_status("RUNNING")
        outbox.log_batch(tags=[(key, value) for key, value in tags.items() if key != MLFLOW_RUN_NOTE])
    heartbeat = Heartbeat(outbox)
    sampler = SystemMetrics(client, outbox) if system_metrics else None
    status, error = RunStatus.FINISHED, None
    try:
        yield run
        if run.failure is not None:
            status = RunStatus.FAILED
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    except BaseException as raised:
        status, error = RunStatus.FAILED, raised
        raise
    finally:
        heartbeat.stop()
        if sampler is not None:
            sampler.stop()
        reason = f"{type(error).__name__}: {error}"[:5000] if error is not None else run.failure
        delivered = end(run, RunStatus.to_string(status), reason, error, outage_wait_s)
        if not delivered:
            report_undelivered(outbox, folder)


def end(run: Run, status: str, reason: str | None, error: BaseException | None, wait_s: float) -> bool:
    """Queue the run's last metrics, why it failed and its status, and wait up to ``wait_s`` for
    delivery; True if the store has everything. On a full disk the end cannot wait on disk: it
    is sent directly once the queue before it is delivered."""
    final = [(ERROR_TAG, reason)] if status == "FAILED" and reason else []
    try:
        run.flush()
        if error is not None:
            run.outbox.log_text("".join(traceback.format_exception(error)), "error/traceback.txt")
        if final:
            run.outbox.log_batch(tags=final)
        run.outbox.set_status(status)
        queued = True
    except OSError as disk_error:
        log.error("run %s: its end cannot be queued (%s); sending it directly", run.run_id, disk_error)
        queued = False
    delivered = run.outbox.close(wait_s)
    if queued:
        return delivered
    try:
        send(run.outbox.client, run.run_id, {"kind": "batch", "metrics": [], "params": [], "tags": final})
        send(run.outbox.client, run.run_id, {"kind": "status", "status": status, "end_time": int(time.time() * 1000)})
    except Exception as store_error:  # the next start marks it KILLED: its process is gone by then
        log.error("run %s: its end did not reach the store either (%s)", run.run_id, store_error)
        return False
    return delivered


def report_undelivered(outbox: Outbox, folder) -> None:
    where = Path(folder).parent if folder else outbox.folder
    print(
        f"hyperexp: warning: tracking store {outbox.tracking_uri} did not answer ({outbox.last_error}); "
        f"{len(outbox.pending)} updates of run {outbox.run_id} are kept in {outbox.folder}; "
        f"upload them with: python -m hyperexp.track sync {where}",
        file=sys.stderr,
    )
