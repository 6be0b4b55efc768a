"""``Hyperalignment``: PyMVPA 2.6.5 ``Hyperalignment()`` with all defaults, as a scikit-learn estimator.

The procedure (subjects are samples x voxels with equal sample counts ``n``; each Procrustes fit as
in ``hyperexp.align.rowspace``):

- z-scoring is per feature with ddof 0; a feature with zero spread is only demeaned (here: a spread
  at most 1e-10 of the largest, see ``zscore_features``).
- Reference = the subject with the most voxels (the first on a tie).
- Level 1: ``common = zscore(X_ref)``; for every other subject in order, ``z_i = zscore(fit X_i ->
  common)``, ``common = zscore((z_i + common) / 2)``. Level 2 starts from ``[X_ref as given, z_i]``.
- Level 2 (one pass): ``common = mean(list)``; for each subject ``i``, ``target = zscore((N common -
  list_i) / (N - 1))``, ``mapped_i = zscore(fit X_i -> target)``; then ``common = zscore(mean of
  mapped)``. (With two subjects, the non-reference subject's target is its level-1 target.)
- Level 3: a fresh Procrustes fit of every ``X_i`` onto that common space gives the maps.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from hyperexp.align.rowspace import (
    SubjectMap,
    TargetSpace,
    factor_subject,
    fit_and_map,
    fit_subject_map,
    map_subject_training_rows,
    zscore_features,
)
from hyperexp.align.subjects import keyed_rows, subject_label, training_rows
from hyperexp.device import resolve_device
from hyperexp.errors import InputError

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class Alignment:
    """The outcome of the three levels, subjects in input order."""

    reference: int
    common: Tensor
    maps: list[SubjectMap]
    mapped: list[Tensor]


def hyperalign(data: list[Tensor]) -> Alignment:
    """PyMVPA's three levels on (n, p_k) tensors (see the module docstring)."""
    factors = [factor_subject(subject) for subject in data]
    n_subjects = len(data)
    reference = int(np.argmax([subject.shape[1] for subject in data]))  # argmax: first on a tie

    # Level 1: grow the common space subject by subject; the reference enters level 2 raw.
    others = [k for k in range(n_subjects) if k != reference]
    common = zscore_features(data[reference])
    level1, level1_targets = list(data), {}
    for k in others:
        level1_targets[k] = common
        level1[k] = zscore_features(fit_and_map(factors[k], common))
        if k != others[-1]:  # level 1's final common space is dropped
            common = zscore_features((level1[k] + common) / 2)

    # Level 2, one pass: subject k's target is z-scored mean of the level-1 list without k,
    # PyMVPA's (N * mean - list[k]) / (N - 1) summed directly (no cancellation). With two
    # subjects that is zscore(X_ref), bitwise the level-1 target, so that fit is reused.
    mapped = []
    for k in range(n_subjects):
        rest = [level1[j] for j in range(n_subjects) if j != k]
        target = zscore_features(sum(rest[1:], rest[0]) / (n_subjects - 1))
        if k in level1_targets and torch.equal(target, level1_targets[k]):
            mapped.append(level1[k])
        else:
            mapped.append(zscore_features(fit_and_map(factors[k], target)))
    common = zscore_features(torch.stack(mapped).mean(dim=0))

    # Level 3: the returned maps, all onto the final common space.
    space = TargetSpace.of(common)
    maps = [fit_subject_map(factor, space) for factor in factors]
    return Alignment(reference, common, maps, [map_subject_training_rows(m) for m in maps])


class Hyperalignment(TransformerMixin, BaseEstimator):
    """Hyperalignment equal to PyMVPA 2.6.5 ``Hyperalignment()`` with all defaults.

    ``fit(X)`` takes rows keyed by subject, ``{subject key: (n, p_k) array}`` (or a list of arrays,
    keyed 0..k-1): every subject has the same n samples (the same stimuli, in the same order); voxel
    counts may differ. ``transform(X)`` maps ``{key: (m, p_k) rows}`` of any fitted subjects into the
    common space, ``{key: (m, p_ref)}``; ``fit_transform(X)`` returns the training rows mapped, keyed
    like ``X``. Outputs are float64 NumPy arrays. Rows outside a subject's training row space: see
    ``hyperexp.align.rowspace``.

    Parameters
    ----------
    device : where the math runs: "auto" (CUDA when available, else CPU), "cpu", "cuda", ...
    dtype : "float64" or "float32", the precision of the math.

    Attributes
    ----------
    reference_ : key of the reference subject (the most voxels; the first on a tie).
    common_space_ : (n, p_ref) ndarray, PyMVPA's final common space (after level 2).
    subject_maps_ : ``{key: SubjectMap}``, each subject's fitted map into the common space.
    """

    def __init__(self, device="auto", dtype="float64"):
        self.device = device
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is rows keyed by subject, not one 2-D array
        tags.input_tags.dict = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    def fit(self, X, y=None) -> Hyperalignment:
        self._fit(X)
        return self

    def fit_transform(self, X, y=None) -> dict[Hashable, np.ndarray]:
        """Fit, and return every subject's training rows in the common space, ``{key: (n, p_ref)}``."""
        mapped = self._fit(X)
        return {key: _to_numpy(rows) for key, rows in zip(self.subject_maps_, mapped)}

    def transform(self, X) -> dict[Hashable, np.ndarray]:
        """Map ``{key: (m, p_k) rows}`` of fitted subjects into the common space: ``{key: (m, p_ref)}``."""
        check_is_fitted(self)
        subjects = keyed_rows(X)
        fitted = ", ".join(subject_label(key) for key in self.subject_maps_)
        for key, rows in subjects.items():
            if key not in self.subject_maps_:
                raise InputError(f"{subject_label(key)} was not fitted (fitted: {fitted})")
            if rows.shape[1] != self.subject_maps_[key].n_voxels:
                raise InputError(
                    f"{subject_label(key)}: {rows.shape[1]} voxels, but it was fitted with"
                    f" {self.subject_maps_[key].n_voxels}"
                )
        mapped = {}
        for key, rows in subjects.items():
            subject_map = self.subject_maps_[key]
            mean = subject_map.factor.mean
            mapped[key] = _to_numpy(subject_map(torch.as_tensor(rows, dtype=mean.dtype, device=mean.device)))
        return mapped

    def _fit(self, X) -> list[Tensor]:
        subjects = training_rows(X)
        dtype, device = self._torch_dtype(), self._torch_device()
        alignment = hyperalign([torch.tensor(rows, dtype=dtype, device=device) for rows in subjects.values()])
        keys = list(subjects)
        self.reference_ = keys[alignment.reference]
        self.common_space_ = _to_numpy(alignment.common)
        self.subject_maps_ = dict(zip(keys, alignment.maps))
        return alignment.mapped

    def _torch_dtype(self) -> torch.dtype:
        if not (isinstance(self.dtype, str) and self.dtype in _DTYPES):
            raise InputError(f"Hyperalignment(dtype={self.dtype!r}): expected 'float64' or 'float32'")
        return _DTYPES[self.dtype]

    def _torch_device(self) -> torch.device:
        try:
            return resolve_device(self.device)
        except (RuntimeError, ValueError) as error:  # torch: unknown device string; resolve_device: no CUDA
            raise InputError(f"Hyperalignment(device={self.device!r}): {error}") from error


def _to_numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()
