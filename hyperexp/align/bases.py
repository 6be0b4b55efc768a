"""Orthonormal bases of a subject's training row space, in which its Procrustes fits are computed.

A subject's mean-free training rows ``rows = E.T @ (X - mean)`` (n - 1, p) factor as ``rows = coef @
Q.T`` with ``Q`` (p, r) orthonormal; a fit only needs ``coef`` (n - 1, r), and a new demeaned row
``x`` is mapped through its coordinates ``x @ Q``:

- ``CholeskyBasis`` (r = n - 1 < p): ``coef`` is the Cholesky factor of the sample Gram ``rows @
  rows.T``. Cheap (a syrk and an (n - 1)^3 / 3 factorization), but the Gram squares the rows'
  condition number, so it is used only where that is checked (``hyperexp.align.routes``).
- ``HouseholderBasis`` (r = min(p, n - 1)): Householder QR of ``rows.T``; accurate at any conditioning.
- ``VoxelBasis`` (r = p): ``Q`` is the identity, PyMVPA's own voxel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CholeskyBasis:
    """``coef`` (n - 1, n - 1) lower triangular with ``coef @ coef.T == rows @ rows.T``; ``Q = rows.T @ coef^-T``."""

    rows: Tensor
    coef: Tensor

    def coordinates(self, centered: Tensor) -> Tensor:
        """``centered @ Q``: (m, p) -> (m, n - 1)."""
        return torch.linalg.solve_triangular(self.coef, self.rows @ centered.mT, upper=False).mT


@dataclass(frozen=True)
class HouseholderBasis:
    """``coef`` (n - 1, r); ``Q`` held as LAPACK geqrf reflectors (p, n - 1) and their scalars ``tau``."""

    coef: Tensor
    reflectors: Tensor
    tau: Tensor

    @classmethod
    def of(cls, rows: Tensor) -> HouseholderBasis:
        reflectors, tau = torch.geqrf(rows.T)
        coef = torch.triu(reflectors[: min(rows.shape)]).T  # R.T of rows.T = Q R
        return cls(coef, reflectors, tau)

    def coordinates(self, centered: Tensor) -> Tensor:
        """``centered @ Q``: (m, p) -> (m, r); Q's first r columns span the row space."""
        r = self.coef.shape[1]
        return torch.ormqr(self.reflectors[:, :r], self.tau[:r], centered, left=False)[:, :r]


@dataclass(frozen=True)
class VoxelBasis:
    """``Q`` = identity: ``coef`` is the rows themselves (n - 1, p)."""

    coef: Tensor

    def coordinates(self, centered: Tensor) -> Tensor:
        return centered
