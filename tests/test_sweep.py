"""The sweep callback's life cycle, driven directly with the config Hydra hands it, and each job's
view of its sweep (``sweep_membership``)."""

from __future__ import annotations

import json
import re

import pytest
from hydra.types import RunMode
from mlflow import MlflowClient
from omegaconf import OmegaConf

from hyperexp.report.group_summary import OPTUNA_RESULTS, group_label
from hyperexp.report.sweep import failed_jobs
from hyperexp.sweep import MlflowSweepCallback
from hyperexp.track.runs import opened_run
from hyperexp.track.sweep import (
    PARENT_FILE,
    SWEEP_FILE,
    job_group,
    read_parent_run_id,
    record_failed_job,
    sweep_membership,
    swept_keys,
)

SWEEP_OVERRIDES = ["data=subject1,subject2", "trainer.seed=0,1", "trainer.epochs=3"]


def sweep_config(tmp_path):
    return OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}, "overrides": {"task": SWEEP_OVERRIDES}, "sweeper": {}},
            "tracking": {
                "_target_": "hyperexp.track.MlflowTracker",
                "uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "experiment": "sweeps",
                "artifact_root": str(tmp_path / "artifacts"),
            },
        }
    )


def job_config(tmp_path, num: int, overrides: list[str], mode: RunMode = RunMode.MULTIRUN):
    return OmegaConf.create(
        {"mode": mode, "sweep": {"dir": str(tmp_path / "sweep")}, "overrides": {"task": overrides}, "job": {"num": num}}
    )


def run_job(tmp_path, num: int, overrides: list[str], ssim: float) -> str:
    """What a training job does with its sweep: a child run, tagged by ``sweep_membership``."""
    tags, parent_id = sweep_membership(job_config(tmp_path, num, overrides))
    experiment_id = json.loads((tmp_path / "sweep" / SWEEP_FILE).read_text())["experiment_id"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with opened_run(uri, experiment_id, f"job {num}", tags, parent_run_id=parent_id) as active:
        active.log_metrics({"test/ssim": ssim}, 1)
    return active.run_id


def test_group_labels_are_metric_key_prefixes():
    assert group_label("data=subject1") == "subject1"
    assert group_label("data=subject1,decoder.optimizer.lr=0.001") == "subject1 optimizer.lr 0.001"
    assert group_label("data.n_subjects=4") == "n_subjects 4" and group_label("all") == "all"


def test_an_optuna_studys_best_trial_goes_to_its_parent_run(tmp_path):
    config, callback = sweep_config(tmp_path), MlflowSweepCallback()
    callback.on_multirun_start(config)
    run_job(tmp_path, 0, ["data=subject1", "trainer.seed=0"], 0.5)
    results = "name: optuna\nbest_params:\n  decoder.optimizer.lr: 0.0003\nbest_value: 0.41\n"
    (tmp_path / "sweep" / OPTUNA_RESULTS).write_text(results)
    callback.on_multirun_end(config)
    parent = MlflowClient(config.tracking.uri).get_run(read_parent_run_id(tmp_path / "sweep"))
    assert parent.data.metrics["summary/best/validation_loss"] == 0.41
    assert parent.data.tags["best_params"] == "decoder.optimizer.lr=0.0003"


def test_swept_keys_and_groups_leave_seeds_out():
    keys = swept_keys(SWEEP_OVERRIDES, {"optimizer.lr": "1e-3,1e-4"})
    assert keys == ["data", "trainer.seed", "optimizer.lr"]
    assert (
        job_group(["data=subject2", "trainer.seed=1", "optimizer.lr=1e-3"], keys) == "data=subject2,optimizer.lr=0.001"
    )
    assert job_group(["trainer.seed=1"], ["trainer.seed"]) == "all"


def test_a_single_run_belongs_to_no_sweep(tmp_path):
    assert sweep_membership(None) == ({"sweep": "none"}, None)
    assert sweep_membership(job_config(tmp_path, 0, [], mode=RunMode.RUN)) == ({"sweep": "none"}, None)
    assert sweep_membership(job_config(tmp_path, 0, [])) == ({"sweep": "none"}, None)  # no sweep file


def test_a_sweep_of_finished_jobs_ends_finished_with_its_report(tmp_path):
    config, callback = sweep_config(tmp_path), MlflowSweepCallback()
    callback.on_multirun_start(config)
    parent_id = read_parent_run_id(tmp_path / "sweep")
    client = MlflowClient(config.tracking.uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "RUNNING"
    assert parent.data.tags["sweep_role"] == "parent" and parent.data.tags["swept_keys"] == "data,trainer.seed"
    assert re.fullmatch(r"sweep \d\d:\d\d:\d\d data×2·seed×2", parent.info.run_name)  # when, what it sweeps
    assert parent.data.params == {"data": "subject1,subject2", "trainer.seed": "0,1"}
    assert parent.data.tags["mlflow.note.content"].startswith("`python -m hyperexp.train -m data=subject1,subject2")

    jobs = [
        ["data=subject1", "trainer.seed=0"],
        ["data=subject1", "trainer.seed=1"],
        ["data=subject2", "trainer.seed=0"],
    ]
    run_ids = [run_job(tmp_path, num, overrides, 0.5 + num / 10) for num, overrides in enumerate(jobs)]
    child = client.get_run(run_ids[2])
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert {k: child.data.tags[k] for k in ("sweep", "group", "job")} == {
        "sweep": str(tmp_path / "sweep"),
        "group": "data=subject2",
        "job": "2",
    }

    callback.on_multirun_end(config)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"data": "subject1,subject2", "trainer.seed": "0,1"}
    summary = parent.data.metrics  # per group: mean and 95% CI half-width over its jobs (ssim 0.5, 0.6 | 0.7)
    assert summary["summary/subject1/ssim"] == pytest.approx(0.55)
    assert summary["summary/subject2/ssim"] == pytest.approx(0.7)
    assert summary["summary/subject1/ssim_ci95"] == pytest.approx(12.7062 * 0.0707107 / 2**0.5, rel=1e-4)
    assert "summary/subject2/ssim_ci95" not in summary  # one job: no interval
    assert all(key > "learning/" for key in summary)  # MLflow's charts: after the jobs' curves
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "| data=subject1 | 2 | 0.55 ± 0.071 |" in report and "Jobs that failed" not in report
    assert {"report/report.md", "report/report.html"} <= {a.path for a in client.list_artifacts(parent_id, "report")}


def test_a_sweep_with_a_failed_job_lists_it_and_ends_failed(tmp_path, capsys):
    config, callback = sweep_config(tmp_path), MlflowSweepCallback()
    callback.on_multirun_start(config)
    run_job(tmp_path, 0, ["data=subject1", "trainer.seed=0"], 0.5)
    record_failed_job(tmp_path / "sweep" / "1", 1, ["data=subject2", "trainer.seed=0"], "trainer.epochs must be >= 1")
    assert failed_jobs(tmp_path / "sweep") == [
        {"job": 1, "overrides": ["data=subject2", "trainer.seed=0"], "error": "trainer.epochs must be >= 1"}
    ]

    with pytest.raises(SystemExit) as stopped:
        callback.on_multirun_end(config)
    assert stopped.value.code == 1
    assert "hyperexp: 1 sweep job(s) failed" in capsys.readouterr().err
    parent_id = (tmp_path / "sweep" / PARENT_FILE).read_text().strip()
    assert MlflowClient(config.tracking.uri).get_run(parent_id).info.status == "FAILED"
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert report.endswith(
        "\n\n## Jobs that failed\n\n- job 1 (`data=subject2 trainer.seed=0`): trainer.epochs must be >= 1\n"
    )
