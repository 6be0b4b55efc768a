"""Hyperparameter search: the objective is the loss on validation rows carved from the training
trials, never a test metric; ``hparams_search=adam`` runs an Optuna study of child runs."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from hyperexp.data.files import save_subject_dat
from tests.conftest import TINY, run_cli, run_in_process, runs_of, store

SEARCH = [
    "trainer.progress=false",
    "trainer.epochs=6",
    "trainer.log_every=3",
    "decoder.optimizer.lr=1e-3",
    "generator.model.latent_dim=32",
    "data.source=files",
    "data.protocol=strict",
    "tracking.experiment=search",
]


def test_the_objective_is_the_validation_loss_and_the_test_trials_do_not_change_it(tmp_path, small_subjects):
    subject = small_subjects[0]
    other_tests = dataclasses.replace(  # the same training trials, other test trials
        subject,
        x_test=np.random.default_rng(1).normal(size=subject.x_test.shape).astype(subject.x_test.dtype),
        t_test=np.random.default_rng(2).normal(size=subject.t_test.shape).astype(subject.t_test.dtype),
    )
    for name, data in (("a", subject), ("b", other_tests)):
        (tmp_path / name).mkdir()
        save_subject_dat(tmp_path / name / "data_1.dat", data)

    objectives = [
        run_in_process(tmp_path, *SEARCH, f"data.root={tmp_path / name}", "data.validation_trials=12", output=name)
        for name in ("a", "b")
    ]
    assert objectives[0] == objectives[1] and objectives[0] > 0
    runs = sorted(runs_of(store(tmp_path), "search"), key=lambda run: run.info.start_time)
    assert [run.data.metrics["validation/loss"] for run in runs] == pytest.approx(objectives, rel=1e-6)
    assert runs[0].data.metrics["test/latent_similarity"] != runs[1].data.metrics["test/latent_similarity"]
    assert {i.tags[0].value for i in runs[0].inputs.dataset_inputs} == {"training", "validation", "test"}

    without = run_in_process(tmp_path, *SEARCH, f"data.root={tmp_path / 'a'}", output="c")
    assert without is None  # no validation split: nothing for a sweeper to minimise


def test_a_four_trial_optuna_study_is_a_parent_run_with_a_child_per_trial(tmp_path):
    tiny = [a for a in TINY if not a.startswith("decoder.")]  # the learning rate is searched
    overrides = ["hparams_search=adam", "hydra.sweeper.n_trials=4", "data.validation_trials=20", "trainer.epochs=4"]
    result = run_cli("-m", *tiny, *overrides, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(store(tmp_path), "hparams_search")
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.info.run_name for r in trials}) == 4 and all(r.info.run_name.startswith("lr=") for r in trials)
    assert len({r.data.params["decoder.optimizer.lr"] for r in trials}) == 4
    assert {"decoder.optimizer.lr", "decoder.optimizer.weight_decay"} <= set(parent.data.params)
    assert re.fullmatch(r"adam search \d\d:\d\d:\d\d lr·weight_decay·epochs", parent.info.run_name)
    best = min(r.data.metrics["validation/loss"] for r in trials)
    assert parent.data.metrics["summary/best/validation_loss"] == pytest.approx(best, rel=1e-6)
    assert (tmp_path / "sweep" / "optimization_results.yaml").is_file()
