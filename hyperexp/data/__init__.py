"""Data stage: read or simulate per-subject files, then combine them into one decoding dataset.

``load_subjects`` gives the subjects' raw trials; :func:`hyperexp.data.variants.prepare` turns
them into decoder inputs by data variant (subject / average / hyperaligned) and protocol.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hyperexp.data.files import DataFileError, SubjectData, load_subject, subject_file
from hyperexp.data.simulate import Simulation, ensure_simulated_files
from hyperexp.data.variants import DecodingData, prepare

__all__ = ["DataFileError", "DecodingData", "SubjectData", "Simulation", "load_subjects", "prepare", "select_subjects"]


def select_subjects(subjects: list[int] | None, n_subjects: int | None) -> list[int]:
    """Subject numbers from an explicit list, or 1..n_subjects for a pool of size n."""
    if n_subjects is not None:
        if n_subjects < 1:
            raise ValueError(f"data.n_subjects must be >= 1, got {n_subjects}")
        return list(range(1, n_subjects + 1))
    if not subjects:
        raise ValueError("data.subjects is empty: name at least one subject")
    if any(int(k) < 1 for k in subjects) or len(set(subjects)) != len(subjects):
        raise ValueError(f"data.subjects must be distinct positive numbers, got {list(subjects)}")
    return [int(k) for k in subjects]


def load_subjects(
    subjects: list[int],
    source: str,
    root: str | None = None,
    simulation: Simulation | None = None,
    cache_dir: str | Path = "data",
    latent_dim: int | None = None,
) -> tuple[list[SubjectData], list[Path]]:
    """Read ``data_k`` for each subject k from ``root`` (``source=files``) or from the simulated
    experiment's files, generated once into ``cache_dir`` (``source=simulated``)."""
    if source == "simulated":
        simulation = simulation or Simulation()
        if max(subjects) > simulation.n_subjects:
            simulation = replace(simulation, n_subjects=max(subjects))
        folder = ensure_simulated_files(simulation, cache_dir)
    elif source == "files":
        if root is None:
            raise ValueError("data.source=files needs data.root=/folder/with/data_k.dat")
        folder = Path(root)
        if not folder.is_dir():
            raise DataFileError(f"{folder}: data folder does not exist")
    else:
        raise ValueError(f"unknown data.source '{source}' (choose simulated or files)")
    paths = [subject_file(folder, k) for k in subjects]
    return [load_subject(path, latent_dim) for path in paths], paths
