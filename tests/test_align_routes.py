"""hyperexp.align's cost model: the route of every Procrustes fit is decided before any decomposition,
no eigendecomposition is computed and then thrown away, and all routes give the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import hyperexp.align.kernels as kernels
import hyperexp.align.procrustes as procrustes
import hyperexp.align.routes as routes
from hyperexp.align import Hyperalignment
from tests.conftest import bench_script

REPO = Path(__file__).resolve().parents[1]
PYMVPA = REPO / "tests" / "fixtures" / "pymvpa"


bench = bench_script("hyperalign")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matrices: a second BLAS thread only stalls on a shared machine (see test_align.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def calls(monkeypatch) -> dict[str, int]:
    """Counts the fits' eigendecompositions, SVDs and Cholesky factorizations, and the fits by route."""
    counts = {"eigh": 0, "svd": 0, "cholesky": 0, "fit_gram": 0, "fit_svd": 0}

    def counted(function, name):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for name in ("eigh", "svd"):
        monkeypatch.setattr(procrustes, name, counted(getattr(procrustes, name), name))
    for name in ("cholesky", "fit_gram", "fit_svd"):
        monkeypatch.setattr(routes, name, counted(getattr(routes, name), name))
    return counts


def subjects(shapes, seed=0, spectrum_decay=0.0) -> list[np.ndarray]:
    """Random subjects sharing a 12-dimensional signal; ``spectrum_decay`` > 0 makes them ill-conditioned."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((shapes[0][0], 12))
    out = []
    for samples, voxels in shapes:
        data = shared @ rng.standard_normal((12, voxels)) + rng.standard_normal((samples, voxels))
        out.append(data * np.exp(-spectrum_decay * np.linspace(0, 1, voxels)) + rng.normal(0, 3, voxels))
    return out


def assert_close(result, expected, rel):
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=rel * np.abs(expected).max())


# --- the decision, from shapes ------------------------------------------------------------------


def test_white_noise_condition_grows_as_samples_approach_features():
    conditions = [routes.white_noise_condition(samples, 4096) for samples in (500, 1085, 2000, 3999)]
    assert conditions == sorted(conditions) and conditions[0] > 1
    assert routes.white_noise_condition(4096, 4096) == np.inf
    assert routes.white_noise_condition(2000, 1000) == routes.white_noise_condition(1000, 2000)


@pytest.mark.parametrize(
    ("samples", "voxels", "dtype", "expected"),
    [
        (1085, 4096, torch.float64, True),  # the published size: Gram route
        (179, 260, torch.float64, True),  # PyMVPA fixture shape: shapes allow it (the data decide)
        (3999, 4096, torch.float64, False),  # samples approach voxels: SVD without trying
        (199, 200, torch.float64, False),
        (299, 90, torch.float64, False),  # more samples than voxels: no row-space Gram
        (1085, 4096, torch.float32, False),  # float32 cannot afford squaring a condition number
    ],
)
def test_gram_route_expected_from_shapes(samples, voxels, dtype, expected):
    assert routes.gram_route_expected(samples, voxels, voxels, dtype) is expected


@pytest.mark.parametrize(
    ("shape", "solver", "route"),
    [
        ((300, 90), "auto", "voxelspace"),
        ((91, 90), "auto", "voxelspace"),  # n - 1 == p: the row space is all of voxel space
        ((300, 90), "rowspace", "svd"),
        ((40, 120), "auto", "gram"),
        ((40, 120), "voxelspace", "voxelspace"),
        ((105, 120), "auto", "svd"),  # row space (104 <= 0.9 * 120), but white noise is too ill-conditioned
        ((110, 120), "auto", "voxelspace"),  # 109 > 0.9 * 120: a QR would not pay
        ((110, 120), "rowspace", "svd"),
    ],
)
def test_source_route(shape, solver, route):
    source = routes.Source(torch.randn(*shape, dtype=torch.float64), solver)
    target = torch.randn(shape[0] - 1, shape[1], dtype=torch.float64)
    assert source.route(routes.TargetSpace(target)) == route


def test_condition_estimate_accepts_moderate_and_rejects_large_condition_numbers():
    rotation = torch.linalg.qr(torch.randn(200, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[
        0
    ]

    def with_condition(condition):
        return (rotation * torch.logspace(0, np.log10(condition), 200, dtype=torch.float64)) @ rotation.T

    assert routes.gram_condition_limit(torch.float64) == pytest.approx(1e-10 / np.finfo(np.float64).eps)
    assert routes.cholesky_within_limit(with_condition(1e3)) is not None
    assert routes.cholesky_within_limit(with_condition(1e8)) is None
    assert routes.cholesky_within_limit(-with_condition(10.0)) is None  # not positive definite


# --- nothing computed to be thrown away -----------------------------------------------------------


@pytest.mark.parametrize("shape", [(180, 205), (200, 205)])  # row space, voxel space
def test_near_square_shapes_go_straight_to_the_svd(shape, calls):
    """Samples approach voxels: the SVD route is chosen from the shapes alone, no condition estimate."""
    assert not routes.gram_route_expected(shape[0] - 1, shape[1], shape[1], torch.float64)
    Hyperalignment(device="cpu").fit(subjects([shape, shape]))
    assert calls["eigh"] == calls["cholesky"] == calls["fit_gram"] == 0
    assert calls["fit_svd"] == calls["svd"] == 4


def test_ill_conditioned_data_are_caught_before_any_eigendecomposition(calls):
    """Shapes that allow the Gram route, data that do not: the Cholesky-based estimate rejects them."""
    data = subjects([(50, 120), (50, 120)], seed=1, spectrum_decay=14.0)
    assert routes.gram_route_expected(49, 120, 120, torch.float64)
    Hyperalignment(device="cpu").fit(data)
    assert calls["cholesky"] > 0 and calls["eigh"] == 0 and calls["fit_svd"] == 4


def test_well_conditioned_data_take_one_eigendecomposition_per_fit(calls):
    Hyperalignment(device="cpu").fit(subjects([(40, 120), (40, 130), (40, 110)]))
    assert calls["fit_gram"] == calls["eigh"] == 2 + 3 + 3 and calls["svd"] == 0


def test_fits_grow_linearly_with_subjects(calls):
    """Level 1: N - 1 fits, level 2: N, level 3: N."""
    for n_subjects in (3, 5):
        calls.update(fit_gram=0, fit_svd=0)
        Hyperalignment(device="cpu").fit(subjects([(30, 60)] * n_subjects))
        assert calls["fit_gram"] + calls["fit_svd"] == 3 * n_subjects - 1


# --- every route, the same outputs ----------------------------------------------------------------

ROUTES = {
    "gram": ("rowspace", np.inf),
    "rowspace-svd": ("rowspace", 0.0),
    "voxelspace": ("voxelspace", 1e-10),
}


def fit_by_route(route, data, monkeypatch):
    solver, limit = ROUTES[route]
    monkeypatch.setattr(routes, "_GRAM_MAX_RELATIVE_ERROR", limit)
    aligner = Hyperalignment(device="cpu", solver=solver)
    mapped = aligner.fit_transform(data)
    return aligner, mapped


@pytest.mark.parametrize(
    "shapes",
    [
        [(200, 180), (200, 170), (200, 190)],  # more samples than voxels
        [(180, 200), (180, 210), (180, 190)],  # fewer samples than voxels
        [(180, 200), (180, 150), (180, 179)],  # both kinds, and n - 1 == p
    ],
    ids=["n>p", "n<p", "mixed"],
)
def test_all_routes_give_the_same_outputs(shapes, monkeypatch):
    data = dict(zip("abc", subjects(shapes, seed=3)))
    rng = np.random.default_rng(4)
    new_rows = {key: rng.normal(0, 3, (7, rows.shape[1])) for key, rows in data.items()}
    results = {}
    for route in ROUTES:
        aligner, mapped = fit_by_route(route, data, monkeypatch)
        results[route] = (mapped, aligner.common_space_, aligner.transform(new_rows))
    expected_mapped, expected_common, expected_new = results["voxelspace"]
    for route in ("gram", "rowspace-svd"):
        mapped, common, new = results[route]
        assert_close(common, expected_common, rel=1e-10)
        for key in data:
            assert_close(mapped[key], expected_mapped[key], rel=1e-10)
            assert_close(new[key], expected_new[key], rel=1e-10)


@pytest.mark.parametrize("case", ["two_subjects", "three_subjects", "unequal_voxels", "heldout"])
def test_both_solvers_match_pymvpa(case):
    folder = PYMVPA / case
    count = json.loads((folder / "meta.json").read_text())["n_subjects"]
    data = [np.load(folder / f"X{k + 1}.npy") for k in range(count)]
    expected = [np.load(folder / f"y{k + 1}.npy") for k in range(count)]
    for solver in ("rowspace", "voxelspace"):
        mapped = Hyperalignment(device="cpu", solver=solver).fit_transform(data)
        for k in range(count):
            assert_close(mapped[k], expected[k], rel=1e-8)


def test_voxel_space_maps_any_rows_like_the_dense_algorithm():
    """More samples than voxels (equal counts, so nothing is degenerate): PyMVPA's mappers are
    unique, so every row maps the same."""
    data = subjects([(120, 40), (120, 40), (120, 40)], seed=5)
    aligner = Hyperalignment(device="cpu", solver="voxelspace")
    mapped = aligner.fit_transform(data)
    dense_mapped, dense_common, dense_mappers = bench.dense_hyperalignment(data)
    rows = np.random.default_rng(6).normal(0, 3, (9, 40))
    assert_close(aligner.common_space_, dense_common, rel=1e-10)
    for k in range(3):
        assert_close(mapped[k], dense_mapped[k], rel=1e-10)
        assert_close(aligner.transform({k: rows})[k], bench.apply_dense(dense_mappers[k], rows), rel=1e-10)


# --- CPU kernels ----------------------------------------------------------------------------------


def test_cpu_kernels_equal_plain_matmuls():
    generator = torch.Generator().manual_seed(7)
    rows = torch.randn(30, 80, dtype=torch.float64, generator=generator)
    lower = torch.linalg.cholesky(rows @ rows.T)
    symmetric = torch.randn(30, 30, dtype=torch.float64, generator=generator)
    symmetric = symmetric + symmetric.T
    matrix = torch.randn(30, 12, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(kernels.gram(rows), rows @ rows.T, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(kernels.matmul(rows.T, matrix), rows.T @ matrix, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(kernels.lower_product(lower, matrix), lower @ matrix, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(
        kernels.lower_congruence(lower, symmetric), lower.T @ symmetric @ lower, rtol=1e-12, atol=1e-10
    )
    torch.testing.assert_close(kernels.cholesky(rows @ rows.T), lower, rtol=1e-12, atol=1e-12)
    assert kernels.cholesky(symmetric) is None  # indefinite
    values, vectors = kernels.eigh(symmetric)
    torch.testing.assert_close((vectors * values) @ vectors.T, symmetric, rtol=1e-12, atol=1e-12)
    assert torch.all(values[1:] >= values[:-1])
    left, singular, right = kernels.svd(rows)
    torch.testing.assert_close((left * singular) @ right, rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(singular, torch.linalg.svdvals(rows), rtol=1e-12, atol=1e-12)
    assert left.shape == (30, 30) and right.shape == (30, 80)
