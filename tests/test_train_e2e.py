"""End to end: tiny runs through the entry point in-process (Hydra's compose API), checked in the
MLflow store; sweeps through the real CLI, where Hydra's launcher and the process boundary matter."""

import pytest
import torch

from hyperexp.evaluate.trials import PER_TRIAL_FILE
from hyperexp.report.trials import read_per_trial_csv
from tests.conftest import TINY, run_cli, run_in_process, runs_of, store


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    run_in_process(folder, *TINY)
    return folder


def test_tiny_run_is_tracked_with_per_epoch_metrics_and_grids(single_run):
    client = store(single_run)
    (run,) = runs_of(client)
    assert run.info.status == "FINISHED"
    train_loss = [
        m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
    ]
    test_loss = client.get_metric_history(run.info.run_id, "test_loss")
    assert len(train_loss) == 12 and len(test_loss) == 12
    assert train_loss[-1] < train_loss[0]
    assert run.data.params["trainer.epochs"] == "12" and run.data.params["data.variant"] == "subject"
    assert run.data.tags["data_variant"] == "subject" and run.data.tags["subjects"] == "1"
    assert len(run.data.tags["mlflow.source.git.commit"]) >= 40  # MLflow's own provenance tag
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    grids = [p for p in images if "reconstructions" in p and p.endswith(".png") and "compressed" not in p]
    assert len(grids) >= 2  # epochs 4, 8, 12
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"reconstructions_grid.png", "loss_curve.png", "decoder.pt", "reconstructions", "stimuli"} <= top
    assert {"config.yaml", "overrides.yaml"} <= top  # this run's own provenance
    recon = client.list_artifacts(run.info.run_id, "reconstructions")
    assert len(recon) == 12  # one PNG per test trial


def test_run_reports_final_latent_image_and_attribute_metrics(single_run):
    client = store(single_run)
    (run,) = runs_of(client)
    final = {k: v for k, v in run.data.metrics.items() if k.startswith("final/")}
    for name in (
        "latent_similarity",
        "latent_cosine",
        "latent_identification",
        "ssim",
        "pixel_correlation",
        "attribute_similarity",
        "attr_r/smile",
        "final_test_loss",
    ):
        assert f"final/{name}" in final, name
    assert 0 < final["final/latent_similarity"] <= 1 and -1 <= final["final/ssim"] <= 1
    similarity = client.get_metric_history(run.info.run_id, "latent_similarity")
    assert len(similarity) == 12  # cheap metric every epoch
    trials = read_per_trial_csv(single_run / "out" / "artifacts" / PER_TRIAL_FILE)  # the reports' raw material
    assert PER_TRIAL_FILE in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert len(trials["ssim"]) == 12 and trials["ssim"].mean() == pytest.approx(final["final/ssim"], rel=1e-6)
    assert 1 / (1 + trials["latent_mse"].mean()) == pytest.approx(final["final/latent_similarity"], rel=1e-6)
    assert len(run.data.tags["test_set"]) == 12
    assert len(client.get_metric_history(run.info.run_id, "preview_ssim")) == 3  # every log_every epochs


def test_the_saved_decoder_predicts_the_logged_latents(single_run):
    import numpy as np

    (artifacts,) = single_run.glob("out/artifacts")
    weights = torch.load(artifacts / "decoder.pt", weights_only=True)
    assert set(weights) == {"weight", "bias"} and weights["weight"].shape == (128, 512)
    assert np.load(artifacts / "predicted_latents.npy").shape == (12, 512)


def test_closed_form_and_feature_loss_runs(tmp_path):
    run_in_process(tmp_path, *TINY, "trainer.epochs=3", "trainer.feature_loss.weight=0.5", output="a")
    tiny_without_lr = [a for a in TINY if not a.startswith("decoder.")]
    run_in_process(tmp_path, *tiny_without_lr, "decoder=ridge", output="b")
    runs = {r.info.run_name: r for r in runs_of(store(tmp_path))}
    assert set(runs) == {"subject1-adam", "subject1-ridge"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    ridge = runs["subject1-ridge"].data.metrics
    assert ridge["decoder/alpha"] > 0 and "final/latent_similarity" in ridge
    adam = runs["subject1-adam"].data.metrics
    assert 0 < adam["timing/logging_seconds"] < adam["timing/fit_seconds"]


def test_tiny_multirun_is_one_parent_run_with_a_child_per_job_and_a_report(tmp_path):
    result = run_cli("-m", *TINY, "data=subject1,subject2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(store(tmp_path))
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["subject1-adam", "subject2-adam"]
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.tags["group"] for r in children) == ["data=subject1", "data=subject2"]
    assert {r.data.tags["sweep"] for r in children} == {parent.data.tags["sweep"]} == {"sweep"}
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "data=subject1" in report and "data=subject2" in report
    logged = {a.path for a in store(tmp_path).list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/differences.csv"} <= logged


def test_a_failing_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    result = run_cli("-m", *TINY, "trainer.epochs=3,0,2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 1
    assert "1 sweep job(s) failed" in result.stderr
    runs = runs_of(store(tmp_path))
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FAILED"
    assert sorted(r.data.params["trainer.epochs"] for r in children) == ["2", "3"]  # the jobs after it ran
    assert all(r.info.status == "FINISHED" for r in children)
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "## Jobs that failed" in report and "trainer.epochs=0" in report and "trainer.epochs: must be >= 1" in report


@pytest.mark.slow
def test_feature_loss_run_with_torch_compile(tmp_path):
    overrides = ["trainer.epochs=3", "trainer.feature_loss.weight=0.5", "trainer.feature_loss.layer=1"]
    run_in_process(tmp_path, *TINY, *overrides, "trainer.compile=true", "generator.model.size=32")
    (run,) = runs_of(store(tmp_path))
    assert run.info.status == "FINISHED" and run.data.params["trainer.compile"] == "True"
