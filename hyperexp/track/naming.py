"""What a run is called and says about itself: its name, description, tags and params.

Names are short, because MLflow's runs table shows about the first 17 characters of a name, and
say first what tells a run apart from its neighbours. A job's name: in a sweep, its values of the
swept keys first, then those of data, decoder and seed that the sweep does not vary; alone, the
data, the decoder and the seed, then the other settings given on the command line. Keys appear by
their last part (``lr=0.001``), seeds as ``s0`` (the decoder's) and ``sim2`` (the simulated
experiment's): ``hyperaligned·adam·s0``, ``subject1·sim2·adam·s0``, ``lr=0.001·subject1·adam·s0``.
A sweep's parent is named by its experiment (or ``sweep``), its start time and what it sweeps:
``paper 07:46:12 data×4·sim×4``. Its params are few, so that the UI's image cards (which print
every param under the run's name) show the image: the config choices, the settings that usually
differ, and every key given on the command line; the full resolved config is the run's
``config.yaml``. Its description (``mlflow.note.content``) is the command that repeats it, and
``tracking.note``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from hyperexp.track.resume import flatten
from hyperexp.track.runs import git_commit
from hyperexp.track.sweep import read_sweep_file, sweep_membership

SEPARATOR = "·"
CHOICE_PARAMS = ("experiment", "hparams_search", "data", "decoder", "trainer", "generator")
KEY_PARAMS = ("decoder.optimizer.lr", "trainer.epochs", "trainer.seed")
SET_ONLY_PARAMS = ("data.n_subjects", "data.validation_trials", "trainer.feature_loss.weight")  # when not 0/None
UNLESS_DEFAULT_PARAMS = {"data.protocol": "published"}  # shown where they differ from this
IN_NAME = ("data", "decoder", "trainer.seed", "data.n_subjects")  # keys the name's base parts show
SEED_PREFIXES = {"trainer.seed": "s", "data.simulation.seed": "sim"}  # seeds as s0, sim2
SWEEP_LABELS = {"trainer.seed": "seed", "data.simulation.seed": "sim"}
NOT_SETTINGS = ("hydra", "tracking", "trainer.progress", "trainer.resume", "data.cache_dir")  # change no result
NOTE_TAG = "mlflow.note.content"


@dataclass
class JobIdentity:
    """A job's run before it exists: ``params`` are the curated ones, ``config`` the whole resolved
    config (logged as ``config.yaml``; a resumed run must match it)."""

    name: str
    tags: dict[str, str]
    params: dict[str, str]
    config: dict[str, Any]
    parent_run_id: str | None = None


def _overrides(texts: Iterable[str]) -> list:
    """The parsed overrides that set a value (``~key`` deletions left out)."""
    return [o for o in OverridesParser.create().parse_overrides(list(texts)) if not o.is_delete()]


def _is_setting(key: str) -> bool:
    return not any(key == prefix or key.startswith(prefix + ".") for prefix in NOT_SETTINGS)


def short_key(key: str) -> str:
    """``decoder.optimizer.lr`` -> ``optimizer.lr``: the key without its config group."""
    return key.split(".", 1)[1] if "." in key else key


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def job_identity(cfg: DictConfig, hydra_config: DictConfig | None, data, decoder_choice: str, output_dir: Path):
    """Name, tags, params and config of the run of a job on ``data`` (a DecodingData)."""
    task = list(hydra_config.overrides.task) if hydra_config is not None else []
    choices = dict(hydra_config.runtime.choices) if hydra_config is not None else {}
    sweep_tags, parent_id = sweep_membership(hydra_config)
    swept = read_sweep_file(hydra_config.sweep.dir)["swept_keys"] if parent_id else None
    name = cfg.tracking.run_name or job_name(cfg, choices, task, swept, data.name, decoder_choice)

    description = f"`{' '.join(['python -m hyperexp.train', *task])}`"  # the command that repeats the job
    if parent_id:
        description += f"\n\nJob {sweep_tags['job']} of the sweep in `{sweep_tags['sweep']}`."
    if cfg.tracking.get("note"):
        description += f"\n\n{cfg.tracking.note}"
    tags = {**data.tags(), **sweep_tags, "seed": str(cfg.trainer.seed), "output_dir": str(output_dir)}
    tags["mlflow.source.git.commit"] = git_commit(Path(__file__).parent)  # MLflow's own tag: the UI shows it
    tags.update({str(key): str(value) for key, value in (cfg.tracking.get("tags") or {}).items()})
    tags[NOTE_TAG] = description
    config = OmegaConf.to_container(cfg, resolve=True)
    return JobIdentity(name, tags, curated_params(config, choices, task), config, parent_id)


def job_name(
    cfg: DictConfig, choices: dict, task: list[str], swept: list[str] | None, data_name: str, decoder_choice: str
) -> str:
    """A job's run name (see the module's docstring); ``swept`` is None outside a sweep."""
    base = {"data": data_name, "decoder": decoder_choice, "trainer.seed": f"s{cfg.trainer.seed}"}
    if swept is None:
        return SEPARATOR.join([*base.values(), *name_extras(cfg, choices, task, swept)])
    varied = [base[key] for key in base if key in swept]
    return SEPARATOR.join(varied + name_extras(cfg, choices, task, swept) + [base[k] for k in base if k not in swept])


def compact_key(key: str, keys: Iterable[str] = ()) -> str:
    """``decoder.optimizer.lr`` -> ``lr``: a key's last part, or without its group where another
    of ``keys`` ends the same."""
    last = key.rsplit(".", 1)[-1]
    clash = any(other != key and other.rsplit(".", 1)[-1] == last for other in keys)
    return short_key(key) if clash else last


def name_extras(cfg: DictConfig, choices: dict, task: list[str], swept: list[str] | None) -> list[str]:
    """The name's parts beyond data, decoder and seed: a sweep job's values of the other swept keys
    (``swept``), or a single run's other settings from the command line."""
    extras, overrides = [], _overrides(task)
    keys = [override.key_or_group for override in overrides]
    for override in overrides:
        key = override.key_or_group
        if key in IN_NAME or not _is_setting(key) or (swept is not None and key not in swept):
            continue
        value = OmegaConf.select(cfg, key, default=override.value())
        if key in choices:
            extras.append(str(choices[key]))
        elif key in SEED_PREFIXES:
            extras.append(f"{SEED_PREFIXES[key]}{_text(value)}")
        else:
            extras.append(f"{compact_key(key, keys)}={_text(value)}")
    return extras


def sweep_run_name(task_overrides: list[str], swept: dict[str, str], started: datetime | None = None) -> str:
    """A sweep's parent run name: its experiment (or ``sweep``), its start time, and each swept key
    with its number of values, e.g. ``paper 07:46:12 data×4·sim×4``."""
    chosen = {o.key_or_group: o.value() for o in _overrides(task_overrides)}
    search = chosen.get("hparams_search")
    experiment = f"{search} search" if search else chosen.get("experiment")
    parts = []
    for key, values in swept.items():
        count = len(values.split(",")) if "(" not in values else None  # a search space: no count
        label = SWEEP_LABELS.get(key) or compact_key(key, swept)
        parts.append(f"{label}×{count}" if count else label)
    when = (started or datetime.now()).strftime("%H:%M:%S")
    return " ".join([str(experiment or "sweep"), when, SEPARATOR.join(parts)]).strip()


def curated_params(config: dict, choices: dict, task: list[str]) -> dict[str, str]:
    """The config choices, the settings that usually differ (the learning rate, epochs and seed; the
    protocol where it is not the published one), and every setting on the command line."""
    flat = flatten(config)
    params = {key: str(choices[key]) for key in CHOICE_PARAMS if choices.get(key) is not None}
    params.update({key: flat[key] for key in KEY_PARAMS if key in flat})
    params.update({key: flat[key] for key in SET_ONLY_PARAMS if flat.get(key) not in (None, "None", "0", "0.0")})
    params.update({key: flat[key] for key, usual in UNLESS_DEFAULT_PARAMS.items() if flat.get(key, usual) != usual})
    for override in _overrides(task):
        key = override.key_or_group
        if _is_setting(key) and key in flat:
            params[key] = flat[key]
    return params
