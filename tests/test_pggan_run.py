"""Training with the PGGAN through the entry point, at its full 1024x1024 resolution (random
weights), with the paper's feature similarity (a TorchScript network) and attribute similarity
(InterFaceGAN boundary files) configured, checked against direct computations on what the run
saved. One run, shared by the tests: it renders 12 full-size images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperexp.data.files import load_subject
from hyperexp.track.preview import CURVES, PREVIEW_METRICS
from tests.conftest import run_in_process, runs_of, store
from tests.feature_networks import IGNORE_JIT_DEPRECATION, PooledFeatures, save_scripted

pytestmark = IGNORE_JIT_DEPRECATION

# Two epochs, one preview grid (two trials at 32 pixels) at the end, three test trials, two
# distractor images for top-1 identification.
PGGAN_RUN = [
    "experiment=smoke",
    "trainer.progress=false",
    "generator=pggan",
    "generator.model.random_init=true",
    "trainer.epochs=2",
    "trainer.log_every=2",
    "trainer.preview_trials=2",
    "trainer.preview_size=32",
    "data.simulation.n_voxels=64",
    "data.simulation.n_train=30",
    "data.simulation.n_test=3",
    "data.simulation.latent_dim=512",
    "decoder.optimizer.lr=1e-3",
    "evaluate.distractors=2",
]
BOUNDARY_SHAPES = {"age": (512,), "smile": (1, 512), "pose": (512,)}  # InterFaceGAN saves (1, 512)


@pytest.fixture(scope="module")
def pggan_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pggan")
    torch.manual_seed(0)  # the random generator weights
    extractor = save_scripted(PooledFeatures(), folder / "vggface.pt")
    rng = np.random.default_rng(0)
    for name, shape in BOUNDARY_SHAPES.items():
        normal = rng.standard_normal(shape)
        np.save(folder / f"{name}.npy", (normal / np.linalg.norm(normal)).astype(np.float32))
    paths = ",".join(str(folder / f"{name}.npy") for name in BOUNDARY_SHAPES)
    run_in_process(
        folder, *PGGAN_RUN, f"evaluate.feature_extractor={extractor}", f"evaluate.attribute_boundaries=[{paths}]"
    )
    (run,) = runs_of(store(folder))
    store(folder).download_artifacts(run.info.run_id, "", str(folder / "recorded"))  # what MLflow keeps
    return folder, run


def saved_images(folder: Path, kind: str) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path)) for path in sorted((folder / "recorded" / kind).iterdir())])


def test_trains_finishes_and_logs_grids_and_final_image_metrics_at_1024(pggan_run):
    folder, run = pggan_run
    client = store(folder)
    assert run.info.status == "FINISHED" and run.data.params["generator.model.random_init"] == "True"
    grids = [a.path for a in client.list_artifacts(run.info.run_id, "images") if "reconstructions" in a.path]
    assert len([path for path in grids if path.endswith(".png") and "compressed" not in path]) == 2  # epochs 0, 2
    history = client.get_metric_history(run.info.run_id, PREVIEW_METRICS + "ssim")
    assert sorted(m.step for m in history) == [0, 2] and all(-1 <= m.value <= 1 for m in history)
    stimuli = saved_images(folder, "stimuli")
    assert stimuli.shape == (3, 1024, 1024, 3) and saved_images(folder, "reconstructions").shape == stimuli.shape
    # The generator overshoots [-1, 1] (the first preview once failed on it); render clips it.
    assert stimuli.min() == 0 and stimuli.max() == 255
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"reconstructions_grid.png", "loss_curve.png", "predicted_latents.npy"} <= top
    final = run.data.metrics
    assert -1 <= final["test/pixel_correlation"] <= 1 and -1 <= final["test/ssim"] <= 1
    assert 0 <= final["test/pixel_identification"] <= 1 and 0 < final["test/latent_similarity"] < 1


def test_feature_similarity_is_that_of_the_network_on_the_saved_images(pggan_run):
    folder, run = pggan_run
    network = PooledFeatures().eval()
    with torch.no_grad():
        true, pred = (
            network(torch.from_numpy(saved_images(folder, kind)).permute(0, 3, 1, 2).float() / 255).double().numpy()
            for kind in ("stimuli", "reconstructions")
        )
    cosine = np.mean(np.sum(true * pred, axis=1) / (np.linalg.norm(true, axis=1) * np.linalg.norm(pred, axis=1)))
    metrics = run.data.metrics
    assert metrics["test/feature_similarity"] == pytest.approx(1 / (1 + np.mean((true - pred) ** 2)), rel=1e-6)
    assert metrics["test/feature_cosine"] == pytest.approx(cosine, rel=1e-6)
    assert metrics["test/feature_similarity"] < 1  # the reconstructions differ from the stimuli


def test_attribute_correlations_are_those_of_the_latents_projected_on_the_boundaries(pggan_run):
    folder, run = pggan_run
    (data_file,) = folder.glob("data/simulated-*/data_1.dat")
    true = load_subject(data_file).t_test.astype(np.float64)
    predicted = np.load(folder / "recorded" / "predicted_latents.npy").astype(np.float64)
    metrics = run.data.metrics
    table = dict(
        line.split(",") for line in (folder / "recorded" / "attribute_correlations.csv").read_text().split()[1:]
    )
    correlations = []
    for name in BOUNDARY_SHAPES:
        normal = np.load(folder / f"{name}.npy").reshape(-1).astype(np.float64)
        normal /= np.linalg.norm(normal)
        correlations.append(np.corrcoef(true @ normal, predicted @ normal)[0, 1])
        assert float(table[name]) == pytest.approx(correlations[-1], rel=1e-5, abs=1e-9)  # 6 digits in the csv
    assert metrics["test/attribute_similarity"] == pytest.approx(np.mean(correlations), rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_the_generator_feature_loss_trains_through_the_whole_pggan(tmp_path):
    # The image layer (9): gradients flow from 1024x1024 pixels through every PGGAN layer.
    small = ["data.simulation.n_train=4", "data.simulation.n_test=2", "trainer.batch_size=2", "trainer.epochs=3"]
    feature_loss = ["trainer.feature_loss.weight=1.0", "trainer.feature_loss.layer=9", "trainer.log_every=3"]
    run_in_process(tmp_path, *PGGAN_RUN, *small, *feature_loss)
    (run,) = runs_of(store(tmp_path))
    assert run.info.status == "FINISHED" and run.data.params["trainer.feature_loss.layer"] == "9"
    history = sorted(store(tmp_path).get_metric_history(run.info.run_id, CURVES + "train_loss"), key=lambda m: m.step)
    losses = [metric.value for metric in history]
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0]
    assert "test/ssim" in run.data.metrics and "test/latent_similarity" in run.data.metrics
