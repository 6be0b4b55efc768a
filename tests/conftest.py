"""Shared fixtures: small simulated experiments and a helper that runs the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperexp.data.simulate import Simulation, simulate_experiment

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_voxels=96, n_train=60, n_test=8, latent_dim=32, repeats=4, noise=1.0, seed=3)


@pytest.fixture(scope="session")
def small_simulation() -> Simulation:
    return Simulation(n_subjects=3, **SMALL)


@pytest.fixture(scope="session")
def small_subjects(small_simulation):
    return simulate_experiment(small_simulation)


def run_cli(*args: str, cwd: Path, timeout: float = 300, module: str = "hyperexp.train") -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` in ``cwd`` (the repo's conf/ is found through the package)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
