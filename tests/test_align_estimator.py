"""Hyperalignment as a scikit-learn estimator: conventions, rows keyed by subject, bad input.

The numbers themselves (PyMVPA fixtures, dense reference) are tested in test_align.py.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks

from hyperexp.align import Hyperalignment
from hyperexp.errors import InputError

# scikit-learn's API checks that need no fit on a 2-D X. The others (fit returns self, pickling,
# idempotent fit, overwrite/dont_overwrite params, n_features_in_, dtypes, NaN handling, ...) fit
# or transform one 2-D array, which is not this estimator's input (rows keyed by subject); their
# intent is tested below with keyed input instead.
API_CHECKS = [
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_tags_renamed,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
    estimator_checks.check_mixin_order,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_transformers_unfitted,  # transform before fit raises (on a 2-D X: fitted is checked first)
]


def subjects(voxels=(12, 15, 10), samples=20, seed=0) -> dict[str, np.ndarray]:
    """Random subjects keyed "s0", "s1", ... sharing a latent signal."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((samples, 4))
    return {
        f"s{k}": shared @ rng.standard_normal((4, p)) + 0.5 * rng.standard_normal((samples, p))
        for k, p in enumerate(voxels)
    }


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda check: check.__name__)
def test_scikit_learn_api_checks(check):
    check(Hyperalignment.__name__, Hyperalignment())


def test_parameters_are_stored_unchanged_and_clone_round_trips():
    aligner = Hyperalignment(device="cpu", dtype="float32", solver="voxelspace")
    assert aligner.get_params() == {"device": "cpu", "dtype": "float32", "solver": "voxelspace"}
    assert Hyperalignment().get_params() == {"device": "auto", "dtype": "float64", "solver": "auto"}
    copy = clone(aligner.fit(subjects()))
    assert copy.get_params() == aligner.get_params()
    assert not hasattr(copy, "subject_maps_") and hasattr(aligner, "subject_maps_")
    assert repr(aligner) == "Hyperalignment(device='cpu', dtype='float32', solver='voxelspace')"


def test_transform_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        Hyperalignment().transform(subjects())


def test_fit_returns_self_with_fitted_attributes_keyed_like_the_input():
    data = subjects()
    aligner = Hyperalignment(device="cpu")
    assert aligner.fit(data) is aligner
    assert aligner.reference_ == "s1"  # the most voxels
    assert list(aligner.subject_maps_) == ["s0", "s1", "s2"]
    assert aligner.common_space_.shape == (20, 15)


def test_fit_transform_equals_fit_then_transform_keyed_the_same_way():
    data = subjects()
    mapped = Hyperalignment(device="cpu").fit_transform(data)
    again = Hyperalignment(device="cpu").fit(data).transform(data)
    assert list(mapped) == list(again) == ["s0", "s1", "s2"]
    for key in data:
        assert mapped[key].shape == (20, 15) and mapped[key].dtype == np.float64
        np.testing.assert_allclose(again[key], mapped[key], rtol=0, atol=1e-12 * np.abs(mapped[key]).max())


def test_transform_takes_any_subset_of_the_fitted_subjects():
    data = subjects()
    aligner = Hyperalignment(device="cpu").fit(data)
    all_mapped = aligner.transform(data)
    only = aligner.transform({"s2": data["s2"][:3]})
    assert list(only) == ["s2"]
    np.testing.assert_allclose(only["s2"], all_mapped["s2"][:3], rtol=0, atol=1e-13)  # BLAS blocking differs
    assert aligner.transform({"s0": np.empty((0, 12))})["s0"].shape == (0, 15)


def test_a_list_of_arrays_is_keyed_by_position():
    data = list(subjects().values())
    aligner = Hyperalignment(device="cpu")
    mapped = aligner.fit_transform(data)
    assert list(mapped) == [0, 1, 2] and aligner.reference_ == 1
    np.testing.assert_array_equal(aligner.transform(data[:2])[1], aligner.transform({1: data[1]})[1])
    keyed = Hyperalignment(device="cpu").fit_transform(dict(enumerate(data)))
    for k in range(3):
        np.testing.assert_array_equal(mapped[k], keyed[k])


def test_refit_replaces_the_fitted_subjects():
    aligner = Hyperalignment(device="cpu").fit(subjects())
    aligner.fit({"a": subjects()["s0"], "b": subjects()["s2"]})
    assert list(aligner.subject_maps_) == ["a", "b"] and aligner.reference_ == "a"
    with pytest.raises(InputError, match=r"subject 's1' was not fitted \(fitted: subject 'a', subject 'b'\)"):
        aligner.transform({"s1": subjects()["s1"]})


def test_input_arrays_are_left_unchanged_and_read_only_arrays_work():
    data = subjects()
    copies = {key: rows.copy() for key, rows in data.items()}
    for rows in data.values():
        rows.flags.writeable = False
    aligner = Hyperalignment(device="cpu")
    mapped = aligner.fit_transform(data)
    aligner.transform(data)
    for key, rows in data.items():
        np.testing.assert_array_equal(rows, copies[key])
    writable = Hyperalignment(device="cpu").fit_transform(copies)
    for key in data:
        np.testing.assert_array_equal(mapped[key], writable[key])
        np.testing.assert_array_equal(copies[key], data[key])


def test_pickled_estimator_maps_the_same():
    data = subjects()
    aligner = Hyperalignment(device="cpu").fit(data)
    restored = pickle.loads(pickle.dumps(aligner))
    for key, rows in restored.transform(data).items():
        np.testing.assert_array_equal(rows, aligner.transform(data)[key])


def test_float32_math_is_close_to_float64():
    data = subjects()
    double = Hyperalignment(device="cpu").fit_transform(data)
    single = Hyperalignment(device="cpu", dtype="float32").fit_transform(data)
    for key in data:
        assert single[key].dtype == np.float64
        np.testing.assert_allclose(single[key], double[key], rtol=0, atol=1e-4 * np.abs(double[key]).max())


# --- bad input: InputError (a ValueError), one line naming the subject or parameter ---------------


def with_value(data, key, index, value):
    changed = dict(data)
    changed[key] = data[key].copy()
    changed[key][index] = value
    return changed


BAD_FITS = {
    "one subject": ({"s0": subjects()["s0"]}, "at least 2 subjects, got 1"),
    "one 2-D array": (subjects()["s0"], "rows keyed by subject .* got one 2-D array"),
    "not a collection": (42, "rows keyed by subject .* got int"),
    "unequal samples": (
        {**subjects(), "s2": subjects()["s2"][:19]},
        "subject 's2': 19 samples, but subject 's0' has 20",
    ),
    "1-D rows": ({**subjects(), "s1": np.ones(20)}, r"subject 's1': expected a 2-D array .* shape \(20,\)"),
    "NaN": (with_value(subjects(), "s2", (2, 3), np.nan), "subject 's2': contains NaN or Inf"),
    "Inf": (with_value(subjects(), "s0", (0, 0), -np.inf), "subject 's0': contains NaN or Inf"),
    "strings": ({**subjects(), "s1": np.full((20, 3), "a")}, "subject 's1': expected real numbers"),
    "ragged": ({**subjects(), "s1": [[1.0, 2.0], [3.0]]}, "subject 's1': not an array of numbers"),
    "no voxels": ({**subjects(), "s1": np.ones((20, 0))}, "subject 's1': has no voxels"),
    "one sample": ({"a": np.ones((1, 3)), "b": np.ones((1, 3))}, "subject 'a': needs at least 2 samples, got 1"),
    "constant": ({**subjects(), "s0": np.ones((20, 12))}, "subject 's0': all samples are identical"),
    "integer keys": ([subjects()["s0"], subjects()["s1"][:5]], "subject 1: 5 samples, but subject 0 has 20"),
}


@pytest.mark.parametrize("case", BAD_FITS)
def test_bad_training_rows_raise_input_error_naming_the_subject(case):
    data, message = BAD_FITS[case]
    with pytest.raises(InputError, match=message):
        Hyperalignment(device="cpu").fit(data)


def test_bad_transform_input_raises_input_error_naming_the_subject():
    data = subjects()
    aligner = Hyperalignment(device="cpu").fit(data)
    with pytest.raises(InputError, match="subject 's7' was not fitted"):
        aligner.transform({"s7": data["s0"]})
    with pytest.raises(InputError, match="subject 's1': 12 voxels, but it was fitted with 15"):
        aligner.transform({"s1": data["s0"]})
    with pytest.raises(InputError, match="subject 's0': contains NaN or Inf"):
        aligner.transform({"s0": np.full((2, 12), np.nan)})
    with pytest.raises(InputError, match="subject 0 was not fitted"):
        aligner.transform([data["s0"]])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dtype": "float16"}, r"Hyperalignment\(dtype='float16'\): expected 'float64' or 'float32'"),
        ({"dtype": None}, r"Hyperalignment\(dtype=None\)"),
        ({"device": "nonsense"}, r"Hyperalignment\(device='nonsense'\)"),
        ({"solver": "dense"}, r"Hyperalignment\(solver='dense'\): expected one of auto, rowspace, voxelspace"),
    ],
)
def test_bad_parameters_raise_input_error_at_fit(params, message):
    aligner = Hyperalignment(**params)  # scikit-learn convention: validated at fit, not in __init__
    with pytest.raises(InputError, match=message):
        aligner.fit(subjects())
