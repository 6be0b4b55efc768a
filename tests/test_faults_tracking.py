"""Fault injection in-process, fast: a tracking store that stops answering right after a run was
created (until after its end), deliveries cut off halfway, and a disk that fills up after the
run started. Nothing the run logged may be lost or stored twice, and a crash ends the run FAILED
with its reason, never FINISHED."""

from __future__ import annotations

import errno
import re

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hyperexp.track import outbox as outbox_module
from hyperexp.track.__main__ import main as track_cli
from hyperexp.track.preview import GRID_KEY
from tests.conftest import TINY, run_in_process, runs_of, store
from tests.faults import steps

STEP = re.compile(r"\+step\+(\d+)\+")


def grid_steps(client: MlflowClient, run_id: str) -> list[int]:
    names = [a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, "images")]
    return sorted(
        int(STEP.search(n)[1]) for n in names if n.startswith(GRID_KEY.replace("/", "~") + "+") and n.endswith(".png")
    )


class CutOnce:
    """Patches ``MlflowClient.<method>`` to raise once, after doing its work (a connection that
    dropped before the answer came): the item is delivered again whole."""

    def __init__(self, monkeypatch, method: str, when=lambda *args: True):
        self.original, self.when, self.cut = getattr(MlflowClient, method), when, 0
        monkeypatch.setattr(MlflowClient, method, self)

    def __get__(self, client, owner=None):
        return lambda *args, **kwargs: self(client, *args, **kwargs)

    def __call__(self, client, *args, **kwargs):
        result = self.original(client, *args, **kwargs)
        if not self.cut and self.when(*args):
            self.cut += 1
            raise MlflowException("connection reset by peer")
        return result


def test_a_store_gone_from_the_start_to_after_the_end_loses_neither_model_nor_datasets(tmp_path, monkeypatch):
    def store_gone(client, run_id, item_path):
        raise MlflowException("tracking server not reachable")

    monkeypatch.setattr(outbox_module, "deliver", store_gone)
    mlflow.set_system_metrics_sampling_interval(1)
    try:
        run_in_process(tmp_path, *TINY, "tracking.outage_wait_s=0")
    finally:
        mlflow.set_system_metrics_sampling_interval(None)
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert run.info.status == "RUNNING" and not run.data.metrics  # only its creation reached the store
    assert not mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    monkeypatch.undo()

    # The store is back; deliveries cut off halfway are sent again whole: a grid, the model's files.
    cuts = [
        CutOnce(monkeypatch, "set_tag", when=lambda run_id, key, *rest: key == "mlflow.loggedImages"),
        CutOnce(monkeypatch, "log_model_artifacts"),
    ]
    for attempt in range(3):  # each cut stops a sync; the next one goes on where it stopped
        try:
            track_cli(["sync", str(tmp_path / "out")])
            break
        except SystemExit as refused:
            assert refused.code == 1 and attempt < 2
    assert [cut.cut for cut in cuts] == [1, 1]
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id) == list(range(1, 13))
    assert grid_steps(client, run.info.run_id) == [0, 4, 8, 12]  # once each
    contexts = sorted(i.tags[0].value for i in run.inputs.dataset_inputs)
    assert contexts == ["test", "training"]
    assert any(key.startswith("system/") for key in run.data.metrics)  # sampled during the outage
    (model,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert model.status == "READY" and model.source_run_id == run.info.run_id
    assert {m.key for m in model.metrics} == {k for k in run.data.metrics if k.startswith("test/")}
    assert [output.model_id for output in run.outputs.model_outputs] == [model.model_id]
    assert mlflow.pyfunc.load_model(model.model_uri).metadata.model_id == model.model_id
    assert not (tmp_path / "out" / "outbox").exists()


@pytest.mark.parametrize("outbox_full", [False, True], ids=["artifacts", "artifacts-and-outbox"])
def test_a_disk_that_fills_up_after_the_start_ends_the_run_failed_with_the_reason(tmp_path, monkeypatch, outbox_full):
    full = OSError(errno.ENOSPC, "No space left on device")

    def disk_full(*args, **kwargs):
        if outbox_full:  # from now on the run's queue cannot grow either
            monkeypatch.setattr(outbox_module, "atomic_write", no_space)
        raise full

    def no_space(*args, **kwargs):
        raise full

    monkeypatch.setattr("hyperexp.train.save_final_artifacts", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        run_in_process(tmp_path, *TINY)
    client = store(tmp_path)
    (run,) = runs_of(client)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "OSError: [Errno 28] No space left on device"
    assert steps(client, run.info.run_id) == list(range(1, 13))  # what it logged before is kept
    assert mlflow.active_run() is None  # nothing MLflow could end FINISHED at exit


def test_a_stopped_run_ends_killed_and_a_resume_continues_it_to_every_step_once(tmp_path):
    from hyperexp.decode import StopRequested
    from hyperexp.train import run
    from tests.conftest import compose_job, seed_default_store

    seed_default_store(tmp_path, TINY)
    calls = iter(range(1000))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        cfg, hydra_config = compose_job(*TINY, "trainer.checkpoint_every=4")
        with pytest.raises(StopRequested) as stopped:
            run(cfg, tmp_path / "first", hydra_config, stop=lambda: next(calls) >= 5)
        client = store(tmp_path)
        (killed,) = runs_of(client)
        assert killed.info.status == "KILLED" and stopped.value.run_id == killed.info.run_id
        assert 0 < len(steps(client, killed.info.run_id)) < 12
        cfg, hydra_config = compose_job(*TINY, "trainer.checkpoint_every=4", f"trainer.resume={killed.info.run_id}")
        run(cfg, tmp_path / "second", hydra_config)
    (resumed,) = runs_of(client)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    assert steps(client, resumed.info.run_id) == list(range(1, 13))
    grids = grid_steps(client, resumed.info.run_id)
    assert len(grids) == len(set(grids)) and {0, 8, 12} <= set(grids), grids
