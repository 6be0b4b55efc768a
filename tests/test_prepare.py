import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from hyperexp.data import variants as prepare_module
from hyperexp.data.cache import cached_arrays, content_key
from hyperexp.data.variants import prepare, zscore


def test_subject_variant_published_zscores_each_split_with_its_own_statistics(small_subjects):
    data = prepare(small_subjects[:1], "subject", "published")
    for x in (data.x_train, data.x_test):
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(x.std(0), 1, atol=1e-4)
    np.testing.assert_array_equal(data.t_test, small_subjects[0].t_test)
    assert data.x_train.dtype == np.float32


def test_strict_protocol_applies_training_statistics_to_test_rows(small_subjects):
    subject = small_subjects[0]
    data = prepare([subject], "subject", "strict")
    mean, std = subject.x_train.mean(0), subject.x_train.std(0)
    np.testing.assert_allclose(data.x_test, (subject.x_test - mean) / std, rtol=1e-4, atol=1e-4)
    assert np.abs(data.x_test.mean(0)).max() > 0.05  # not re-centred on the test rows


def test_average_variant_is_the_plain_mean(small_subjects):
    data = prepare(small_subjects[:2], "average", "published")
    expected = zscore((small_subjects[0].x_train + small_subjects[1].x_train) / 2)
    np.testing.assert_allclose(data.x_train, expected, rtol=1e-4, atol=1e-5)


def test_constant_voxels_are_demeaned_not_nan(small_subjects):
    subject = small_subjects[0]
    x_train = subject.x_train.copy()
    x_train[:, 3] = 7.0
    data = prepare([replace(subject, x_train=x_train)], "subject", "strict")
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_test).all()
    np.testing.assert_array_equal(data.x_train[:, 3], 0.0)


def test_subjects_must_have_seen_the_same_stimuli(small_subjects):
    one, two = small_subjects[0], small_subjects[1]
    with pytest.raises(ValueError, match="train latents differ"):
        prepare([one, replace(two, t_train=two.t_train + 1)], "average", names=["s1", "s2"])
    with pytest.raises(ValueError, match="s2: 59 train trials, but s1 has 60"):
        prepare([one, replace(two, x_train=two.x_train[:59], t_train=two.t_train[:59])], "average", names=["s1", "s2"])


@pytest.mark.parametrize(
    "variant,protocol,count,message",
    [
        ("nonsense", "published", 1, "unknown data variant"),
        ("subject", "leaky", 1, "unknown protocol"),
        ("subject", "published", 2, "takes one subject"),
    ],
)
def test_bad_variant_protocol_and_counts(small_subjects, variant, protocol, count, message):
    with pytest.raises(ValueError, match=message):
        prepare(small_subjects[:count], variant, protocol)


def test_hyperaligned_published_lets_test_rows_shape_alignment_but_strict_does_not(small_subjects):
    one, two = small_subjects[0], small_subjects[1]
    shifted = replace(
        two, x_test=two.x_test + np.random.default_rng(0).standard_normal(two.x_test.shape).astype(np.float32)
    )
    strict, strict_changed = (prepare([one, s], "hyperaligned", "strict") for s in (two, shifted))
    np.testing.assert_allclose(strict.x_train, strict_changed.x_train, atol=1e-6)  # test rows never reached training
    published, published_changed = (prepare([one, s], "hyperaligned", "published") for s in (two, shifted))
    assert np.abs(published.x_train - published_changed.x_train).max() > 1e-3


def test_hyperaligned_average_beats_plain_average_in_decodability():
    from hyperexp.data.simulate import Simulation, simulate_experiment

    subjects = simulate_experiment(
        Simulation(n_subjects=2, n_voxels=150, n_train=200, n_test=40, latent_dim=24, noise=1.5)
    )

    def test_error(data):
        design = np.c_[data.x_train, np.ones(len(data.x_train))]
        weights = np.linalg.lstsq(design, data.t_train, rcond=None)[0]
        return np.mean((np.c_[data.x_test, np.ones(len(data.x_test))] @ weights - data.t_test) ** 2)

    aligned = test_error(prepare(subjects, "hyperaligned", "strict"))
    averaged = test_error(prepare(subjects, "average", "strict"))
    single = test_error(prepare(subjects[:1], "subject", "strict"))
    assert aligned < single and aligned < averaged


def test_aligned_data_are_cached_by_content(small_subjects, tmp_path, monkeypatch):
    calls = []
    original = prepare_module.aligned_average
    monkeypatch.setattr(prepare_module, "aligned_average", lambda *a: calls.append(1) or original(*a))
    first = prepare(small_subjects[:2], "hyperaligned", "published", cache_dir=tmp_path)
    second = prepare(small_subjects[:2], "hyperaligned", "published", cache_dir=tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.x_train, second.x_train)
    prepare(small_subjects[:2], "hyperaligned", "strict", cache_dir=tmp_path)
    assert len(calls) == 2  # another protocol is another entry


def _compute_once(folder: str) -> float:
    def compute():
        with open(os.path.join(folder, "computed"), "a") as log:
            log.write("x")
        return {"value": np.arange(5.0)}

    return float(cached_arrays(folder, "shared-key", compute)["value"].sum())


def test_cache_is_safe_under_parallel_jobs(tmp_path):
    with ProcessPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_compute_once, [str(tmp_path)] * 8))
    assert results == [10.0] * 8
    assert (tmp_path / "computed").read_text() == "x"


def test_content_key_changes_with_data_and_parameters():
    a = np.arange(6.0).reshape(2, 3)
    assert content_key([a], p=1) == content_key([a.copy()], p=1)
    assert content_key([a], p=1) != content_key([a + 1e-9], p=1)
    assert content_key([a], p=1) != content_key([a], p=2)
    assert content_key([a], p=1) != content_key([a.astype(np.float32)], p=1)


def test_a_pool_of_one_is_that_subject_alone(small_subjects):
    pooled = prepare(small_subjects[:1], "hyperaligned", "published")
    alone = prepare(small_subjects[:1], "subject", "published")
    np.testing.assert_array_equal(pooled.x_train, alone.x_train)
