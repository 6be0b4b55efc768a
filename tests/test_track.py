from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from hyperexp.errors import InputError
from hyperexp.evaluate.grids import GAP, LABEL_HEIGHT, comparison_grid
from hyperexp.track.resume import flatten
from hyperexp.track.runs import MAX_PARAM_LENGTH, MetricBuffer, log_params, tracked_run
from hyperexp.track.store import (
    require_existing_store,
    setup_experiment,
    sqlite_path,
    writable_store_uri,
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return uri, setup_experiment(uri, "unit", str(folder / "artifacts"))


@pytest.mark.parametrize("error,status", [(RuntimeError("a bug"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_runs_end_failed_with_the_traceback_or_killed(experiment, error, status):
    uri, experiment_id = experiment
    with pytest.raises(type(error)):
        with tracked_run(experiment_id, "doomed", {"kind": status}) as active:
            run_id = active.info.run_id
            raise error
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == status
    if status == "FAILED":
        assert run.data.tags["error"] == "RuntimeError: a bug"
        assert "error/traceback.txt" in {a.path for a in client.list_artifacts(run_id, "error")}


def test_finished_run_and_flatten(experiment):
    uri, experiment_id = experiment
    with tracked_run(experiment_id, "fine", {}) as active:
        run_id = active.info.run_id
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": "1", "a.c.d": "[1, 2]", "e": "None"}


def test_params_and_metrics_beyond_one_batch_all_arrive(experiment):
    uri, experiment_id = experiment
    params = {f"p{index}": str(index) for index in range(150)} | {"long": "x" * (MAX_PARAM_LENGTH + 10)}
    with tracked_run(experiment_id, "big", {}) as active:
        run_id = active.info.run_id
        log_params(run_id, params)
        metrics = MetricBuffer(run_id)
        for step in range(1, 601):
            metrics.add({"loss": 1 / step, "accuracy": step / 600}, step)
        metrics.flush()
        assert metrics.pending == []
    client = MlflowClient(uri)
    logged = client.get_run(run_id).data.params
    assert len(logged) == 151 and logged["p149"] == "149" and logged["long"] == "x" * MAX_PARAM_LENGTH
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 601))
    assert {m.step: m.value for m in history}[4] == 0.25


def test_sqlite_path_of_relative_absolute_and_server_uris(tmp_path):
    assert sqlite_path("sqlite:///runs/mlflow.db") == Path("runs/mlflow.db")
    assert sqlite_path(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db"
    assert sqlite_path("http://localhost:5000") is None


def test_writable_store_uri_makes_sqlite_absolute_and_creates_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert writable_store_uri("sqlite:///runs/mlflow.db") == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs").is_dir()
    assert writable_store_uri("http://tracking-host:5000") == "http://tracking-host:5000"
    (tmp_path / "blocked").write_text("a file where the store's folder should be")
    with pytest.raises(InputError, match="blocked: cannot create the tracking store's folder"):
        writable_store_uri("sqlite:///blocked/mlflow.db")


def test_readers_refuse_a_missing_store_and_do_not_create_it(tmp_path):
    with pytest.raises(InputError, match="missing.db: no MLflow store there"):
        require_existing_store(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    require_existing_store("http://tracking-host:5000")  # a server is checked when asked


def test_a_store_that_cannot_be_opened_is_one_input_error_line(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"not a database, " * 100)
    with pytest.raises(InputError, match=r"mlflow\.db: cannot open the tracking store \(") as raised:
        setup_experiment(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    assert "\n" not in str(raised.value)


def test_comparison_grid_layout():
    stimuli = np.full((3, 10, 12, 3), 50, np.uint8)
    reconstructions = np.full((3, 10, 12, 3), 200, np.uint8)
    grid = comparison_grid(stimuli, reconstructions, trials=[4, 5, 6])
    assert grid.shape == (LABEL_HEIGHT + 2 * 10 + GAP, 3 * 12 + 2 * GAP, 3)
    for column in range(3):
        left = column * (12 + GAP)
        assert (grid[LABEL_HEIGHT : LABEL_HEIGHT + 10, left : left + 12] == 50).all()  # stimulus on top
        assert (grid[LABEL_HEIGHT + 10 + GAP :, left : left + 12] == 200).all()  # reconstruction below
    assert (grid[:LABEL_HEIGHT] < 255).any()  # the trial labels are drawn
    with pytest.raises(ValueError, match="must both be"):
        comparison_grid(stimuli, reconstructions[:2])
