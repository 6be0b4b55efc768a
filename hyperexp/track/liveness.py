"""Runs whose process is gone: found at the next start and marked KILLED, not left RUNNING forever.

A process killed with ``kill -9`` (or a node that fails) cannot end its MLflow run. Every run
this project opens records where it runs (host, process id, the process's start time) and a
heartbeat tag refreshed every :data:`HEARTBEAT_S` seconds. At the next start against the same
store, :func:`end_runs_of_dead_processes` looks at the RUNNING runs: on this host a run is dead
when its process no longer exists (or the pid now belongs to a younger process); on another host
when its heartbeat is older than :data:`STALE_AFTER_S`. A dead run is marked KILLED, with a note
saying why, and ``trainer.resume=<run id>`` continues it from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import RunStatus, ViewType

from hyperexp.track.outbox import Outbox, send

log = logging.getLogger("hyperexp")

HOST, PID, PROCESS_START, HEARTBEAT = "hyperexp.host", "hyperexp.pid", "hyperexp.process_start", "hyperexp.heartbeat"
NOTE = "mlflow.note.content"  # the run's description in the MLflow UI
HEARTBEAT_S = 60.0
STALE_AFTER_S = 15 * 60.0  # a run on another host with no heartbeat for this long is taken as dead
MAX_RUNNING_CHECKED = 1000


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (boot id and clock ticks since boot), or None if it does not
    exist; on systems without /proc, "alive" for a process that exists."""
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()  # the command name may hold spaces
    except OSError:
        return None
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{boot}:{fields[19]}"  # field 22 of stat, counted after the name


def process_tags() -> dict[str, str]:
    """The tags that tell later starts whether this process still runs the run (and, under
    SLURM, which job it is: ``scancel`` and ``sacct`` take that id)."""
    tags = {
        HOST: socket.gethostname(),
        PID: str(os.getpid()),
        PROCESS_START: process_start(os.getpid()) or "",
        HEARTBEAT: str(int(time.time() * 1000)),
    }
    if "SLURM_JOB_ID" in os.environ:
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def why_dead(tags: dict[str, str], now_ms: int | None = None) -> str | None:
    """Why the process that ran a RUNNING run is gone, or None if it may still run it."""
    if PID not in tags or HOST not in tags:
        return None  # not opened by this project: nothing to go by
    if tags[HOST] == socket.gethostname():
        started = process_start(int(tags[PID]))
        if started is None:
            return f"process {tags[PID]} on {tags[HOST]} no longer exists"
        if started not in (tags.get(PROCESS_START), "alive"):
            return f"process {tags[PID]} on {tags[HOST]} ended (its pid belongs to another process now)"
        return None
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    silent_s = (now_ms - int(tags.get(HEARTBEAT, "0"))) / 1000
    if silent_s > STALE_AFTER_S:
        return f"no heartbeat from process {tags[PID]} on {tags[HOST]} for {silent_s / 60:.0f} min"
    return None


def end_runs_of_dead_processes(client: MlflowClient, before_marking=None) -> list[str]:
    """Mark KILLED every RUNNING run of the store whose process is gone; returns their ids.
    ``before_marking(run)`` is called first (to deliver what the dead process left on disk)."""
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiments:
        return []
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=MAX_RUNNING_CHECKED)
    ended = []
    for run in running:
        reason = why_dead(run.data.tags)
        if reason is None:
            continue
        if before_marking is not None:
            before_marking(run)
            if client.get_run(run.info.run_id).info.status != "RUNNING":
                continue  # what it left on disk ended it (its final status was queued)
        note = f"Marked KILLED by process {os.getpid()} on {socket.gethostname()}: {reason}."
        previous = run.data.tags.get(NOTE)
        described = [[NOTE, f"{previous}\n\n{note}" if previous else note]]
        last_seen = int(run.data.tags.get(HEARTBEAT, "0")) or None
        send(client, run.info.run_id, {"kind": "batch", "metrics": [], "params": [], "tags": described})
        send(
            client,
            run.info.run_id,
            {"kind": "status", "status": RunStatus.to_string(RunStatus.KILLED), "end_time": last_seen},
        )
        log.warning("run %s was left RUNNING (%s): marked KILLED", run.info.run_id, reason)
        ended.append(run.info.run_id)
    return ended


class Heartbeat:
    """Refreshes a run's heartbeat tag from a daemon thread until stopped, through the run's outbox."""

    def __init__(self, outbox: Outbox, every_s: float = HEARTBEAT_S):
        self.outbox, self.every_s = outbox, every_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{outbox.run_id[:8]}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self.every_s):
            try:
                self.outbox.set_tag(HEARTBEAT, str(int(time.time() * 1000)))
            except OSError as error:  # a full disk: the run itself reports it
                log.debug("heartbeat of run %s not queued: %s", self.outbox.run_id, error)

    def stop(self) -> None:
        self._stopped.set()
