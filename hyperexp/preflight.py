"""What a job checks outside its config before any work: the places it writes (the tracking
store and the run it continues are the tracker's checks, ``MlflowTracker.check``). Nothing is
written until every check passed; then the output folder is claimed, so that no two runs share it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from filelock import FileLock, Timeout
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

from hyperexp.config import validated
from hyperexp.errors import InputError
from hyperexp.track.outbox import FOLDER_LOCK, RUN_FILE, queued_items
from hyperexp.track.store import check_writable_folder

log = logging.getLogger("hyperexp")

LOCK_NAME = FOLDER_LOCK  # held by the process that runs in an output folder
_claimed: list[FileLock] = []


def check_before_work(cfg: DictConfig, output_dir: Path) -> None:
    """Every check of the places the job writes (InputError naming the key or file), then claim
    ``output_dir``."""
    check_output_folder(output_dir)
    check_writable_folder(cfg.data.cache_dir, "data.cache_dir")
    claim_output_folder(output_dir)


def check_sweep_jobs(config: DictConfig) -> None:
    """Every job of a basic sweep composes and passes :func:`validated`, before the sweep's
    parent run exists (Hydra composes each job only when it launches it)."""
    check_writable_folder(config.hydra.sweep.dir, "hydra.sweep.dir")
    if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return  # other sweepers choose their jobs as they go
    loader = GlobalHydra.instance().config_loader()
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides([*params, *config.hydra.overrides.task])
    for batch in BasicSweeper.split_arguments(overrides, None):
        for number, job in enumerate(batch):
            job_config = loader.load_sweep_config(config, list(job))
            with open_dict(job_config):
                del job_config["hydra"]
            try:
                validated(job_config)
            except InputError as error:
                raise type(error)(f"{error} (sweep job {number}: {' '.join(job)})") from None


def check_output_folder(output_dir: Path) -> None:
    check_writable_folder(output_dir, "hydra.run.dir")
    outbox = output_dir / "outbox"
    if (outbox / RUN_FILE).is_file() and queued_items(outbox):
        raise InputError(
            f"hydra.run.dir: {output_dir} holds updates of an earlier run that never reached its tracking "
            f"store; upload them first with: python -m hyperexp.track sync {output_dir}"
        )
    if (output_dir / LOCK_NAME).exists():  # a run was here: is it still?
        _lock_folder(output_dir).release()


def claim_output_folder(output_dir: Path) -> None:
    """Hold the folder's lock while this process lives (``check_output_folder`` refuses it to
    others). A process runs one job at a time, so it lets go of its previous job's folder."""
    while _claimed:
        _claimed.pop().release()
    _claimed.append(_lock_folder(output_dir))


def _lock_folder(output_dir: Path) -> FileLock:
    lock = FileLock(output_dir / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(
            f"hydra.run.dir: {output_dir} is in use by another run; give each run its own folder"
        ) from None
    return lock
