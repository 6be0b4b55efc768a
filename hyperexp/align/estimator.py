"""``Hyperalignment``: PyMVPA 2.6.5 ``Hyperalignment()`` with all defaults, as a scikit-learn estimator.

The procedure (subjects are samples x voxels with equal sample counts ``n``; every Procrustes fit
as in ``hyperexp.align.procrustes``, computed the way ``hyperexp.align.routes`` picks):

- z-scoring is per feature with ddof 0; a feature with zero spread is only demeaned (here: a spread
  at most 1e-10 of the largest, see ``zscore_coordinates_``).
- Reference = the subject with the most voxels (the first on a tie).
- Level 1: ``common = zscore(X_ref)``; for every other subject in order, ``z_i = zscore(fit X_i ->
  common)``, ``common = zscore((z_i + common) / 2)``. Level 2 starts from ``[X_ref as given, z_i]``.
- Level 2 (one pass): ``common = mean(list)``; for each subject ``i``, ``target = zscore((N common -
  list_i) / (N - 1))``, ``mapped_i = zscore(fit X_i -> target)``; then ``common = zscore(mean of
  mapped)``. (With two subjects, the non-reference subject's target is its level-1 target.)
- Level 3: a fresh Procrustes fit of every ``X_i`` onto that common space gives the maps.

Levels 1 and 2 run in mean-free coordinates (``hyperexp.align.coordinates``), where z-scoring is a
column scaling; only the outputs are n x p.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import Tensor

from hyperexp.align.coordinates import TargetSpace, from_mean_free_coordinates, zscore_coordinates_
from hyperexp.align.procrustes import SubjectMap
from hyperexp.align.routes import SOLVERS, Source
from hyperexp.align.subjects import keyed_rows, subject_label, training_rows
from hyperexp.device import resolve_device
from hyperexp.errors import InputError

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class Alignment:
    """The outcome of the three levels, subjects in input order; tensors are n x p."""

    reference: int
    common: Tensor
    maps: list[SubjectMap]
    mapped: list[Tensor]


def hyperalign(data: list[Tensor], solver: str = "auto") -> Alignment:
    """PyMVPA's three levels on (n, p_k) tensors (see the module docstring)."""
    sources = [Source(subject, solver) for subject in data]
    reference = int(np.argmax([source.rows.shape[1] for source in sources]))  # argmax: first on a tie
    space = TargetSpace(common_space(sources, reference))

    # Level 3: the returned maps, all onto the final common space (mean zero).
    maps, mapped = [], []
    for source in sources:
        fit = source.fit(space)
        maps.append(SubjectMap(source.mean, fit.map))
        mapped.append(from_mean_free_coordinates(fit.mapped))
    return Alignment(reference, from_mean_free_coordinates(space.rows), maps, mapped)


def common_space(sources: list[Source], reference: int) -> Tensor:
    """Levels 1 and 2: PyMVPA's final common space, in mean-free coordinates (n - 1, p_ref)."""
    n_subjects = len(sources)
    # Level 1: grow the common space subject by subject; the reference enters level 2 raw.
    others = [k for k in range(n_subjects) if k != reference]
    common = zscore_coordinates_(sources[reference].rows.clone())
    level1 = [source.rows for source in sources]
    for k in others:
        last_target = common
        level1[k] = zscore_coordinates_(sources[k].fit(TargetSpace(common)).mapped)
        if k != others[-1]:  # level 1's final common space is dropped
            common = zscore_coordinates_((level1[k] + common).div_(2))

    # Level 2, one pass: subject k's target is the z-scored mean of the level-1 list without k,
    # PyMVPA's (N * mean - list[k]) / (N - 1) as a sum of the others (linear in N). The raw reference
    # is never subtracted, so nothing cancels against its scale; with two subjects the other
    # subject's target is bitwise its level-1 target (the last one), so that fit is reused.
    aligned = sum((level1[k] for k in others[1:]), level1[others[0]])
    mapped = []
    for k in range(n_subjects):
        rest = aligned.clone() if k == reference else (aligned - level1[k]).add_(level1[reference])
        target = zscore_coordinates_(rest.div_(n_subjects - 1))
        if k == others[-1] and torch.equal(target, last_target):
            mapped.append(level1[k])
        else:
            mapped.append(zscore_coordinates_(sources[k].fit(TargetSpace(target)).mapped))
    return zscore_coordinates_(sum(mapped[1:], mapped[0]).div_(n_subjects))


class Hyperalignment(TransformerMixin, BaseEstimator):
    """Hyperalignment equal to PyMVPA 2.6.5 ``Hyperalignment()`` with all defaults.

    ``fit(X)`` takes rows keyed by subject, ``{subject key: (n, p_k) array}`` (or a list of arrays,
    keyed 0..k-1): every subject has the same n samples (the same stimuli, in the same order); voxel
    counts may differ. ``transform(X)`` maps ``{key: (m, p_k) rows}`` of any fitted subjects into the
    common space, ``{key: (m, p_ref)}``; ``fit_transform(X)`` returns the training rows mapped, keyed
    like ``X``. Outputs are float64 NumPy arrays. Rows outside a subject's training row space: see
    ``hyperexp.align.procrustes``.

    Parameters
    ----------
    device : where the math runs: "auto" (CUDA when available, else CPU), "cpu", "cuda", ...
    dtype : "float64" or "float32", the precision of the math.
    solver : "auto" (the cost model of ``hyperexp.align.routes``), "rowspace" or "voxelspace" (every
        fit in that space; the results agree to rounding). Row space is fast when samples - 1 are
        well below voxels; voxel space is PyMVPA's dense algorithm, one SVD per fit.

    Attributes
    ----------
    reference_ : key of the reference subject (the most voxels; the first on a tie).
    common_space_ : (n, p_ref) ndarray, PyMVPA's final common space (after level 2).
    subject_maps_ : ``{key: SubjectMap}``, each subject's fitted map into the common space.
    """

    def __init__(self, device="auto", dtype="float64", solver="auto"):
        self.device = device
        self.dtype = dtype
        self.solver = solver

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
            mean = subject_map.mean
            mapped[key] = _to_numpy(subject_map(_as_tensor(rows, mean.dtype, mean.device)))
        return mapped

    def _fit(self, X) -> list[Tensor]:
        subjects = training_rows(X)
        dtype, device, solver = self._torch_dtype(), self._torch_device(), self._checked_solver()
        alignment = hyperalign([_as_tensor(rows, dtype, device) for rows in subjects.values()], solver)
        keys = list(subjects)
        self.reference_ = keys[alignment.reference]
        self.common_space_ = _to_numpy(alignment.common)
        self.subject_maps_ = dict(zip(keys, alignment.maps))
        return alignment.mapped

    def _torch_dtype(self) -> torch.dtype:
        if not (isinstance(self.dtype, str) and self.dtype in _DTYPES):
            raise InputError(f"Hyperalignment(dtype={self.dtype!r}): expected 'float64' or 'float32'")
        return _DTYPES[self.dtype]

    def _checked_solver(self) -> str:
        if not (isinstance(self.solver, str) and self.solver in SOLVERS):
            raise InputError(f"Hyperalignment(solver={self.solver!r}): expected one of {', '.join(SOLVERS)}")
        return self.solver

    def _torch_device(self) -> torch.device:
        try:
            return resolve_device(self.device)
        except (RuntimeError, ValueError) as error:  # torch: unknown device string; resolve_device: no CUDA
            raise InputError(f"Hyperalignment(device={self.device!r}): {error}") from error


def _as_tensor(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The array as a tensor, sharing its memory where possible (it is only read); a read-only
    array (e.g. memory-mapped) is copied, which torch requires."""
    return torch.as_tensor(array if array.flags.writeable else array.copy(), dtype=dtype, device=device)


def _to_numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()
