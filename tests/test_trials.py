"""Per-trial metrics: their means are the run-level metrics, and runs write them to per_trial.csv."""

from __future__ import annotations

import numpy as np
import pytest

from hyperexp.artifacts import save_per_trial
from hyperexp.evaluate.metrics import image_metrics, latent_metrics
from hyperexp.evaluate.trials import image_trial_metrics, latent_trial_metrics, stimulus_set_key
from hyperexp.report.trials import read_per_trial_csv


@pytest.fixture(scope="module")
def latents():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((9, 16))
    return true, 0.6 * true + rng.standard_normal((9, 16))


def test_trial_means_are_the_run_level_latent_metrics(latents):
    trials, run = latent_trial_metrics(*latents), latent_metrics(*latents)
    assert trials["latent_mse"].mean() == pytest.approx(run["latent_mse"], rel=1e-12)
    assert 1 / (1 + trials["latent_mse"].mean()) == pytest.approx(run["latent_similarity"], rel=1e-12)
    for name in ("latent_cosine", "latent_identification"):
        assert trials[name].shape == (9,)
        assert trials[name].mean() == pytest.approx(run[name], rel=1e-12)


def test_trial_identification_counts_the_other_trials_each_trial_beats():
    true = np.eye(3)
    predicted = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # trial 1 looks like trial 2
    assert latent_trial_metrics(true, predicted)["latent_identification"].tolist() == [1.0, 0.25, 1.0]


def test_trial_means_are_the_run_level_image_metrics():
    rng = np.random.default_rng(1)
    stimuli = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    noisy = np.clip(stimuli + rng.normal(0, 40, stimuli.shape), 0, 255).astype(np.uint8)
    trials, run = image_trial_metrics(stimuli, noisy), image_metrics(stimuli, noisy)
    for name in ("pixel_correlation", "ssim", "pixel_identification"):
        assert trials[name].mean() == pytest.approx(run[name], rel=1e-12)


def test_per_trial_csv_round_trips_exactly(latents, tmp_path):
    values = latent_trial_metrics(*latents)
    path = save_per_trial(tmp_path / "per_trial.csv", values)
    assert path.read_text().splitlines()[0] == "trial,latent_mse,latent_cosine,latent_identification"
    read = read_per_trial_csv(path)
    assert list(read) == list(values)
    for name, column in values.items():
        assert np.array_equal(read[name], column)


def test_the_stimulus_key_names_the_test_latents(latents):
    true, _ = latents
    assert stimulus_set_key(true) == stimulus_set_key(true.astype(np.float32).copy())
    assert stimulus_set_key(true) != stimulus_set_key(true[:8]) != stimulus_set_key(true + 1e-3)
