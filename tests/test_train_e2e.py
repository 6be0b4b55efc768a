"""End to end: tiny runs through the entry point in-process (Hydra's compose API), checked in the
MLflow store through MLflow's client; sweeps through the real CLI, where Hydra's launcher and the
process boundary matter."""

import hashlib
import re
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from hyperexp.evaluate.trials import PER_TRIAL_FILE
from hyperexp.report.trials import read_per_trial_csv
from hyperexp.track.preview import GRID_KEY, PREVIEW_METRICS
from tests.conftest import TINY, run_cli, run_in_process, runs_of, store

STEP = re.compile(r"\+step\+(\d+)\+")


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    mlflow.set_system_metrics_sampling_interval(1)  # a few seconds of run: sample every second
    try:
        run_in_process(folder, *TINY, "data.cache_dir=data", "+tracking.tags.idea=tiny", "tracking.note=a tiny run")
    finally:
        mlflow.set_system_metrics_sampling_interval(None)
    return folder


def the_run(folder):
    (run,) = runs_of(store(folder))
    return run


def grid_steps(client, run_id: str, key: str = GRID_KEY.replace("/", "~")) -> list[int]:
    names = [a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, "images")]
    return sorted(int(STEP.search(n)[1]) for n in names if n.startswith(f"{key}+") and n.endswith(".png"))


def test_the_experiment_opens_as_model_training_and_no_empty_default_is_listed(single_run):
    client = store(single_run)
    experiment = client.get_experiment_by_name("smoke")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "test/latent_similarity" in experiment.tags["mlflow.note.content"]
    assert [e.name for e in client.search_experiments()] == ["smoke"]  # Default: deleted


def test_a_run_is_named_described_and_tagged_by_what_tells_it_apart(single_run):
    run = the_run(single_run)
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("subject1·adam_fast·s0·smoke·epochs=12·")
    assert "·lr=0.001" in run.info.run_name and "cache_dir" not in run.info.run_name  # changes no result
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith("`python -m hyperexp.train experiment=smoke trainer.progress=false")
    assert description.endswith("\n\na tiny run")
    assert run.data.tags["idea"] == "tiny"
    assert run.data.tags["data_variant"] == "subject" and run.data.tags["subjects"] == "1"
    assert len(run.data.tags["mlflow.source.git.commit"]) >= 40  # MLflow's own provenance tag
    # logging is part of the fit
    assert 0 < float(run.data.tags["logging_seconds"]) <= float(run.data.tags["fit_seconds"])


def test_params_are_few_and_the_whole_config_is_an_artifact(single_run):
    run = the_run(single_run)
    params = run.data.params
    assert params["data"] == "subject1" and params["decoder"] == "adam_fast" and params["trainer.epochs"] == "12"
    assert params["data.simulation.n_voxels"] == "128"  # given on the command line
    assert len(params) <= 20 and "generator.model.size" not in params and "trainer.progress" not in params
    config = yaml.safe_load(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.yaml"))
    assert config["generator"]["model"]["size"] == 128 and config["trainer"]["log_every"] == 4


def test_per_trial_metrics_are_the_reports_raw_material(single_run, tmp_path):
    client, run = store(single_run), the_run(single_run)
    trials = read_per_trial_csv(Path(client.download_artifacts(run.info.run_id, PER_TRIAL_FILE, str(tmp_path))))
    metrics = run.data.metrics
    assert len(trials["ssim"]) == 12 and trials["ssim"].mean() == pytest.approx(metrics["test/ssim"], rel=1e-6)
    assert 1 / (1 + trials["latent_mse"].mean()) == pytest.approx(metrics["test/latent_similarity"], rel=1e-6)
    assert len(run.data.tags["test_set"]) == 12


def test_grids_are_logged_at_step_0_and_every_log_every(single_run):
    client, run = store(single_run), the_run(single_run)
    assert grid_steps(client, run.info.run_id) == [0, 4, 8, 12]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, PREVIEW_METRICS + "ssim")]
    assert sorted(steps) == [0, 4, 8, 12]


def test_curves_per_epoch_and_summary_metrics_once(single_run):
    client, run = store(single_run), the_run(single_run)
    run_id, metrics = run.info.run_id, run.data.metrics
    train_loss = [
        m.value for m in sorted(client.get_metric_history(run_id, "learning/train_loss"), key=lambda m: m.step)
    ]
    assert len(train_loss) == 12 and train_loss[-1] < train_loss[0]
    assert len(client.get_metric_history(run_id, "learning/test_latent_cosine")) == 12
    for name in ("latent_similarity", "latent_cosine", "latent_identification", "ssim", "attribute_similarity"):
        assert len(client.get_metric_history(run_id, f"test/{name}")) == 1, name
    assert 0 < metrics["test/latent_similarity"] <= 1 and -1 <= metrics["test/ssim"] <= 1
    assert not [key for key in metrics if key.startswith(("final/", "attr_r/", "timing/"))]
    assert "validation/loss" not in metrics  # no validation split asked for


def test_attribute_correlations_are_a_table_and_a_figure_with_their_mean_a_metric(single_run, tmp_path):
    client, run = store(single_run), the_run(single_run)
    table = client.download_artifacts(run.info.run_id, "attribute_correlations.csv", str(tmp_path))
    rows = np.genfromtxt(table, delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert "smile" in rows["attribute"]
    assert run.data.metrics["test/attribute_similarity"] == pytest.approx(np.nanmean(rows["pearson_r"]), abs=1e-5)
    assert "attribute_correlations.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_every_split_is_a_dataset_input_with_digest_and_source(single_run):
    run = the_run(single_run)
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "test"}
    assert inputs["training"].name == "subject1" and inputs["training"].digest != inputs["test"].digest
    assert "simulated-" in inputs["training"].source


def test_the_logged_model_predicts_the_latents_the_run_recorded(single_run, tmp_path):
    from hyperexp.config import build
    from tests.conftest import compose_job

    client, run = store(single_run), the_run(single_run)
    (model,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    )
    assert model.name == "decoder" and model.status == "READY"
    assert [output.model_id for output in run.outputs.model_outputs] == [model.model_id]
    carried = {metric.key: metric.value for metric in model.metrics}  # the test metrics, not a preview's
    assert carried and all(key.startswith("test/") for key in carried), sorted(carried)
    assert carried["test/latent_similarity"] == run.data.metrics["test/latent_similarity"]
    assert f"The decoder of run `{run.info.run_name}`" in model.tags["mlflow.note.content"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(single_run)  # the simulated data are cached there
        data = build(compose_job(*TINY)[0].data)
    predicted = mlflow.pyfunc.load_model(model.model_uri).predict(data.x_test)
    recorded = np.load(client.download_artifacts(run.info.run_id, "predicted_latents.npy", str(tmp_path)))
    np.testing.assert_allclose(predicted, recorded, rtol=1e-5, atol=1e-5)


def test_no_artifact_is_stored_twice(single_run, tmp_path):
    """The job's folder keeps its log and checkpoints; the run's artifacts and model are in MLflow."""
    client, run = store(single_run), the_run(single_run)

    def digests(folder):
        return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in folder.rglob("*") if p.is_file()}

    job_files = digests(single_run / "out")
    run_files = digests(Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "run"))))
    (model,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    model_files = digests(Path(mlflow.artifacts.download_artifacts(model.artifact_location, dst_path=str(tmp_path))))
    # in-process: no train.log; the predicted latents (73 KB) stay beside the job for `generate render`;
    # the lock file tells later runs the folder is taken
    assert {p.name for p in job_files.values()} <= {"last.pt", "predicted_latents.npy", ".hyperexp.lock"}
    shared = {job_files[digest].name for digest in job_files.keys() & run_files.keys()}
    assert shared <= {"predicted_latents.npy"} and not run_files.keys() & model_files.keys()
    assert not [p for p in run_files.values() if p.suffix in (".pt", ".pt2", ".pth")]  # the decoder: a model only


def test_system_metrics_are_sampled(single_run):
    metrics = the_run(single_run).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics


def test_closed_form_and_feature_loss_runs(tmp_path):
    run_in_process(tmp_path, *TINY, "trainer.epochs=3", "trainer.feature_loss.weight=0.5", output="a")
    tiny_without_lr = [a for a in TINY if not a.startswith("decoder.")]
    run_in_process(tmp_path, *tiny_without_lr, "decoder=ridge", output="b")
    runs = {r.data.params["decoder"]: r for r in runs_of(store(tmp_path))}
    assert set(runs) == {"adam_fast", "ridge"}
    assert runs["ridge"].info.run_name.startswith("subject1·ridge·s0·smoke")
    assert all(r.info.status == "FINISHED" for r in runs.values())
    ridge = runs["ridge"].data.metrics
    assert ridge["decoder/alpha"] > 0 and "test/latent_similarity" in ridge
    assert grid_steps(store(tmp_path), runs["ridge"].info.run_id) == [0, 1]  # step 0: the mean latent


def test_tiny_multirun_is_one_parent_run_with_a_child_per_job_and_a_report(tmp_path):
    result = run_cli("-m", *TINY, "data=subject1,subject2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = store(tmp_path)
    runs = runs_of(client)
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["subject1·adam_fast·s0", "subject2·adam_fast·s0"]
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.tags["group"] for r in children) == ["data=subject1", "data=subject2"]
    assert {r.data.tags["sweep"] for r in children} == {parent.data.tags["sweep"]} == {"sweep"}
    assert re.fullmatch(r"smoke \d\d:\d\d:\d\d data×2", parent.info.run_name)
    assert parent.data.params == {"data": "subject1,subject2"}
    similarity = {r.data.tags["group"]: r.data.metrics["test/latent_similarity"] for r in children}
    assert parent.data.metrics["summary/subject2/latent_similarity"] == pytest.approx(similarity["data=subject2"])
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "data=subject1" in report and "data=subject2" in report
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/differences.csv"} <= figures
    assert not list((tmp_path / "sweep" / "0").glob(".hydra")) and (tmp_path / "sweep" / "0" / "train.log").is_file()
    train_log = (tmp_path / "sweep" / "0" / "train.log").read_text()
    assert "epoch 12/12: train_loss " in train_log and "epoch 12/12" not in result.stdout  # the file only


def test_a_failing_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    # Settings are checked for every job before the sweep starts (a batch larger than the training
    # set included); a learning rate that makes training diverge shows only once the job trains.
    result = run_cli("-m", *TINY, "decoder.optimizer.lr=1e-3,1e30,1e-2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 1
    assert "1 sweep job(s) failed" in result.stderr
    runs = runs_of(store(tmp_path))
    (parent,) = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FAILED"
    finished = sorted(r.data.params["decoder.optimizer.lr"] for r in children if r.info.status == "FINISHED")
    assert finished == ["0.001", "0.01"]  # the job after it ran
    assert [r.info.status for r in children if r.data.params["decoder.optimizer.lr"] == "1e+30"] == ["FAILED"]
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "## Jobs that failed" in report and "decoder.optimizer.lr=1e+30" in report
    assert "inputs contain NaN or infinite values" in report


@pytest.mark.slow
def test_feature_loss_run_with_torch_compile(tmp_path):
    overrides = ["trainer.epochs=3", "trainer.feature_loss.weight=0.5", "trainer.feature_loss.layer=1"]
    run_in_process(tmp_path, *TINY, *overrides, "trainer.compile=true", "generator.model.size=32")
    (run,) = runs_of(store(tmp_path))
    assert run.info.status == "FINISHED" and run.data.params["trainer.compile"] == "True"
