"""Beyond one process: parallel launchers on a fresh store, a real tracking server, interrupt
and resume. Real processes, loopback only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from tests.conftest import run_cli, sweep_children
from tests.test_train_e2e import TINY, runs_of, store


@pytest.mark.slow  # one to two minutes on 2 cores: make test-slow
def test_joblib_sweep_of_8_jobs_with_4_workers_on_a_fresh_store_loses_no_run(tmp_path):
    client, children = sweep_children(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "trainer.epochs=4",
        "trainer.seed=0,1,2,3",
        "data=subject1,subject2",
    )
    assert len(children) == 8 and all(r.info.status == "FINISHED" for r in children)
    assert len({(r.data.tags["group"], r.data.tags["seed"]) for r in children}) == 8


@pytest.mark.slow  # one to two minutes on 2 cores: make test-slow
def test_submitit_local_sweep_runs(tmp_path):
    client, children = sweep_children(
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "trainer.epochs=4",
        "data=subject1,subject2",
    )
    assert sorted(r.data.tags["group"] for r in children) == ["data=subject1", "data=subject2"]
    assert all(r.info.status == "FINISHED" for r in children)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # one to two minutes on 2 cores: make test-slow
def test_a_real_tracking_server_receives_a_full_run_over_http(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "served"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(1)
        result = run_cli(*TINY, f"tracking.uri={uri}", "hydra.run.dir=out", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "learning/train_loss")) == 12
        assert len([a for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]) >= 2
        assert "reconstructions_grid.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert list((tmp_path / "served").rglob("reconstructions_grid.png"))  # stored by the server, not the client
        assert not (tmp_path / "runs").exists()  # nothing went to a local store
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert server.poll() is not None


LONG = [*TINY, "trainer.epochs=300", "trainer.log_every=10", "trainer.checkpoint_every=0"]


@pytest.mark.slow  # three 300-epoch runs; in-process: tests/test_decode.py
def test_sigint_ends_the_run_killed_and_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hyperexp.train", *LONG, "hydra.run.dir=first"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log, deadline = tmp_path / "first" / "train.log", time.monotonic() + 180
    while not (log.exists() and "MLflow run" in log.read_text()):  # the store exists from here on
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.5)
    client = store(tmp_path)
    (run,) = runs_of(client)
    while not client.get_metric_history(run.info.run_id, "learning/train_loss"):  # training is under way
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    (killed,) = runs_of(client)
    assert killed.info.status == "KILLED"
    assert f"trainer.resume={killed.info.run_id}" in stderr
    stopped_at = int(torch.load(killed.data.tags["checkpoint"], weights_only=True)["epoch"])
    assert 0 < stopped_at < 300

    resumed = run_cli(*LONG, f"trainer.resume={killed.info.run_id}", "hydra.run.dir=second", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = run_cli(*LONG, "tracking.experiment=straight", "hydra.run.dir=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]

    finished = client.get_run(killed.info.run_id)
    (reference,) = runs_of(client, "straight")
    assert finished.info.status == "FINISHED"
    history = sorted(client.get_metric_history(finished.info.run_id, "learning/test_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(1, 301))
    for name in ("learning/test_loss", "test/latent_similarity", "test/ssim"):
        assert finished.data.metrics[name] == reference.data.metrics[name], name
    resumed_latents, straight_latents = (
        np.load(client.download_artifacts(run.info.run_id, "predicted_latents.npy", str(tmp_path / run.info.run_id)))
        for run in (finished, reference)
    )
    assert np.array_equal(resumed_latents, straight_latents)


def _open_fresh_store(folder: str) -> str:
    from hyperexp.track.store import setup_experiment

    return setup_experiment(f"sqlite:///{folder}/mlflow.db", "race")


def test_processes_opening_a_new_sqlite_store_at_once_do_not_race(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=4) as pool:
        ids = list(pool.map(_open_fresh_store, [str(tmp_path)] * 4))
    assert len(set(ids)) == 1


def test_an_interrupted_sweep_leaves_no_run_running(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hyperexp.train", "-m", *LONG, "data=subject1,subject2", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log, deadline = tmp_path / "sweep" / "0" / "train.log", time.monotonic() + 180
    while not (log.exists() and "MLflow run" in log.read_text()):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert process.returncode == 130
    statuses = {r.data.tags.get("sweep_role", "job"): r.info.status for r in runs_of(store(tmp_path))}
    assert statuses == {"parent": "KILLED", "job": "KILLED"}
