"""Reading and writing the published per-subject data files, safely.

The published data are one pickle per subject, ``data_k.dat``, holding ``(X_tr, T_tr, X_te,
T_te)``: lists of per-trial 1-D arrays (or 2-D arrays) of voxel responses X and generator
latents T. A pickle can run arbitrary code when loaded, so :func:`load_subject` unpickles with an
allow-list of exactly the globals that NumPy arrays need; anything else is refused. ``.npz``
files with the keys ``x_train, t_train, x_test, t_test`` are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIELDS = ("x_train", "t_train", "x_test", "t_test")

# The globals a pickle of NumPy arrays references, under NumPy 1 and NumPy 2 module paths.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes inside protocol-2 pickles written by Python 3
}


class DataFileError(ValueError):
    """A data file is missing, unsafe or malformed; the message names the file."""


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


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, source: Path):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataFileError(
                f"{self.source}: refused to unpickle global '{module}.{name}' "
                "(only NumPy arrays and plain containers are allowed)"
            )
        return super().find_class(module, name)


def _as_matrix(value, field: str, source: Path) -> np.ndarray:
    """A list of per-trial 1-D arrays or a 2-D array -> a float 2-D array, or a clear error."""
    if isinstance(value, np.ndarray):
        matrix = value
    elif isinstance(value, (list, tuple)):
        if not value:
            raise DataFileError(f"{source}: {field} has no trials")
        lengths = {np.shape(trial) for trial in value}
        if len(lengths) != 1:
            raise DataFileError(f"{source}: {field} is ragged (trial shapes {sorted(lengths)[:3]})")
        matrix = np.stack([np.asarray(trial) for trial in value])
    else:
        raise DataFileError(f"{source}: {field} is a {type(value).__name__}, expected a list of arrays or an array")
    if matrix.ndim != 2:
        raise DataFileError(f"{source}: {field} has shape {matrix.shape}, expected (trials, features)")
    if not np.issubdtype(matrix.dtype, np.floating) and not np.issubdtype(matrix.dtype, np.integer):
        raise DataFileError(f"{source}: {field} has dtype {matrix.dtype}, expected numbers")
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix)).sum())
        raise DataFileError(f"{source}: {field} has {bad} non-finite values (NaN or Inf)")
    return matrix.astype(np.float64 if matrix.dtype == np.float64 else np.float32, copy=False)


def validate_subject(fields: dict, source: Path) -> SubjectData:
    """Check shapes and values of the four arrays of one subject; returns SubjectData."""
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


def load_subject(path: str | os.PathLike, latent_dim: int | None = None) -> SubjectData:
    """Read one subject from a published ``.dat`` pickle or an ``.npz`` file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such data file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [name for name in FIELDS if name not in archive.files]
                if missing:
                    raise DataFileError(f"{path}: missing arrays {missing} (expected {list(FIELDS)})")
                fields = {name: archive[name] for name in FIELDS}
        except DataFileError:
            raise
        except Exception as error:  # zipfile/numpy errors on corrupt archives
            raise DataFileError(f"{path}: not a readable .npz archive ({error})") from None
    else:
        try:
            with path.open("rb") as file:
                content = _AllowListUnpickler(io.BufferedReader(file), path).load()
        except DataFileError:
            raise
        except Exception as error:  # truncated or garbled pickles raise many exception types
            raise DataFileError(f"{path}: not a readable data pickle ({type(error).__name__}: {error})") from None
        if not isinstance(content, (tuple, list)) or len(content) != 4:
            length = len(content) if isinstance(content, (tuple, list)) else type(content).__name__
            raise DataFileError(f"{path}: expected a tuple (X_tr, T_tr, X_te, T_te), got {length}")
        fields = dict(zip(FIELDS, content))
    subject = validate_subject(fields, path)
    if latent_dim is not None and subject.latent_dim != latent_dim:
        raise DataFileError(f"{path}: latents are {subject.latent_dim}-d, the generator expects {latent_dim}-d")
    return subject


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(payload)
    os.replace(tmp.name, path)


def save_subject_dat(path: str | os.PathLike, subject: SubjectData) -> None:
    """Write the published format: a pickle of (X_tr, T_tr, X_te, T_te) as lists of 1-D arrays."""
    content = tuple(list(getattr(subject, name)) for name in FIELDS)
    _write_atomically(Path(path), pickle.dumps(content, protocol=4))


def save_subject_npz(path: str | os.PathLike, subject: SubjectData) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(subject, name) for name in FIELDS})
    _write_atomically(Path(path), buffer.getvalue())


def subject_file(root: str | os.PathLike, subject: int) -> Path:
    """``root/data_k.npz`` if present, else ``root/data_k.dat`` (the published name)."""
    root = Path(root)
    npz = root / f"data_{subject}.npz"
    return npz if npz.is_file() else root / f"data_{subject}.dat"
