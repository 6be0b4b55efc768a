"""Closed-form decoders against independent references (numpy lstsq, pinv, scikit-learn Ridge)."""

import numpy as np
import pytest
import scipy.linalg
from sklearn.linear_model import Ridge

from hyperexp.decode.solvers import RidgeCVResult, fit_ols, fit_ridge, fold_indices, ridge_cv


def make_regression(n, p, d, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + rng.standard_normal(p)  # non-zero column means
    W = rng.standard_normal((p, d))
    b = rng.standard_normal(d)
    T = X @ W + b + noise * rng.standard_normal((n, d))
    return X, T, W, b


# ----------------------------------------------------------------------------- OLS


def test_ols_overdetermined_equals_lstsq_with_intercept_column():
    X, T, _, _ = make_regression(50, 8, 3)
    W, b = fit_ols(X, T)
    augmented = np.hstack([X, np.ones((50, 1))])
    reference, *_ = np.linalg.lstsq(augmented, T, rcond=None)
    np.testing.assert_allclose(W, reference[:-1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b, reference[-1], rtol=1e-10, atol=1e-10)


def test_ols_recovers_noiseless_weights():
    X, T, W_true, b_true = make_regression(40, 5, 2, noise=0.0)
    W, b = fit_ols(X, T)
    np.testing.assert_allclose(W, W_true, atol=1e-10)
    np.testing.assert_allclose(b, b_true, atol=1e-10)


def test_ols_underdetermined_is_minimum_norm_and_interpolates():
    X, T, _, _ = make_regression(12, 30, 4)
    W, b = fit_ols(X, T)
    Xc, Tc = X - X.mean(axis=0), T - T.mean(axis=0)
    reference, *_ = np.linalg.lstsq(Xc, Tc, rcond=None)
    np.testing.assert_allclose(W, reference, atol=1e-10)
    np.testing.assert_allclose(W, scipy.linalg.pinv(Xc) @ Tc, atol=1e-8)
    np.testing.assert_allclose(X @ W + b, T, atol=1e-8)  # p > n - 1: exact fit
    # Minimum norm: W lies in the row space of the centred design.
    row_space_projector = scipy.linalg.pinv(Xc) @ Xc
    np.testing.assert_allclose(row_space_projector @ W, W, atol=1e-8)


# ----------------------------------------------------------------------------- ridge


@pytest.mark.parametrize("n,p", [(60, 10), (15, 40)], ids=["p<n", "p>n"])
@pytest.mark.parametrize("alpha", [1e-3, 1.0, 250.0])
def test_ridge_equals_sklearn(n, p, alpha):
    X, T, _, _ = make_regression(n, p, 3, noise=0.5, seed=n + p)
    W, b = fit_ridge(X, T, alpha)
    model = Ridge(alpha=alpha, fit_intercept=True).fit(X, T)
    np.testing.assert_allclose(W, model.coef_.T, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b, model.intercept_, rtol=1e-8, atol=1e-8)
    assert W.shape == (p, 3) and b.shape == (3,)
    assert W.dtype == np.float64


def test_ridge_rank_deficient_design_equals_sklearn():
    X, T, _, _ = make_regression(30, 5, 2, noise=0.5, seed=9)
    X = np.hstack([X, X[:, :2], 2.0 * X[:, 4:5]])  # duplicated and scaled columns
    W, b = fit_ridge(X, T, 0.05)
    model = Ridge(alpha=0.05, fit_intercept=True).fit(X, T)
    np.testing.assert_allclose(W, model.coef_.T, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b, model.intercept_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(W[0], W[5], atol=1e-10)  # penalty splits weight equally


def test_ridge_tiny_alpha_approaches_ols_and_huge_alpha_predicts_mean():
    X, T, _, _ = make_regression(40, 6, 2, noise=0.3)
    W_ols, b_ols = fit_ols(X, T)
    W_small, b_small = fit_ridge(X, T, 1e-9)
    np.testing.assert_allclose(W_small, W_ols, atol=1e-7)
    np.testing.assert_allclose(b_small, b_ols, atol=1e-7)
    W_huge, b_huge = fit_ridge(X, T, 1e12)
    assert np.abs(W_huge).max() < 1e-7
    np.testing.assert_allclose(b_huge, T.mean(axis=0), atol=1e-6)


def test_ridge_accepts_float32_and_returns_float64():
    X, T, _, _ = make_regression(20, 5, 2)
    W32, b32 = fit_ridge(X.astype(np.float32), T.astype(np.float32), 1.0)
    W64, _ = fit_ridge(X.astype(np.float32).astype(np.float64), T.astype(np.float32).astype(np.float64), 1.0)
    assert W32.dtype == np.float64 and b32.dtype == np.float64
    np.testing.assert_allclose(W32, W64, rtol=1e-12)


# ----------------------------------------------------------------------------- folds and CV


def test_fold_indices_partition_and_determinism():
    folds = fold_indices(23, 5, seed=3)
    assert len(folds) == 5
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(23))
    again = fold_indices(23, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    other = fold_indices(23, 5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))


def slow_cv_scores(X, T, alphas, n_folds, seed):
    """Direct reference: refit fit_ridge per fold and alpha; pooled held-out MSE."""
    total = np.zeros(len(alphas))
    for held_out in fold_indices(X.shape[0], n_folds, seed):
        train = np.setdiff1d(np.arange(X.shape[0]), held_out)
        for index, alpha in enumerate(alphas):
            W, b = fit_ridge(X[train], T[train], alpha)
            total[index] += np.sum((X[held_out] @ W + b - T[held_out]) ** 2)
    return total / T.size


@pytest.mark.parametrize("n,p", [(23, 6), (17, 40)], ids=["p<n", "p>n"])
def test_ridge_cv_scores_equal_slow_direct_implementation(n, p):
    X, T, _, _ = make_regression(n, p, 3, noise=1.0, seed=7)
    alphas = [1e-2, 0.3, 3.0, 100.0]
    result = ridge_cv(X, T, alphas, n_folds=4, seed=11)
    np.testing.assert_allclose(result.cv_scores, slow_cv_scores(X, T, alphas, 4, 11), rtol=1e-9)


def test_ridge_cv_picks_intermediate_alpha_with_u_shaped_curve():
    # Many weak predictors and heavy noise: alpha -> 0 overfits, alpha -> inf predicts the mean.
    rng = np.random.default_rng(5)
    n, p, d = 80, 60, 4
    X = rng.standard_normal((n, p))
    T = X @ (0.15 * rng.standard_normal((p, d))) + rng.standard_normal((n, d))
    alphas = np.logspace(-4, 5, 10)
    result = ridge_cv(X, T, alphas, n_folds=5, seed=0)

    assert isinstance(result, RidgeCVResult)
    best = int(np.argmin(result.cv_scores))
    assert 0 < best < len(alphas) - 1
    assert result.alpha == alphas[best]
    assert np.all(np.diff(result.cv_scores[: best + 1]) <= 0)
    assert np.all(np.diff(result.cv_scores[best:]) >= 0)
    assert result.cv_scores[0] > 1.2 * result.cv_scores[best]
    assert result.cv_scores[-1] > 1.05 * result.cv_scores[best]
    np.testing.assert_array_equal(result.alphas, alphas)
    # The returned model is the refit on all data with the chosen alpha.
    W, b = fit_ridge(X, T, result.alpha)
    np.testing.assert_allclose(result.W, W, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.b, b, rtol=1e-12, atol=1e-12)


def test_ridge_cv_deterministic_given_seed():
    X, T, _, _ = make_regression(30, 12, 2, noise=1.0)
    first = ridge_cv(X, T, [0.1, 1.0, 10.0], seed=2)
    second = ridge_cv(X, T, [0.1, 1.0, 10.0], seed=2)
    other = ridge_cv(X, T, [0.1, 1.0, 10.0], seed=3)
    np.testing.assert_array_equal(first.cv_scores, second.cv_scores)
    assert not np.array_equal(first.cv_scores, other.cv_scores)


# ----------------------------------------------------------------------------- errors


def test_shape_mismatch_and_nan_raise():
    X, T, _, _ = make_regression(10, 3, 2)
    for solve in (fit_ols, lambda X, T: fit_ridge(X, T, 1.0), lambda X, T: ridge_cv(X, T, [1.0], n_folds=2)):
        with pytest.raises(ValueError, match="same number of rows"):
            solve(X, T[:-1])
        with pytest.raises(ValueError, match="2-D"):
            solve(X[:, 0], T)
        bad = X.copy()
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            solve(bad, T)
        bad_targets = T.copy()
        bad_targets[0, 0] = np.inf
        with pytest.raises(ValueError, match="NaN or infinite"):
            solve(X, bad_targets)


@pytest.mark.parametrize("alpha", [0.0, -1.0, np.nan, np.inf])
def test_bad_alpha_raises(alpha):
    X, T, _, _ = make_regression(10, 3, 2)
    with pytest.raises(ValueError, match="alpha must be"):
        fit_ridge(X, T, alpha)
    with pytest.raises(ValueError, match="alpha must be"):
        ridge_cv(X, T, [1.0, alpha])


def test_ridge_cv_grid_and_fold_errors():
    X, T, _, _ = make_regression(10, 3, 2)
    with pytest.raises(ValueError, match="non-empty"):
        ridge_cv(X, T, [])
    with pytest.raises(ValueError, match="cannot exceed"):
        ridge_cv(X, T, [1.0], n_folds=11)
    with pytest.raises(ValueError, match="at least 2"):
        ridge_cv(X, T, [1.0], n_folds=1)
    # Leave-one-out (n_folds == n) is allowed.
    assert ridge_cv(X, T, [1.0], n_folds=10).cv_scores.shape == (1,)
