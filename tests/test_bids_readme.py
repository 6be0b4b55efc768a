"""The README's "Your own data" block, run as written in a fresh folder: the simulated BIDS
dataset, then the two ``make train`` commands (run as the Makefile's train recipe does,
``python -m hyperexp.train $(ARGS)``, with the training schedule shrunk). Both runs finish, the
second one (hyperaligned, subjects with masks of different sizes) reuses the first one's GLM."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO, runs_of, store
from tests.test_walkthrough import SHRINK, readme_block


def as_run(step: list[str]) -> list[str]:
    """A README command as this test runs it: ``.venv/bin/python`` is this interpreter, and
    ``make train ARGS="..."`` is the Makefile's recipe for it."""
    if step[:2] == ["make", "train"]:
        recipe = re.search(r"^train:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.M).group(1)
        assert recipe == "$(PY) -m hyperexp.train $(ARGS)", recipe
        (args,) = [arg.removeprefix("ARGS=") for arg in step[2:]]
        return [sys.executable, "-m", "hyperexp.train", *shlex.split(args), *SHRINK]
    assert step[0] == ".venv/bin/python", step
    return [sys.executable, *step[1:]]


@pytest.mark.slow  # three processes, two of them training runs: over a minute on 2 shared cores
def test_the_own_data_block_runs_as_written(tmp_path):
    lines = [line for line in readme_block("own data").splitlines() if line.strip()]
    steps = [shlex.split(line, comments=True) for line in lines]  # as bash reads them: "#" starts a comment
    assert [step[:2] for step in steps] == [[".venv/bin/python", "-m"], ["make", "train"], ["make", "train"]]
    for step in steps:
        result = subprocess.run(as_run(step), cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(runs_of(store(tmp_path), "hyperexp"), key=lambda run: run.info.start_time)
    assert [run.info.status for run in runs] == ["FINISHED", "FINISHED"]
    assert [run.data.tags["data_variant"] for run in runs] == ["subject", "hyperaligned"]
    assert all(run.data.tags["data_source"] == "bids" and float(run.data.tags["glm_seconds"]) > 0 for run in runs)
    assert [run.data.tags["glm_cached"] for run in runs] == ["false", "true"]  # subject 1's GLM came from the cache
    assert "test/latent_similarity" in runs[1].data.metrics
