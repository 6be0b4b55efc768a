"""hyperexp.align: equal to PyMVPA 2.6.5 Hyperalignment() defaults, and to a dense-SVD reference.

The estimator API (keys, scikit-learn conventions, bad input) is tested in test_align_estimator.py, the
cost model and its routes in test_align_routes.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

import hyperexp.align.coordinates as coordinates
import hyperexp.align.routes as routes
from hyperexp.align import Hyperalignment
from tests.conftest import bench_script

REPO = Path(__file__).resolve().parents[1]
PYMVPA = Path(__file__).parent / "fixtures" / "pymvpa"
CASES = ["two_subjects", "three_subjects", "unequal_voxels", "heldout"]


bench = bench_script("hyperalign")


def load_case(case: str) -> dict:
    folder = PYMVPA / case
    meta = json.loads((folder / "meta.json").read_text())
    count = meta["n_subjects"]
    load = lambda name: [np.load(folder / f"{name}{k + 1}.npy") for k in range(count)]  # noqa: E731
    case_data = {
        "meta": meta,
        "X": load("X"),
        "y": load("y"),
        "avg": np.load(folder / "avg.npy"),
        "common": np.load(folder / "commonspace.npy"),
    }
    if (folder / "Xtest1.npy").exists():
        case_data["Xtest"], case_data["ytest"] = load("Xtest"), load("ytest")
    return case_data


def fit_mapped(aligner: Hyperalignment, subjects) -> list[np.ndarray]:
    """``fit_transform`` of a list of subjects, as a list in subject order."""
    mapped = aligner.fit_transform(subjects)
    assert list(mapped) == list(range(len(subjects)))
    return list(mapped.values())


def transform_one(aligner: Hyperalignment, subject: int, rows: np.ndarray) -> np.ndarray:
    return aligner.transform({subject: rows})[subject]


def assert_close(result, expected, rel=1e-8):
    """Equal up to ``rel`` times the largest magnitude of ``expected``."""
    assert result.shape == expected.shape
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=0, atol=rel * np.abs(expected).max())


def random_subjects(shapes, seed=0, spectrum_decay=0.0):
    """Random subjects sharing a latent signal; ``spectrum_decay`` > 0 makes them ill-conditioned."""
    rng = np.random.default_rng(seed)
    n = shapes[0][0]
    shared = rng.standard_normal((n, 12))
    subjects = []
    for samples, voxels in shapes:
        data = shared @ rng.standard_normal((12, voxels)) + rng.standard_normal((samples, voxels))
        data *= np.exp(-spectrum_decay * np.linspace(0, 1, voxels))
        subjects.append(data + rng.normal(0, 3, voxels))
    return subjects


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These matrices are small (<= 300 x 300): with a second thread, LAPACK's many parallel regions
    stall whenever another process holds a core of a shared machine (50-300 ms instead of 2-5 ms
    per eigh/SVD), in torch (MKL) and NumPy (OpenBLAS) alike. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # threadpoolctl comes with scikit-learn (the test extra)
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def routes_taken(monkeypatch) -> list[tuple[str, str]]:
    """Records every Procrustes fit as (route, basis): ("gram" or "svd", "cholesky", "householder" or "voxel")."""
    taken = []
    for route in ("gram", "svd"):
        fit = getattr(routes, f"fit_{route}")

        def recorded(basis, *args, fit=fit, route=route):
            taken.append((route, type(basis).__name__.removesuffix("Basis").lower()))
            return fit(basis, *args)

        monkeypatch.setattr(routes, f"fit_{route}", recorded)
    return taken


# --- PyMVPA reference fixtures -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_matches_pymvpa(case):
    data = load_case(case)
    aligner = Hyperalignment(device="cpu")
    mapped = fit_mapped(aligner, data["X"])
    assert aligner.reference_ == data["meta"]["chosen_ref_ds"]
    for result, expected in zip(mapped, data["y"], strict=True):
        assert_close(result, expected)
    assert_close(np.mean(mapped, axis=0), data["avg"])
    assert_close(aligner.common_space_, data["common"])


def test_heldout_rows_match_pymvpa():
    data = load_case("heldout")
    aligner = Hyperalignment(device="cpu").fit(data["X"])
    for k, (rows, expected) in enumerate(zip(data["Xtest"], data["ytest"], strict=True)):
        assert_close(transform_one(aligner, k, rows), expected)


@pytest.mark.parametrize(
    ("case", "expected_routes"),
    [
        ("two_subjects", {("gram", "cholesky")}),
        ("three_subjects", {("gram", "cholesky")}),
        ("unequal_voxels", {("gram", "cholesky"), ("svd", "householder")}),  # 120 and 140 voxels <= 149
    ],
)
def test_gram_route_matches_pymvpa_even_when_ill_conditioned(case, expected_routes, monkeypatch, routes_taken):
    """The fixtures are ill-conditioned (cond Z up to ~5e5), so they normally take the SVD route;
    forced through the fast Gram route wherever it applies (samples - 1 < voxels) they still agree
    to 1e-8."""
    monkeypatch.setattr(routes, "_GRAM_MAX_RELATIVE_ERROR", np.inf)
    data = load_case(case)
    mapped = fit_mapped(Hyperalignment(device="cpu", solver="rowspace"), data["X"])
    assert set(routes_taken) == expected_routes
    for result, expected in zip(mapped, data["y"], strict=True):
        assert_close(result, expected)


def test_keys_of_a_mapping_name_the_subjects_and_the_reference():
    data = load_case("unequal_voxels")
    names = ["sub-03", "sub-01", "sub-02"]
    aligner = Hyperalignment(device="cpu")
    mapped = aligner.fit_transform(dict(zip(names, data["X"])))
    assert list(mapped) == names and aligner.reference_ == "sub-01"
    for name, expected in zip(names, data["y"], strict=True):
        assert_close(mapped[name], expected)
    assert_close(aligner.transform({"sub-02": data["X"][2]})["sub-02"], data["y"][2])


def test_two_subjects_take_four_procrustes_fits(monkeypatch):
    """Level 1: 1, level 2: 1 (the non-reference subject's level-1 fit is reused), level 3: 2."""
    fits = []
    fit = routes.Source.fit
    monkeypatch.setattr(routes.Source, "fit", lambda *args: fits.append(1) or fit(*args))
    Hyperalignment(device="cpu").fit(load_case("two_subjects")["X"])
    assert len(fits) == 4
    fits.clear()
    Hyperalignment(device="cpu").fit(load_case("three_subjects")["X"])
    assert len(fits) == 2 + 3 + 3


def test_fit_is_deterministic():
    data = load_case("unequal_voxels")
    first, second = Hyperalignment(device="cpu"), Hyperalignment(device="cpu")
    for a, b in zip(fit_mapped(first, data["X"]), fit_mapped(second, data["X"]), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(first.common_space_, second.common_space_)
    assert np.array_equal(transform_one(first, 2, data["X"][2][:5]), transform_one(second, 2, data["X"][2][:5]))


def test_float32_input_gives_float64_output_of_the_same_numbers():
    data = load_case("two_subjects")
    single = [x.astype(np.float32) for x in data["X"]]
    from_single = fit_mapped(Hyperalignment(device="cpu"), single)
    from_double = fit_mapped(Hyperalignment(device="cpu"), [x.astype(np.float64) for x in single])
    for a, b in zip(from_single, from_double, strict=True):
        assert a.dtype == np.float64 and np.array_equal(a, b)


# --- against the dense-SVD reference (bench/hyperalign.py) ---------------------------------------

WIDE = [(40, 90), (40, 120), (40, 100)]  # voxels > samples; the reference is subject 1


@pytest.mark.parametrize(("route", "basis"), [("gram", "cholesky"), ("svd", "householder")])
def test_row_space_routes_equal_dense_svd_when_voxels_exceed_samples(route, basis, monkeypatch, routes_taken):
    if route == "svd":
        monkeypatch.setattr(routes, "_GRAM_MAX_RELATIVE_ERROR", 0.0)
    subjects = random_subjects(WIDE)
    aligner = Hyperalignment(device="cpu")
    mapped = fit_mapped(aligner, subjects)
    dense_mapped, dense_common, _ = bench.dense_hyperalignment(subjects)
    assert set(routes_taken) == {(route, basis)}
    assert aligner.reference_ == 1
    for result, expected in zip(mapped, dense_mapped, strict=True):
        assert_close(result, expected, rel=1e-10)
    assert_close(aligner.common_space_, dense_common, rel=1e-10)


def test_ill_conditioned_data_take_the_svd_route_and_stay_exact(routes_taken):
    subjects = random_subjects([(50, 80), (50, 80)], seed=1, spectrum_decay=12.0)
    mapped = fit_mapped(Hyperalignment(device="cpu"), subjects)
    assert set(routes_taken) == {("svd", "householder")}
    for result, expected in zip(mapped, bench.dense_hyperalignment(subjects)[0], strict=True):
        assert_close(result, expected, rel=1e-10)


def test_transform_of_rows_inside_the_training_row_space_equals_dense():
    subjects = random_subjects(WIDE, seed=2)
    aligner = Hyperalignment(device="cpu")
    mapped = fit_mapped(aligner, subjects)
    _, _, dense_mappers = bench.dense_hyperalignment(subjects)
    rng = np.random.default_rng(3)
    for k, data in enumerate(subjects):
        assert_close(transform_one(aligner, k, data), mapped[k], rel=1e-12)
        mean = data.mean(axis=0)
        inside = mean + rng.standard_normal((7, len(data))) @ (data - mean) / len(data)
        assert_close(transform_one(aligner, k, inside), bench.apply_dense(dense_mappers[k], inside), rel=1e-10)


def test_transform_sends_directions_orthogonal_to_the_training_row_space_to_zero():
    subjects = random_subjects(WIDE, seed=4)
    aligner = Hyperalignment(device="cpu").fit(subjects)
    for k, data in enumerate(subjects):
        mean = data.mean(axis=0)
        orthogonal = scipy.linalg.null_space(data - mean).T  # rows v with (X - mean) @ v = 0
        assert orthogonal.shape[0] == data.shape[1] - (len(data) - 1)
        mapped = transform_one(aligner, k, mean + 10 * orthogonal[:5])
        np.testing.assert_allclose(
            mapped,
            np.broadcast_to(aligner.common_space_.mean(axis=0), mapped.shape),
            rtol=0,
            atol=1e-10 * np.abs(aligner.common_space_).max(),
        )


def test_fewer_voxels_than_samples_maps_any_rows_like_dense():
    subjects = random_subjects([(60, 20), (60, 20)], seed=5)
    aligner = Hyperalignment(device="cpu")
    mapped = fit_mapped(aligner, subjects)
    dense_mapped, _, dense_mappers = bench.dense_hyperalignment(subjects)
    rows = np.random.default_rng(6).normal(0, 3, (9, 20))
    for k in range(2):
        assert_close(mapped[k], dense_mapped[k], rel=1e-10)
        assert_close(transform_one(aligner, k, rows), bench.apply_dense(dense_mappers[k], rows), rel=1e-10)


def test_constant_voxels_of_the_reference_stay_zero_and_change_nothing_else():
    """In exact arithmetic a constant reference voxel is 0 in every common space and mapped output,
    and the other features are those of the problem without that voxel."""
    subjects = random_subjects([(30, 50), (30, 48)], seed=7)
    constant = [3, 17]
    varying = np.setdiff1d(np.arange(50), constant)
    with_constant = [subjects[0].copy(), subjects[1]]
    with_constant[0][:, constant] = 2.9  # its computed mean is not exactly 2.9 (spread ~1e-15, not 0)
    full, reduced = Hyperalignment(device="cpu"), Hyperalignment(device="cpu")
    full_mapped = fit_mapped(full, with_constant)
    reduced_mapped = fit_mapped(reduced, [subjects[0][:, varying], subjects[1]])
    assert full.reference_ == 0 and reduced.reference_ == 0
    for result, expected in zip(full_mapped, reduced_mapped, strict=True):
        np.testing.assert_allclose(result[:, constant], 0, atol=1e-12)
        assert_close(result[:, varying], expected, rel=1e-10)
    assert_close(full.common_space_[:, varying], reduced.common_space_, rel=1e-10)


def test_zscore_in_mean_free_coordinates_is_zscore_with_ddof_0_and_constant_features_only_demeaned():
    data = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [8.0, 5.0, 0.0], [2.0, 5.0, 1.0]])
    scored = coordinates.from_mean_free_coordinates(
        coordinates.zscore_coordinates_(coordinates.to_mean_free_coordinates(torch.tensor(data)))
    ).numpy()
    varying = data[:, [0, 2]]
    np.testing.assert_allclose(scored[:, [0, 2]], (varying - varying.mean(0)) / varying.std(0), rtol=1e-14)
    np.testing.assert_allclose(scored[:, 1], 0, atol=1e-15)


def test_mean_free_coordinates_are_an_orthonormal_basis_of_the_demeaned_rows():
    n = 7
    basis = coordinates.from_mean_free_coordinates(torch.eye(n - 1, dtype=torch.float64)).numpy()  # E, (n, n-1)
    np.testing.assert_allclose(basis.T @ basis, np.eye(n - 1), atol=1e-15)
    np.testing.assert_allclose(basis.sum(axis=0), 0, atol=1e-15)
    rows = torch.tensor(np.random.default_rng(8).standard_normal((n, 3)))
    np.testing.assert_allclose(coordinates.to_mean_free_coordinates(rows).numpy(), basis.T @ rows.numpy(), atol=1e-14)
