"""A content-addressed cache of arrays, safe when parallel jobs ask for the same entry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from filelock import FileLock

from hyperexp.atomic import atomic_path


def content_key(arrays: list[np.ndarray], **params) -> str:
    """A hash of the arrays' bytes, shapes and dtypes, and of the parameters."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.data)
    return digest.hexdigest()[:24]


def cached_arrays(folder: str | Path, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load ``folder/key.npz``, or compute it once (the first job computes, the others wait on a
    file lock and then load) and write it atomically."""
    folder = Path(folder)
    path = folder / f"{key}.npz"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        arrays = compute()
        with atomic_path(path) as temporary, temporary.open("wb") as file:
            np.savez(file, **arrays)
        return arrays
