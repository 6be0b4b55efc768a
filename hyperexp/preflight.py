"""What a job checks outside its config before any work: the places it writes (the tracking
store and the run it continues are the tracker's checks, ``MlflowTracker.check``). Nothing is
written until every check passed; then the output folder is claimed, so that no two runs share it.
A sweep checks every job as its own run would (:func:`check_sweep_jobs`) before its parent run
exists; Hydra's own output folder is checked before Hydra creates it (:class:`PreflightCallback`).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from hyperexp.cli import refusals_as_one_line
from hyperexp.config import build, validated
from hyperexp.data import planned_shape
from hyperexp.data.limits import human_size
from hyperexp.decode import FitContext
from hyperexp.decode.losses import training_objective
from hyperexp.device import module_device, resolve_device
from hyperexp.errors import InputError
from hyperexp.track.outbox import FOLDER_LOCK, RUN_FILE, queued_items
from hyperexp.track.store import check_writable_folder, sqlite_path

log = logging.getLogger("hyperexp")

LOCK_NAME = FOLDER_LOCK  # held by the process that runs in an output folder
_claimed: list[FileLock] = []


def check_before_work(cfg: DictConfig, output_dir: Path) -> None:
    """Every check of the places the job writes (InputError naming the key or file), then claim
    ``output_dir``."""
    check_feature_layer(cfg)
    check_output_folder(output_dir)
    check_writable_folder(cfg.data.cache_dir, "data.cache_dir")
    check_free_space(cfg)
    check_store_lock(cfg.tracking.uri)
    claim_output_folder(output_dir)


def check_sweep_jobs(config: DictConfig) -> None:
    """Every job of a basic sweep passes the checks its own run makes before any work
    (:func:`check_job`), before the sweep's parent run exists (Hydra composes each job only when
    it launches it)."""
    check_writable_folder(config.hydra.sweep.dir, "hydra.sweep.dir")
    if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return  # other sweepers choose their jobs as they go
    loader = GlobalHydra.instance().config_loader()
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides([*params, *config.hydra.overrides.task])
    generators: dict[str, Any] = {}  # one build per distinct generator config: PGGAN reads its weights
    for batch in BasicSweeper.split_arguments(overrides, None):
        for number, job in enumerate(batch):
            job_config = loader.load_sweep_config(config, list(job))
            with open_dict(job_config):
                del job_config["hydra"]
            try:
                check_job(job_config, generators)
                check_writable_folder(job_config.data.cache_dir, "data.cache_dir")
                check_free_space(job_config)
            except InputError as error:
                raise type(error)(f"{error} (sweep job {number}: {' '.join(job)})") from None


def check_job(cfg: DictConfig, generators: dict[str, Any] | None = None) -> None:
    """What ``hyperexp.train.run`` checks before it writes anything: every setting (types, ranges,
    what consumes it), the device, and whether data, decoder, generator and evaluation fit
    together. Builds the parts (no data, no run); ``generators`` caches generator builds."""
    from hyperexp.train import check_parts_agree  # the run's own cross-checks (train imports this module)

    config = validated(cfg)
    resolve_device(config.trainer.device)
    decoder = build(cfg.decoder)
    key = OmegaConf.to_yaml(cfg.generator.model)
    generators = {} if generators is None else generators
    if key not in generators:
        generators[key] = build(cfg.generator.model).eval()
    generator, evaluation = generators[key], build(cfg.evaluate)
    context = FitContext(config.trainer, loss=training_objective(generator, config.trainer))
    check_parts_agree(planned_shape(**vars(config.data)), decoder, generator, evaluation, context)
    check_feature_layer(cfg, generator)


def check_free_space(cfg: DictConfig) -> None:
    """The simulated experiment's files must fit on the disk of ``data.cache_dir`` (written once)."""
    if cfg.data.source != "simulated":
        return
    simulation = validated(cfg.data.simulation)
    folder = Path(cfg.data.cache_dir).resolve()
    if (folder / f"simulated-{simulation.key()}").is_dir():
        return
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if simulation.file_bytes() > free:
        raise InputError(
            f"data.simulation: its files take about {human_size(simulation.file_bytes())}, more than the "
            f"{human_size(free)} free in {folder} (data.cache_dir)"
        )


def check_feature_layer(cfg: DictConfig, generator: Any = None) -> None:
    """With the feature loss on, the generator computes its layer for one latent: it knows its layers."""
    if not cfg.trainer.feature_loss.weight:
        return
    generator = generator if generator is not None else build(cfg.generator.model).eval()
    layer = cfg.trainer.feature_loss.layer
    try:
        with torch.no_grad():
            generator(torch.zeros(1, generator.latent_dim, device=module_device(generator)), layer=layer)
    except (ValueError, IndexError) as error:
        raise InputError(f"trainer.feature_loss.layer: {str(error).strip() or type(error).__name__}") from None


class PreflightCallback(Callback):
    """Hydra callback: a single run's output folder is checked before Hydra creates it (Hydra
    would fail on it with a traceback); a sweep's folder and jobs by :func:`check_sweep_jobs`."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with refusals_as_one_line():  # Hydra would only warn
            check_writable_folder(config.hydra.run.dir, "hydra.run.dir")


def check_store_lock(uri: str) -> None:
    """The lock file beside a SQLite store (``setup_experiment`` holds it while opening the store)
    must be a writable file, or creatable: the store's folder was checked."""
    path = sqlite_path(uri)
    lock = Path(f"{path.resolve()}.lock") if path is not None else None
    if lock is None or not os.path.lexists(lock):
        return
    if not lock.is_file():
        raise InputError(f"tracking.uri: {lock}, the store's lock file, is not a file")
    if not os.access(lock, os.R_OK | os.W_OK):
        raise InputError(f"tracking.uri: {lock}, the store's lock file, is not writable")


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
