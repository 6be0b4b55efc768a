import numpy as np
import pytest
from mlflow import MlflowClient

from hyperexp.evaluate.grids import GAP, LABEL_HEIGHT, comparison_grid
from hyperexp.track import flatten, setup_experiment, tracked_run


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
