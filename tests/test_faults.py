"""Fault injection: runs started at once, processes killed with SIGKILL, a SQLite store locked
beyond its timeout, a disk that is full. Each case checks that no run is lost (every run ends
FINISHED, or KILLED and continued to the numbers of an uninterrupted run) and no data point is
lost (every metric step is in the store once). Real processes, loopback only; the longer cases
are marked slow (``make test-slow``); a tracking server that dies: tests/test_faults_server.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric

from hyperexp.track.liveness import HEARTBEAT, HOST, NOTE, PID, end_runs_of_dead_processes, process_start
from hyperexp.track.outbox import queued_items
from hyperexp.track.runs import opened_run
from hyperexp.track.store import setup_experiment
from tests.conftest import TINY, run_cli, runs_of, store
from tests.faults import (
    LONG,
    SLOW_S,
    artifact_text,
    finished_run,
    injected,
    kill_during_training,
    limit_file_size,
    lock_store,
    next_start_marks_killed,
    reference,
    resume_to_the_end,
    start,
    steps,
    store_is_intact,
)


def test_runs_started_in_the_same_second_keep_their_own_folders_and_provenance(tmp_path):
    # Hydra's default folder pattern with the time frozen to one second: only the microseconds
    # and the process id can tell the runs apart.
    same_second = "hydra.run.dir=outputs/2026-01-01/12-00-00.${now:%f}-${pid:}"
    seeds = (0, 1, 2)
    processes = [
        start(*TINY, "trainer.checkpoint_every=4", f"trainer.seed={seed}", same_second, cwd=tmp_path) for seed in seeds
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    client = store(tmp_path)
    runs = runs_of(client)
    assert sorted(int(run.data.tags["seed"]) for run in runs) == list(seeds)
    assert all(run.info.status == "FINISHED" for run in runs)
    assert len({run.data.tags["output_dir"] for run in runs}) == 3
    for run in runs:
        seed, folder = run.data.tags["seed"], Path(run.data.tags["output_dir"])
        assert folder.parent == tmp_path / "outputs" / "2026-01-01"
        assert f"trainer.seed={seed}" in run.data.tags[NOTE]  # the command that made it
        config = yaml.safe_load(artifact_text(client, run.info.run_id, "config.yaml", tmp_path / run.info.run_id))
        assert config["trainer"]["seed"] == int(seed)
        checkpoint = Path(run.data.tags["checkpoint"])
        assert checkpoint.parent == folder / "checkpoints"
        assert torch.load(checkpoint, weights_only=True)["epoch"] == 12
        logged = client.download_artifacts(run.info.run_id, "predicted_latents.npy", str(tmp_path / run.info.run_id))
        assert np.array_equal(np.load(logged), np.load(folder / "predicted_latents.npy"))  # its own results
        assert steps(client, run.info.run_id) == list(range(1, 13))
    assert not list(tmp_path.rglob("*.tmp"))


def test_runs_of_dead_processes_are_marked_killed_at_the_next_start(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = setup_experiment(uri, "liveness", str(tmp_path / "artifacts"))
    client = MlflowClient(uri)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    host = os.uname().nodename
    now_ms = int(time.time() * 1000)

    def running(**tags) -> str:
        return client.create_run(experiment, tags={k: str(v) for k, v in tags.items()}).info.run_id

    live = dict(start=process_start(os.getpid()), heartbeat=now_ms)
    killed = running(**{HOST: host, PID: victim.pid, "hyperexp.process_start": process_start(victim.pid)})
    alive = running(**{HOST: host, PID: os.getpid(), "hyperexp.process_start": live["start"], HEARTBEAT: now_ms})
    silent_elsewhere = running(**{HOST: "node-7", PID: 4242, HEARTBEAT: now_ms - 3_600_000})
    beating_elsewhere = running(**{HOST: "node-8", PID: 4242, HEARTBEAT: now_ms})
    pid_reused = running(**{HOST: host, PID: os.getpid(), "hyperexp.process_start": "another-boot:1"})
    foreign = running(origin="not this project")  # no liveness tags: left alone
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    ended = end_runs_of_dead_processes(client)
    assert sorted(ended) == sorted([killed, silent_elsewhere, pid_reused])
    status = {run_id: client.get_run(run_id).info.status for run_id in (killed, alive, beating_elsewhere, foreign)}
    assert status == {killed: "KILLED", alive: "RUNNING", beating_elsewhere: "RUNNING", foreign: "RUNNING"}
    assert f"process {victim.pid} on {host} no longer exists" in client.get_run(killed).data.tags[NOTE]
    assert "no heartbeat from process 4242 on node-7 for 60 min" in client.get_run(silent_elsewhere).data.tags[NOTE]
    assert end_runs_of_dead_processes(client) == []  # marked once


@pytest.mark.slow  # half a minute: the lock outlasts SQLite's 20 s timeout
def test_a_store_locked_beyond_its_timeout_delays_delivery_and_loses_nothing(tmp_path):
    """SQLite waits 20 s for a lock (MLflow's busy timeout). A store locked for 30 s in the
    middle of a run: the run goes on, its updates queue; they arrive once the lock is gone."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = setup_experiment(uri, "locked", str(tmp_path / "artifacts"))
    with opened_run(uri, experiment, "locked", {}, folder=tmp_path / "outbox") as run:
        run.log_metrics({"loss": 1.0}, 1)
        run.flush()
        locker = lock_store(tmp_path / "mlflow.db", seconds=30)
        started = time.monotonic()
        for step in range(2, 201):
            run.log_metrics({"loss": 1.0 / step}, step)
            run.flush()
        run.outbox.log_image(np.zeros((16, 16, 3), np.uint8), key="grid", step=200)
        assert time.monotonic() - started < 10  # queued, not waiting for the store
        assert len(run.outbox.pending) > 100
        locker.wait(timeout=120)
    client = MlflowClient(uri)
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert steps(client, run.run_id, "loss") == list(range(1, 201))
    assert not (tmp_path / "outbox").exists()  # delivered, then removed


@pytest.mark.slow  # a minute: the store stays locked past SQLite's 20 s timeout twice
def test_updates_a_store_never_took_are_kept_and_synced_later(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = setup_experiment(uri, "gone", str(tmp_path / "artifacts"))
    locker = None
    try:
        with opened_run(uri, experiment, "gone", {}, folder=tmp_path / "out" / "outbox", outage_wait_s=1) as run:
            locker = lock_store(tmp_path / "mlflow.db", seconds=3600)
            for step in range(1, 51):
                run.log_metrics({"loss": 1.0 / step}, step)
                run.flush()
        assert len(queued_items(tmp_path / "out" / "outbox")) == 51  # 50 batches and the final status
        refused = run_cli("sync", str(tmp_path / "out"), cwd=tmp_path, module="hyperexp.track", timeout=600)
        assert refused.returncode == 1 and refused.stderr.startswith("hyperexp: error: ")
    finally:
        if locker is not None:
            locker.kill()
    synced = run_cli("sync", str(tmp_path / "out"), cwd=tmp_path, module="hyperexp.track")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert f"run {run.run_id}: " in synced.stdout
    client = MlflowClient(uri)
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert steps(client, run.run_id, "loss") == list(range(1, 51))
    assert not (tmp_path / "out" / "outbox").exists()


def test_the_outbox_is_bounded_images_give_way_metrics_do_not(tmp_path, monkeypatch):
    from hyperexp.track import outbox as outbox_module

    with socket.socket() as sock:  # a store nobody answers at
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(outbox_module, "MAX_QUEUED_BYTES", 10_000)
    outbox = outbox_module.Outbox(tmp_path / "outbox", "0" * 32, uri)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # ~12 KB as PNG
    for step in range(1, 4):
        outbox.log_image(image, key="grid", step=step)
        outbox.log_batch(metrics=[Metric("loss", 1.0 / step, 0, step)])
    assert outbox.skipped_images == 2  # the first image filled the allowance
    assert not outbox.close(wait_s=0)
    kinds = [json.loads(path.read_text())["kind"] for path in queued_items(tmp_path / "outbox")]
    assert kinds == ["image", "batch", "batch", "batch"]


def test_a_full_disk_costs_checkpoints_not_the_run(tmp_path):
    """Files may not exceed 8 MB: the decoder (4 MB) fits, its checkpoint with Adam's moments
    (12 MB) does not. Every checkpoint fails; the run finishes with every step."""
    args = [*TINY, "data.simulation.n_voxels=2048", "trainer.checkpoint_every=4", "hydra.run.dir=out"]
    process = start(*args, cwd=tmp_path, preexec_fn=limit_file_size)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    log = (tmp_path / "out" / "train.log").read_text()
    assert "checkpoint of epoch 4 not written" in log and "File too large" in log
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert run.info.status == "FINISHED" and steps(client, run.info.run_id) == list(range(1, 13))
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / "out" / "checkpoints" / "last.pt").exists()


# --- slow: SIGKILL at random and at chosen points ----------------------------------------------


@pytest.mark.slow
def test_sigkill_at_random_moments_of_training_then_resume_matches_an_uninterrupted_run(tmp_path):
    expected = reference(tmp_path, *LONG)
    for attempt, extra_s in enumerate(np.random.default_rng(16).uniform(0, 2, size=3)):
        run_id = kill_during_training(tmp_path, f"killed{attempt}", extra_s)
        next_start_marks_killed(tmp_path, run_id, f"other{attempt}")
        resume_to_the_end(tmp_path, run_id, f"resumed{attempt}", expected)


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_then_resume_matches(tmp_path):
    expected = reference(tmp_path, *LONG)
    injected("rename:last.pt", 2, *LONG, "hydra.run.dir=killed", cwd=tmp_path)  # the epoch-100 checkpoint, half written
    store_is_intact(tmp_path)
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert torch.load(run.data.tags["checkpoint"], weights_only=True)["epoch"] == 50  # the intact one
    assert len(list((tmp_path / "killed" / "checkpoints").glob(".last.pt.*.tmp"))) == 1  # cut short, never renamed
    next_start_marks_killed(tmp_path, run.info.run_id, "other")
    resume_to_the_end(tmp_path, run.info.run_id, "resumed", expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point,args",
    [
        ("rename:data_2.dat", ["data=average"]),  # writing the simulated experiment
        ("rename:.npz", ["data=hyperaligned"]),  # writing the hyperaligned cache
    ],
)
def test_sigkill_while_data_are_written_leaves_nothing_a_later_run_uses(tmp_path, point, args):
    expected = reference(tmp_path, *TINY, *args)
    for path in (tmp_path / "data").rglob("*"):  # the reference's files: the killed run writes its own
        if path.is_file():
            path.unlink()
    injected(point, 1, *TINY, *args, "hydra.run.dir=killed", cwd=tmp_path)
    store_is_intact(tmp_path)
    assert runs_of(store(tmp_path)) == []  # data come before the run: nothing to lose in the store
    after = run_cli(*TINY, *args, "hydra.run.dir=after", cwd=tmp_path, timeout=SLOW_S)
    assert after.returncode == 0, after.stderr[-3000:]
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert finished_run(client, run.info.run_id, 12) == expected


@pytest.mark.slow
def test_sigkill_during_the_artifact_upload_is_completed_by_the_next_start(tmp_path):
    """The process dies while its final artifacts are copied (before its end status was queued:
    the decoder model is logged meanwhile). The next start uploads them whole, then marks the run
    KILLED: its process never ended it."""
    injected("copy:predicted_latents", 1, *TINY, "hydra.run.dir=killed", cwd=tmp_path)  # the final upload
    store_is_intact(tmp_path)
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert run.info.status == "RUNNING" and queued_items(tmp_path / "killed" / "outbox")
    other = run_cli(
        *TINY, "trainer.epochs=2", "tracking.experiment=other", "hydra.run.dir=other", cwd=tmp_path, timeout=SLOW_S
    )
    assert other.returncode == 0, other.stderr[-3000:]
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "KILLED" and "no longer exists" in killed.data.tags[NOTE]
    for key in ("learning/train_loss", "learning/test_loss"):
        assert steps(client, run.info.run_id, key) == list(range(1, 13)), key
    uploaded = client.download_artifacts(run.info.run_id, "predicted_latents.npy", str(tmp_path / "download"))
    assert np.load(uploaded).shape == (12, 512)  # the final artifacts, whole
    assert {"per_trial.csv", "reconstructions_grid.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert not (tmp_path / "killed" / "outbox").exists()
