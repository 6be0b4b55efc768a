"""Continuing a run: its last checkpoint, after checking the run was made with the same config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hyperexp.decode.checkpoints import load_checkpoint
from hyperexp.errors import InputError

# Keys that may differ between the interrupted run and its continuation.
IGNORED_PREFIXES = ("trainer.resume", "trainer.progress", "tracking.", "hydra.")


def checkpoint_of(run_id: str, params: Mapping[str, str]) -> dict:
    """The last checkpoint of run ``run_id`` (``trainer.resume``); ``params`` are this job's."""
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        raise InputError(f"trainer.resume={run_id}: no such run in the tracking store") from None
    path = run.data.tags.get("checkpoint")
    if not path or not Path(path).is_file():
        raise InputError(f"trainer.resume={run_id}: that run has no checkpoint on disk (tag 'checkpoint': {path})")
    current = {k: v for k, v in params.items() if not k.startswith(IGNORED_PREFIXES)}
    logged = {k: v for k, v in run.data.params.items() if not k.startswith(IGNORED_PREFIXES)}
    differing = sorted(k for k in current.keys() | logged.keys() if current.get(k) != logged.get(k))
    if differing:
        raise InputError(f"trainer.resume={run_id}: config differs from the run's in {', '.join(differing[:5])}")
    return load_checkpoint(path)


def tag_checkpoint(run_id: str, path: Path) -> None:
    """Record where the run's latest checkpoint is (what ``checkpoint_of`` reads back)."""
    MlflowClient().set_tag(run_id, "checkpoint", str(path))
