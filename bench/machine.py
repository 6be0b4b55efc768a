"""What state the machine is in while a benchmark runs: load and memory bandwidth.

The published recipe's step is memory-bound, so its speed follows the memory bandwidth the
machine has at the moment (on shared virtual machines it varies by 3x or more over a day);
benchmarks print this line beside their numbers. ``python bench/machine.py`` prints it alone.
"""

from __future__ import annotations

import os
import time

import numpy as np


def copy_bandwidth_gb_s(megabytes: int = 64, repeats: int = 10) -> float:
    """Best of ``repeats`` copies of a ``megabytes`` array, in GB/s read plus written."""
    source = np.ones(megabytes * 2**20 // 8)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - started)
    return 2 * source.nbytes / best / 1e9


def describe() -> str:
    return (
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, memory copy {copy_bandwidth_gb_s():.1f} GB/s"
    )


if __name__ == "__main__":
    print(describe())
