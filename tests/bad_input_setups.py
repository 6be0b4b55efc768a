"""How rows of the bad-input table (tests/bad_input_cases.py) prepare their folder: data files,
a corrupt generator, a store with a run to resume, a busy or unwritable folder. Each ``setup``
takes the test's folder and returns extra command-line arguments."""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from hyperexp.data.files import SubjectData, save_subject_dat
from tests.mxnet_files import save_params

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
HELD: list = []  # locks a row holds while the entry point runs; the test releases them


def subject(seed=0, n_train=40, n_test=6, voxels=64, dim=512, latents_seed=0) -> SubjectData:
    rng, latents = np.random.default_rng(seed), np.random.default_rng(latents_seed)
    return SubjectData(
        rng.standard_normal((n_train, voxels), dtype=np.float32),
        latents.standard_normal((n_train, dim), dtype=np.float32),
        rng.standard_normal((n_test, voxels), dtype=np.float32),
        latents.standard_normal((n_test, dim), dtype=np.float32),
    )


def files(root: Path, **changes) -> list[str]:
    """A folder of two good subjects' files, the first one changed by ``changes``."""
    for k in (1, 2):
        save_subject_dat(root / "data" / f"data_{k}.dat", subject(seed=k, **(changes if k == 1 else {})))
    return ["data.source=files", f"data.root={root / 'data'}"]


def write(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


class Malicious:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def file_at(relative: str, payload: bytes | None = b"", args=()) -> Callable[[Path], list[str]]:
    """Setup: a file (or, with payload None, a folder) where the run expects something else."""

    def setup(root: Path) -> list[str]:
        if payload is None:
            (root / relative).mkdir(parents=True)
        else:
            write(root / relative, payload)
        return list(args)

    return setup


def first_subject_pickled(payload: bytes) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        args = files(root)
        write(root / "data" / "data_1.dat", payload)
        return args

    return setup


def truncated_pickle(root):
    args = files(root)
    path = root / "data" / "data_1.dat"
    path.write_bytes(path.read_bytes()[:500])
    return args


def nan_in_responses(root):
    args = files(root)
    bad = subject(seed=1)
    bad.x_test[2, 5] = np.nan
    save_subject_dat(root / "data" / "data_1.dat", bad)
    return args


def memoised_references(root):
    """One array referenced by all 1050 trials: a small file that stacks to much more."""
    args = files(root)
    row, latents = np.ones(4096, np.float32), np.random.default_rng(1).standard_normal((1050, 512), dtype=np.float32)
    write(root / "data" / "data_1.dat", pickle.dumps(([row] * 1050, list(latents), [row] * 36, list(latents[:36]))))
    return args


def all_identical_trials(root):
    args = files(root)
    same = subject(seed=1)
    save_subject_dat(
        root / "data" / "data_1.dat", SubjectData(np.ones_like(same.x_train), same.t_train, same.x_test, same.t_test)
    )
    return args


def corrupt_params(root):
    path = root / "generator.params"
    save_params(path, {"1.weight": np.zeros((8192, 512), np.float32)})
    path.write_bytes(path.read_bytes()[:100000])
    return ["generator=pggan", f"generator.model.weights={path}"]


def closed_port(root):
    with socket.socket() as sock:  # a port nobody listens on: bound, then closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [f"tracking.uri=http://127.0.0.1:{port}"]


def store_with_run(root: Path, status: str | None, params=None, checkpoint=True, tags=None) -> str:
    """A SQLite store under root/runs with one run of the smoke experiment; returns its id."""
    client = MlflowClient(f"sqlite:///{root / 'runs' / 'mlflow.db'}")
    experiment = client.create_experiment("smoke", artifact_location=(root / "runs" / "artifacts").as_uri())
    run = client.create_run(experiment, tags=tags or {})
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, value)
    if checkpoint:
        client.set_tag(run.info.run_id, "checkpoint", str(write(root / "old" / "last.pt", b"not read")))
    if status is not None:
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def resume(run_id: str) -> list[str]:
    return [f"trainer.resume={run_id}"]


def lock_held_by_another_run(root):
    from filelock import FileLock

    lock = FileLock(root / "out" / ".hyperexp.lock")
    lock.acquire()
    HELD.append(lock)  # released by the test after the row ran
    return []


def undelivered_outbox(root):
    write(
        root / "out" / "outbox" / "outbox_of_run.json",
        b'{"run_id": "%s", "tracking_uri": "sqlite:///x.db"}' % UNKNOWN_RUN.encode(),
    )
    write(root / "out" / "outbox" / "00000001.json", b'{"kind": "batch", "metrics": [], "params": [], "tags": []}')
    return []
