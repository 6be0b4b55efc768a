"""What the fault-injection tests share: processes started and killed, a store locked from
another process, a file size limit, and checks that a run ended with every step."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from hyperexp.track.liveness import NOTE
from tests.conftest import REPO, TINY, run_cli, runs_of, store

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


def start(*args: str, cwd: Path, module: str = "hyperexp.train", **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", module, *args]
    return subprocess.Popen(
        command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def steps(client: MlflowClient, run_id: str, key: str = "learning/train_loss") -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def artifact_text(client: MlflowClient, run_id: str, path: str, folder: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(folder))).read_text()


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


SLOW_S = 1800  # a run of a few minutes on a shared 2-core machine can take ten times as long
LONG = [*TINY, "trainer.epochs=300", "trainer.log_every=10", "trainer.checkpoint_every=50"]
FINAL = ("test/latent_similarity", "test/ssim", "test/pixel_correlation")


def finished_run(client: MlflowClient, run_id: str, epochs: int) -> dict[str, float]:
    """The run ended FINISHED with every epoch's metrics once; returns its final metrics."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", run.data.tags.get(NOTE)
    for key in ("learning/train_loss", "learning/test_loss"):
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
    store_is_intact(tmp_path)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # what kill -9 leaves
    return run.info.run_id


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
