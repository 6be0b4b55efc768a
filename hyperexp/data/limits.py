"""How much memory a data file may make the reader spend, and the error that names a bad data file.

An honest file holds every value it declares, so its arrays (each reference to a shared array
counted once per use, as stacking the trials copies it once per use) cannot exceed its own size by
more than a small factor; ``max_bytes`` caps even honest files. Both are checked from declared
sizes, before anything that large is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hyperexp.errors import InputError

# An honest file stores each value once; 4x leaves room for .npz compression (float data shrinks
# by well under 2x) and for latents that a pickle references again for a repeated stimulus.
FILE_SIZE_FACTOR = 4
DEFAULT_MAX_BYTES = 4 * 2**30
# Python objects a pickle builds besides its arrays' data: FILE_SIZE_FACTOR times the bytes read so
# far, plus this. An honest file's objects (about 1 KB per array) ride on the array's payload.
OBJECT_ALLOWANCE = 16 * 2**20


class DataFileError(InputError):
    """A data file is missing, unsafe, too large or malformed; the message names the file."""


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_size(n_bytes: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    exponent = (max(n_bytes, 1).bit_length() - 1) // 10
    if exponent == 0:
        return f"{n_bytes} B"
    if exponent >= len(_UNITS):  # beyond a float's reach in a message; the exact figure does not matter
        return f"over 1024 {_UNITS[-1]}"
    return f"{n_bytes / 1024**exponent:.1f} {_UNITS[exponent]}"


@dataclass(frozen=True)
class ReadLimit:
    """The budget for reading one file: ``FILE_SIZE_FACTOR`` times its size, and ``max_bytes``."""

    path: Path
    file_bytes: int
    max_bytes: int

    @classmethod
    def for_file(cls, path: Path, max_bytes: int) -> ReadLimit:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise InputError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")
        file_bytes = path.stat().st_size
        if file_bytes > max_bytes:
            raise DataFileError(
                f"{path}: the file is {human_size(file_bytes)}, over the limit of {human_size(max_bytes)} (max_bytes)"
            )
        return cls(path, file_bytes, max_bytes)

    def check_arrays(self, declared: int) -> None:
        """Refuse arrays that declare more than the file can hold or than ``max_bytes``."""
        by_file_size = FILE_SIZE_FACTOR * self.file_bytes
        if by_file_size < self.max_bytes:
            limit, reason = by_file_size, f"{FILE_SIZE_FACTOR}x the file's {human_size(self.file_bytes)}"
        else:
            limit, reason = self.max_bytes, "max_bytes"
        if declared > limit:
            raise DataFileError(
                f"{self.path}: declares {human_size(declared)} of arrays, over the limit of {human_size(limit)} ({reason})"
            )

    def check_objects(self, estimate: int, bytes_read: int) -> None:
        """Refuse a pickle whose first ``bytes_read`` bytes build more Python objects than arrays need."""
        limit = FILE_SIZE_FACTOR * bytes_read + OBJECT_ALLOWANCE
        if estimate > limit:
            raise DataFileError(
                f"{self.path}: its first {human_size(bytes_read)} build about {human_size(estimate)} of Python "
                f"objects, over the limit of {human_size(limit)} ({FILE_SIZE_FACTOR}x the bytes read "
                f"+ {human_size(OBJECT_ALLOWANCE)}); a data file holds arrays, not millions of small objects"
            )

    def check_unpickling(self, estimate: int) -> None:
        """Refuse a pickle whose objects would take more than ``max_bytes`` to build."""
        if estimate > self.max_bytes:
            raise DataFileError(
                f"{self.path}: unpickling would take about {human_size(estimate)}, "
                f"over the limit of {human_size(self.max_bytes)} (max_bytes)"
            )
