"""docs/published-files.md (the published files, step by step), run as written on small stand-in files: two
subjects' data pickles (one of lists of float32 trials, one of 2-D float64 arrays), the MXNet
fixture generator.params, a scripted feature network and two boundary files. Only the training
schedule is shrunk (overrides appended to the train command). Also that page's export snippet
for a feature network, run with a stand-in network."""

from __future__ import annotations

import importlib.util
import pickle
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperexp.data.files import save_subject_dat
from hyperexp.data.simulate import Simulation, simulate_experiment
from hyperexp.evaluate import Evaluation
from tests.conftest import REPO, runs_of, store
from tests.feature_networks import IGNORE_JIT_DEPRECATION, PooledFeatures, save_scripted
from tests.mxnet_files import unpack_fixture_generator

pytestmark = IGNORE_JIT_DEPRECATION

SHRINK = ["trainer.epochs=2", "trainer.log_every=2", "trainer.preview_trials=2", "trainer.preview_size=32"]
SHRINK += ["trainer.progress=false", "evaluate.distractors=2"]  # 1024x1024 distractor images: 2 s each on CPU


PAGE = REPO / "docs" / "published-files.md"


def readme_block(marker: str) -> str:
    """The fenced block after the page's comment that names ``marker``."""
    match = re.search(rf"<!-- {re.escape(marker)}[^\n]*-->\n```\w+\n(.*?)```", PAGE.read_text(), re.S)
    assert match, f"{PAGE.name}: no block marked {marker!r}"
    return match.group(1)


def commands(block: str) -> list[list[str]]:
    """Shell commands of a block: comments dropped, continued lines joined, split as bash would."""
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.startswith("#")]
    return [shlex.split(line) for line in lines]


def published_stand_ins(folder: Path) -> None:
    """Files shaped like the release's, small: 64 voxels, 30 training and 3 test trials."""
    published = folder / "published"
    (published / "boundaries").mkdir(parents=True)
    simulation = Simulation(n_subjects=2, n_voxels=64, n_train=30, n_test=3, latent_dim=512, seed=5)
    first, second = simulate_experiment(simulation)
    save_subject_dat(published / "data_1.dat", first)
    arrays = (second.x_train, second.t_train, second.x_test, second.t_test)
    (published / "data_2.dat").write_bytes(pickle.dumps(tuple(a.astype(np.float64) for a in arrays), protocol=2))
    unpack_fixture_generator(published)
    save_scripted(PooledFeatures(), published / "vggface.pt")
    rng = np.random.default_rng(0)
    for name in ("age", "smile"):
        normal = rng.standard_normal((1, 512))
        np.save(published / "boundaries" / f"{name}.npy", normal / np.linalg.norm(normal))


@pytest.mark.slow  # three 1024x1024 PGGAN jobs and five more processes: minutes on 2 cores
def test_the_published_files_walkthrough_runs_as_written(tmp_path):
    published_stand_ins(tmp_path)
    steps = commands(readme_block("walkthrough"))
    assert [step[:3] for step in steps] == [
        ["python", "-m", "hyperexp.data.convert"],
        ["python", "-m", "hyperexp.data.convert"],
        ["python", "-m", "hyperexp.generate"],
        ["python", "-m", "hyperexp.train"],
        ["python", "-m", "hyperexp.generate"],
        ["python", "-m", "hyperexp.report"],
    ]
    for step in steps:
        shrink = SHRINK if step[2] == "hyperexp.train" else []
        result = subprocess.run(
            [sys.executable, *step[1:], *shrink], cwd=tmp_path, capture_output=True, text=True, timeout=1200
        )
        assert result.returncode == 0, f"{shlex.join(step)}\n{result.stderr[-3000:]}"

    assert {path.name for path in (tmp_path / "published").glob("*.npz")} == {"data_1.npz", "data_2.npz"}
    assert (tmp_path / "published" / "generator.safetensors").is_file()
    runs = runs_of(store(tmp_path), "hyperexp")
    jobs = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.info.run_name)
    assert [r.info.run_name for r in jobs] == ["hyperaligned·adam·s0", "subject1·adam·s0", "subject2·adam·s0"]
    assert all(r.info.status == "FINISHED" for r in runs)
    for job in jobs:
        metrics = job.data.metrics
        assert {"test/feature_similarity", "test/attribute_similarity", "test/ssim"} <= set(metrics)
        table = store(tmp_path).download_artifacts(job.info.run_id, "attribute_correlations.csv", str(tmp_path))
        assert [line.split(",")[0] for line in Path(table).read_text().splitlines()] == ["attribute", "age", "smile"]
    faces = sorted((tmp_path / "faces").glob("face_*.png"))
    assert len(faces) == 3 and np.asarray(Image.open(faces[0])).shape == (1024, 1024, 3)
    report = (tmp_path / "outputs" / "published" / "report.md").read_text()
    assert "data=hyperaligned" in report and "data=subject2" in report


def test_the_readme_feature_network_export_gives_a_file_runs_accept(tmp_path, monkeypatch):
    # A stand-in for the face-recognition network: 224x224 BGR in, a 2048-d embedding out.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, stride=4), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
    net.append(torch.nn.Linear(128, 2048))
    (tmp_path / "published").mkdir()
    monkeypatch.chdir(tmp_path)
    # As a module of its own: TorchScript reads the class's source from its file and names it by module.
    snippet = tmp_path / "export_features.py"
    snippet.write_text(readme_block("feature network export"))
    spec = importlib.util.spec_from_file_location("export_features", snippet)
    module = importlib.util.module_from_spec(spec)
    module.net = net
    spec.loader.exec_module(module)
    evaluation = Evaluation(feature_extractor="published/vggface.pt")
    evaluation.check_image_size(1024)  # what a PGGAN run checks before training
    images = torch.rand(2, 3, 1024, 1024)
    scripted = evaluation.extractor(images)
    assert scripted.shape == (2, 2048)
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(images, size=(224, 224), mode="bilinear", antialias=True)
        mean = torch.tensor([131.0912, 103.8827, 91.4953]).view(1, 3, 1, 1)
        torch.testing.assert_close(scripted, net((255 * resized - mean).flip(1)))
