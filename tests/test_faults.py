"""Fault injection: runs started at once, processes killed with SIGKILL, a tracking store that is
locked or gone, a disk that is full. Each case checks that no run is lost (every run ends
FINISHED, or KILLED and continued to the numbers of an uninterrupted run) and no data point is
lost (every metric step is in the store once). Real processes, loopback only; the longer cases
are marked slow (``make test-slow``)."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import sqlite3
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
from hyperexp.track.runs import MetricBuffer, tracked_run
from hyperexp.track.store import setup_experiment
from tests.conftest import REPO, TINY, run_cli, runs_of, store

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


def start(*args: str, cwd: Path, module: str = "hyperexp.train", **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", module, *args]
    return subprocess.Popen(
        command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def steps(client: MlflowClient, run_id: str, key: str = "train_loss") -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def artifact_text(client: MlflowClient, run_id: str, path: str, folder: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(folder))).read_text()


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
        overrides = yaml.safe_load(artifact_text(client, run.info.run_id, "overrides.yaml", tmp_path / run.info.run_id))
        assert f"trainer.seed={seed}" in overrides
        config = yaml.safe_load(artifact_text(client, run.info.run_id, "config.yaml", tmp_path / run.info.run_id))
        assert config["trainer"]["seed"] == int(seed)
        checkpoint = Path(run.data.tags["checkpoint"])
        assert checkpoint.parent == folder / "checkpoints"
        state = torch.load(checkpoint, weights_only=True)
        decoder = torch.load(client.download_artifacts(run.info.run_id, "decoder.pt", str(tmp_path)), weights_only=True)
        assert state["epoch"] == 12 and torch.equal(state["model"]["weight"], decoder["weight"])  # its own weights
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


def test_a_store_locked_beyond_its_timeout_delays_delivery_and_loses_nothing(tmp_path):
    """SQLite waits 20 s for a lock (MLflow's busy timeout). A store locked for 30 s in the
    middle of a run: the run goes on, its updates queue; they arrive once the lock is gone."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = setup_experiment(uri, "locked", str(tmp_path / "artifacts"))
    with tracked_run(experiment, "locked", {}, folder=tmp_path / "outbox") as run:
        metrics = MetricBuffer(run.info.run_id, run.outbox)
        metrics.add({"loss": 1.0}, 1)
        metrics.flush()
        locker = lock_store(tmp_path / "mlflow.db", seconds=30)
        started = time.monotonic()
        for step in range(2, 201):
            metrics.add({"loss": 1.0 / step}, step)
            metrics.flush()
        run.outbox.log_image(np.zeros((16, 16, 3), np.uint8), key="grid", step=200)
        assert time.monotonic() - started < 10  # queued, not waiting for the store
        assert len(run.outbox.pending) > 100
        locker.wait(timeout=120)
    client = MlflowClient(uri)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert steps(client, run.info.run_id, "loss") == list(range(1, 201))
    assert not (tmp_path / "outbox").exists()  # delivered, then removed


def test_updates_a_store_never_took_are_kept_and_synced_later(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = setup_experiment(uri, "gone", str(tmp_path / "artifacts"))
    locker = None
    try:
        with tracked_run(experiment, "gone", {}, folder=tmp_path / "out" / "outbox", outage_wait_s=1) as run:
            locker = lock_store(tmp_path / "mlflow.db", seconds=3600)
            metrics = MetricBuffer(run.info.run_id, run.outbox)
            for step in range(1, 51):
                metrics.add({"loss": 1.0 / step}, step)
                metrics.flush()
        assert len(queued_items(tmp_path / "out" / "outbox")) == 51  # 50 batches and the final status
        refused = run_cli("sync", str(tmp_path / "out"), cwd=tmp_path, module="hyperexp.track", timeout=600)
        assert refused.returncode == 1 and refused.stderr.startswith("hyperexp: error: ")
    finally:
        if locker is not None:
            locker.kill()
    synced = run_cli("sync", str(tmp_path / "out"), cwd=tmp_path, module="hyperexp.track")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert f"run {run.info.run_id}: " in synced.stdout
    client = MlflowClient(uri)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert steps(client, run.info.run_id, "loss") == list(range(1, 51))
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


LOCK_FOR = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def lock_store(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that holds an exclusive lock on a SQLite store for ``seconds``."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCK_FOR, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout.readline().strip() == "locked"
    return locker


def limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))


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


# --- slow: SIGKILL at random and chosen points, a tracking server that dies ---------------------

SLOW_S = 1800  # a run of a few minutes on a shared 2-core machine can take ten times as long
LONG = [*TINY, "trainer.epochs=300", "trainer.log_every=10", "trainer.checkpoint_every=50"]
FINAL = ("final/final_test_loss", "final/latent_similarity", "final/ssim")


def finished_run(client: MlflowClient, run_id: str, epochs: int) -> dict[str, float]:
    """The run ended FINISHED with every epoch's metrics once; returns its final metrics."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", run.data.tags.get(NOTE)
    for key in ("train_loss", "test_loss"):
        assert steps(client, run_id, key) == list(range(1, epochs + 1)), key
    return {key: run.data.metrics[key] for key in FINAL}


def reference(tmp_path: Path, *args: str) -> dict[str, float]:
    """Final metrics of an uninterrupted run of the same config (experiment 'straight')."""
    result = run_cli(*args, "tracking.experiment=straight", "hydra.run.dir=straight", cwd=tmp_path, timeout=SLOW_S)
    assert result.returncode == 0, result.stderr[-3000:]
    client = store(tmp_path)
    (run,) = runs_of(client, "straight")
    return finished_run(client, run.info.run_id, 300 if "trainer.epochs=300" in args else 12)


def wait_for(condition, timeout_s: float = 1200, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert process is None or process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return value


def only_run(client: MlflowClient, experiment: str = "smoke"):
    runs = runs_of(client, experiment)
    return runs[0] if len(runs) == 1 else None


def next_start_marks_killed(tmp_path: Path, run_id: str, folder: str) -> None:
    """Any later start against the store (here a 2-epoch run) ends the dead run."""
    other = run_cli(
        *TINY, "trainer.epochs=2", "tracking.experiment=other", f"hydra.run.dir={folder}", cwd=tmp_path, timeout=SLOW_S
    )
    assert other.returncode == 0, other.stderr[-3000:]
    killed = store(tmp_path).get_run(run_id)
    assert killed.info.status == "KILLED" and "no longer exists" in killed.data.tags[NOTE]


def resume_to_the_end(tmp_path: Path, run_id: str, folder: str, expected: dict[str, float]) -> None:
    resumed = run_cli(*LONG, f"trainer.resume={run_id}", f"hydra.run.dir={folder}", cwd=tmp_path, timeout=SLOW_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert finished_run(store(tmp_path), run_id, 300) == expected


def kill_during_training(tmp_path: Path, folder: str, extra_s: float) -> str:
    """Start LONG, SIGKILL it ``extra_s`` after its first checkpoint; returns its run id."""
    before = {run.info.run_id for run in runs_of(store(tmp_path))} if (tmp_path / "runs").exists() else set()
    process = start(*LONG, f"hydra.run.dir={folder}", cwd=tmp_path)
    client = wait_for(lambda: (tmp_path / "runs" / "mlflow.db").is_file() and store(tmp_path), process=process)
    run = wait_for(lambda: [r for r in runs_of(client) if r.info.run_id not in before], process=process)[0]
    wait_for(lambda: "checkpoint" in client.get_run(run.info.run_id).data.tags, process=process)
    time.sleep(extra_s)
    process.kill()
    process.communicate()
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # what kill -9 leaves
    return run.info.run_id


@pytest.mark.slow
def test_sigkill_at_random_moments_of_training_then_resume_matches_an_uninterrupted_run(tmp_path):
    expected = reference(tmp_path, *LONG)
    for attempt, extra_s in enumerate(np.random.default_rng(16).uniform(0, 2, size=3)):
        run_id = kill_during_training(tmp_path, f"killed{attempt}", extra_s)
        next_start_marks_killed(tmp_path, run_id, f"other{attempt}")
        resume_to_the_end(tmp_path, run_id, f"resumed{attempt}", expected)


def injected(point: str, nth: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fault_injection", point, str(nth), *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=SLOW_S,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result


def store_is_intact(folder: Path) -> None:
    with sqlite3.connect(folder / "runs" / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


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
    assert runs_of(store(tmp_path)) == []  # data come before the run: nothing to lose in the store
    after = run_cli(*TINY, *args, "hydra.run.dir=after", cwd=tmp_path, timeout=SLOW_S)
    assert after.returncode == 0, after.stderr[-3000:]
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert finished_run(client, run.info.run_id, 12) == expected


@pytest.mark.slow
def test_sigkill_during_the_artifact_upload_is_completed_by_the_next_start(tmp_path):
    injected("copy:runs/artifacts", 5, *TINY, "hydra.run.dir=killed", cwd=tmp_path)
    store_is_intact(tmp_path)
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert run.info.status == "RUNNING" and queued_items(tmp_path / "killed" / "outbox")
    other = run_cli(
        *TINY, "trainer.epochs=2", "tracking.experiment=other", "hydra.run.dir=other", cwd=tmp_path, timeout=SLOW_S
    )
    assert other.returncode == 0, other.stderr[-3000:]
    finished_run(client, run.info.run_id, 12)  # its queued upload and final status were delivered
    uploaded = client.download_artifacts(run.info.run_id, "decoder.pt", str(tmp_path / "download"))
    assert Path(uploaded).read_bytes() == (tmp_path / "killed" / "artifacts" / "decoder.pt").read_bytes()
    assert not (tmp_path / "killed" / "outbox").exists()


@pytest.mark.slow
def test_a_tracking_server_down_for_30_s_mid_run_loses_nothing(tmp_path):
    from tests.servers import MlflowServer

    with MlflowServer(tmp_path) as server:
        args = [*TINY, "trainer.epochs=2000", "trainer.log_every=20", f"tracking.uri={server.uri}"]
        process = start(*args, "hydra.run.dir=out", cwd=tmp_path)
        client = MlflowClient(server.uri)
        run = wait_for(lambda: only_run(client), process=process)
        wait_for(lambda: steps(client, run.info.run_id), process=process)
        server.kill()
        time.sleep(30)
        training_went_on = process.poll() is None
        server.start()
        _, stderr = process.communicate(timeout=SLOW_S)
        assert process.returncode == 0, stderr[-3000:]
        log = (tmp_path / "out" / "train.log").read_text()
        assert "does not answer" in log and "answers again" in log and training_went_on
        finished = client.get_run(run.info.run_id)
        assert finished.info.status == "FINISHED"
        for key in ("train_loss", "test_loss", "latent_cosine"):
            assert steps(client, run.info.run_id, key) == list(range(1, 2001)), key
        grids = [a for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
        assert len({a.path.split("+step+")[1].split("+")[0] for a in grids}) == 100  # one per log_every


@pytest.mark.slow
def test_a_tracking_server_gone_until_the_end_is_synced_afterwards(tmp_path):
    from tests.servers import MlflowServer

    server = MlflowServer(tmp_path).start()
    try:
        args = [*TINY, "trainer.epochs=300", "trainer.log_every=10", f"tracking.uri={server.uri}"]
        process = start(*args, "tracking.outage_wait_s=5", "hydra.run.dir=out", cwd=tmp_path)
        client = MlflowClient(server.uri)
        run = wait_for(lambda: only_run(client), process=process)
        server.kill()
        _, stderr = process.communicate(timeout=SLOW_S)
        assert process.returncode == 0, stderr[-3000:]
        warning = [line for line in stderr.splitlines() if line.startswith("hyperexp: ")]
        assert len(warning) == 1 and "python -m hyperexp.track sync" in warning[0], stderr[-3000:]
        server.start()
        synced = run_cli("sync", str(tmp_path / "out"), cwd=tmp_path, module="hyperexp.track")
        assert synced.returncode == 0, synced.stderr[-3000:]
        finished_run(client, run.info.run_id, 300)
        assert "decoder.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    finally:
        server.kill()


@pytest.mark.slow
def test_parallel_writers_on_one_sqlite_store_lose_no_step(tmp_path):
    result = run_cli(
        "-m",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        "trainer.seed=0,1,2,3",
        "data=subject1,subject2",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        timeout=SLOW_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = store(tmp_path)
    children = [r for r in runs_of(client) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 8
    for child in children:
        finished_run(client, child.info.run_id, 12)
