"""The per-trial values of a sweep's runs (their ``per_trial.csv`` and predicted latents), arranged
by group and by test set, so that groups pair trial by trial.

Runs of one group on the same test set (the ``test_set`` tag: the same stimuli) differ only in
the decoder's seed; their per-trial values and predictions are averaged, so that decoder seeds
do not count as replicates. Each distinct test set is one experiment.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hyperexp.evaluate.trials import PER_TRIAL_FILE
from hyperexp.report.queries import RunRecord
from hyperexp.report.summary import group_runs

PREDICTIONS_FILE = "predicted_latents.npy"
UNKNOWN_TEST_SET = "(unknown)"


@dataclass
class RunTrials:
    values: dict[str, np.ndarray]  # per-trial column -> (N,)
    predictions: np.ndarray | None  # (N, D) predicted latents, when the run logged them


@dataclass
class GroupTrials:
    """One group's trials: per test set, the per-trial columns averaged over its runs there."""

    group: str
    experiments: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # test set -> column -> (N,)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # test set -> (N, D)
    runs: dict[str, int] = field(default_factory=dict)  # test set -> how many runs were averaged
    labels: dict[str, str] = field(default_factory=dict)  # test set -> its simulation seed, if known

    def common_test_sets(self, other: GroupTrials) -> list[str]:
        """Test sets both groups were evaluated on (with the same number of trials), in this group's order."""
        return [
            key
            for key, trials in self.experiments.items()
            if key in other.experiments and _n_trials(trials) == _n_trials(other.experiments[key])
        ]


def _n_trials(columns: dict[str, np.ndarray]) -> int:
    return len(next(iter(columns.values())))


def _download(client: MlflowClient, run_id: str, name: str, folder: str) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, name, folder))
    except (MlflowException, OSError):
        return None


def read_per_trial_csv(path: Path) -> dict[str, np.ndarray]:
    table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    return {name: np.asarray(table[name], dtype=float) for name in table.dtype.names if name != "trial"}


def load_run_trials(client: MlflowClient, run_id: str) -> RunTrials | None:
    """A run's ``per_trial.csv`` and predicted latents; None when it logged no per-trial values."""
    with tempfile.TemporaryDirectory() as folder:
        table = _download(client, run_id, PER_TRIAL_FILE, folder)
        if table is None:
            return None
        predictions = _download(client, run_id, PREDICTIONS_FILE, folder)
        return RunTrials(read_per_trial_csv(table), np.load(predictions) if predictions else None)


def _average(tables: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    shared = [name for name in tables[0] if all(name in t for t in tables)]
    return {name: np.mean([t[name] for t in tables], axis=0) for name in shared}


def arrange_trials(records: Sequence[RunRecord], loaded: dict[str, RunTrials]) -> dict[str, GroupTrials]:
    """Group -> its per-trial values by test set, from the finished runs that logged them
    (``loaded``: run id -> its trials); groups without any are left out."""
    arranged: dict[str, GroupTrials] = {}
    for group, members in group_runs(r for r in records if r.finished and r.run_id in loaded).items():
        by_test_set: dict[str, list[RunTrials]] = {}
        trials = GroupTrials(group)
        for record in members:
            key = record.tags.get("test_set", UNKNOWN_TEST_SET)
            by_test_set.setdefault(key, []).append(loaded[record.run_id])
            trials.labels.setdefault(key, experiment_label(record))
        for key, runs in by_test_set.items():
            if len({_n_trials(run.values) for run in runs}) > 1:
                continue  # not the same trials after all: nothing to average
            trials.experiments[key] = _average([run.values for run in runs])
            trials.runs[key] = len(runs)
            if all(run.predictions is not None for run in runs):
                trials.predictions[key] = np.mean([run.predictions for run in runs], axis=0)
        arranged[group] = trials
    return arranged


def experiment_label(record: RunRecord) -> str:
    """``seed 3`` for a simulated experiment, else the data folder's name (or ``files``)."""
    if record.params.get("data.source", "simulated") == "simulated" and "data.simulation.seed" in record.params:
        return f"seed {record.params['data.simulation.seed']}"
    return os.path.basename(record.params.get("data.root") or "") or "files"


def load_trials(records: Sequence[RunRecord], tracking_uri: str | None) -> dict[str, GroupTrials]:
    """:func:`arrange_trials` of the finished runs' artifacts in ``tracking_uri``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise
    client = MlflowClient(tracking_uri)
    loaded = {r.run_id: load_run_trials(client, r.run_id) for r in records if r.finished}
    return arrange_trials(records, {run_id: trials for run_id, trials in loaded.items() if trials is not None})
