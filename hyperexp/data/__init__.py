"""Data stage: read or simulate per-subject files, then combine them into one decoding dataset.

:func:`build` is the stage (``conf/data/*.yaml`` names it in ``_target_``): choose the pool of
subjects, read their files (or the simulated experiment's), and combine them by variant
(subject / average / hyperaligned) and protocol (:mod:`hyperexp.data.variants`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hyperexp.data.files import DEFAULT_MAX_BYTES, DataFileError, SubjectData, load_subject, subject_file
from hyperexp.data.simulate import Simulation, ensure_simulated_files
from hyperexp.data.variants import (
    DecodingData,
    check_same_stimuli,
    check_validation_trials,
    hold_out_validation,
    prepare,
)
from hyperexp.errors import InputError

__all__ = [
    "DataFileError",
    "DataShape",
    "DecodingData",
    "SubjectData",
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
    root: str | None = None,
    cache_dir: str = "data",
    max_bytes: int = DEFAULT_MAX_BYTES,
    simulation: Simulation | dict | None = None,
    validation_trials: int = 0,
    device=None,
) -> DecodingData:
    """The decoding dataset of one pool of subjects, combined by ``variant`` under ``protocol``, with
    the last ``validation_trials`` training trials held out for validation."""
    numbers = select_subjects(subjects, n_subjects)
    if isinstance(simulation, dict):
        simulation = Simulation(**simulation)
    subject_data, paths = load_subjects(numbers, source, root, simulation, cache_dir, max_bytes)
    data = prepare(
        subject_data,
        variant,
        protocol,
        names=[str(path) for path in paths],
        numbers=numbers,
        device=device,
        cache_dir=Path(cache_dir) / "aligned",
    )
    return hold_out_validation(data, validation_trials)


def planned_shape(
    subjects: Sequence[int] = (1,),
    n_subjects: int | None = None,
    source: str = "simulated",
    root: str | None = None,
    simulation: Simulation | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    validation_trials: int = 0,
    **unused,
) -> DataShape:
    """The shape :func:`build` will give (it takes the same settings), found without writing
    anything: from the settings for the simulated experiment; for files by reading them (and
    checking that the subjects saw the same stimuli), which ``build`` then does again."""
    numbers = select_subjects(subjects, n_subjects)
    if source == "simulated":
        simulation = simulation or Simulation()
        check_simulated_pool(numbers, simulation)
        n_train, n_test, latent_dim = simulation.n_train, simulation.n_test, simulation.latent_dim
    else:
        subject_data, paths = load_subjects(numbers, source, root, max_bytes=max_bytes)
        check_same_stimuli(subject_data, [str(path) for path in paths])
        first = subject_data[0]
        n_train, n_test, latent_dim = len(first.x_train), len(first.x_test), first.latent_dim
    check_validation_trials(validation_trials, n_train)
    return DataShape(n_train - validation_trials, n_test, latent_dim)


def check_simulated_pool(subjects: list[int], simulation: Simulation) -> None:
    if max(subjects) > simulation.n_subjects:
        raise InputError(
            f"data.subjects: subject {max(subjects)} is not in the simulated experiment of "
            f"{simulation.n_subjects} subjects (simulate more with data.simulation.n_subjects={max(subjects)})"
        )


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
    if source == "simulated":
        simulation = simulation or Simulation()
        check_simulated_pool(subjects, simulation)
        folder = ensure_simulated_files(simulation, cache_dir)
    elif source == "files":
        if root is None:
            raise InputError("data.root: data.source=files needs data.root=/folder/with/data_k.dat")
        folder = Path(root)
        if not folder.is_dir():
            raise DataFileError(f"{folder}: data folder does not exist")
    else:
        raise InputError(f"data.source: must be simulated or files, got {source!r}")
    paths = [subject_file(folder, k) for k in subjects]
    return [load_subject(path, max_bytes=max_bytes) for path in paths], paths
