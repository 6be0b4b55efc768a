"""Scaled Procrustes fits (PyMVPA 2.6.5 defaults) of a source, given in a basis, onto a target.

PyMVPA: demean source X and target T, divide each by its Frobenius norm, ``U, s, Vh = svd(t.T @
x)``, rotation ``R = Vh.T @ U.T``, ``scale = sum(s) * |Tc| / |Xc|``; the map is ``y = (X - mean(X))
@ (scale * R) + mean(T)`` (reflections allowed), with SVDs of voxels x voxels matrices.

Here the source's mean-free rows are ``coef @ Q.T`` (``hyperexp.align.bases``) and the target's are
``T`` (n - 1, p_t), so ``t.T @ x`` is ``T.T @ coef @ Q.T`` up to the norms: with ``Z = coef.T @ T =
W diag(sigma) V.T`` (r, p_t), ``R = Q W V.T``, ``scale = sum(sigma) / |Xc|^2``, and the training
rows map to ``coef @ W V.T * scale``. Two ways to get there:

- ``fit_gram``: the eigendecomposition of the r x r matrix ``Z Z.T`` (= ``coef.T (T T.T) coef``)
  gives W and sigma; ``W V.T = W diag(1/sigma) W.T Z``, so the mapped rows are ``A @ T`` with ``A =
  scale * coef W diag(1/sigma) W.T coef.T``. Fast, but accurate only to about eps * cond(Z)^2.
- ``fit_svd``: one SVD of Z.

Numerically zero singular values are dropped (their directions map to zero). That matters for
degenerate data only: two subjects with fewer voxels than samples and unequal voxel counts, say,
where the reference's level-2 target has rank below its voxel count and PyMVPA's result depends on
LAPACK's arbitrary completion even on training rows.

Rows outside the training data: a row's component inside the training row space (the span of the
subject's demeaned training rows) is mapped exactly as PyMVPA maps it, and the component orthogonal
to that span is sent to zero. When demeaned training rows span all voxels (voxels <= samples - 1,
full rank), PyMVPA's rotation is unique and equal to this one. When voxels > samples - 1, PyMVPA's
rotation extends ``R`` by an arbitrary (LAPACK-dependent) isometry of the orthogonal complement; ours
is the minimum-norm choice ``R = P @ R_pymvpa`` with ``P`` the projector onto the training row space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hyperexp.align.bases import CholeskyBasis, HouseholderBasis, VoxelBasis
from hyperexp.align.kernels import eigh, gram, lower_product, matmul, svd

Basis = CholeskyBasis | HouseholderBasis | VoxelBasis


@dataclass(frozen=True)
class FactoredMap:
    """``fit_gram``'s map of demeaned rows: ``coords @ left @ right.T @ target`` (nothing p_x x p_t is formed).

    left = ``W diag(sigma)^-1/2`` (r, k); right = ``scale * coef @ left`` (n - 1, k); target (n - 1, p_t).
    """

    basis: Basis
    left: Tensor
    right: Tensor
    target: Tensor

    def __call__(self, centered: Tensor) -> Tensor:
        coords = self.basis.coordinates(centered)
        return torch.linalg.multi_dot([coords, self.left, self.right.mT, self.target])


@dataclass(frozen=True)
class ExplicitMap:
    """``fit_svd``'s map of demeaned rows: ``coords @ rotation``, rotation = ``scale * W V.T`` (r, p_t)."""

    basis: Basis
    rotation: Tensor

    def __call__(self, centered: Tensor) -> Tensor:
        return self.basis.coordinates(centered) @ self.rotation


@dataclass(frozen=True)
class Fit:
    """A fitted map, and the source's training rows mapped (mean-free coordinates, (n - 1, p_t))."""

    mapped: Tensor
    map: FactoredMap | ExplicitMap


@dataclass(frozen=True)
class SubjectMap:
    """One subject's fitted map into a target space, for any rows of that subject: (m, p) -> (m, p_t)."""

    mean: Tensor
    fitted: FactoredMap | ExplicitMap

    @property
    def n_voxels(self) -> int:
        return self.mean.shape[0]

    def __call__(self, rows: Tensor) -> Tensor:
        return self.fitted(rows - self.mean)


def fit_gram(basis: CholeskyBasis, reduced_gram: Tensor, target: Tensor, sq_norm: float) -> Fit:
    """The fit from ``reduced_gram`` = Z Z.T (r, r): one r x r eigendecomposition."""
    eigenvalues, vectors = eigh(reduced_gram)
    noise = eigenvalues[-1] * reduced_gram.shape[0] * torch.finfo(reduced_gram.dtype).eps
    kept = eigenvalues > noise
    eigenvalues, vectors = eigenvalues[kept], vectors[:, kept]
    scale = eigenvalues.sqrt().sum() / sq_norm
    left = vectors * eigenvalues.pow(-0.25)
    source_left = lower_product(basis.coef, left)
    mapped = matmul(gram(source_left).mul_(scale), target)
    return Fit(mapped, FactoredMap(basis, left, scale * source_left, target))


def fit_svd(basis: Basis, target: Tensor, sq_norm: float) -> Fit:
    """The fit from one SVD of Z (r, p_t)."""
    cross = matmul(basis.coef.mT, target)
    left, singular, right = svd(cross)
    kept = singular > singular[0] * max(cross.shape) * torch.finfo(cross.dtype).eps
    scale = singular[kept].sum() / sq_norm
    rotation = matmul(left[:, kept] * scale, right[kept])
    return Fit(matmul(basis.coef, rotation), ExplicitMap(basis, rotation))
