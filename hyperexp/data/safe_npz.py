"""Reading an untrusted ``.npz`` archive within a :class:`ReadLimit`, unpickling nothing.

The zip directory declares each member's uncompressed size and each ``.npy`` header the array's
shape and dtype; both are checked before any array is allocated (NumPy allocates the declared
shape first and reads into it, and a deflated member can expand a thousandfold).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence

import numpy as np
from numpy.lib import format as npy

from hyperexp.data.limits import DataFileError, ReadLimit, human_size


def _check_header(member, info: zipfile.ZipInfo, name: str, limit: ReadLimit) -> None:
    """An array may not declare more than its member holds."""
    version = npy.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(member)
    else:  # 3.0 exists only for structured dtypes with non-Latin-1 field names
        raise DataFileError(f"{limit.path}: {name} is a version {version} .npy, expected 1.0 or 2.0")
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size:
        raise DataFileError(
            f"{limit.path}: {name} declares {human_size(declared)} (shape {shape}, {dtype}) "
            f"but holds {human_size(info.file_size)}"
        )


def load_npz(limit: ReadLimit, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the archive at ``limit.path``."""
    try:
        with zipfile.ZipFile(limit.path) as archive:
            members, present = {name: f"{name}.npy" for name in names}, set(archive.namelist())
            missing = [name for name, member in members.items() if member not in present]
            if missing:
                raise DataFileError(f"{limit.path}: missing arrays {missing} (expected {list(names)})")
            infos = {name: archive.getinfo(member) for name, member in members.items()}
            limit.check_arrays(sum(info.file_size for info in infos.values()))
            arrays = {}
            for name, info in infos.items():
                with archive.open(info) as member:
                    _check_header(member, info, name, limit)
                with archive.open(info) as member:
                    arrays[name] = npy.read_array(member, allow_pickle=False)
            return arrays
    except DataFileError:
        raise
    except Exception as error:  # zipfile and numpy raise many exception types on corrupt archives
        raise DataFileError(f"{limit.path}: not a readable .npz archive ({error})") from None
