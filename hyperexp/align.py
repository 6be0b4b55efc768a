"""Hyperalignment that reproduces PyMVPA 2.6.5 ``Hyperalignment()`` with all defaults, fast.

The algorithm (PyMVPA's defaults; subjects are samples x voxels, equal sample counts ``n``):

- Procrustes fit of a source ``X`` onto a target ``T``: demean both, divide each by its Frobenius
  norm, ``U, s, Vh = svd(t.T @ x)``, rotation ``R = Vh.T @ U.T``, ``scale = sum(s) * |Tc| / |Xc|``;
  the mapper is ``y = (X - mean(X)) @ (scale * R) + mean(T)`` (reflections allowed).
- z-scoring is per feature with ddof 0; a feature with zero spread is only demeaned (here: a spread
  at most 1e-10 of the largest, see ``zscore_features``).
- Reference = the subject with the most voxels (the first on a tie).
- Level 1: ``common = zscore(X_ref)``; for every other subject in order, ``z_i = zscore(fit X_i ->
  common)``, ``common = zscore((z_i + common) / 2)``. Level 2 starts from ``[X_ref as given, z_i]``.
- Level 2 (one pass): ``common = mean(list)``; for each subject ``i``, ``target = zscore((N common -
  list_i) / (N - 1))``, ``mapped_i = zscore(fit X_i -> target)``; then ``common = zscore(mean of
  mapped)``. (With two subjects, the non-reference subject's target is its level-1 target.)
- Level 3: a fresh Procrustes fit of every ``X_i`` onto that common space gives the mappers.

Speed: PyMVPA takes voxels x voxels SVDs. Here every subject is factored once, in coordinates of
the ``n - 1`` dimensional mean-free sample space (an orthonormal basis ``E`` of the vectors
orthogonal to ones(n)): ``E.T @ (X - mean) = coef @ Q.T`` (QR, ``Q`` voxels x r orthonormal,
``r = min(voxels, n - 1)``). Then ``t.T @ x`` is ``target_rows.T @ coef @ Q.T`` up to the norms,
whose SVD comes from the r x r matrix ``Z Z.T`` with ``Z = coef.T @ target_rows``; the mapped rows
are ``E @ coef @ W diag(1/sigma) W.T @ Z * scale + mean(T)`` where ``Z = W diag(sigma) U'.T``.
No voxels x voxels matrix is ever formed. ``Z Z.T`` squares the condition number, so when that
would cost more than ``_GRAM_MAX_RELATIVE_ERROR`` an SVD of the r x p_t matrix ``Z`` is used.

Held-out rows (``transform``): the fitted map is ``R = Q W U'.T`` (voxels x common features): a
row's component inside the training row space (the span of the subject's demeaned training rows)
is mapped exactly as PyMVPA maps it, and the component orthogonal to that span is sent to zero.
When demeaned training rows span all voxels (voxels <= samples - 1, full rank, e.g. the fixture
``heldout``), PyMVPA's rotation is unique and equal to this one. When voxels > samples - 1, PyMVPA's
rotation extends ``R`` by an arbitrary (LAPACK-dependent) isometry of the orthogonal complement;
ours is the minimum-norm choice ``R = P @ R_pymvpa`` with ``P`` the projector onto the training row
space, so for held-out rows ours equals PyMVPA's applied to the rows' projection onto that space.
Degenerate data, where ``Z`` has numerically zero singular values (e.g. two subjects with fewer
voxels than samples and unequal voxel counts: the reference's level-2 target then has rank below its
voxel count), make PyMVPA's result depend on LAPACK's arbitrary completion even on training rows;
those directions are dropped (mapped to zero) here too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hyperexp.device import resolve_device

# The Gram route (eigh of Z Z.T) loses about eps * cond(Z)^2 relative accuracy; above this bound an
# SVD of Z is taken instead (float64: cond(Z) up to ~670; float32: always the SVD).
_GRAM_MAX_RELATIVE_ERROR = 1e-10
# A feature whose spread is below this fraction of the largest one counts as constant.
_ZERO_SPREAD_RTOL = 1e-10


def zscore_features(data: Tensor) -> Tensor:
    """Per-feature z-score with the population std (ddof 0), (n, p) -> (n, p).

    Features with zero spread are only demeaned. "Zero" means at most ``_ZERO_SPREAD_RTOL`` times
    the largest spread: a feature that is constant in exact arithmetic (e.g. a constant voxel of
    the reference carried through a Procrustes map) comes out as rounding noise, which a literal
    ``std == 0`` test would blow up to unit variance.
    """
    variance, mean = torch.var_mean(data, dim=0, correction=0)
    spread = variance.sqrt()
    negligible = spread <= _ZERO_SPREAD_RTOL * spread.max()
    return (data - mean).div_(torch.where(negligible, 1.0, spread))


def to_mean_free_coordinates(rows: Tensor) -> Tensor:
    """``E.T @ rows``: (n, p) -> (n - 1, p), with ``E`` (n, n - 1) an orthonormal basis of ones(n)^perp.

    ``E`` is the last n - 1 columns of the Householder reflector sending ones(n)/sqrt(n) to -e_0,
    so it is applied in O(n p) and ``E.T @ rows == E.T @ (rows - mean(rows))``.
    """
    root_n = math.sqrt(rows.shape[0])
    along_reflector = rows.sum(dim=0) / root_n + rows[0]
    return rows[1:] - along_reflector / (root_n + 1.0)


def from_mean_free_coordinates(coords: Tensor) -> Tensor:
    """``E @ coords``: (n - 1, p) -> (n, p) with zero column means (inverse of the above on them)."""
    root_n = math.sqrt(coords.shape[0] + 1)
    along_reflector = coords.sum(dim=0) / root_n
    return torch.cat([-along_reflector[None], coords - along_reflector / (root_n + 1.0)])


@dataclass(frozen=True)
class SubjectFactor:
    """One subject's training data, factored once: ``E.T @ (X - mean) = coef @ Q.T``.

    mean: (p,); coef: (n - 1, r); qr_reflectors (p, n - 1) and qr_tau hold ``Q`` (p, r) implicitly
    (LAPACK geqrf of ``(E.T @ X).T``); sq_norm = ``|X - mean|_F^2``.
    """

    mean: Tensor
    coef: Tensor
    qr_reflectors: Tensor
    qr_tau: Tensor
    sq_norm: float

    @property
    def basis_size(self) -> int:
        """r = min(p, n - 1): columns of Q."""
        return self.coef.shape[1]


def factor_subject(data: Tensor) -> SubjectFactor:
    """Factor (n, p) training data in its row space (one QR of a p x (n - 1) matrix)."""
    rows = to_mean_free_coordinates(data)
    reflectors, tau = torch.geqrf(rows.T)
    coef = torch.triu(reflectors[: min(rows.shape)]).T  # R.T of rows.T = Q R
    return SubjectFactor(data.mean(dim=0), coef, reflectors, tau, float(coef.square().sum()))


@dataclass(frozen=True)
class TargetSpace:
    """A Procrustes target (n, p_t) in mean-free coordinates.

    rows: ``E.T @ target`` (n - 1, p_t); mean: (p_t,); gram: ``rows @ rows.T`` (n - 1, n - 1), or
    None when p_t < n - 1 (then the r x p_t cross product is the cheaper route).
    """

    rows: Tensor
    mean: Tensor
    gram: Tensor | None

    @classmethod
    def of(cls, target: Tensor) -> TargetSpace:
        rows = to_mean_free_coordinates(target)
        gram = rows @ rows.T if rows.shape[1] >= rows.shape[0] else None
        return cls(rows, target.mean(dim=0), gram)


@dataclass(frozen=True)
class ProcrustesMap:
    """A fitted scaled Procrustes map of one factored source onto one target.

    With ``Z = coef.T @ target.rows = W diag(sigma) U'.T`` (kept directions only): ``left`` = W
    (r, k), ``source_left`` = ``coef @ W`` (n - 1, k), ``weights`` = ``scale / sigma`` (k,), where
    ``scale = sum(sigma) / |Xc|^2``. Row-space coefficients ``c`` (m, r) of demeaned source rows map
    to ``(c @ W * weights) @ source_left.T @ target.rows + target.mean``.
    """

    left: Tensor
    source_left: Tensor
    weights: Tensor


def fit_procrustes(factor: SubjectFactor, target: TargetSpace) -> ProcrustesMap:
    """PyMVPA's scaled Procrustes fit (reflections allowed) in the row space: r x r problems only."""
    coef = factor.coef
    if target.gram is not None:
        gram = coef.T @ target.gram @ coef  # Z Z.T, (r, r)
    else:
        cross = coef.T @ target.rows
        gram = cross @ cross.T
    eigenvalues, left = torch.linalg.eigh(gram)
    eps = torch.finfo(coef.dtype).eps
    if eigenvalues[0] * _GRAM_MAX_RELATIVE_ERROR > eps * eigenvalues[-1]:
        singular = eigenvalues.sqrt()
    else:  # ill-conditioned or rank-deficient: SVD of Z itself, numerically zero directions dropped
        left, singular, _ = torch.linalg.svd(coef.T @ target.rows, full_matrices=False)
        tolerance = singular[0] * max(coef.shape[1], target.rows.shape[1]) * eps
        kept = singular > tolerance
        left, singular = left[:, kept], singular[kept]
    scale = singular.sum() / factor.sq_norm
    return ProcrustesMap(left, coef @ left, scale / singular)


def map_training_rows(factor: SubjectFactor, fitted: ProcrustesMap, target: TargetSpace) -> Tensor:
    """The source's own training rows in target space, (n, p_t): there ``c @ W = coef @ W``."""
    weighted = fitted.source_left * fitted.weights
    mapped = torch.linalg.multi_dot([weighted, fitted.source_left.T, target.rows])
    return from_mean_free_coordinates(mapped) + target.mean


def fit_and_map(factor: SubjectFactor, target: Tensor) -> Tensor:
    """Procrustes-fit a source onto ``target`` (n, p_t) and return its mapped training rows."""
    space = TargetSpace.of(target)
    return map_training_rows(factor, fit_procrustes(factor, space), space)


def _checked_array(data, what: str) -> np.ndarray:
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (samples x voxels), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{what}: expected real numbers, got dtype {array.dtype}")
    if array.shape[1] == 0:
        raise ValueError(f"{what}: has no voxels")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: contains NaN or Inf")
    return array


def _checked_datasets(datasets) -> list[np.ndarray]:
    if isinstance(datasets, np.ndarray) and datasets.ndim == 2:
        raise ValueError("Hyperalignment needs a list of per-subject arrays, got a single 2-D array")
    arrays = [_checked_array(data, f"subject {k}") for k, data in enumerate(datasets)]
    if len(arrays) < 2:
        raise ValueError(f"Hyperalignment needs at least 2 subjects, got {len(arrays)}")
    n_samples = arrays[0].shape[0]
    for k, array in enumerate(arrays):
        if array.shape[0] != n_samples:
            raise ValueError(
                f"subject {k}: {array.shape[0]} samples, but subject 0 has {n_samples}"
                " (all subjects need the same samples)"
            )
        if array.shape[0] < 2:
            raise ValueError(f"subject {k}: needs at least 2 samples, got {array.shape[0]}")
        if not np.any(array != array[0]):
            raise ValueError(f"subject {k}: all samples are identical, so it cannot be aligned")
    return arrays


class Hyperalignment:
    """scikit-learn style hyperalignment equal to PyMVPA 2.6.5 ``Hyperalignment()`` defaults.

    ``fit`` on a list of per-subject arrays (samples x voxels; voxel counts may differ, sample
    counts must be equal), then ``transform(k, rows)`` maps any rows of subject ``k`` into the
    common space (p_ref features). See the module docstring for how rows outside the training row
    space are mapped. Math runs in torch on ``device`` (None/"auto": CUDA if available, else CPU)
    in ``dtype``; outputs are float64 NumPy arrays.

    Attributes after fit: ``common_space_`` (n, p_ref), PyMVPA's final common space (after
    level 2); ``reference_``, the index of the reference subject.
    """

    def __init__(self, device: str | torch.device | None = None, dtype=torch.float64):
        self.device = device
        self.dtype = dtype

    def fit(self, datasets: Sequence[np.ndarray]) -> Hyperalignment:
        self._fit(datasets)
        return self

    def fit_transform(self, datasets: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Fit, and return every subject's training rows in the common space, each (n, p_ref)."""
        return [_to_numpy(mapped) for mapped in self._fit(datasets)]

    def transform(self, subject: int, rows: np.ndarray) -> np.ndarray:
        """Map rows (m, p_subject) of subject ``subject`` (0-based) into the common space: (m, p_ref)."""
        if not hasattr(self, "_factors"):
            raise RuntimeError("Hyperalignment is not fitted: call fit() first")
        n_subjects = len(self._factors)
        if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)):
            raise ValueError(f"subject must be an integer index, got {subject!r}")
        if not 0 <= subject < n_subjects:
            raise ValueError(
                f"subject {subject} is out of range: fitted on {n_subjects} subjects (0..{n_subjects - 1})"
            )
        array = _checked_array(rows, f"rows of subject {subject}")
        factor = self._factors[subject]
        if array.shape[1] != factor.mean.shape[0]:
            raise ValueError(
                f"rows of subject {subject}: {array.shape[1]} voxels, but subject {subject}"
                f" was fitted with {factor.mean.shape[0]}"
            )
        centered = torch.tensor(array, dtype=self.dtype, device=self._device) - factor.mean
        # (x - mean) @ Q with Q applied from its Householder reflectors; Q's first r columns span the row space
        reflectors, tau = factor.qr_reflectors[:, : factor.basis_size], factor.qr_tau[: factor.basis_size]
        coefficients = torch.ormqr(reflectors, tau, centered, left=False)[:, : factor.basis_size]
        fitted = self._maps[subject]
        weighted = coefficients @ fitted.left * fitted.weights
        mapped = torch.linalg.multi_dot([weighted, fitted.source_left.T, self._common.rows])
        return _to_numpy(mapped + self._common.mean)

    def _fit(self, datasets) -> list[Tensor]:
        arrays = _checked_datasets(datasets)
        self._device = resolve_device(self.device)
        data = [torch.tensor(array, dtype=self.dtype, device=self._device) for array in arrays]
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

        # Level 3: the returned mappers, all onto the final common space.
        space = TargetSpace.of(common)
        maps = [fit_procrustes(factor, space) for factor in factors]
        self._factors, self._maps, self._common = factors, maps, space
        self.common_space_ = _to_numpy(common)
        self.reference_ = reference
        return [map_training_rows(factor, fitted, space) for factor, fitted in zip(factors, maps)]


def hyperalign_average(datasets: Sequence[np.ndarray], device: str | torch.device | None = None) -> np.ndarray:
    """The published recipe: fit hyperalignment, map every subject, average. (n, p_ref)."""
    return np.mean(Hyperalignment(device=device).fit_transform(datasets), axis=0)


def _to_numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()
