"""Per-trial metrics: computed once per trial by the registry, their means are the run-level
metrics, and runs write them to per_trial.csv."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperexp.artifacts import save_per_trial
from hyperexp.evaluate import METRICS, Evaluation, metric, trial_metrics
from hyperexp.evaluate.measures import correlation_matrix, paired_2d, top1_per_trial
from hyperexp.evaluate.registry import MetricInputs, score
from hyperexp.evaluate.trials import stimulus_set_key
from hyperexp.generate import render
from hyperexp.generate.facesketch import FaceSketch
from hyperexp.report.trials import read_per_trial_csv


@pytest.fixture(scope="module")
def latents():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((9, 16))
    return true, 0.6 * true + rng.standard_normal((9, 16))


def test_trial_means_are_the_run_level_latent_metrics(latents):
    true, pred = latents
    summary, trials = score(MetricInputs(latents=latents))
    assert trials["latent_mse"].mean() == pytest.approx(np.mean((true - pred) ** 2), rel=1e-12)
    assert summary["latent_similarity"] == 1 / (1 + trials["latent_mse"].mean())
    for name in ("latent_cosine", "latent_identification"):
        assert trials[name].shape == (9,)
        assert trials[name].mean() == summary[name]
    assert "latent_similarity" not in trials and "latent_pearson" not in trials  # no per-trial values


def test_trial_identification_counts_the_other_trials_each_trial_beats():
    true = np.eye(3)
    predicted = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # trial 1 looks like trial 2
    _, trials = score(MetricInputs(latents=(true, predicted)))
    assert trials["latent_identification"].tolist() == [1.0, 0.25, 1.0]


def test_trial_means_are_the_run_level_image_metrics():
    rng = np.random.default_rng(1)
    stimuli = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    noisy = np.clip(stimuli + rng.normal(0, 40, stimuli.shape), 0, 255).astype(np.uint8)
    summary, trials = score(MetricInputs(images=(stimuli, noisy)))
    assert set(summary) == {"pixel_correlation", "ssim", "pixel_identification"}
    for name in summary:
        assert trials[name].mean() == summary[name]


def test_each_metric_is_computed_once_per_trial(latents, monkeypatch):
    from hyperexp.evaluate import measures

    calls = []
    original = measures.correlation_matrix
    monkeypatch.setattr(measures, "correlation_matrix", lambda *a: calls.append(1) or original(*a))
    score(MetricInputs(latents=latents))
    assert len(calls) == 1  # identification and its siblings share one correlation matrix


def test_top1_identification_against_hand_counted_candidates():
    # trial 0: own r 0.9 beats all; trial 1: a distractor (0.8) beats own 0.5; trial 2: tie with one other
    correlations = np.array([[0.9, 0.1, 0.2], [0.3, 0.5, 0.4], [0.7, 0.0, 0.7]])
    distractors = np.array([[0.2, 0.8], [0.1, 0.8], [0.1, 0.6]])
    assert top1_per_trial(correlations, distractors).tolist() == [1.0, 0.0, 0.5]


def test_top1_of_a_constant_prediction_is_chance_and_the_chance_is_reported():
    rng = np.random.default_rng(2)
    true = rng.standard_normal((6, 10))
    constant = np.ones((6, 10))
    distractors = rng.standard_normal((14, 10))
    inputs = MetricInputs(latents=(true, constant), latent_distractors=correlation_matrix(distractors, constant))
    summary, _ = score(inputs)
    assert summary["identification_top1_chance"] == 1 / 20
    assert summary["latent_identification_top1"] == pytest.approx(1 / 20)  # every candidate ties
    assert summary["latent_identification"] == 0.5


def test_top1_does_not_saturate_where_two_way_identification_does():
    """Two-way identification among 36 trials is at its ceiling (> 0.99) for a decoder that top-1
    among 200 candidates (chance 1/200) still tells apart from a perfect one."""
    rng = np.random.default_rng(3)
    true = rng.standard_normal((36, 20))
    pred = true + rng.standard_normal((36, 20))
    distractors = rng.standard_normal((164, 20))
    inputs = MetricInputs(latents=(true, pred), latent_distractors=correlation_matrix(distractors, pred))
    summary, _ = score(inputs)
    assert summary["latent_identification"] > 0.99
    assert 0.5 < summary["latent_identification_top1"] < 0.9
    assert summary["identification_top1_chance"] == 1 / 200


def test_evaluation_identifies_among_rendered_distractors():
    generator = FaceSketch(latent_dim=32, size=16)
    rng = np.random.default_rng(4)
    true = rng.standard_normal((8, 32)).astype(np.float32)
    pred = (0.7 * true + 0.5 * rng.standard_normal((8, 32))).astype(np.float32)
    stimuli, reconstructions = (render(generator, torch.as_tensor(z), 8) for z in (true, pred))
    summary, trials = Evaluation(distractors=24)(true, pred, stimuli, reconstructions, generator, batch_size=5)
    assert summary["identification_top1_chance"] == 1 / 32
    for name in ("latent_identification_top1", "pixel_identification_top1"):
        assert trials[name].shape == (8,) and set(np.unique(trials[name])) <= {0.0, 1.0} | set(1 / np.arange(1, 33))
        assert summary[name] == trials[name].mean()
    # the same distractors whatever the batch size: a fixed seed, rendered in batches
    again, _ = Evaluation(distractors=24)(true, pred, stimuli, reconstructions, generator, batch_size=24)
    assert again["pixel_identification_top1"] == summary["pixel_identification_top1"]
    assert {m.name for m in METRICS if m.needs != ("features",)} <= set(summary)
    assert summary["attribute_similarity"] == np.mean([summary[f"attr_r/{n}"] for n in generator_attributes()])


def generator_attributes():
    from hyperexp.generate.facesketch import ATTRIBUTES

    return ATTRIBUTES


def test_every_registry_entry_is_well_formed():
    names = [m.name for m in METRICS]
    assert len(set(names)) == len(names)
    for m in METRICS:
        kinds = [m.per_trial is not None, m.of is not None, m.over_trials is not None]
        assert sum(kinds) == 1, m.name
        assert m.low < m.high and m.description
        if m.of is not None:
            assert metric(m.of).per_trial is not None and m.transform is not None
    assert [m.name for m in trial_metrics()][:4] == [
        "latent_similarity",
        "latent_cosine",
        "latent_identification",
        "ssim",
    ]


def test_a_new_registry_entry_reaches_the_run_level_values_and_the_per_trial_columns(latents, monkeypatch):
    from hyperexp.evaluate import registry

    added = registry.Metric(
        "latent_max_error",
        "largest absolute latent error",
        ("latents",),
        False,
        0.0,
        np.inf,
        lambda inputs: np.abs(inputs.latents[0] - inputs.latents[1]).max(axis=1),
    )
    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, added))
    monkeypatch.setitem(registry.BY_NAME, added.name, added)
    summary, trials = score(MetricInputs(latents=latents))
    true, pred = paired_2d(*latents, "test")
    assert trials["latent_max_error"].tolist() == np.abs(true - pred).max(axis=1).tolist()
    assert summary["latent_max_error"] == trials["latent_max_error"].mean()


def test_per_trial_csv_round_trips_exactly(latents, tmp_path):
    _, values = score(MetricInputs(latents=latents))
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


def test_distractors_are_not_the_simulated_stimuli():
    from hyperexp.data.simulate import Simulation, simulate_experiment

    simulation = Simulation(n_subjects=1, n_voxels=8, n_train=20, n_test=6, latent_dim=32, repeats=1, seed=0)
    subject = simulate_experiment(simulation)[0]
    distractors = Evaluation(distractors=50).distractor_latents(32)
    stimuli = np.concatenate([subject.t_train, subject.t_test])
    assert np.abs(correlation_matrix(stimuli, distractors)).max() < 0.99


def test_a_negative_distractor_count_is_refused_naming_the_key():
    from hyperexp.errors import InputError

    with pytest.raises(InputError, match="evaluate.distractors: must be >= 0, got -1"):
        Evaluation(distractors=-1)
