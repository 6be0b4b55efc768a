"""Multirun bookkeeping: one MLflow parent run per sweep, every job a child run of it.

The sweep's Hydra callback (:mod:`hyperexp.sweep`) creates the parent run when the sweep starts
and writes ``mlflow_sweep.json`` (the parent run id and which config keys the sweep varies) into
the sweep folder (:func:`record_sweep`). Each job reads that file (:func:`sweep_membership`), so
jobs in other processes (joblib, SLURM) find their parent without shared memory; a job that
fails records why in its folder (:func:`record_failed_job`) for the sweep's report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig

from hyperexp.atomic import atomic_write

log = logging.getLogger("hyperexp")

SWEEP_FILE = "mlflow_sweep.json"
PARENT_FILE = "mlflow_parent_run.txt"  # the parent run id alone, for tools that want just that
FAILED_FILE = "job_failed.json"  # written into a job's folder when it fails
SEED_KEYS = ("trainer.seed", "seed", "data.simulation.seed")  # replicates, not conditions
MAX_NAME_LENGTH = 250
NO_SWEEP = {"sweep": "none"}  # the tags of a single run


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


def record_sweep(sweep_dir: Path, parent_run_id: str, sweep_id: str, keys: list[str], experiment_id: str) -> None:
    """What the sweep's jobs read (:func:`sweep_membership`, :func:`read_parent_run_id`)."""
    record = {"parent_run_id": parent_run_id, "sweep": sweep_id, "swept_keys": keys, "experiment_id": experiment_id}
    atomic_write(sweep_dir / SWEEP_FILE, json.dumps(record, indent=2).encode())
    atomic_write(sweep_dir / PARENT_FILE, f"{parent_run_id}\n".encode())
