"""The single-trial GLM (hyperexp/data/glm.py) against nilearn called the plain way, on a tiny
simulated BIDS run: the batched LSS gives the betas of one FirstLevelModel per trial, LSA those
of one FirstLevelModel of all trials; settings are checked by key."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nilearn.glm.first_level import FirstLevelModel
from nilearn.maskers import NiftiMasker

from hyperexp.data.bids import masked_bold
from hyperexp.data.bids_source import BidsSource
from hyperexp.data.glm import TRIAL_PREFIX, GlmSettings, single_trial_betas, trial_design
from hyperexp.data.simulate_bids import BidsSimulation, write_dataset
from hyperexp.errors import InputError
from tests.conftest import bench_script

TINY = BidsSimulation(
    n_subjects=1, train_runs=1, trials_per_run=8, test_stimuli=2, test_repeats=2, grid=5, latent_dim=32, common_dim=8
)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("tiny") / "bids", TINY)
    source = BidsSource(root=root, test_runs=[2], cache_dir=tmp_path_factory.mktemp("cache"))
    plan = source.plan(1)
    others = plan.others[0].iloc[0:0]
    return plan.runs[0], plan.mask, plan.scans[0][1], plan.trials[0], others


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(
    "settings",
    [GlmSettings(), GlmSettings(hrf_model="spm", drift_model="polynomial", drift_order=2, signal_scaling=False)],
    ids=["defaults", "spm-polynomial-unscaled"],
)
def test_batched_lss_gives_the_betas_of_one_nilearn_model_per_trial(first_run, settings):
    run, mask, t_r, trials, others = first_run
    fast = single_trial_betas(masked_bold(run, mask), t_r, trials, others, settings)
    plain = bench_script("glm").plain_lss_betas(nib.load(run.bold), mask, trials, others, t_r, settings)
    assert fast.shape == (len(trials), int(np.asarray(mask.dataobj).sum()))
    assert relative_difference(fast, plain) < 1e-4


def test_lss_with_confounds_and_other_events_matches_nilearn(first_run):
    run, mask, t_r, trials, _ = first_run
    bold = masked_bold(run, mask)
    confounds = np.random.default_rng(0).standard_normal((len(bold), 2))
    others = trials.iloc[:2][["onset"]].assign(onset=lambda t: t.onset + 3.0, duration=0.5, trial_type="button")
    settings = GlmSettings(confounds=["a", "b"])
    fast = single_trial_betas(bold, t_r, trials, others, settings, confounds)
    plain = bench_script("glm").plain_lss_betas(nib.load(run.bold), mask, trials, others, t_r, settings, confounds)
    assert relative_difference(fast, plain) < 1e-4


def test_lsa_gives_the_betas_of_one_nilearn_model_of_all_trials(first_run):
    run, mask, t_r, trials, others = first_run
    settings = GlmSettings(method="lsa")
    fast = single_trial_betas(masked_bold(run, mask), t_r, trials, others, settings)
    names = [f"{TRIAL_PREFIX}{k:05d}" for k in range(len(trials))]
    model = FirstLevelModel(t_r=t_r, noise_model="ols", mask_img=NiftiMasker(mask).fit(), minimize_memory=True)
    model.fit(nib.load(run.bold), events=trials[["onset", "duration"]].assign(trial_type=names))
    plain = np.stack(
        [np.ravel(model.masker_.transform(model.compute_contrast(n, output_type="effect_size"))) for n in names]
    )
    assert relative_difference(fast, plain) < 1e-4


def test_the_design_has_one_column_per_trial_and_the_nuisance_apart(first_run):
    _, _, t_r, trials, others = first_run
    regressors, nuisance = trial_design(120, t_r, trials, others, GlmSettings())
    assert regressors.shape == (120, len(trials)) and np.all(regressors.max(axis=0) > 0)
    assert np.allclose(nuisance[:, -1], 1.0)  # nilearn's constant column comes last


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(method="lsx"), "data.glm.method: must be one of lss, lsa, got 'lsx'"),
        (dict(hrf_model="glover + derivative"), "data.glm.hrf_model: must be one of glover, spm"),
        (dict(drift_model="spline"), "data.glm.drift_model: must be one of cosine, polynomial, none"),
        (dict(high_pass=0), "data.glm.high_pass: must be > 0 Hz, got 0"),
        (dict(t_r=-2.0), "data.glm.t_r: must be > 0 seconds, got -2.0"),
    ],
)
def test_glm_settings_are_checked_by_key(change, message):
    with pytest.raises(InputError, match=f"^{message}"):
        GlmSettings(**change)
