"""The typed shape of ``conf/``: one dataclass per config group, registered in Hydra's ConfigStore.

Hydra merges every YAML option into these schemas, so an unknown key or a value of the wrong
type is refused while composing. Ranges and choices are checked in ``__post_init__``, which runs
when :func:`validated` turns the composed config into these objects, before any work starts;
``Config.__post_init__`` also checks values as what consumes them will take them (the optimizer
built on a dummy parameter, seeds as torch and NumPy take them, the memory images will need, the
tracking database's driver).
Groups that build something name their factory in ``_target_`` (built with ``instantiate``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch
from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hyperexp.data.glm import GlmSettings
from hyperexp.data.limits import human_size
from hyperexp.data.simulate import Simulation
from hyperexp.data.sources import check_source_name
from hyperexp.data.variants import PROTOCOLS, VARIANTS
from hyperexp.errors import InputError, UsageError

MAX_EPOCHS = 1_000_000  # per-epoch metrics are preallocated; beyond this is a typo, not a schedule
MIN_PREVIEW_SIZE = 7  # SSIM's window: smaller preview images cannot be scored
MAX_SEED = 2**64 - 1  # torch.manual_seed takes up to this, NumPy any integer >= 0
IMAGE_BYTES_PER_PIXEL = 3 * 4  # RGB float32, as images are rendered
FLOAT_COPIES = 4  # float32 copies of rendered images at once (counted once, a 7 GiB preview ran out of 20 GiB)
# The Python drivers SQLAlchemy (MLflow's database layer) uses for each database by default.
DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pyodbc": "pyodbc",
}
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def _check_positive(group: str, **values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise InputError(f"{group}.{key}: must be >= 1, got {value}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class DataConfig:
    """Which trials the decoder sees: ``hyperexp.data.build`` (variant, protocol, pool, source)."""

    _target_: str = "hyperexp.data.build"
    variant: str = "subject"  # subject | average | hyperaligned
    protocol: str = "published"  # published (the tutorial's leakage) | strict
    subjects: list[int] = field(default_factory=lambda: [1])
    n_subjects: int | None = None  # a pool of 1..n_subjects, instead of subjects
    source: str = "simulated"  # simulated | files | bids | a class path (hyperexp/data/sources.py)
    root: str | None = None
    cache_dir: str = "data"
    max_bytes: int = 4 * 2**30  # the most array data one subject's file may declare (bytes)
    validation_trials: int = 0  # the last N training trials, held out: what hparams_search optimises
    simulation: Simulation = field(default_factory=Simulation)
    # data.source=bids (docs/own-data.md): the task, the mask, the latents and the test runs
    task: str | None = None  # None: the dataset's only task
    mask: str | None = None  # a NIfTI mask ({subject}: the label); None: the subject's *_mask.nii[.gz]
    mask_labels: list[int] = field(default_factory=list)  # the mask is an atlas: these labels are the ROI
    stimuli: str | None = None  # the latents file; None: stimuli.tsv or stimuli.npy in data.root
    stimulus_column: str = "stimulus"  # the events.tsv column naming each trial's stimulus
    test_runs: list[int] = field(default_factory=list)  # run numbers whose trials are test trials
    glm: GlmSettings = field(default_factory=GlmSettings)

    def __post_init__(self) -> None:
        _check_choice("data.variant", self.variant, VARIANTS)
        _check_choice("data.protocol", self.protocol, PROTOCOLS)
        check_source_name(self.source)  # the source checks its own settings when built (hyperexp/data/sources.py)
        _check_positive("data", max_bytes=self.max_bytes)


@dataclass
class FeatureLossConfig:
    weight: float = 0.0  # 0 = off (the published recipe)
    layer: int = 0  # generator layer: facesketch 0 = attributes, 1 = image; PGGAN 0..9

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise InputError(f"trainer.feature_loss.weight: must be >= 0, got {self.weight}")


@dataclass
class TrainerConfig:
    """The schedule of gradient-trained decoders and what a run shows while it trains."""

    epochs: int = 1500
    batch_size: int = 30
    last_batch: str = "pad"  # pad: MXNet NDArrayIter's padded last batch; partial: a shorter one
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: Any = "auto"  # auto: this job's share of the usable cores (hyperexp/threads.py), or a number
    log_every: int = 100  # epochs between preview grids and metric uploads
    checkpoint_every: int = 100  # epochs between checkpoints (0: only when stopped by a signal)
    progress: bool = True
    resume: str | None = None  # an MLflow run id to continue from its last checkpoint
    compile: bool = False  # torch.compile the generator-feature loss
    feature_loss: FeatureLossConfig = field(default_factory=FeatureLossConfig)
    preview_trials: int = 8  # test trials in the per-epoch grids
    preview_size: int | None = 128  # preview images are downsampled to this size (None: native)

    def __post_init__(self) -> None:
        _check_positive("trainer", epochs=self.epochs, batch_size=self.batch_size, log_every=self.log_every)
        _check_positive("trainer", preview_trials=self.preview_trials)
        if self.preview_size is not None and self.preview_size < MIN_PREVIEW_SIZE:
            raise InputError(
                f"trainer.preview_size: at least {MIN_PREVIEW_SIZE} (SSIM's window), got {self.preview_size}"
            )
        if self.epochs > MAX_EPOCHS:
            raise InputError(f"trainer.epochs: at most {MAX_EPOCHS:,}, got {self.epochs:,}")
        if self.checkpoint_every < 0:
            raise InputError(f"trainer.checkpoint_every: must be >= 0, got {self.checkpoint_every}")
        _check_choice("trainer.last_batch", self.last_batch, ("pad", "partial"))
        if self.threads != "auto" and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise InputError(f"trainer.threads: must be auto or a number >= 1, got {self.threads!r}")


@dataclass
class GeneratorConfig:
    model: Any = MISSING  # the generator module's factory (``_target_``) and its arguments
    batch_size: int = 16  # latents rendered per batch

    def __post_init__(self) -> None:
        _check_positive("generator", batch_size=self.batch_size)


@dataclass
class EvaluateConfig:
    """End-of-run metrics: ``hyperexp.evaluate.Evaluation``."""

    _target_: str = "hyperexp.evaluate.Evaluation"
    feature_extractor: str | None = None  # a TorchScript face-recognition network
    attribute_boundaries: list[str] = field(default_factory=list)  # InterFaceGAN unit normals, one .npy each
    distractors: int = 100  # prior latents (and their images) added to the test stimuli for top-1 identification


@dataclass
class TrackingConfig:
    _target_: str = "hyperexp.track.MlflowTracker"
    uri: str = "sqlite:///runs/mlflow.db"
    artifact_root: str = "runs/artifacts"
    experiment: str = "hyperexp"
    run_name: str | None = None
    note: str | None = None  # added to the run's description
    tags: dict[str, str] = field(default_factory=dict)  # extra run tags: tracking.tags.idea=wider_pool
    system_metrics: bool = True  # MLflow samples CPU, memory and GPU use into system/*
    outage_wait_s: float = 120.0  # at the end of a run, how long to wait for an unreachable store

    def __post_init__(self) -> None:
        if not self.outage_wait_s >= 0:
            raise InputError(f"tracking.outage_wait_s: must be >= 0, got {self.outage_wait_s}")
        if not self.experiment.strip():
            raise InputError("tracking.experiment: empty; name the experiment the runs go to")
        if not self.uri.strip():
            raise InputError("tracking.uri: empty (use sqlite:///path/mlflow.db or http://host:port)")
        check_database_driver(self.uri)


@dataclass
class ReportConfig:
    """The sweep's comparison report (``hyperexp.report``)."""

    baseline: str | None = None  # compare every group with this one (e.g. data=subject1); None: all pairs


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    decoder: Any = MISSING  # one decoder class and its settings (conf/decoder/*.yaml)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        """What no single group can check: the values as their consumers (torch's optimizers and
        random generators, NumPy, the memory of this machine) will take them."""
        check_seed("trainer.seed", self.trainer.seed)  # first: other seeds default to it (decoder.seed)
        for key, value in _settings(self, ""):
            if isinstance(value, float) and not math.isfinite(value) and key.startswith(FINITE_GROUPS):
                raise InputError(f"{key}: must be a finite number, got {value}")
            if key.rpartition(".")[2] == "seed":
                check_seed(key, value)
        if isinstance(self.decoder, dict) and isinstance(self.decoder.get("optimizer"), dict):
            check_optimizer(self.decoder["optimizer"])
        check_generator_sizes(self.generator.model)
        check_image_memory(self)


FINITE_GROUPS = ("data.", "decoder.", "trainer.", "generator.")  # tracking.outage_wait_s=inf: wait for ever


def _settings(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Every leaf of a validated config, with its dotted key (list items as key[i])."""
    items = (
        ((f.name, getattr(node, f.name)) for f in dataclasses.fields(node))
        if dataclasses.is_dataclass(node)
        else node.items()
        if isinstance(node, dict)
        else enumerate(node)
    )
    for name, value in items:
        key = f"{prefix}[{name}]" if isinstance(name, int) else f"{prefix}{'.' if prefix else ''}{name}"
        if dataclasses.is_dataclass(value) or isinstance(value, (dict, list, tuple)):
            yield from _settings(value, key)
        else:
            yield key, value


def check_seed(key: str, seed: Any) -> None:
    """A seed that torch's generators and NumPy both take (a decoder's or generator's seed goes to either)."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{key}: a seed is an integer from 0 to 2**64 - 1, got {seed!r}")


_OPTIMIZER_KEYS = {"learning rate": "lr", "epsilon": "eps", "beta": "betas", "weight_decay": "weight_decay"}


def check_optimizer(optimizer: dict) -> None:
    """Build the configured optimizer on one dummy parameter: its own checks (weight decay, momentum,
    betas, eps) refuse a bad value now, as one line naming the key, not after the run started."""
    lr = optimizer.get("lr", 1.0)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:  # also NaN
        raise InputError(f"decoder.optimizer.lr: must be > 0, got {lr}")
    try:
        factory = instantiate(optimizer, _convert_="object")
        factory([torch.nn.Parameter(torch.zeros(1))])
    except (InstantiationException, ValueError, TypeError, IndexError) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if not isinstance(cause, (ValueError, TypeError, IndexError)):
            raise
        message = _first_line(cause)
        if isinstance(cause, IndexError):  # torch reads betas[1] of a one-value list
            message = f"a value is missing ({message})"
        key = next((k for word, k in _OPTIMIZER_KEYS.items() if word in message), None)
        key = key or next((k for k in optimizer if not k.startswith("_") and k in message), None)
        raise InputError(f"decoder.optimizer{'.' + key if key else ''}: {message}") from None


def check_generator_sizes(model: Any) -> None:
    """Image size and latent size of a generator that takes them (facesketch), before it is built:
    building allocates ``size**2`` pixels twice."""
    if not isinstance(model, dict):
        return
    for name in ("size", "latent_dim"):
        value = model.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"generator.model.{name}: must be a whole number >= 1, got {value!r}")


def available_memory() -> int:
    return psutil.virtual_memory().available


def check_memory(key: str, value: Any, needed: int, what: str) -> None:
    available = available_memory()
    if needed > available:
        raise InputError(
            f"{key}={value}: {what} would take about {human_size(needed)}, "
            f"more than the {human_size(available)} of memory available"
        )


def check_image_memory(config: Config) -> None:
    """The images a setting implies must fit in memory: the test trials rendered at the generator's
    size, and the per-epoch preview grids at ``trainer.preview_size``. Rendering holds one batch
    as float32 in a few copies (resized, rounded, clamped; SSIM's too), the images as uint8."""
    model, trainer = config.generator.model, config.trainer
    native = model.get("size") if isinstance(model, dict) else None
    n_test = config.data.simulation.n_test if config.data.source == "simulated" else None
    batch = config.generator.batch_size
    if isinstance(native, int) and n_test is not None:
        needed = native**2 * 3 * (2 * n_test + FLOAT_COPIES * 4 * min(batch, n_test))
        check_memory("generator.model.size", native, needed, f"rendering {n_test} test trials twice")
    size = trainer.preview_size or native
    if isinstance(size, int):
        trials = min(trainer.preview_trials, n_test or trainer.preview_trials)
        needed = trials * size**2 * IMAGE_BYTES_PER_PIXEL * FLOAT_COPIES
        key, value = ("trainer.preview_size", size) if trainer.preview_size else ("generator.model.size", native)
        check_memory(key, value, needed, f"preview grids of {trials} trials at {size}x{size} pixels")


def check_database_driver(uri: str) -> None:
    """A database store needs its Python driver, which MLflow would only miss when the run starts."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in DATABASE_SCHEMES:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise InputError(f"tracking.uri: {uri!r} is not a database URI SQLAlchemy can read ({error})") from None
    except ImportError as error:
        driver = (error.name or str(error)).split(".")[0]
        package = DRIVER_PACKAGES.get(driver, driver)
        raise InputError(
            f"tracking.uri: a {scheme} store needs its Python driver '{driver}', which is not installed "
            f"(pip install {package})"
        ) from None


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (``conf/config.yaml`` lists ``base_config`` first),
    and ``${pid:}`` for run folders that no two processes share (``hydra.run.dir``)."""
    ConfigStore.instance().store(name="base_config", node=Config)
    OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)


def _added_keys(node: DictConfig) -> list[str]:
    """Keys a ``+key=value`` override added to a typed group, which its dataclass would drop."""
    schema = OmegaConf.get_type(node)
    known = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    added = []
    for key in node.keys():
        if known is not None and key not in known:
            added.append(node._get_full_key(key))
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            added += _added_keys(child)
    return added


def validated(node: DictConfig) -> Any:
    """A composed config (or group) as its dataclass, with interpolations resolved and ranges,
    choices and keys checked: InputError otherwise, naming the key."""
    added = _added_keys(node)
    if added:
        raise UsageError(f"{added[0]}: no such config key")
    try:
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as error:
        problem = str(error.msg).strip().splitlines()[0]
        raise InputError(f"{error.full_key or 'config'}: {problem}") from None


def build(node: DictConfig, **kwargs) -> Any:
    """``hydra.utils.instantiate``, with a target's own InputError (bad settings, a corrupt
    weights file) re-raised unwrapped so that it reaches the user as one line."""
    try:
        return instantiate(node, _convert_="object", **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, InputError):
            raise error.__cause__ from None
        if isinstance(error.__cause__, ValueError):  # a factory refusing one of its arguments
            raise InputError(f"{node._get_full_key('') or 'config'}: {_first_line(error.__cause__)}") from None
        raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


register_configs()
