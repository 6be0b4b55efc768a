"""Continuing a run: its last checkpoint, after checking the run can and may be continued with
this config (an MLflow run id, a run that exists, did not finish, is not running elsewhere)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import LifecycleStage
from mlflow.exceptions import MlflowException

from hyperexp.decode.checkpoints import load_checkpoint
from hyperexp.errors import InputError
from hyperexp.track.liveness import HOST, PID, why_dead

# Keys that may differ between the interrupted run and its continuation.
IGNORED_PREFIXES = ("trainer.resume", "trainer.progress", "tracking.", "hydra.")
CONFIG_FILE = "config.yaml"  # a run's whole resolved config, logged when it starts
RUN_ID = re.compile(r"[0-9a-f]{32}")  # what MLflow's stores issue (uuid4 hex)


def check_run_id(run_id: str) -> None:
    if not RUN_ID.fullmatch(run_id):
        raise InputError(
            f"trainer.resume={run_id}: not an MLflow run id (32 hex digits, as in the stop message or the MLflow UI)"
        )


def resume_target(client: MlflowClient, run_id: str, config: Mapping[str, Any]) -> str:
    """The checkpoint path of run ``run_id``, or InputError saying why it cannot be continued:
    ``config`` (this job's resolved config) must equal the run's ``config.yaml`` (or, for older
    runs, its params)."""
    check_run_id(run_id)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise InputError(f"trainer.resume={run_id}: no such run in the tracking store") from None
    status, tags = run.info.status, run.data.tags
    if run.info.lifecycle_stage == LifecycleStage.DELETED:
        raise InputError(f"trainer.resume={run_id}: that run was deleted")
    if status == "FINISHED":
        raise InputError(f"trainer.resume={run_id}: that run is FINISHED; there is nothing to continue")
    if status == "RUNNING" and why_dead(tags) is None:
        where = f"process {tags[PID]} on {tags[HOST]}" if PID in tags else "another process"
        raise InputError(f"trainer.resume={run_id}: that run is still RUNNING ({where}); stop it first")
    path = tags.get("checkpoint")
    if not path or not Path(path).is_file():
        raise InputError(f"trainer.resume={run_id}: that run has no checkpoint on disk (tag 'checkpoint': {path})")
    logged = logged_config(client, run_id) or dict(run.data.params)
    current = {k: v for k, v in flatten(config).items() if not k.startswith(IGNORED_PREFIXES)}
    logged = {k: v for k, v in logged.items() if not k.startswith(IGNORED_PREFIXES)}
    differing = sorted(k for k in current.keys() | logged.keys() if current.get(k) != logged.get(k))
    if differing:
        raise InputError(f"trainer.resume={run_id}: config differs from the run's in {', '.join(differing[:5])}")
    return path


def logged_config(client: MlflowClient, run_id: str) -> dict[str, str] | None:
    """The run's ``config.yaml``, flattened; None if it has none."""
    with tempfile.TemporaryDirectory(prefix="hyperexp-resume-") as folder:
        try:
            path = client.download_artifacts(run_id, CONFIG_FILE, folder)
        except (MlflowException, OSError):
            return None
        return flatten(yaml.safe_load(Path(path).read_text()))


def checkpoint_of(tracking_uri: str, run_id: str, config: Mapping[str, Any]) -> dict:
    """The last checkpoint of run ``run_id`` (``trainer.resume``); ``config``: this job's resolved config."""
    return load_checkpoint(resume_target(MlflowClient(tracking_uri), run_id, config))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {'a.b.c': 'value'} with string values (as MLflow params are)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat
