"""Mean-free sample coordinates, where the whole procedure runs, and z-scoring in them.

``E`` (n, n - 1) is an orthonormal basis of the vectors orthogonal to ones(n). Data X (n, p) have
mean-free coordinates ``E.T @ X`` (n - 1, p), equal to ``E.T @ (X - mean)``: column means drop out,
and inner products, norms and column spreads are those of ``X - mean``. PyMVPA z-scores every
Procrustes target and output per feature (ddof 0); in these coordinates that is a column scaling,
so levels 1 and 2 never go back to n x p data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from hyperexp.align.kernels import gram

# A feature whose spread is below this fraction of the largest one counts as constant.
_ZERO_SPREAD_RTOL = 1e-10


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
    out = coords.new_empty((coords.shape[0] + 1, coords.shape[1]))
    out[0] = -along_reflector
    torch.sub(coords, along_reflector / (root_n + 1.0), out=out[1:])
    return out


def column_norms(coords: Tensor, block: int = 128) -> Tensor:
    """Euclidean norm of every column, (m, p) -> (p,), summed over blocks of rows: on CPU ~8x faster
    than torch's reduction over dim 0, without allocating an m x p temporary."""
    sq_norms = coords.new_zeros(coords.shape[1])
    for rows in coords.split(block):
        sq_norms += rows.square().sum(dim=0)
    return sq_norms.sqrt_()


def zscore_coordinates_(coords: Tensor) -> Tensor:
    """In place: coordinates of ``X`` (n - 1, p) -> those of ``zscore(X)``, each feature over its ddof-0 spread.

    A feature with zero spread is only demeaned (PyMVPA). "Zero" means at most ``_ZERO_SPREAD_RTOL``
    times the largest spread: a feature that is constant in exact arithmetic (e.g. a constant voxel
    of the reference carried through a Procrustes map) comes out as rounding noise, which a literal
    ``std == 0`` test would blow up to unit variance.
    """
    spread = column_norms(coords) / math.sqrt(coords.shape[0] + 1)
    negligible = spread <= _ZERO_SPREAD_RTOL * spread.max()
    return coords.div_(spread.masked_fill_(negligible, 1.0))


@dataclass(frozen=True)
class TargetSpace:
    """A Procrustes target in mean-free coordinates (n - 1, p_t), z-scored (so its mean is zero).

    ``gram`` (``rows @ rows.T``) is computed once, when a Gram-route fit first needs it."""

    rows: Tensor

    @cached_property
    def gram(self) -> Tensor:
        return gram(self.rows)
