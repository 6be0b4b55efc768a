"""The BIDS source on the simulated BIDS dataset (hyperexp/data/simulate_bids.py): the recovered
single-trial responses against the true ones, decoding from them against decoding from the true
responses given as arrays, the extraction's cache, and subjects with different masks."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from hyperexp.data import build, planned_shape
from hyperexp.data.files import SubjectData, load_subject
from hyperexp.data.limits import DataFileError
from hyperexp.data.simulate_bids import BidsSimulation, write_dataset
from hyperexp.data.sources import open_source
from hyperexp.decode import RidgeCVDecoder
from hyperexp.errors import InputError
from hyperexp.evaluate.metrics import latent_metrics

SIMULATION = BidsSimulation()  # the README's dataset: 2 subjects, 3 training runs + 1 test run
TEST_RUN = [SIMULATION.test_run]
TINY = BidsSimulation(
    n_subjects=1, train_runs=1, trials_per_run=8, test_stimuli=2, test_repeats=2, grid=5, latent_dim=32, common_dim=8
)
ALPHAS = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("simulated") / "bids", SIMULATION)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def voxel_correlations(estimated: np.ndarray, true: np.ndarray) -> np.ndarray:
    a, b = estimated - estimated.mean(axis=0), true - true.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


def test_recovered_single_trial_responses_correlate_with_the_true_ones(dataset, cache):
    subjects, paths, tags = open_source("bids", root=dataset, test_runs=TEST_RUN, cache_dir=cache).load([1, 2])
    for k, subject in enumerate(subjects, start=1):
        truth = load_subject(dataset / "derivatives" / "truth" / f"data_{k}.npz")
        assert np.array_equal(subject.t_train, truth.t_train) and np.array_equal(subject.t_test, truth.t_test)
        train = np.median(voxel_correlations(subject.x_train, truth.x_train))
        test = np.median(voxel_correlations(subject.x_test, truth.x_test))
        print(f"sub-{k:02d}: median voxel correlation, training trials {train:.3f}, test stimuli {test:.3f}")
        assert train >= 0.9 and test >= 0.9
    assert subjects[0].n_voxels != subjects[1].n_voxels  # masks of different sizes
    assert [p.name for p in paths] == ["sub-01", "sub-02"]
    assert tags["data_source"] == "bids" and float(tags["glm_seconds"]) > 0


def decoded_similarity(data) -> dict[str, float]:
    decoder = RidgeCVDecoder(ALPHAS)
    decoder.fit(torch.as_tensor(data.x_train), torch.as_tensor(data.t_train))
    predicted = decoder.predict(torch.as_tensor(data.x_test)).numpy()
    return latent_metrics(data.t_test, predicted)


@pytest.mark.parametrize("variant, subjects", [("subject", [1]), ("hyperaligned", [1, 2])])
def test_decoding_from_glm_responses_reaches_90_percent_of_decoding_from_the_true_ones(
    dataset, cache, variant, subjects
):
    common = dict(variant=variant, subjects=subjects, cache_dir=str(cache))
    from_glm = build(source="bids", root=str(dataset), test_runs=TEST_RUN, **common)
    from_truth = build(source="files", root=str(dataset / "derivatives" / "truth"), **common)
    glm, truth = decoded_similarity(from_glm), decoded_similarity(from_truth)
    ratio = glm["latent_similarity"] / truth["latent_similarity"]
    print(
        f"{variant}: latent similarity {glm['latent_similarity']:.4f} from the GLM, {truth['latent_similarity']:.4f} "
        f"from the true responses (ratio {ratio:.3f}); identification {glm['latent_identification']:.3f} vs "
        f"{truth['latent_identification']:.3f}"
    )
    assert ratio >= 0.9
    assert glm["latent_identification"] >= 0.9 * truth["latent_identification"]
    assert truth["latent_identification"] > 0.6  # the comparison means something: well above chance (0.5)
    assert from_glm.tags()["data_source"] == "bids" and "glm_seconds" in from_glm.tags()


def test_planned_shape_is_what_build_gives_across_subjects_with_different_masks(dataset, cache, tmp_path):
    settings = dict(variant="hyperaligned", subjects=[1, 2], source="bids", root=str(dataset), test_runs=TEST_RUN)
    shape = planned_shape(**settings)
    data = build(**settings, cache_dir=str(cache), validation_trials=10)
    n_train = SIMULATION.train_runs * SIMULATION.trials_per_run
    assert (shape.n_train, shape.n_test, shape.latent_dim) == (n_train, SIMULATION.test_stimuli, 512)
    assert data.x_train.shape[0] == n_train - 10 and data.x_validation.shape[0] == 10
    assert data.x_test.shape[0] == SIMULATION.test_stimuli and data.variant == "hyperaligned"


def test_the_extraction_runs_once_and_again_when_an_input_changes(tmp_path):
    dataset = write_dataset(tmp_path / "bids-tiny", TINY)

    def load():
        return open_source("bids", root=dataset, test_runs=[2], cache_dir=tmp_path).load([1])

    first, _, tags = load()
    assert tags["glm_cached"] == "false" and len(list((tmp_path / "bids").glob("*.npz"))) == 1
    again, _, tags = load()
    assert tags["glm_cached"] == "true" and np.array_equal(first[0].x_train, again[0].x_train)

    events = dataset / "sub-01" / "func" / "sub-01_task-faces_run-1_events.tsv"
    stat = events.stat()
    os.utime(events, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the same bytes, a newer file
    _, _, tags = load()
    assert tags["glm_cached"] == "false" and len(list((tmp_path / "bids").glob("*.npz"))) == 2
    _, _, tags = open_source("bids", root=dataset, test_runs=[2], cache_dir=tmp_path, glm={"method": "lsa"}).load([1])
    assert tags["glm_cached"] == "false" and tags["glm_method"] == "lsa"


class ArraysSource:
    """A source plugged in by class path (``data.source=tests.test_bids.ArraysSource``)."""

    def __init__(self, cache_dir="data", **unused):
        self.rng = np.random.default_rng(0)
        self.latents = self.rng.standard_normal((24, 8)).astype(np.float32)

    def shape(self, numbers):
        return 20, 4, 8

    def load(self, numbers):
        x = [self.rng.standard_normal((24, 16)).astype(np.float32) for _ in numbers]
        subjects = [SubjectData(a[:20], self.latents[:20], a[20:], self.latents[20:]) for a in x]
        return subjects, [Path(f"made-{k}") for k in numbers], {"data_source": "arrays"}


def test_a_source_plugs_in_by_class_path_and_an_unknown_one_is_one_line():
    settings = dict(variant="average", subjects=[1, 2], source="tests.test_bids.ArraysSource")
    shape, data = planned_shape(**settings), build(**settings)
    assert (shape.n_train, shape.n_test, shape.latent_dim) == (20, 4, 8) == (*data.x_train.shape[:1], 4, 8)
    assert data.files == ("made-1", "made-2") and data.tags()["data_source"] == "arrays"
    with pytest.raises(InputError, match="^data.source: cannot import 'my_lab.NoSuchSource'"):
        open_source("my_lab.NoSuchSource")
    with pytest.raises(InputError, match="^data.source: must be one of simulated, files, bids or a class path"):
        open_source("nosuch")


def tiny_variant(folder: Path) -> Path:
    """The tiny dataset rewritten another legal way: latents in stimuli.npy (the events name rows),
    an atlas (ROI label 7) instead of a mask, runs in a session folder, no JSON sidecars (the
    repetition time from the NIfTI header)."""
    root = write_dataset(folder, TINY)
    table = pd.read_csv(root / "stimuli.tsv", sep="\t")
    np.save(root / "stimuli.npy", table.drop(columns="stimulus").to_numpy())
    (root / "stimuli.tsv").unlink()
    rows = {name: str(k) for k, name in enumerate(table["stimulus"])}
    func, session = root / "sub-01" / "func", root / "sub-01" / "ses-1" / "func"
    session.mkdir(parents=True)
    for path in sorted(func.iterdir()):
        target = session / path.name.replace("sub-01_", "sub-01_ses-1_")
        if path.name.endswith("_events.tsv"):
            events = pd.read_csv(path, sep="\t")
            events.assign(stimulus=events["stimulus"].map(rows)).to_csv(target, sep="\t", index=False)
        elif path.name.endswith("_mask.nii.gz"):
            mask = nib.load(path)
            atlas = np.where(np.asarray(mask.dataobj) > 0, 7, 3).astype(np.int16)
            nib.save(nib.Nifti1Image(atlas, mask.affine), session / "atlas.nii.gz")
        elif path.name.endswith("_bold.nii.gz"):
            path.rename(target)
        path.unlink(missing_ok=True)
    func.rmdir()
    return root


def test_npy_latents_an_atlas_roi_sessions_and_header_timing_give_the_same_trials(tmp_path):
    plain = open_source("bids", root=write_dataset(tmp_path / "plain", TINY), test_runs=[2], cache_dir=tmp_path)
    (expected,), _, _ = plain.load([1])
    variant = open_source(
        "bids",
        root=tiny_variant(tmp_path / "variant"),
        test_runs=[2],
        mask="sub-{subject}/ses-1/func/atlas.nii.gz",
        mask_labels=[7],
        cache_dir=tmp_path,
    )
    (subject,), paths, _ = variant.load([1])
    assert np.allclose(subject.x_train, expected.x_train, atol=1e-4)
    assert np.allclose(subject.x_test, expected.x_test, atol=1e-4)
    assert np.array_equal(subject.t_train, expected.t_train) and np.array_equal(subject.t_test, expected.t_test)
    assert not list(paths[0].rglob("*.json"))  # the timing came from the NIfTI header


def test_confound_columns_enter_the_glm(tmp_path):
    root = write_dataset(tmp_path / "bids", TINY)
    for run in (1, 2):
        prefix = root / "sub-01" / "func" / f"sub-01_task-faces_run-{run}"
        motion = np.random.default_rng(run).standard_normal((nib.load(f"{prefix}_bold.nii.gz").shape[3], 2))
        motion[0] = np.nan  # fMRIPrep's derivative columns start with n/a
        table = pd.DataFrame(motion, columns=["trans_x", "trans_y"])
        table.to_csv(f"{prefix}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a")
    without, _, _ = open_source("bids", root=root, test_runs=[2], cache_dir=tmp_path).load([1])
    settings = {"confounds": ["trans_x", "trans_y"]}
    with_motion, _, _ = open_source("bids", root=root, test_runs=[2], cache_dir=tmp_path, glm=settings).load([1])
    assert with_motion[0].x_train.shape == without[0].x_train.shape
    assert np.isfinite(with_motion[0].x_train).all() and not np.allclose(with_motion[0].x_train, without[0].x_train)
    with pytest.raises(DataFileError, match="_desc-confounds_timeseries.tsv: no column 'rot_x'"):
        open_source("bids", root=root, test_runs=[2], cache_dir=tmp_path, glm={"confounds": ["rot_x"]}).shape([1])
