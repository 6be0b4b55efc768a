"""Shared fixtures: small simulated experiments, the entry point run in-process through Hydra's
compose API, and a helper that runs a CLI in a subprocess (for exit codes, signals, launchers)."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from mlflow import MlflowClient
from omegaconf import open_dict

import hyperexp.config  # noqa: F401  (registers the schemas the configs name)
from hyperexp.data.simulate import Simulation, simulate_experiment

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_voxels=96, n_train=60, n_test=8, latent_dim=32, repeats=4, noise=1.0, seed=3)
# A run of a few seconds: small simulated data, few epochs, a fast learning rate.
TINY = [
    "experiment=smoke",
    "trainer.progress=false",
    "trainer.epochs=12",
    "trainer.log_every=4",
    "data.simulation.n_voxels=128",
    "data.simulation.n_train=90",
    "decoder.optimizer.lr=1e-3",
]


@pytest.fixture(scope="session")
def small_simulation() -> Simulation:
    return Simulation(n_subjects=3, **SMALL)


@pytest.fixture(scope="session")
def small_subjects(small_simulation):
    return simulate_experiment(small_simulation)


def compose_job(*overrides: str):
    """The config ``python -m hyperexp.train overrides`` would get, with Hydra's job info set
    (as lightning-hydra-template's tests do); returns (config, hydra config)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    hydra_config = HydraConfig.get()
    with open_dict(cfg):
        del cfg.hydra
    return cfg, hydra_config


def bench_script(name: str):
    """``bench/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _opened_store() -> Path:
    """An SQLite store as MLflow leaves it when it first opens one: its schema made, no runs."""
    path = Path(tempfile.mkdtemp(prefix="hyperexp-test-store-")) / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def seed_default_store(folder: Path, args) -> None:
    """Give a run in ``folder`` that uses the default store (``runs/mlflow.db``) one MLflow has
    opened already: creating a store's schema takes seconds a test would pay every time. Tests of
    store creation itself set ``tracking.uri`` or start processes on their own."""
    if (folder / "runs").exists() or any(str(arg).startswith("tracking.uri=") for arg in args):
        return
    (folder / "runs").mkdir(parents=True)
    shutil.copyfile(_opened_store(), folder / "runs" / "mlflow.db")


def run_in_process(folder: Path, *overrides: str, output: str = "out") -> float:
    """Run the entry point's job function in ``folder`` (its runs/ and data/ go there)."""
    from hyperexp.train import run

    seed_default_store(folder, overrides)
    previous = os.getcwd()
    os.chdir(folder)
    try:
        cfg, hydra_config = compose_job(*overrides)
        return run(cfg, folder / output, hydra_config)
    finally:
        os.chdir(previous)


def store(folder: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")


def runs_of(client: MlflowClient, experiment: str = "smoke"):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def sweep_children(folder: Path, *overrides: str, timeout: float = 600) -> tuple[MlflowClient, list]:
    """A tiny multirun in ``folder`` (``sweep/``) that must succeed; its store and its jobs' runs."""
    result = run_cli("-m", *TINY, *overrides, "hydra.sweep.dir=sweep", cwd=folder, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    client = store(folder)
    return client, [run for run in runs_of(client) if "mlflow.parentRunId" in run.data.tags]


def run_cli(
    *args: str, cwd: Path, timeout: float = 600, module: str | None = "hyperexp.train"
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` (or ``python args`` with ``module=None``) in ``cwd``."""
    if module == "hyperexp.train":
        seed_default_store(cwd, args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(REPO)}
    command = [sys.executable, *(["-m", module] if module else []), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
