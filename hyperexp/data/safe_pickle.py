"""Unpickling an untrusted data pickle: NumPy arrays of numbers in lists and tuples, nothing else,
and nothing that makes a small file take much memory.

A pickle is a program, and several of its instructions make a few bytes cost a lot:

- a memo slot number: the unpickler sizes its memo table by it (9 bytes can ask for 3 GB);
- NumPy's ``_reconstruct(ndarray, shape, dtype)`` allocates whatever shape it is given, data or not;
- one-byte instructions that each build an object (an empty list per two bytes is 40x the file,
  a tuple around the last object per byte 64x);
- references to one memoised array are almost free, but stacking trials copies each of them.

So a scan of the instructions (:mod:`pickletools`) first refuses any that pickles of arrays never
use and any memo slot out of order, and estimates what the objects will take. That estimate is
bounded by the bytes scanned so far (:meth:`ReadLimit.check_objects`): arrays of numbers are mostly
payload, so a file of millions of small objects is refused after its first few megabytes, in a
fraction of a second, whatever its size. The unpickler then
knows only the globals that arrays need, and checks each array's shape, dtype and data before
NumPy allocates it. The last trick is the caller's to check, with :meth:`ReadLimit.check_arrays`
on the trials as they will be stacked.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import reprlib

import numpy as np

from hyperexp.data.limits import FILE_SIZE_FACTOR, OBJECT_ALLOWANCE, DataFileError, ReadLimit, human_size

# What Python writes for tuples and lists of NumPy arrays under protocols 2 to 5 (and floats,
# which are no valid trial, but validation says so more clearly than "BINFLOAT is refused").
_OPCODES = frozenset(
    "PROTO FRAME STOP MARK EMPTY_LIST APPEND APPENDS EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 "
    "NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 BINFLOAT "
    "BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 "
    "GLOBAL STACK_GLOBAL REDUCE BUILD MEMOIZE BINPUT LONG_BINPUT BINGET LONG_BINGET".split()
)
_OBJECT_BYTES = 64  # at most what CPython spends on a reference or a small object one instruction makes
# Instructions that make a container or call a function: what CPython spends on the largest of them
# (an empty list 72 B with its stack slot, a 3-tuple 80 B, an ndarray with its dtype well under 256 B).
_BUILDING_BYTES = {"EMPTY_LIST": 128, "TUPLE": 128, "TUPLE1": 128, "TUPLE2": 128, "TUPLE3": 128, "REDUCE": 256}
_PAYLOAD_COPIES = 3  # protocol 2 holds an array's data as a str, the bytes made from it, the array


class _Refused(Exception):
    """A check failed; :func:`load_pickle` prefixes the file's name."""


def _scan(data: bytes, limit: ReadLimit) -> None:
    memo_entries = objects = payload = 0
    for opcode, arg, position in pickletools.genops(data):
        if opcode.name not in _OPCODES:
            raise _Refused(
                f"uses the pickle instruction {opcode.name} (byte {position}), which pickles of arrays never need"
            )
        if opcode.name in ("BINPUT", "LONG_BINPUT"):
            if arg > memo_entries:  # picklers number memo slots in order; a far one sizes the memo table
                raise _Refused(f"memo slot {arg} (byte {position}) skips past the {memo_entries} written so far")
            memo_entries += 1
        memo_entries += opcode.name == "MEMOIZE"
        objects += _BUILDING_BYTES.get(opcode.name, _OBJECT_BYTES)
        if objects > FILE_SIZE_FACTOR * position + OBJECT_ALLOWANCE:  # as it goes: a bomb stops the scan early
            limit.check_objects(objects, position)
        if isinstance(arg, (str, bytes, bytearray)):
            payload += _PAYLOAD_COPIES * len(arg)
    limit.check_unpickling(objects + payload)


def _number_dtype(dtype) -> np.dtype:
    """A fresh dtype of numbers, rebuilt from its type string: a pickle's BUILD can set flags on a
    dtype (even mark float64 as holding objects), and nothing it set survives the rebuild."""
    if isinstance(dtype, (str, bytes)):
        dtype = np.dtype(dtype)
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"refused an array whose dtype is a {type(dtype).__name__}")
    plain = np.dtype(dtype.str)
    if plain.kind not in "biufc":
        raise _Refused(f"refused an array of dtype {reprlib.repr(str(dtype))} (only numbers are allowed)")
    return plain


def _declared_bytes(shape, dtype: np.dtype) -> int:
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise _Refused(f"an array's shape {reprlib.repr(shape)} is not a tuple of sizes")
    return math.prod(shape) * dtype.itemsize


def _check_data(shape, dtype: np.dtype, data) -> None:
    declared = _declared_bytes(shape, dtype)
    held = len(data) if isinstance(data, (bytes, bytearray)) else None
    if held != declared:
        raise _Refused(
            f"an array of shape {reprlib.repr(shape)} and dtype {dtype} declares {human_size(declared)} "
            f"but holds {'no bytes' if held is None else human_size(held)}"
        )


class _CheckedArray(np.ndarray):
    """The class that unpickled arrays are built as, so their state is checked before NumPy's
    ``__setstate__`` sizes them; :func:`load_pickle` hands out plain ndarray views."""

    __slots__ = ()

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("an array's pickled state is not NumPy's")
        *version, shape, dtype, fortran_order, data = state
        dtype = _number_dtype(dtype)
        _check_data(shape, dtype, data)
        super().__setstate__((*version, shape, dtype, bool(fortran_order), data))


class _NdarrayName:
    """Stands for numpy.ndarray, the first argument of _reconstruct; calling it would allocate any
    shape the pickle names, so that is refused."""

    def __call__(self, *args, **kwargs):
        raise _Refused("refused to call numpy.ndarray (arrays come only from NumPy's _reconstruct)")


_NDARRAY = _NdarrayName()


def _frombuffer(buffer, dtype, shape, order):
    """Protocol 5's form of an array (Python 3.14's default), its data in-band as a bytearray."""
    dtype = _number_dtype(dtype)
    _check_data(shape, dtype, buffer)
    if order not in ("C", "F"):
        raise _Refused(f"an array's memory order {reprlib.repr(order)} is not C or F")
    return np.frombuffer(buffer, dtype).reshape(shape, order=order)


def _dtype(spec, align=False, copy=True):
    """numpy.dtype, always a copy, so a pickle's BUILD sets the state of the copy, never NumPy's own."""
    if not isinstance(spec, str):
        raise _Refused(f"refused a dtype made from a {type(spec).__name__}")
    return np.dtype(spec, bool(align), True)


def _latin1_bytes(text, encoding):
    """Protocol 2's form of bytes: ``_codecs.encode(str, 'latin1')``, which keeps the size."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused(f"refused _codecs.encode with encoding {reprlib.repr(encoding)} (only latin1 is allowed)")
    return text.encode("latin1")


_NUMPY_CORE = ("numpy.core", "numpy._core")  # NumPy 1 and NumPy 2 module paths
_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in _NUMPY_CORE},
}
_RECONSTRUCT = {(f"{core}.multiarray", "_reconstruct") for core in _NUMPY_CORE}


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, limit: ReadLimit):
        super().__init__(io.BytesIO(data))
        self.limit = limit
        self.allocated = 0

    def find_class(self, module: str, name: str):
        if (module, name) in _RECONSTRUCT:
            return self._reconstruct
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        raise _Refused(f"refused to unpickle global '{module}.{name}' (only NumPy arrays of numbers are allowed)")

    def _reconstruct(self, array_type, shape, dtype):
        """NumPy starts each array empty and sets its data in BUILD; a shape given here would be
        memory the file never held, so it counts against the limit."""
        if array_type is not _NDARRAY:
            raise _Refused("refused _reconstruct of anything but numpy.ndarray")
        dtype = _number_dtype(dtype)
        self.allocated += _declared_bytes(shape, dtype)
        self.limit.check_arrays(self.allocated)
        return np.zeros(shape, dtype).view(_CheckedArray)


def _plain(value, depth: int = 2):
    """Plain ndarray views in the tuple of fields and their lists of trials (arrays nested deeper
    are no valid data file, and validation refuses them)."""
    if isinstance(value, np.ndarray):
        return value.view(np.ndarray)
    if depth and isinstance(value, (list, tuple)):
        return type(value)(_plain(item, depth - 1) for item in value)
    return value


def load_pickle(limit: ReadLimit):
    """What the pickle at ``limit.path`` holds, if it is only NumPy arrays of numbers in lists and
    tuples, and fits the limit."""
    try:
        data = limit.path.read_bytes()
        _scan(data, limit)
        content = _ArrayUnpickler(data, limit).load()
    except _Refused as refused:
        raise DataFileError(f"{limit.path}: {refused}") from None
    except DataFileError:
        raise
    except Exception as error:  # truncated or garbled pickles raise many exception types
        raise DataFileError(f"{limit.path}: not a readable data pickle ({type(error).__name__}: {error})") from None
    return _plain(content)
