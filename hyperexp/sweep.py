"""The sweep's Hydra callback (registered in ``conf/config.yaml``): one MLflow parent run per
multirun, every job a child run of it (:mod:`hyperexp.track.sweep`).

At the start every job's config is checked and the store too, then the parent run is opened
(named by what the sweep varies). At the end the comparison report and the per-group summaries
go to the parent run (:mod:`hyperexp.report.sweep`), which ends FINISHED, or FAILED when a job
failed; an interrupted sweep (Hydra skips the end) leaves it KILLED.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hyperexp.cli import refusals_as_one_line
from hyperexp.config import build
from hyperexp.preflight import check_sweep_jobs
from hyperexp.report.sweep import report_sweep
from hyperexp.track.runs import Run
from hyperexp.track.sweep import read_sweep_file, record_sweep, sweep_name, swept_keys

log = logging.getLogger("hyperexp")

# The parent runs this process holds open, by sweep folder: kept outside the callback, which
# launchers pickle.
_parents: dict[str, tuple[Run, contextlib.ExitStack, str]] = {}


class MlflowSweepCallback(Callback):
    """Hydra callback: parent run at sweep start, report and parent status at sweep end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        tracker = build(config.tracking)
        with refusals_as_one_line():  # Hydra would only warn: one line and exit, before any run exists
            check_sweep_jobs(config)
            tracker.check()
        sweep_id = str(sweep_dir)
        task, sweeper_params = list(config.hydra.overrides.task), dict(config.hydra.sweeper.get("params") or {})
        keys = swept_keys(task, sweeper_params)
        name, swept = sweep_name(task, sweeper_params)
        tags = {"sweep": sweep_id, "sweep_role": "parent", "swept_keys": ",".join(keys)}
        tags["mlflow.note.content"] = (
            f"`{' '.join(['python -m hyperexp.train -m', *task])}`\n\nSweep folder: `{sweep_id}`"
        )
        stack = contextlib.ExitStack()
        with refusals_as_one_line():
            parent = stack.enter_context(tracker.start_parent(name, tags, swept, sweep_dir))
        _parents[sweep_id] = (parent, stack, tracker.uri)
        experiment_id = parent.outbox.client.get_run(parent.run_id).info.experiment_id
        record_sweep(sweep_dir, parent.run_id, sweep_id, keys, experiment_id)
        atexit.register(end_interrupted, sweep_id)  # Hydra skips on_multirun_end then
        log.info("sweep %s: MLflow parent run %s", sweep_id, parent.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if read_sweep_file(sweep_dir) is None or str(sweep_dir) not in _parents:
            return
        parent, stack, uri = _parents.pop(str(sweep_dir))
        baseline = config.get("report", {}).get("baseline")
        parent.failure = report_sweep(parent, uri, sweep_dir, baseline)
        stack.close()
        if parent.failure and "job(s) failed" in parent.failure:
            print(f"hyperexp: {parent.failure}; see {sweep_dir / 'report.md'}", file=sys.stderr)
            sys.exit(1)


def end_interrupted(sweep_id: str) -> None:
    """At exit, a parent run whose sweep never reached its end: KILLED."""
    if sweep_id in _parents:
        parent, stack, _ = _parents.pop(sweep_id)
        with contextlib.suppress(KeyboardInterrupt):
            stack.__exit__(KeyboardInterrupt, KeyboardInterrupt("the sweep was interrupted"), None)
