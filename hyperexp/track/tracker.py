"""The tracker a job is handed (``conf/tracking``, built by ``_target_``): the checks of its store
before any work, and the runs it opens there. MLflow today; another tracker offers the same
methods (``check``, ``start``, ``start_parent``) and the run object they yield
(:class:`hyperexp.track.runs.Run`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from hyperexp.errors import InputError
from hyperexp.track.liveness import end_runs_of_dead_processes
from hyperexp.track.outbox import FOLDER_LOCK, OUTBOX_FOLDER, RUN_FILE, sync
from hyperexp.track.resume import CONFIG_FILE, check_run_id, checkpoint_of, resume_target
from hyperexp.track.runs import Run, opened_run
from hyperexp.track.store import (
    check_artifact_location,
    check_store,
    existing_store,
    setup_experiment,
    store_errors,
    writable_store_uri,
)

log = logging.getLogger("hyperexp")
TRAIN_LOSS_KEY = "learning/train_loss"  # logged every epoch (track/preview.py): what a continued run holds


class MlflowTracker:
    """Runs in the MLflow store ``uri``, experiment ``experiment`` (artifacts of a new experiment
    under ``artifact_root`` for a local store); ``run_name``, ``note`` and ``tags`` are read when a
    job is named (:mod:`hyperexp.track.naming`); ``system_metrics``: CPU, memory (and GPU) use
    under ``system/``; ``outage_wait_s``: how long a run's end waits for a store that does not answer."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        artifact_root: str | None = None,
        run_name: str | None = None,
        note: str | None = None,
        tags: Mapping[str, str] | None = None,
        system_metrics: bool = True,
        outage_wait_s: float = 120.0,
    ):
        self.uri, self.experiment, self.artifact_root = uri, experiment, artifact_root
        self.run_name, self.note, self.tags = run_name, note, dict(tags or {})
        self.system_metrics, self.outage_wait_s = system_metrics, outage_wait_s

    def check(self, resume: str | None = None, config: Mapping[str, Any] | None = None) -> None:
        """Refuse a store (or a run to continue, with this job's resolved ``config``) that cannot
        work, writing nothing: InputError naming the key or file."""
        check_store(self.uri)
        if resume is not None:
            check_run_id(resume)
        client = existing_store(self.uri)
        if client is None and resume is not None:
            raise InputError(f"trainer.resume={resume}: no such run (the tracking store {self.uri} has no runs yet)")
        check_artifact_location(client, self.uri, self.experiment, self.artifact_root)
        if resume is not None:
            with store_errors(self.uri):
                resume_target(client, resume, config or {})

    @contextlib.contextmanager
    def start(self, job, resume: str | None = None, folder: str | Path | None = None) -> Iterator[Run]:
        """The run of ``job`` (a naming.JobIdentity), or with ``resume`` that run continued from its
        checkpoint (made with the same config). A new run gets the job's params and its whole
        config as ``config.yaml``. Its writes queue in ``folder/outbox``. Runs left RUNNING by
        processes that are gone are marked KILLED first."""
        experiment_id = self._open_store()
        state = checkpoint_of(self.uri, resume, job.config) if resume else None
        outbox = Path(folder) / OUTBOX_FOLDER if folder is not None else None
        with self._opened(experiment_id, job.name, job.tags, resume, job.parent_run_id, outbox) as run:
            if state is None:
                run.log_params(job.params)
                run.log_text(yaml.safe_dump(job.config, sort_keys=False), CONFIG_FILE)
            else:
                run.resume_from = state
                steps = run.outbox.client.get_metric_history(run.run_id, TRAIN_LOSS_KEY)
                # epochs up to the checkpoint's were queued before it was written
                run.logged_epochs = max([int(state["epoch"]), *(metric.step for metric in steps)])
            yield run

    @contextlib.contextmanager
    def start_parent(
        self, name: str, tags: Mapping[str, str], params: Mapping[str, str], folder: Path
    ) -> Iterator[Run]:
        """A sweep's parent run named ``name``, its writes queued in ``folder/outbox``."""
        experiment_id = self._open_store()
        with self._opened(experiment_id, name, {**tags, **self.tags}, None, None, folder / OUTBOX_FOLDER) as run:
            run.log_params(params)
            yield run

    def _open_store(self) -> str:
        """The experiment's id (made if needed), after ending the runs of processes that are gone."""
        self.uri = writable_store_uri(self.uri)
        experiment_id = setup_experiment(self.uri, self.experiment, self.artifact_root)
        with store_errors(self.uri):
            end_runs_of_dead_processes(existing_store(self.uri), before_marking=deliver_leftovers)
        return experiment_id

    def _opened(self, experiment_id, name, tags, run_id, parent_run_id, outbox):
        return opened_run(
            self.uri,
            experiment_id,
            name,
            tags,
            run_id,
            parent_run_id,
            outbox,
            system_metrics=self.system_metrics,
            outage_wait_s=self.outage_wait_s,
        )


def deliver_leftovers(run) -> None:
    """Before a dead process's run is marked KILLED: deliver what it queued and never sent."""
    folder = Path(run.data.tags.get("output_dir", "")) / OUTBOX_FOLDER
    if not (folder / RUN_FILE).is_file():
        return
    try:
        with FileLock(folder.parent / FOLDER_LOCK, timeout=0):
            run_id, count = sync(folder)
        log.warning("delivered %d updates that run %s left in %s", count, run_id, folder)
    except Exception as error:  # the run is marked KILLED anyway; sync can be run by hand
        log.warning("updates left in %s not delivered (%s); later: python -m hyperexp.track sync", folder, error)
