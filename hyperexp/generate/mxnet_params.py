"""Read MXNet's NDArray-list files (``.params``) without importing MXNet.

Layout (all little-endian, no padding), as written by Gluon ``save_parameters`` and
``mx.nd.save``:

- header: ``u64 0x112``, ``u64 0`` (reserved), ``u64 N``;
- N arrays: ``u32 0xF993FAC9``, ``i32 storage_type`` (0 = dense), ``u32 ndim``,
  ``i64 dims[ndim]``, ``i32 dev_type``, ``i32 dev_id``, ``i32 type_flag``, raw C-order data;
- names: ``u64 N``, then N times ``u64 length`` + UTF-8 bytes.

Names are returned verbatim: structural (``8.0.weight``) or prefixed
(``generator0_block0_conv0_weight``); mapping them to modules is the model's job.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from hyperexp.errors import InputError

LIST_MAGIC = 0x112
NDARRAY_V2_MAGIC = 0xF993FAC9
DENSE_STORAGE = 0
# MXNet's own sanity bound on rank; a larger ndim means a corrupt file.
MAX_NDIM = 32

# MXNet type_flag -> little-endian numpy dtype.
TYPE_FLAGS: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
}
_STORAGE_NAMES = {1: "row_sparse", 2: "csr"}


class ParamsFileError(InputError):
    """A ``.params`` file is malformed or unsupported; the message names the file."""


class _Cursor:
    """Bounds-checked sequential reader over the file bytes."""

    def __init__(self, data: bytes | bytearray | memoryview, source: str) -> None:
        self.data = memoryview(data)
        self.source = source
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def fail(self, problem: str) -> ParamsFileError:
        return ParamsFileError(f"{self.source}: {problem}")

    def take(self, size: int, what: str) -> memoryview:
        if size > self.remaining:
            raise self.fail(
                f"truncated file: {what} needs {size} bytes at offset {self.offset}, only {self.remaining} left"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def u64(self, what: str) -> int:
        return self.unpack("<Q", what)[0]


def _read_array(cursor: _Cursor, index: int) -> np.ndarray:
    where = f"array {index}"
    magic, storage = cursor.unpack("<Ii", f"{where} header")
    if magic != NDARRAY_V2_MAGIC:
        raise cursor.fail(
            f"{where}: unsupported NDArray magic 0x{magic:08X} "
            f"(expected 0x{NDARRAY_V2_MAGIC:08X}, the NDArray V2 layout)"
        )
    if storage != DENSE_STORAGE:
        kind = _STORAGE_NAMES.get(storage, f"storage type {storage}")
        raise cursor.fail(f"{where}: {kind} storage is not supported (dense only)")
    (ndim,) = cursor.unpack("<I", f"{where} ndim")
    if ndim == 0 or ndim > MAX_NDIM:
        raise cursor.fail(f"{where}: unsupported ndim {ndim} (expected 1..{MAX_NDIM})")
    shape = cursor.unpack(f"<{ndim}q", f"{where} shape")
    if any(dim < 0 for dim in shape):
        raise cursor.fail(f"{where}: negative dimension in shape {shape}")
    _dev_type, _dev_id, type_flag = cursor.unpack("<iii", f"{where} context/dtype")
    dtype = TYPE_FLAGS.get(type_flag)
    if dtype is None:
        raise cursor.fail(f"{where}: unknown dtype flag {type_flag} (known: {sorted(TYPE_FLAGS)})")
    # Python ints do not overflow, so a corrupt dim yields a huge count that fails here
    # instead of allocating.
    count = math.prod(shape)
    raw = cursor.take(count * dtype.itemsize, f"{where} data of shape {shape} {dtype.name}")
    return np.frombuffer(raw, dtype=dtype, count=count).astype(dtype.newbyteorder("=")).reshape(shape)


def _read_name(cursor: _Cursor, index: int) -> str:
    length = cursor.u64(f"name {index} length")
    raw = cursor.take(length, f"name {index}")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        raise cursor.fail(f"name {index} is not valid UTF-8 ({err.reason})") from None


def parse_params(data: bytes | bytearray | memoryview, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse the bytes of an NDArray-list file into ``{name: array}`` in file order."""
    cursor = _Cursor(data, source)
    magic, _reserved = cursor.unpack("<QQ", "file header")
    if magic != LIST_MAGIC:
        raise cursor.fail(f"wrong magic 0x{magic:X} (expected 0x{LIST_MAGIC:X}); not an MXNet .params file")
    count = cursor.u64("array count")
    # Each array needs at least 32 header bytes; reject absurd counts before looping.
    if count * 32 > cursor.remaining:
        raise cursor.fail(f"truncated file or corrupt array count {count}")
    arrays = [_read_array(cursor, index) for index in range(count)]
    name_count = cursor.u64("name count")
    if name_count != count:
        raise cursor.fail(f"name count mismatch: {count} arrays but {name_count} names")
    names = [_read_name(cursor, index) for index in range(name_count)]
    if cursor.remaining:
        raise cursor.fail(f"{cursor.remaining} unexpected trailing bytes after the names")
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise cursor.fail(f"duplicate key {duplicate!r}")
    return dict(zip(names, arrays))


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load an MXNet ``.params`` file into an ordered ``{name: numpy array}``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ParamsFileError(f"{path}: cannot read ({err.strerror or err})") from None
    return parse_params(data, str(path))
