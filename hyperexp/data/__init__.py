"""Data stage: per-subject trials from a source, combined into one decoding dataset.

:func:`build` is the stage (``conf/data/*.yaml`` names it in ``_target_``): choose the pool of
subjects, get their trials from ``data.source`` (the simulated experiment, files, a BIDS dataset:
:mod:`hyperexp.data.sources`), and combine them by variant
(subject / average / hyperaligned) and protocol (:mod:`hyperexp.data.variants`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hyperexp.data.files import DEFAULT_MAX_BYTES, DataFileError, SubjectData
from hyperexp.data.simulate import Simulation
from hyperexp.data.sources import SOURCES, open_source
from hyperexp.data.variants import DecodingData, check_validation_trials, hold_out_validation, prepare
from hyperexp.errors import InputError

__all__ = [
    "DataFileError",
    "DataShape",
    "DecodingData",
    "SubjectData",
    "SOURCES",
    "Simulation",
    "build",
    "load_subjects",
    "planned_shape",
    "select_subjects",
]


@dataclass(frozen=True)
class DataShape:
    """What the other stages need to know of the data: trial counts and latent size."""

    n_train: int
    n_test: int
    latent_dim: int


def build(
    variant: str,
    protocol: str = "published",
    subjects: Sequence[int] = (1,),
    n_subjects: int | None = None,
    source: str = "simulated",
    cache_dir: str = "data",
    validation_trials: int = 0,
    device=None,
    _target_: str | None = None,
    **source_settings,
) -> DecodingData:
    """The decoding dataset of one pool of subjects, combined by ``variant`` under ``protocol``, with
    the last ``validation_trials`` training trials held out for validation. ``source`` and the
    ``source_settings`` (``root``, ``simulation``, ``glm``, ...) choose where the trials come from
    (:mod:`hyperexp.data.sources`); what the source reports (e.g. the GLM's time) joins the tags."""
    numbers = select_subjects(subjects, n_subjects)
    subject_data, paths, source_tags = open_source(source, cache_dir=cache_dir, **source_settings).load(numbers)
    data = prepare(
        subject_data,
        variant,
        protocol,
        names=[str(path) for path in paths],
        numbers=numbers,
        device=device,
        cache_dir=Path(cache_dir) / "aligned",
    )
    return replace(hold_out_validation(data, validation_trials), source_tags=source_tags)


def planned_shape(
    subjects: Sequence[int] = (1,),
    n_subjects: int | None = None,
    source: str = "simulated",
    validation_trials: int = 0,
    variant: str | None = None,
    protocol: str | None = None,
    _target_: str | None = None,
    **source_settings,
) -> DataShape:
    """The shape :func:`build` will give (it takes the same settings), found without writing
    anything: from the settings for the simulated experiment; for files by reading them (and
    checking that the subjects saw the same stimuli), which ``build`` then does again; for a BIDS
    dataset from its events and headers, checking every file."""
    numbers = select_subjects(subjects, n_subjects)
    n_train, n_test, latent_dim = open_source(source, **source_settings).shape(numbers)
    check_validation_trials(validation_trials, n_train)
    return DataShape(n_train - validation_trials, n_test, latent_dim)


def select_subjects(subjects: Sequence[int] | None, n_subjects: int | None) -> list[int]:
    """Subject numbers from an explicit list, or 1..n_subjects for a pool of size n."""
    if n_subjects is not None:
        if n_subjects < 1:
            raise InputError(f"data.n_subjects: must be >= 1, got {n_subjects}")
        return list(range(1, n_subjects + 1))
    if not subjects:
        raise InputError("data.subjects: empty; name at least one subject")
    if any(int(k) < 1 for k in subjects) or len(set(subjects)) != len(subjects):
        raise InputError(f"data.subjects: must be distinct positive numbers, got {list(subjects)}")
    return [int(k) for k in subjects]


def load_subjects(
    subjects: list[int],
    source: str,
    root: str | None = None,
    simulation: Simulation | None = None,
    cache_dir: str | Path = "data",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[list[SubjectData], list[Path]]:
    """Read ``data_k`` for each subject k from ``root`` (``source=files``) or from the simulated
    experiment's files, generated once into ``cache_dir`` (``source=simulated``)."""
    settings = dict(root=root, simulation=simulation, cache_dir=cache_dir, max_bytes=max_bytes)
    subject_data, paths, _ = open_source(source, **settings).load(subjects)
    return subject_data, paths
