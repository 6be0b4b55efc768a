"""Multirun bookkeeping: one MLflow parent run per sweep, every job a child run of it.

A Hydra callback (registered in ``conf/config.yaml``) creates the parent run when the sweep
starts and writes ``mlflow_sweep.json`` (the parent run id and which config keys the sweep
varies) into the sweep folder. Each job reads that file (:func:`sweep_membership`), so jobs in
other processes (joblib, SLURM) find their parent without shared memory. When the sweep ends,
the callback writes the comparison report into the sweep folder, logs it to the parent run and
closes the parent run FINISHED, or FAILED if any job failed.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from omegaconf import DictConfig

from hyperexp.atomic import atomic_write
from hyperexp.cli import refusals_as_one_line
from hyperexp.preflight import check_sweep_jobs
from hyperexp.report.queries import collect_runs
from hyperexp.report.trials import load_trials
from hyperexp.report.write import log_report_to_run, write_report
from hyperexp.track.group_summary import log_group_summary, log_study_result
from hyperexp.track.liveness import Heartbeat, process_tags
from hyperexp.track.runs import log_params
from hyperexp.track.store import check_store, setup_experiment

log = logging.getLogger("hyperexp")

SWEEP_FILE = "mlflow_sweep.json"
PARENT_FILE = "mlflow_parent_run.txt"  # the parent run id alone, for tools that want just that
FAILED_FILE = "job_failed.json"  # written into a job's folder when it fails
SEED_KEYS = ("trainer.seed", "seed", "data.simulation.seed")  # replicates, not conditions
MAX_NAME_LENGTH = 250
NO_SWEEP = {"sweep": "none"}  # the tags of a single run
_heartbeats: dict[str, Heartbeat] = {}  # of the parent runs this process opened


def swept_keys(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> list[str]:
    """Config keys that take several values in this sweep (command line or ``hydra.sweeper.params``)."""
    parser = OverridesParser.create()
    keys = [o.get_key_element() for o in parser.parse_overrides(list(task_overrides)) if o.is_sweep_override()]
    return keys + [key for key in (sweeper_params or {}) if key not in keys]


def job_group(job_overrides: list[str], keys: list[str]) -> str:
    """The label of a job within its sweep: its values of the swept keys, seeds left out."""
    parser = OverridesParser.create()
    chosen = {o.get_key_element(): o.value() for o in parser.parse_overrides(list(job_overrides))}
    parts = [f"{key}={chosen[key]}" for key in keys if key in chosen and key not in SEED_KEYS]
    return ",".join(parts) or "all"


def sweep_name(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> tuple[str, dict[str, str]]:
    """A sweep's parent run name, its sweeping overrides (``data=subject1,subject2 trainer.seed=0,1``),
    and the swept keys with the values they take, as the parent's params."""
    parser = OverridesParser.create()
    overrides = [o for o in parser.parse_overrides(list(task_overrides)) if o.is_sweep_override()]
    swept = {o.get_key_element(): o.input_line.split("=", 1)[1] for o in overrides}
    swept.update({str(key): str(value) for key, value in (sweeper_params or {}).items() if key not in swept})
    from hyperexp.track.naming import sweep_run_name  # (naming imports this module)

    return sweep_run_name(list(task_overrides), swept)[:MAX_NAME_LENGTH], swept


def read_sweep_file(sweep_dir: str | Path) -> dict | None:
    """What the sweep's start recorded (parent_run_id, sweep, swept_keys, experiment_id), or None."""
    path = Path(sweep_dir) / SWEEP_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_parent_run_id(sweep_dir: str | Path) -> str | None:
    """The parent run id recorded in a sweep folder, or None."""
    path = Path(sweep_dir) / PARENT_FILE
    return (path.read_text().strip() or None) if path.is_file() else None


def sweep_membership(hydra_config: DictConfig | None) -> tuple[dict[str, str], str | None]:
    """A job's sweep tags (sweep, group, job) and parent run id, from its sweep's file;
    ``({"sweep": "none"}, None)`` outside a multirun (``hydra_config`` is ``HydraConfig.get()``)."""
    if hydra_config is None or hydra_config.mode != RunMode.MULTIRUN:
        return dict(NO_SWEEP), None
    sweep = read_sweep_file(hydra_config.sweep.dir)
    if sweep is None:
        return dict(NO_SWEEP), None
    group = job_group(list(hydra_config.overrides.task), sweep["swept_keys"])
    return {"sweep": sweep["sweep"], "group": group, "job": str(hydra_config.job.num)}, sweep["parent_run_id"]


def record_failed_job(job_dir: str | Path, job_num: int, overrides: list[str], message: str) -> None:
    record = {"job": job_num, "overrides": overrides, "error": message}
    atomic_write(Path(job_dir) / FAILED_FILE, json.dumps(record).encode())


def failed_jobs(sweep_dir: str | Path) -> list[dict]:
    """Failures recorded by jobs of a sweep (in any process), by job number."""
    records = [json.loads(path.read_text()) for path in Path(sweep_dir).glob(f"*/{FAILED_FILE}")]
    return sorted(records, key=lambda record: record["job"])


def failed_jobs_section(failures: list[dict]) -> str:
    """The report's markdown section listing failed jobs ("" when none failed)."""
    if not failures:
        return ""
    lines = ["## Jobs that failed", ""]
    lines += [f"- job {f['job']} (`{' '.join(f['overrides'])}`): {f['error']}" for f in failures]
    return "\n".join(lines)


def _close_if_running(tracking_uri: str, run_id: str) -> None:
    client = MlflowClient(tracking_uri)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


class MlflowSweepCallback(Callback):
    """Hydra callback: parent run at sweep start, report and parent status at sweep end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        tracking = config.tracking
        with refusals_as_one_line():  # Hydra would only warn: one line and exit, before any run exists
            check_sweep_jobs(config)
            check_store(tracking.uri)
            experiment_id = setup_experiment(tracking.uri, tracking.experiment, tracking.artifact_root)
        sweep_id = str(sweep_dir)
        task, sweeper_params = list(config.hydra.overrides.task), dict(config.hydra.sweeper.get("params") or {})
        keys = swept_keys(task, sweeper_params)
        name, swept = sweep_name(task, sweeper_params)
        tags = {"sweep": sweep_id, "sweep_role": "parent", "swept_keys": ",".join(keys), **process_tags()}
        tags["mlflow.note.content"] = (
            f"`{' '.join(['python -m hyperexp.train -m', *task])}`\n\nSweep folder: `{sweep_id}`"
        )
        tags.update({str(key): str(value) for key, value in (tracking.get("tags") or {}).items()})
        parent = MlflowClient().create_run(experiment_id, run_name=name, tags=tags)
        parent_id = parent.info.run_id
        log_params(parent_id, swept)
        # Jobs on other hosts see the parent live. Kept outside the callback, which launchers pickle.
        _heartbeats[parent_id] = Heartbeat(MlflowClient().tracking_uri, parent_id)
        record = {"parent_run_id": parent_id, "sweep": sweep_id, "swept_keys": keys, "experiment_id": experiment_id}
        atomic_write(sweep_dir / SWEEP_FILE, json.dumps(record, indent=2).encode())
        atomic_write(sweep_dir / PARENT_FILE, f"{parent_id}\n".encode())
        # If the sweep is interrupted, Hydra skips on_multirun_end: do not leave the parent RUNNING.
        atexit.register(_close_if_running, MlflowClient().tracking_uri, parent_id)
        log.info("sweep %s: MLflow parent run %s", sweep_id, parent_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        record = read_sweep_file(sweep_dir)
        if record is None:
            return
        client = MlflowClient()
        parent_id = record["parent_run_id"]
        if parent_id in _heartbeats:
            _heartbeats.pop(parent_id).stop()
        failures = failed_jobs(sweep_dir)
        try:
            records = collect_runs(client.tracking_uri, parent_run_id=parent_id)
            trials = load_trials(records, client.tracking_uri)
            baseline = config.get("report", {}).get("baseline")
            paths = write_report(records, trials, sweep_dir, baseline=baseline, appendix=failed_jobs_section(failures))
            log_report_to_run(parent_id, paths)
            log_group_summary(parent_id, records)
            log_study_result(parent_id, sweep_dir)
            log.info("sweep report: %s", paths["markdown"])
        except Exception as error:  # the sweep's results stay in MLflow; say why the report is missing
            log.error("sweep report failed: %s: %s", type(error).__name__, error)
            records = []
        for failure in failures:
            log.error("sweep job %d failed (%s): %s", failure["job"], " ".join(failure["overrides"]), failure["error"])
        failed = failures or [r for r in records if not r.finished] or not records
        client.set_terminated(parent_id, RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED))
        if failures:
            print(f"hyperexp: {len(failures)} sweep job(s) failed; see {sweep_dir / 'report.md'}", file=sys.stderr)
            sys.exit(1)
