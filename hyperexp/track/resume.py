"""Continuing a run: its last checkpoint, after checking the run was made with the same config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hyperexp.decode.checkpoints import load_checkpoint
from hyperexp.errors import InputError

# Keys that may differ between the interrupted run and its continuation.
IGNORED_PREFIXES = ("trainer.resume", "trainer.progress", "tracking.", "hydra.")
CONFIG_FILE = "config.yaml"  # a run's whole resolved config, logged when it starts


def checkpoint_of(run_id: str, config: Mapping[str, Any]) -> dict:
    """The last checkpoint of run ``run_id`` (``trainer.resume``); ``config`` is this job's resolved
    config, which must equal the run's ``config.yaml`` (or, for older runs, its params)."""
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise InputError(f"trainer.resume={run_id}: no such run in the tracking store") from None
    path = run.data.tags.get("checkpoint")
    if not path or not Path(path).is_file():
        raise InputError(f"trainer.resume={run_id}: that run has no checkpoint on disk (tag 'checkpoint': {path})")
    try:
        logged = flatten(yaml.safe_load(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{CONFIG_FILE}")))
    except (MlflowException, OSError):
        logged = dict(run.data.params)
    current = {k: v for k, v in flatten(config).items() if not k.startswith(IGNORED_PREFIXES)}
    logged = {k: v for k, v in logged.items() if not k.startswith(IGNORED_PREFIXES)}
    differing = sorted(k for k in current.keys() | logged.keys() if current.get(k) != logged.get(k))
    if differing:
        raise InputError(f"trainer.resume={run_id}: config differs from the run's in {', '.join(differing[:5])}")
    return load_checkpoint(path)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {'a.b.c': 'value'} with string values (as MLflow params are)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def tag_checkpoint(run_id: str, path: Path) -> None:
    """Record where the run's latest checkpoint is (what ``checkpoint_of`` reads back)."""
    MlflowClient().set_tag(run_id, "checkpoint", str(path))
