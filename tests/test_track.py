import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from hyperexp.errors import InputError
from hyperexp.evaluate.grids import GAP, MAX_CELL, comparison_grid
from hyperexp.track import store as store_module
from hyperexp.track.resume import flatten
from hyperexp.track.runs import MAX_PARAM_LENGTH, opened_run
from hyperexp.track.store import (
    check_store,
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
        with opened_run(uri, experiment_id, "doomed", {"kind": status}) as active:
            run_id = active.run_id
            raise error
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == status
    if status == "FAILED":
        assert run.data.tags["error"] == "RuntimeError: a bug"
        assert "error/traceback.txt" in {a.path for a in client.list_artifacts(run_id, "error")}


def test_finished_run_and_flatten(experiment):
    uri, experiment_id = experiment
    with opened_run(uri, experiment_id, "fine", {}) as active:
        run_id = active.run_id
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": "1", "a.c.d": "[1, 2]", "e": "None"}


def test_params_and_metrics_beyond_one_batch_all_arrive(experiment):
    uri, experiment_id = experiment
    params = {f"p{index}": str(index) for index in range(150)} | {"long": "x" * (MAX_PARAM_LENGTH + 10)}
    with opened_run(uri, experiment_id, "big", {}) as active:
        run_id = active.run_id
        active.log_params(params)
        for step in range(1, 601):
            active.log_metrics({"loss": 1 / step, "accuracy": step / 600}, step)
        active.flush()
        assert active.pending == []
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


def test_a_store_where_no_lock_file_can_be_made_or_whose_lock_stays_held_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"^tracking\.uri: cannot create a folder in /proc \("):
        check_store("sqlite:////proc/mlflow.db")  # /proc takes no new files, whoever asks
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, f"{tmp_path / 'mlflow.db'}.lock"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(store_module, "LOCK_TIMEOUT_S", 1.0)
        with pytest.raises(InputError, match=r"mlflow\.db\.lock: held by another process for 1 s"):
            setup_experiment(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    finally:
        holder.kill()
        holder.wait()


HOLD_LOCK = "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(60)"


def test_comparison_grid_pairs_every_stimulus_with_its_reconstruction_below_in_a_near_square():
    red, blue = np.zeros((36, 16, 16, 3), np.uint8), np.zeros((36, 16, 16, 3), np.uint8)
    red[..., 0], blue[..., 2] = 200, 200
    for n in (8, 36):
        grid = comparison_grid(red[:n], blue[:n], title="epoch 4 of 12")
        assert 0.7 < grid.shape[1] / grid.shape[0] < 1.4, grid.shape  # a square card shows it whole
        is_red = (grid == (200, 0, 0)).all(axis=-1)
        is_blue = (grid == (0, 0, 200)).all(axis=-1)
        assert is_red.sum() == is_blue.sum() == n * 16 * 16
        corners = [(r, c) for r, c in zip(*np.nonzero(is_red)) if not is_red[r - 1, c] and not is_red[r, c - 1]]
        assert len(corners) == n
        for top, left in corners:  # the reconstruction lies right below its stimulus
            assert is_blue[top + 16 + GAP : top + 32 + GAP, left : left + 16].all()
    titled, untitled = comparison_grid(red[:8], blue[:8], title="epoch 0"), comparison_grid(red[:8], blue[:8])
    assert titled.shape[1] == untitled.shape[1] and titled.shape[0] > untitled.shape[0]  # a line for the epoch
    with pytest.raises(ValueError, match="must both be"):
        comparison_grid(red[:3], blue[:2])


def test_grid_cells_are_downsampled_to_a_bounded_size():
    large = np.full((2, 2 * MAX_CELL, 2 * MAX_CELL, 3), 90, np.uint8)
    grid = comparison_grid(large, large)
    assert grid.shape[1] < 3 * MAX_CELL and grid.shape[0] < 3 * MAX_CELL
