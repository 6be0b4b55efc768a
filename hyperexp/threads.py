"""How many threads a job may use: its share of the cores this process may run on.

A job that starts as many threads as the machine has cores, beside other jobs that do the same,
oversubscribes the cores; its parallel kernels then wait on threads that are not running. The
budget is the usable cores (CPU affinity, and the cgroup's CPU quota where one is set) divided by
the jobs running at once (the joblib launcher's ``n_jobs``); SLURM already confines a task to its
``cpus_per_task`` through its affinity. Torch, OpenMP and the BLAS behind NumPy/SciPy all get it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, math.floor(int(quota) / int(period))))


def concurrent_jobs(hydra_config) -> int:
    """Jobs this machine runs at once for the current sweep: the launcher's ``n_jobs``, else 1."""
    launcher = hydra_config.get("launcher") if hydra_config is not None else None
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if not n_jobs:
        return 1
    return usable_cores() if n_jobs < 0 else int(n_jobs)  # joblib: -1 means one job per core


def thread_budget(setting: int | str, hydra_config=None) -> int:
    """``trainer.threads`` (validated by TrainerConfig): a number, or ``auto`` for this job's share."""
    return max(1, usable_cores() // concurrent_jobs(hydra_config)) if setting == "auto" else int(setting)


def apply_thread_budget(threads: int) -> None:
    """Give torch (intra-op, OpenMP) and every BLAS/OpenMP pool this many threads."""
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
