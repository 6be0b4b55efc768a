"""The typed shape of ``conf/``: one dataclass per config group, registered in Hydra's ConfigStore.

Hydra merges every YAML option into these schemas, so an unknown key or a value of the wrong
type is refused while composing. Ranges and choices are checked in ``__post_init__``, which runs
when :func:`validated` turns the composed config into these objects, before any work starts.
Groups that build something name their factory in ``_target_`` (built with ``instantiate``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hyperexp.data.glm import GlmSettings
from hyperexp.data.simulate import Simulation
from hyperexp.data.sources import check_source_name
from hyperexp.data.variants import PROTOCOLS, VARIANTS
from hyperexp.errors import InputError, UsageError

MAX_EPOCHS = 1_000_000  # per-epoch metrics are preallocated; beyond this is a typo, not a schedule
MIN_PREVIEW_SIZE = 7  # SSIM's window: smaller preview images cannot be scored


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
        raise


register_configs()
