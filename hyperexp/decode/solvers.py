"""Closed-form linear decoders: voxel responses -> generator latents.

All solvers work in float64 NumPy and fit ``T ~ X @ W + b`` with an unpenalised
intercept ``b``, handled by centring ``X`` and ``T`` on their column means.

Shapes used throughout:
    X: (n, p)  responses, n trials x p voxels
    T: (n, d)  targets,   n trials x d latent dimensions
    W: (p, d)  weights
    b: (d,)    intercept

Ridge is solved spectrally. With the centred design ``A`` (m x p), ``k = min(m, p)``
and the eigendecomposition of the smaller Gram matrix -- ``A^T A = V diag(lam) V^T``
(primal, p <= m) or ``A A^T = U diag(lam) U^T`` (dual, p > m) -- every penalty costs
only a diagonal rescaling:

    primal: W = V diag(1 / (lam + alpha)) V^T A^T Tc
    dual:   W = A^T U diag(1 / (lam + alpha)) U^T Tc

This is the thin SVD of ``A`` (``lam = s^2``; eigenvectors = singular vectors) computed
as one matrix product plus a k x k symmetric eigensolver, which is far cheaper than an
SVD of the full block (measured ~0.2 s against ~3 s for 840 x 4096). Only k x k Gram
matrices are formed, so for p > n no p x p matrix ever exists. Squaring the spectrum
costs accuracy only for alpha near ``1e-16 * lam_max``; scikit-learn's Ridge solves the
same Gram systems by Cholesky.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["RidgeCVResult", "fit_ols", "fit_ridge", "fold_indices", "ridge_cv"]


@dataclass(frozen=True)
class RidgeCVResult:
    """Outcome of :func:`ridge_cv`.

    alpha: the selected penalty (lowest cross-validated MSE; first one on ties).
    W: (p, d) weights refitted on all data with ``alpha``.
    b: (d,) intercept of that refit.
    cv_scores: (n_alphas,) held-out mean squared error per alpha, in the order of ``alphas``.
    alphas: (n_alphas,) the grid that was searched.
    """

    alpha: float
    W: np.ndarray
    b: np.ndarray
    cv_scores: np.ndarray
    alphas: np.ndarray


def _as_finite_2d(array, name: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty (shape {values.shape})")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def _check_design(X, T) -> tuple[np.ndarray, np.ndarray]:
    X = _as_finite_2d(X, "X")
    T = _as_finite_2d(T, "T")
    if X.shape[0] != T.shape[0]:
        raise ValueError(f"X and T need the same number of rows (trials), got {X.shape[0]} and {T.shape[0]}")
    return X, T


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite positive number, got {alpha}")
    return alpha


@dataclass(frozen=True)
class _RidgeSpectrum:
    """Everything ridge needs from one centred training block, for any alpha.

    eigenvalues: (k,) squared singular values of the centred design, clipped at 0.
    eigenvectors: (k, k) V (primal) or U (dual).
    projected_targets: (k, d) V^T A^T Tc (primal) or U^T Tc (dual).
    design: (m, p) centred design A, used by the dual form only.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    projected_targets: np.ndarray
    design: np.ndarray
    dual: bool

    @classmethod
    def from_centred(cls, design: np.ndarray, targets: np.ndarray) -> _RidgeSpectrum:
        dual = design.shape[1] > design.shape[0]
        gram = design @ design.T if dual else design.T @ design
        # Divide-and-conquer: measured 2-10x faster than the default driver on 840 x 840.
        eigenvalues, eigenvectors = scipy.linalg.eigh(gram, check_finite=False, driver="evd")
        # Round-off can leave tiny negative eigenvalues of a PSD matrix; they are zeros.
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        projected = eigenvectors.T @ (targets if dual else design.T @ targets)
        return cls(eigenvalues, eigenvectors, projected, design, dual)

    def coefficients(self, alpha: float) -> np.ndarray:
        """(k, d) solution in the eigenbasis (primal weights or dual coefficients) for this penalty."""
        return self.projected_targets / (self.eigenvalues + alpha)[:, None]

    def weights(self, alpha: float) -> np.ndarray:
        """(p, d) ridge weights for this penalty."""
        weights_in_basis = self.eigenvectors @ self.coefficients(alpha)
        return self.design.T @ weights_in_basis if self.dual else weights_in_basis

    def coordinates(self, centred_rows: np.ndarray) -> np.ndarray:
        """(q, k) matrix F with ``centred_rows @ weights(alpha) == F @ coefficients(alpha)``."""
        if self.dual:
            return (centred_rows @ self.design.T) @ self.eigenvectors
        return centred_rows @ self.eigenvectors


def fit_ols(X, T) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary least squares with intercept.

    Args:
        X: (n, p) design. T: (n, d) targets.

    Returns:
        W: (p, d), b: (d,). When the centred problem is underdetermined (p >= n) ``W`` is
        the minimum-norm solution, i.e. ``numpy.linalg.lstsq`` on the centred data.
    """
    X, T = _check_design(X, T)
    x_mean, t_mean = X.mean(axis=0), T.mean(axis=0)
    W, *_ = np.linalg.lstsq(X - x_mean, T - t_mean, rcond=None)
    return W, t_mean - x_mean @ W


def fit_ridge(X, T, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression ``min ||Xc W - Tc||^2 + alpha ||W||^2`` with an unpenalised intercept.

    Matches scikit-learn ``Ridge(alpha=alpha, fit_intercept=True)``.

    Args:
        X: (n, p) design. T: (n, d) targets. alpha: penalty, > 0.

    Returns:
        W: (p, d), b: (d,).
    """
    X, T = _check_design(X, T)
    alpha = _check_alpha(alpha)
    x_mean, t_mean = X.mean(axis=0), T.mean(axis=0)
    W = _RidgeSpectrum.from_centred(X - x_mean, T - t_mean).weights(alpha)
    return W, t_mean - x_mean @ W


def fold_indices(n: int, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Held-out row indices of each fold: a seeded shuffle of ``range(n)`` split into
    ``n_folds`` contiguous parts whose sizes differ by at most one (each sorted)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if n_folds > n:
        raise ValueError(f"n_folds ({n_folds}) cannot exceed the number of trials ({n})")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, n_folds)]


def ridge_cv(X, T, alphas: Sequence[float], n_folds: int = 5, seed: int = 0) -> RidgeCVResult:
    """Choose the ridge penalty by k-fold cross-validation, then refit on all data.

    Each fold centres its training block on the training means, factorises it once
    (see the module docstring) and evaluates every alpha from that factorisation. The score of an alpha is the mean
    squared error over all held-out elements pooled across folds (lower is better).

    Args:
        X: (n, p) design. T: (n, d) targets.
        alphas: non-empty grid of positive penalties.
        n_folds: number of folds, 2 <= n_folds <= n.
        seed: seed of the fold shuffle; results are deterministic given it.

    Returns:
        :class:`RidgeCVResult` with the best alpha, its refit and the per-alpha scores.
    """
    X, T = _check_design(X, T)
    alpha_grid = np.asarray(alphas, dtype=np.float64)
    if alpha_grid.ndim != 1 or alpha_grid.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-D sequence, got shape {alpha_grid.shape}")
    for alpha in alpha_grid:
        _check_alpha(alpha)
    n = X.shape[0]

    squared_error = np.zeros(alpha_grid.size)
    for held_out in fold_indices(n, n_folds, seed):
        train = np.ones(n, dtype=bool)
        train[held_out] = False
        x_mean, t_mean = X[train].mean(axis=0), T[train].mean(axis=0)
        spectrum = _RidgeSpectrum.from_centred(X[train] - x_mean, T[train] - t_mean)
        held_out_coordinates = spectrum.coordinates(X[held_out] - x_mean)  # (n_held_out, k)
        held_out_centred_targets = T[held_out] - t_mean
        for index, alpha in enumerate(alpha_grid):
            prediction = held_out_coordinates @ spectrum.coefficients(alpha)
            squared_error[index] += np.sum((prediction - held_out_centred_targets) ** 2)

    cv_scores = squared_error / T.size
    best_alpha = float(alpha_grid[np.argmin(cv_scores)])
    W, b = fit_ridge(X, T, best_alpha)
    return RidgeCVResult(alpha=best_alpha, W=W, b=b, cv_scores=cv_scores, alphas=alpha_grid)
