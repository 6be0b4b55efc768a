"""Scaled Procrustes fits (PyMVPA 2.6.5 defaults) computed in the samples' row space.

A fit of a source ``X`` onto a target ``T`` (both n samples): demean both, divide each by its
Frobenius norm, ``U, s, Vh = svd(t.T @ x)``, rotation ``R = Vh.T @ U.T``, ``scale = sum(s) * |Tc| /
|Xc|``; the map is ``y = (X - mean(X)) @ (scale * R) + mean(T)`` (reflections allowed).

PyMVPA takes voxels x voxels SVDs. Here every subject is factored once, in coordinates of the
``n - 1`` dimensional mean-free sample space (an orthonormal basis ``E`` of the vectors orthogonal
to ones(n)): ``E.T @ (X - mean) = coef @ Q.T`` (QR, ``Q`` voxels x r orthonormal, ``r = min(voxels,
n - 1)``). Then ``t.T @ x`` is ``target_rows.T @ coef @ Q.T`` up to the norms, whose SVD comes from
the r x r matrix ``Z Z.T`` with ``Z = coef.T @ target_rows``; the mapped rows are ``E @ coef @ W
diag(1/sigma) W.T @ Z * scale + mean(T)`` where ``Z = W diag(sigma) U'.T``. No voxels x voxels
matrix is ever formed. ``Z Z.T`` squares the condition number, so when that would cost more than
``_GRAM_MAX_RELATIVE_ERROR`` an SVD of the r x p_t matrix ``Z`` is used.

Rows outside the training data (``SubjectMap``): the fitted map is ``R = Q W U'.T`` (voxels x target
features): a row's component inside the training row space (the span of the subject's demeaned
training rows) is mapped exactly as PyMVPA maps it, and the component orthogonal to that span is
sent to zero. When demeaned training rows span all voxels (voxels <= samples - 1, full rank),
PyMVPA's rotation is unique and equal to this one. When voxels > samples - 1, PyMVPA's rotation
extends ``R`` by an arbitrary (LAPACK-dependent) isometry of the orthogonal complement; ours is the
minimum-norm choice ``R = P @ R_pymvpa`` with ``P`` the projector onto the training row space, so
for such rows ours equals PyMVPA's applied to the rows' projection onto that space. Degenerate
data, where ``Z`` has numerically zero singular values (e.g. two subjects with fewer voxels than
samples and unequal voxel counts: the reference's level-2 target then has rank below its voxel
count), make PyMVPA's result depend on LAPACK's arbitrary completion even on training rows; those
directions are dropped (mapped to zero) here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

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


@dataclass(frozen=True)
class SubjectMap:
    """One subject's fitted map into a target space, for any rows of that subject: (m, p) -> (m, p_t)."""

    factor: SubjectFactor
    fitted: ProcrustesMap
    target: TargetSpace

    @property
    def n_voxels(self) -> int:
        return self.factor.mean.shape[0]

    def __call__(self, rows: Tensor) -> Tensor:
        factor, fitted = self.factor, self.fitted
        # (x - mean) @ Q, Q applied from its Householder reflectors; its first r columns span the row space
        r = factor.basis_size
        coefficients = torch.ormqr(factor.qr_reflectors[:, :r], factor.qr_tau[:r], rows - factor.mean, left=False)
        weighted = coefficients[:, :r] @ fitted.left * fitted.weights
        return torch.linalg.multi_dot([weighted, fitted.source_left.T, self.target.rows]) + self.target.mean


def fit_subject_map(factor: SubjectFactor, target: TargetSpace) -> SubjectMap:
    return SubjectMap(factor, fit_procrustes(factor, target), target)


def map_subject_training_rows(subject_map: SubjectMap) -> Tensor:
    return map_training_rows(subject_map.factor, subject_map.fitted, subject_map.target)
