import pickle

import numpy as np
import pytest

from hyperexp.data.files import load_subject
from hyperexp.data.simulate import Simulation, ensure_simulated_files, simulate_experiment
from hyperexp.errors import InputError
from tests.conftest import SMALL


def test_files_have_the_published_structure(tmp_path, small_simulation):
    folder = ensure_simulated_files(small_simulation, tmp_path)
    with open(folder / "data_2.dat", "rb") as file:
        content = pickle.load(file)  # our own freshly written file
    assert isinstance(content, tuple) and len(content) == 4
    x_tr, t_tr, x_te, t_te = content
    assert all(isinstance(part, list) for part in content)
    assert (len(x_tr), len(t_tr), len(x_te), len(t_te)) == (60, 60, 8, 8)
    assert x_tr[0].shape == (96,) and t_tr[0].shape == (32,) and x_tr[0].dtype == np.float32
    assert sorted(p.name for p in folder.glob("data_*.dat")) == ["data_1.dat", "data_2.dat", "data_3.dat"]


def test_same_config_gives_byte_identical_files_and_reuses_them(tmp_path, small_simulation):
    first = ensure_simulated_files(small_simulation, tmp_path / "a")
    second = ensure_simulated_files(small_simulation, tmp_path / "b")
    for k in (1, 2, 3):
        assert (first / f"data_{k}.dat").read_bytes() == (second / f"data_{k}.dat").read_bytes()
    stamp = (first / "data_1.dat").stat().st_mtime_ns
    assert ensure_simulated_files(small_simulation, tmp_path / "a") == first
    assert (first / "data_1.dat").stat().st_mtime_ns == stamp
    other = ensure_simulated_files(Simulation(n_subjects=3, **{**SMALL, "seed": 4}), tmp_path / "a")
    assert other != first
    assert not np.array_equal(load_subject(other / "data_1.dat").x_train, load_subject(first / "data_1.dat").x_train)


def test_subjects_share_stimuli_but_differ_in_responses(small_subjects):
    one, two = small_subjects[0], small_subjects[1]
    np.testing.assert_array_equal(one.t_train, two.t_train)
    np.testing.assert_array_equal(one.t_test, two.t_test)
    correlation = np.corrcoef(one.x_train.ravel(), two.x_train.ravel())[0, 1]
    assert abs(correlation) < 0.3  # different functional topographies, not copies


def test_test_trials_average_repeats_so_they_are_less_noisy():
    params = dict(n_subjects=1, n_voxels=200, n_train=400, n_test=400, latent_dim=24, repeats=16, seed=1)
    noisy = simulate_experiment(Simulation(noise=1.0, **params))[0]
    clean = simulate_experiment(Simulation(noise=0.0, **params))[0]  # same draws, noise scaled to 0
    train_noise = np.var(noisy.x_train - clean.x_train)
    test_noise = np.var(noisy.x_test - clean.x_test)
    assert test_noise == pytest.approx(train_noise / 16, rel=0.15)


def test_responses_are_linearly_decodable(small_subjects):
    subject = simulate_experiment(
        Simulation(n_subjects=1, n_voxels=300, n_train=400, n_test=50, latent_dim=24, noise=1.0)
    )[0]
    design = np.c_[subject.x_train, np.ones(len(subject.x_train))]
    weights = np.linalg.lstsq(design, subject.t_train, rcond=None)[0]
    predicted = np.c_[subject.x_test, np.ones(len(subject.x_test))] @ weights
    assert np.corrcoef(predicted.ravel(), subject.t_test.ravel())[0, 1] > 0.8


def test_bad_simulation_parameters_are_refused():
    with pytest.raises(InputError, match="n_voxels"):
        Simulation(n_voxels=0)
    with pytest.raises(InputError, match="noise"):
        Simulation(noise=float("nan"))


def test_visual_gain_makes_the_face_attributes_easier_to_decode():
    import torch

    from hyperexp.generate.facesketch import FaceSketch

    def attribute_correlation(gain):
        params = dict(n_subjects=1, n_voxels=300, n_train=300, n_test=100, latent_dim=64, noise=2.0, visual_gain=gain)
        subject = simulate_experiment(Simulation(**params))[0]
        design = np.c_[subject.x_train, np.ones(len(subject.x_train))]
        weights = np.linalg.lstsq(design, subject.t_train, rcond=1e-6)[0]
        predicted = np.c_[subject.x_test, np.ones(len(subject.x_test))] @ weights
        project = FaceSketch(latent_dim=64).attributes
        true, pred = (project(torch.as_tensor(z, dtype=torch.float32)).numpy() for z in (subject.t_test, predicted))
        return np.mean([np.corrcoef(true[:, i], pred[:, i])[0, 1] for i in range(true.shape[1])])

    assert attribute_correlation(1.0) > attribute_correlation(0.0) + 0.05
