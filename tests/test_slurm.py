"""A real single-node SLURM (tests/slurm/single_node.sh: Debian's slurm-wlm and munge on
127.0.0.1), not only submitit's local stand-in: a sweep through the ``hydra/launcher=slurm``
preset queues and runs its jobs as SLURM jobs, each a child run of the sweep; a run cancelled
with ``scancel`` ends KILLED and resumes to the numbers of an uninterrupted run; a job killed
outright (SIGKILL, as when its node fails) is marked KILLED by the next start and resumes too.

Slow, and it needs the daemons: ``sudo tests/slurm/single_node.sh start`` (the test starts them
itself when it runs as root on a machine with apt)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hyperexp.track.liveness import PID
from tests.conftest import REPO, runs_of, store, sweep_children
from tests.faults import LONG, SLOW_S, finished_run, reference, wait_for

pytestmark = pytest.mark.slow
SETUP = REPO / "tests" / "slurm" / "single_node.sh"


@pytest.fixture(scope="module")
def slurm():
    if shutil.which("sinfo") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip(f"no SLURM here; start one with: sudo {SETUP} start")
        started = subprocess.run([str(SETUP), "start"], capture_output=True, text=True, timeout=900)
        assert started.returncode == 0, started.stdout + started.stderr
    return "debug"


def sbatch(folder: Path, *args: str) -> str:
    """Submit ``python -m hyperexp.train args`` as a batch job; returns the job id."""
    # exec: the job's process is python itself, so the job ends when the run has ended
    command = "exec " + " ".join(shlex.quote(part) for part in [sys.executable, "-m", "hyperexp.train", *args])
    result = subprocess.run(
        ["sbatch", "--parsable", "--chdir", str(folder), "--output", str(folder / "slurm-%j.out"), "--wrap", command],
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().split(";")[0]


def queued(job: str) -> bool:
    return bool(subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip())


def test_a_sweep_through_the_slurm_preset_runs_as_slurm_jobs(tmp_path, slurm):
    client, children = sweep_children(
        tmp_path,
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={slurm}",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=60",
        "data=subject1,subject2",
        timeout=SLOW_S,
    )
    assert sorted(run.data.tags["group"] for run in children) == ["data=subject1", "data=subject2"]
    assert len({run.data.tags["slurm_job_id"] for run in children}) == 2  # two SLURM jobs
    for child in children:
        finished_run(client, child.info.run_id, 12)


def stopped_run(tmp_path: Path, folder: str, stop: Callable[[str, dict], object]) -> str:
    """Submit LONG, ``stop(job id, run tags)`` once it has a checkpoint; returns its run id."""
    (tmp_path / folder).mkdir()
    job = sbatch(tmp_path, *LONG, f"hydra.run.dir={folder}")
    client = wait_for(lambda: (tmp_path / "runs" / "mlflow.db").is_file() and store(tmp_path))
    run = wait_for(lambda: [r for r in runs_of(client) if r.data.tags.get("slurm_job_id") == job])[0]
    wait_for(lambda: "checkpoint" in client.get_run(run.info.run_id).data.tags)
    stop(job, run.data.tags)
    wait_for(lambda: not queued(job))
    return run.info.run_id


def scancel(job: str, tags: dict) -> None:
    subprocess.run(["scancel", job], check=True)  # SIGTERM, SIGKILL after KillWait (30 s)


def sigkill(job: str, tags: dict) -> None:
    """What a node failure does to the job's process (``scancel --signal=KILL`` is a plain cancel)."""
    os.kill(int(tags[PID]), signal.SIGKILL)


def resume_as_a_job(tmp_path: Path, run_id: str, folder: str) -> None:
    (tmp_path / folder).mkdir()
    job = sbatch(tmp_path, *LONG, f"trainer.resume={run_id}", f"hydra.run.dir={folder}")
    wait_for(lambda: not queued(job), timeout_s=SLOW_S)
    output = (tmp_path / f"slurm-{job}.out").read_text()
    assert "latent similarity" in output, output[-3000:]


def test_scancel_ends_the_run_killed_and_it_resumes(tmp_path, slurm):
    expected = reference(tmp_path, *LONG)
    run_id = stopped_run(tmp_path, "cancelled", scancel)  # SIGTERM: a checkpoint, then KILLED
    client = store(tmp_path)
    assert client.get_run(run_id).info.status == "KILLED"
    resume_as_a_job(tmp_path, run_id, "resumed")
    assert finished_run(client, run_id, 300) == expected


def test_a_job_killed_outright_is_marked_killed_by_the_next_start_and_resumes(tmp_path, slurm):
    expected = reference(tmp_path, *LONG)
    run_id = stopped_run(tmp_path, "lost", sigkill)
    client = store(tmp_path)
    assert client.get_run(run_id).info.status == "RUNNING"
    resume_as_a_job(tmp_path, run_id, "resumed")  # its start marks the run KILLED, then continues it
    assert "Marked KILLED" in client.get_run(run_id).data.tags["mlflow.note.content"]
    assert finished_run(client, run_id, 300) == expected
