"""The thread budget: a job's share of the cores, applied to torch and the BLAS pools."""

import os

import pytest
import torch
from omegaconf import OmegaConf
from threadpoolctl import threadpool_info

from hyperexp import threads
from hyperexp.config import TrainerConfig
from hyperexp.errors import InputError
from tests.conftest import TINY, run_in_process, runs_of, store, sweep_children


def test_openmp_threads_sleep_instead_of_spinning():
    # set by the package before torch loads libgomp (see hyperexp/__init__.py)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_budget_divides_the_usable_cores_by_the_jobs_running_at_once(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.thread_budget("auto") == 8
    assert threads.thread_budget("auto", OmegaConf.create({"launcher": {"n_jobs": 4}})) == 2
    assert threads.thread_budget("auto", OmegaConf.create({"launcher": {"n_jobs": 16}})) == 1
    assert threads.thread_budget("auto", OmegaConf.create({"launcher": {"n_jobs": -1}})) == 1
    assert threads.thread_budget("auto", OmegaConf.create({"launcher": {"_target_": "submitit"}})) == 8
    assert threads.thread_budget(3, OmegaConf.create({"launcher": {"n_jobs": 4}})) == 3


def test_a_cgroup_quota_caps_the_usable_cores(tmp_path, monkeypatch):
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", quota)
    affinity = len(os.sched_getaffinity(0))
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == affinity
    quota.write_text("50000 100000\n")  # half a core still gets one thread
    assert threads.usable_cores() == 1


def test_applying_a_budget_sets_torch_and_blas(monkeypatch):
    before = torch.get_num_threads()
    try:
        threads.apply_thread_budget(1)
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        threads.apply_thread_budget(before)


@pytest.mark.parametrize("value", [0, -2, "many", True])
def test_bad_thread_settings_are_one_line(value):
    with pytest.raises(InputError, match="trainer.threads: must be auto or a number >= 1"):
        TrainerConfig(threads=value)


def test_a_single_run_records_its_budget(tmp_path):
    run_in_process(tmp_path, *TINY, "trainer.epochs=2", "trainer.threads=1")
    (run,) = runs_of(store(tmp_path))
    assert run.data.tags["threads"] == "1"


def test_local_parallel_jobs_each_get_their_share(tmp_path):
    client, children = sweep_children(
        tmp_path,
        "trainer.epochs=2",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_jobs=2",
        "data=subject1,subject2",
    )
    expected = str(max(1, threads.usable_cores() // 2))
    assert len(children) == 2 and {r.data.tags["threads"] for r in children} == {expected}
