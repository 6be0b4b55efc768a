"""Rows keyed by subject: what ``Hyperalignment`` accepts, checked once, with errors naming the subject."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from hyperexp.errors import InputError


def subject_label(key: Hashable) -> str:
    return f"subject {key!r}" if isinstance(key, str) else f"subject {key}"


def checked_rows(data, key: Hashable) -> np.ndarray:
    """One subject's rows as a finite, real (m, p) array with p >= 1."""
    label = subject_label(key)
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as error:  # e.g. ragged nested lists
        raise InputError(f"{label}: not an array of numbers ({error})") from error
    if array.ndim != 2:
        raise InputError(f"{label}: expected a 2-D array (samples x voxels), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"{label}: expected real numbers, got dtype {array.dtype}")
    if array.shape[1] == 0:
        raise InputError(f"{label}: has no voxels")
    if not np.isfinite(array).all():
        raise InputError(f"{label}: contains NaN or Inf")
    return array


def keyed_rows(X) -> dict[Hashable, np.ndarray]:
    """A mapping {subject key: (m, p_k) rows}, or a sequence of arrays keyed 0..k-1, checked."""
    if isinstance(X, Mapping):
        items = list(X.items())
    elif isinstance(X, np.ndarray) and X.ndim == 2:
        raise InputError("expected rows keyed by subject ({subject: array} or a list of arrays), got one 2-D array")
    elif isinstance(X, np.ndarray) or (isinstance(X, Sequence) and not isinstance(X, (str, bytes))):
        items = list(enumerate(X))
    else:
        raise InputError(
            f"expected rows keyed by subject ({{subject: array}} or a list of arrays), got {type(X).__name__}"
        )
    return {key: checked_rows(data, key) for key, data in items}


def training_rows(X) -> dict[Hashable, np.ndarray]:
    """``keyed_rows`` for fitting: at least 2 subjects, all with the same n >= 2 varying samples."""
    subjects = keyed_rows(X)
    if len(subjects) < 2:
        raise InputError(f"hyperalignment needs at least 2 subjects, got {len(subjects)}")
    (first_key, first), *_ = subjects.items()
    for key, array in subjects.items():
        if array.shape[0] != first.shape[0]:
            raise InputError(
                f"{subject_label(key)}: {array.shape[0]} samples, but {subject_label(first_key)} has"
                f" {first.shape[0]} (all subjects need the same samples)"
            )
        if array.shape[0] < 2:
            raise InputError(f"{subject_label(key)}: needs at least 2 samples, got {array.shape[0]}")
        if not np.any(array != array[0]):
            raise InputError(f"{subject_label(key)}: all samples are identical, so it cannot be aligned")
    return subjects
