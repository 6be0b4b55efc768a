"""Reading and writing the published per-subject data files, safely.

The published data are one pickle per subject, ``data_k.dat``, holding ``(X_tr, T_tr, X_te,
T_te)``: lists of per-trial 1-D arrays (or 2-D arrays) of voxel responses X and generator
latents T. A pickle can run arbitrary code and a small file can declare huge arrays, so
:func:`load_subject` reads pickles with :mod:`hyperexp.data.safe_pickle` (NumPy arrays of numbers
only) and ``.npz`` files with the keys ``x_train, t_train, x_test, t_test`` with
:mod:`hyperexp.data.safe_npz`; both stay within a :class:`ReadLimit` (``max_bytes``).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyperexp.atomic import atomic_path
from hyperexp.data.limits import DEFAULT_MAX_BYTES, DataFileError, ReadLimit
from hyperexp.data.safe_npz import load_npz
from hyperexp.data.safe_pickle import load_pickle

FIELDS = ("x_train", "t_train", "x_test", "t_test")


@dataclass(frozen=True)
class SubjectData:
    """One subject's trials: voxel responses x (trials, voxels) and latents t (trials, latent_dim)."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray

    @property
    def n_voxels(self) -> int:
        return self.x_train.shape[1]

    @property
    def latent_dim(self) -> int:
        return self.t_train.shape[1]


def _check_trials(value, field: str, source: Path) -> None:
    """A 2-D array, or a non-empty list of arrays; nothing nested (a list of lists sharing memoised
    sublists can stand for billions of numbers in a few bytes)."""
    if isinstance(value, np.ndarray):
        return
    if not isinstance(value, (list, tuple)):
        raise DataFileError(f"{source}: {field} is a {type(value).__name__}, expected a list of arrays or an array")
    if not value:
        raise DataFileError(f"{source}: {field} has no trials")
    for index, trial in enumerate(value):
        if not isinstance(trial, np.ndarray):
            raise DataFileError(f"{source}: {field} trial {index} is a {type(trial).__name__}, expected an array")


def _stacked_bytes(value) -> int:
    """Bytes once the trials are stacked: every reference to a shared array is a copy then."""
    return value.nbytes if isinstance(value, np.ndarray) else sum(trial.nbytes for trial in value)


def _as_matrix(value, field: str, source: Path) -> np.ndarray:
    """A list of per-trial 1-D arrays or a 2-D array -> a float 2-D array, or a clear error."""
    if isinstance(value, np.ndarray):
        matrix = value
    else:
        shapes = {trial.shape for trial in value}
        if len(shapes) != 1:
            raise DataFileError(f"{source}: {field} is ragged (trial shapes {sorted(shapes)[:3]})")
        matrix = np.stack(value)
    if matrix.ndim != 2:
        raise DataFileError(f"{source}: {field} has shape {matrix.shape}, expected (trials, features)")
    if not np.issubdtype(matrix.dtype, np.floating) and not np.issubdtype(matrix.dtype, np.integer):
        raise DataFileError(f"{source}: {field} has dtype {matrix.dtype}, expected numbers")
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix)).sum())
        raise DataFileError(f"{source}: {field} has {bad} non-finite values (NaN or Inf)")
    # Only a split whose trials are all identical is refused: it has nothing to learn or test.
    # Some repeats are legitimate: a face shown again has the same latents (a pickle may even
    # reference one array twice), and preprocessing can make a few responses equal.
    if len(matrix) > 1 and np.array_equal(matrix.min(axis=0), matrix.max(axis=0)):
        raise DataFileError(f"{source}: {field}: all {len(matrix)} trials are identical")
    return matrix.astype(np.float64 if matrix.dtype == np.float64 else np.float32, copy=False)


def validate_subject(fields: dict, source: Path, limit: ReadLimit | None = None) -> SubjectData:
    """Check shapes and values of the four arrays of one subject; returns SubjectData. With a
    ``limit``, the trials' stacked size is checked against it before anything is stacked."""
    for name in FIELDS:
        _check_trials(fields[name], name, source)
    if limit is not None:
        limit.check_arrays(sum(_stacked_bytes(fields[name]) for name in FIELDS))
    arrays = {name: _as_matrix(fields[name], name, source) for name in FIELDS}
    x_train, t_train, x_test, t_test = (arrays[name] for name in FIELDS)
    if len(x_train) != len(t_train):
        raise DataFileError(f"{source}: {len(x_train)} training responses but {len(t_train)} training latents")
    if len(x_test) != len(t_test):
        raise DataFileError(f"{source}: {len(x_test)} test responses but {len(t_test)} test latents")
    if x_train.shape[1] != x_test.shape[1]:
        raise DataFileError(f"{source}: training trials have {x_train.shape[1]} voxels, test trials {x_test.shape[1]}")
    if t_train.shape[1] != t_test.shape[1]:
        raise DataFileError(f"{source}: training latents are {t_train.shape[1]}-d, test latents {t_test.shape[1]}-d")
    return SubjectData(x_train, t_train, x_test, t_test)


def load_subject(
    path: str | os.PathLike, latent_dim: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> SubjectData:
    """Read one subject from a published ``.dat`` pickle or an ``.npz`` file and validate it,
    refusing a file whose arrays declare more than ``max_bytes`` or than the file can hold."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such data file")
    limit = ReadLimit.for_file(path, max_bytes)
    if path.suffix == ".npz":
        fields = load_npz(limit, FIELDS)
    else:
        content = load_pickle(limit)
        if not isinstance(content, (tuple, list)) or len(content) != 4:
            length = len(content) if isinstance(content, (tuple, list)) else type(content).__name__
            raise DataFileError(f"{path}: expected a tuple (X_tr, T_tr, X_te, T_te), got {length}")
        fields = dict(zip(FIELDS, content))
    subject = validate_subject(fields, path, limit)
    if latent_dim is not None and subject.latent_dim != latent_dim:
        raise DataFileError(f"{path}: latents are {subject.latent_dim}-d, the generator expects {latent_dim}-d")
    return subject


def save_subject_dat(path: str | os.PathLike, subject: SubjectData) -> None:
    """Write the published format: a pickle of (X_tr, T_tr, X_te, T_te) as lists of 1-D arrays."""
    content = tuple(list(getattr(subject, name)) for name in FIELDS)
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        pickle.dump(content, file, protocol=4)


def save_subject_npz(path: str | os.PathLike, subject: SubjectData) -> None:
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        np.savez(file, **{name: getattr(subject, name) for name in FIELDS})


def subject_file(root: str | os.PathLike, subject: int) -> Path:
    """``root/data_k.npz`` if present, else ``root/data_k.dat`` (the published name)."""
    root = Path(root)
    npz = root / f"data_{subject}.npz"
    return npz if npz.is_file() else root / f"data_{subject}.dat"
