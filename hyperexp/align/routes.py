"""The cost model: how each Procrustes fit is computed, decided before any decomposition.

For a source subject with n samples and p_x voxels, and a target with p_t features (solver "auto"):

- Row space when ``r = n - 1`` is well below p_x (at most ``_ROW_SPACE_MAX_FRACTION`` of it):
  - the Gram route (``fit_gram``, an r x r eigh; no SVD) where it is accurate. It loses about
    eps * cond relative accuracy to two squared condition numbers, of the source's sample Gram K
    (its ``CholeskyBasis``) and of ``G = Z Z.T``, so it is taken only if both are at most
    ``_GRAM_MAX_RELATIVE_ERROR / eps``, decided without computing anything to discard:
    1. from the shapes: white noise of these shapes already has cond(Z) up to about ``c(r, p_x) *
       c(r, p_t)``, ``c(m, p) = (1 + sqrt(m / p)) / (1 - sqrt(m / p))`` (Marchenko-Pastur); if its
       square is over the limit, the SVD route directly;
    2. otherwise the Cholesky factors of K and G (needed anyway; a fraction of the eigh) estimate
       their condition numbers: Frobenius norm (>= the largest eigenvalue) times the growth under a
       few inverse iterations (<= 1 / the smallest, and within a small factor of it from a random
       start). Over the limit: the SVD route.
  - else the row-space SVD route: ``fit_svd`` in a ``HouseholderBasis`` (one QR per subject), an
    SVD of the r x p_t matrix Z instead of p_x x p_t.
- Voxel space otherwise: ``fit_svd`` in a ``VoxelBasis``, one SVD of ``Z = Xc.T @ Tc`` (p_x, p_t)
  per fit, PyMVPA's algorithm without its repeated work. Where r >= p_x the row space is all of
  voxel space, and Z is typically ill-conditioned (its singular values carry the cosines of the
  angles between two p-dimensional subspaces of the r-dimensional sample space, some near 0), so an
  SVD it is. Where r is just below p_x, a QR would cost more than it saves on the SVDs (and hold
  another copy of the data); Z's rank is then r, and its numerically zero singular values are
  dropped, which gives the row-space route's minimum-norm map.

Solvers "rowspace" and "voxelspace" force the space (in row space, Gram or SVD as above).
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import Tensor

from hyperexp.align.bases import CholeskyBasis, HouseholderBasis, VoxelBasis
from hyperexp.align.coordinates import TargetSpace, to_mean_free_coordinates
from hyperexp.align.kernels import cholesky, gram, lower_congruence
from hyperexp.align.procrustes import Fit, fit_gram, fit_svd

SOLVERS = ("auto", "rowspace", "voxelspace")
# The Gram route's relative accuracy budget (float64: condition numbers up to ~4.5e5 of K and G,
# i.e. cond(Z) up to ~670; float32: never, so always the SVD).
_GRAM_MAX_RELATIVE_ERROR = 1e-10
# Row space only where it shrinks each SVD by about a fifth or more (r <= 0.9 p_x).
_ROW_SPACE_MAX_FRACTION = 0.9
_INVERSE_ITERATIONS = 6
_PROBES = 8


def gram_condition_limit(dtype: torch.dtype) -> float:
    return _GRAM_MAX_RELATIVE_ERROR / torch.finfo(dtype).eps


def white_noise_condition(samples: int, features: int) -> float:
    """Condition number of a white-noise samples x features matrix (Marchenko-Pastur edges)."""
    ratio = min(samples, features) / max(samples, features)
    return (1 + math.sqrt(ratio)) / (1 - math.sqrt(ratio)) if ratio < 1 else math.inf


def gram_route_expected(samples: int, source_voxels: int, target_features: int, dtype: torch.dtype) -> bool:
    """Step 1: whether mean-free samples (n - 1) x voxels shapes leave the Gram route a chance."""
    if samples >= source_voxels:
        return False
    z_condition = white_noise_condition(samples, source_voxels) * white_noise_condition(samples, target_features)
    return z_condition**2 <= gram_condition_limit(dtype)


def cholesky_within_limit(matrix: Tensor) -> Tensor | None:
    """Step 2: the Cholesky factor of SPD ``matrix`` if its estimated condition number is within
    the Gram route's limit, else None."""
    lower = cholesky(matrix)
    if lower is None:  # not numerically positive definite
        return None
    generator = torch.Generator(device=matrix.device).manual_seed(0)
    probe = torch.randn(matrix.shape[0], _PROBES, generator=generator, dtype=matrix.dtype, device=matrix.device)
    for _ in range(_INVERSE_ITERATIONS):  # probe <- matrix^-1 @ probe, columns normalized first
        probe = torch.linalg.solve_triangular(lower, probe / probe.norm(dim=0), upper=False)
        probe = torch.linalg.solve_triangular(lower.mT, probe, upper=True)
    estimate = torch.linalg.matrix_norm(matrix) * probe.norm(dim=0).max()
    return lower if estimate <= gram_condition_limit(matrix.dtype) else None


class Source:
    """One subject's training data as a Procrustes source: mean-free rows, and the bases its fits
    need, each built once, on first use."""

    def __init__(self, data: Tensor, solver: str = "auto"):
        self.mean = data.mean(dim=0)
        self.rows = to_mean_free_coordinates(data)
        flat = self.rows.reshape(-1)
        self.sq_norm = float(flat @ flat)
        self.solver = solver

    @cached_property
    def cholesky_basis(self) -> CholeskyBasis | None:
        """None when the sample Gram is too ill-conditioned for the Gram route."""
        lower = cholesky_within_limit(gram(self.rows))
        return None if lower is None else CholeskyBasis(self.rows, lower)

    @cached_property
    def householder_basis(self) -> HouseholderBasis:
        return HouseholderBasis.of(self.rows)

    def route(self, target: TargetSpace) -> str:
        """The route by the shapes alone (step 1): "voxelspace", or in row space "gram" or "svd"."""
        samples, voxels = self.rows.shape
        if self.solver == "voxelspace" or (self.solver == "auto" and samples > _ROW_SPACE_MAX_FRACTION * voxels):
            return "voxelspace"
        return "gram" if gram_route_expected(samples, voxels, target.rows.shape[1], self.rows.dtype) else "svd"

    def fit(self, target: TargetSpace) -> Fit:
        route = self.route(target)
        if route == "voxelspace":
            return fit_svd(VoxelBasis(self.rows), target.rows, self.sq_norm)
        if route == "gram" and self.cholesky_basis is not None:
            reduced = lower_congruence(self.cholesky_basis.coef, target.gram)
            if cholesky_within_limit(reduced) is not None:
                return fit_gram(self.cholesky_basis, reduced, target.rows, self.sq_norm)
        return fit_svd(self.householder_basis, target.rows, self.sq_norm)
