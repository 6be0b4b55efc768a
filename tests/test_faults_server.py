"""Fault injection, slow: a real ``mlflow server`` on 127.0.0.1 killed in the middle of a run,
for 30 s or until after its end, and parallel writers on one SQLite store. No run and no metric
step may be lost (see tests/test_faults.py)."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from tests.conftest import TINY, run_cli, sweep_children
from tests.faults import SLOW_S, finished_run, only_run, start, steps, wait_for
from tests.servers import MlflowServer


@pytest.mark.slow
def test_a_tracking_server_down_for_30_s_mid_run_loses_nothing(tmp_path):
    with MlflowServer(tmp_path) as server:
        args = [*TINY, "trainer.epochs=2000", "trainer.log_every=20", f"tracking.uri={server.uri}"]
        process = start(*args, "hydra.run.dir=out", cwd=tmp_path)
        client = MlflowClient(server.uri)
        run = wait_for(lambda: only_run(client), process=process)
        wait_for(lambda: steps(client, run.info.run_id), process=process)
        server.kill()
        time.sleep(30)
        training_went_on = process.poll() is None
        server.start()
        _, stderr = process.communicate(timeout=SLOW_S)
        assert process.returncode == 0, stderr[-3000:]
        log = (tmp_path / "out" / "train.log").read_text()
        assert "does not answer" in log and "answers again" in log and training_went_on
        finished = client.get_run(run.info.run_id)
        assert finished.info.status == "FINISHED"
        for key in ("learning/train_loss", "learning/test_loss", "learning/test_latent_cosine"):
            assert steps(client, run.info.run_id, key) == list(range(1, 2001)), key
        grids = [a for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
        grid_steps = sorted(int(a.path.split("+step+")[1].split("+")[0]) for a in grids)
        assert grid_steps == list(range(0, 2001, 20))  # step 0 and every log_every, once each


@pytest.mark.slow
def test_a_tracking_server_gone_until_the_end_is_synced_afterwards(tmp_path):
    server = MlflowServer(tmp_path).start()
    try:
        args = [*TINY, "trainer.epochs=300", "trainer.log_every=10", f"tracking.uri={server.uri}"]
        process = start(*args, "tracking.outage_wait_s=5", "hydra.run.dir=out", cwd=tmp_path)
        client = MlflowClient(server.uri)
        run = wait_for(lambda: only_run(client), process=process)
        server.kill()
        _, stderr = process.communicate(timeout=SLOW_S)
        assert process.returncode == 0, stderr[-3000:]
        warning = [line for line in stderr.splitlines() if line.startswith("hyperexp: ")]
        assert len(warning) == 1 and "python -m hyperexp.track sync" in warning[0], stderr[-3000:]
        server.start()
        synced = run_cli("sync", str(tmp_path / "out"), cwd=tmp_path, module="hyperexp.track")
        assert synced.returncode == 0, synced.stderr[-3000:]
        finished_run(client, run.info.run_id, 300)
        assert "predicted_latents.npy" in {a.path for a in client.list_artifacts(run.info.run_id)}
        run = client.get_run(run.info.run_id)
        assert sorted(i.tags[0].value for i in run.inputs.dataset_inputs) == ["test", "training"]
        (model,) = client.search_logged_models([run.info.experiment_id])
        assert model.status == "READY" and model.source_run_id == run.info.run_id
        assert {m.key for m in model.metrics} == {key for key in run.data.metrics if key.startswith("test/")}
    finally:
        server.kill()


@pytest.mark.slow
def test_parallel_writers_on_one_sqlite_store_lose_no_step(tmp_path):
    client, children = sweep_children(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        "trainer.seed=0,1,2,3",
        "data=subject1,subject2",
        timeout=SLOW_S,
    )
    assert len(children) == 8
    for child in children:
        finished_run(client, child.info.run_id, 12)
