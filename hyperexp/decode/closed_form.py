"""Decoders solved in closed form (float64 NumPy): ordinary least squares and ridge with its
penalty chosen by cross-validation (:mod:`hyperexp.decode.solvers` holds the math)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from hyperexp.decode.base import Decoder, evaluated_once
from hyperexp.decode.loop import FitContext
from hyperexp.decode.solvers import fit_ols, ridge_cv
from hyperexp.errors import InputError


def _float64(values: torch.Tensor) -> np.ndarray:
    return values.detach().cpu().double().numpy()


class ClosedFormDecoder(Decoder):
    """Solves on the host in float64, keeps the solution as float32 on the data's device."""

    def solve(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def fit(self, x: torch.Tensor, t: torch.Tensor, context: FitContext | None = None) -> ClosedFormDecoder:
        context = context or FitContext()
        self.check_fits(len(x), context)
        started = time.perf_counter()
        coef, intercept = self.solve(_float64(x), _float64(t))
        self.coef_ = torch.as_tensor(coef, dtype=torch.float32, device=x.device)
        self.intercept_ = torch.as_tensor(intercept, dtype=torch.float32, device=x.device)
        self.history_ = evaluated_once(self, x, t, context, seconds=time.perf_counter() - started)
        return self


class OLSDecoder(ClosedFormDecoder):
    """Ordinary least squares (minimum-norm when voxels outnumber trials)."""

    def solve(self, x, t):
        return fit_ols(x, t)


class RidgeCVDecoder(ClosedFormDecoder):
    """Ridge; the penalty ``alpha_`` is chosen by ``n_folds``-fold cross-validation over ``alphas``."""

    def __init__(self, alphas: Sequence[float], n_folds: int = 5, seed: int = 0):
        self.alphas, self.n_folds, self.seed = alphas, n_folds, seed  # ``seed``: the folds' shuffle

    def check_fits(self, n_samples: int, context: FitContext | None = None) -> None:
        if not len(self.alphas) or any(not alpha > 0 for alpha in self.alphas):
            raise InputError(f"decoder.alphas: must be a non-empty list of positive penalties, got {list(self.alphas)}")
        if self.n_folds < 2:
            raise InputError(f"decoder.n_folds: must be >= 2, got {self.n_folds}")
        super().check_fits(n_samples, context)
        if self.n_folds > n_samples:
            raise InputError(f"decoder.n_folds: {self.n_folds} folds need at least as many trials, got {n_samples}")

    def solve(self, x, t):
        result = ridge_cv(x, t, list(self.alphas), n_folds=self.n_folds, seed=self.seed)
        self.alpha_, self.cv_scores_ = result.alpha, result.cv_scores
        return result.W, result.b

    def fitted_summary(self) -> dict[str, float]:
        return {"alpha": self.alpha_}


class PLSDecoder(ClosedFormDecoder):
    """Partial least squares (scikit-learn's ``PLSRegression``): the ``n_components`` directions of
    the responses that covary most with the latents, then least squares on those."""

    def __init__(self, n_components: int = 32):
        self.n_components = n_components

    def check_fits(self, n_samples: int, context: FitContext | None = None) -> None:
        if self.n_components < 1:
            raise InputError(f"decoder.n_components: must be >= 1, got {self.n_components}")
        super().check_fits(n_samples, context)
        if self.n_components >= n_samples:
            raise InputError(f"decoder.n_components: {self.n_components} needs more than {n_samples} trials")

    def solve(self, x, t):
        from sklearn.cross_decomposition import PLSRegression

        pls = PLSRegression(n_components=self.n_components, scale=False).fit(x, t)
        coef = pls.coef_.T  # scikit-learn applies it to centred responses, then adds the latents' mean
        return coef, pls.intercept_ - x.mean(axis=0) @ coef
