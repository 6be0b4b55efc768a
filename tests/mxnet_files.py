"""MXNet ``.params`` files for tests: the fixture generator, and a writer for hand-made ones.

The writer is the inverse of :mod:`hyperexp.generate.mxnet_params`, byte for byte what MXNet
1.9.1 writes (tests/test_mxnet_params.py checks that against MXNet's own files).
"""

from __future__ import annotations

import lzma
import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyperexp.generate.mxnet_params import DENSE_STORAGE, LIST_MAGIC, NDARRAY_V2_MAGIC, TYPE_FLAGS

GENERATOR_FIXTURES = Path(__file__).parent / "fixtures" / "mxnet" / "generator"
CPU_DEVICE = 1
FLAG_OF_DTYPE = {dtype.newbyteorder("="): flag for flag, dtype in TYPE_FLAGS.items()}


def _encode_array(name: str, array: np.ndarray) -> bytes:
    array = np.asarray(array)
    flag = FLAG_OF_DTYPE.get(array.dtype.newbyteorder("="))
    if flag is None:
        raise ValueError(f"{name}: dtype {array.dtype} has no MXNet type flag")
    if array.ndim == 0:
        raise ValueError(f"{name}: scalars cannot be stored; use shape (1,)")
    header = struct.pack(
        f"<IiI{array.ndim}qiii", NDARRAY_V2_MAGIC, DENSE_STORAGE, array.ndim, *array.shape, CPU_DEVICE, 0, flag
    )
    return header + np.ascontiguousarray(array, dtype=TYPE_FLAGS[flag]).tobytes()


def encode_params(params: Mapping[str, np.ndarray]) -> bytes:
    """Serialize ``{name: array}`` in MXNet's NDArray-list format (dense, cpu)."""
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(params))]
    parts += [_encode_array(name, array) for name, array in params.items()]
    parts.append(struct.pack("<Q", len(params)))
    for name in params:
        encoded = name.encode("utf-8")
        parts.append(struct.pack("<Q", len(encoded)) + encoded)
    return b"".join(parts)


def save_params(path: str | os.PathLike, params: Mapping[str, np.ndarray]) -> None:
    """Write ``params`` as an MXNet ``.params`` file."""
    Path(path).write_bytes(encode_params(params))


def unpack_fixture_generator(folder: Path) -> Path:
    """The fixture PGGAN weights (deterministic, not trained; saved by MXNet 1.9.1) as ``folder/generator.params``."""
    path = folder / "generator.params"
    with lzma.open(GENERATOR_FIXTURES / "generator.params.xz") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    return path
