"""Throughput when jobs share the machine: k copies of the published recipe at once vs one at a time.

Each copy trains the published recipe (1050 x 4096 -> 512, batch 30, MXNet Adam) for ``--epochs``
epochs with the thread budget a job of a k-job sweep gets (``hyperexp.threads``). The aggregate
throughput ratio is ``k x (time of one job alone) / (wall time of k jobs at once)``: 1.0 means
sharing costs nothing against running them in sequence; the target is >= 0.9 for k = 1..4.
``--budget none`` gives every copy all cores (what the project did before the thread budget).
A 4-job ``hydra/launcher=local_parallel`` sweep is then timed against the same 4 jobs in sequence.

    python bench/contention.py [--epochs 20] [--max-jobs 4] [--budget auto|none] [--no-sweep]
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(epochs: int, jobs: int, budget: str) -> None:
    """One copy: train, print seconds per epoch."""
    import torch
    from omegaconf import OmegaConf

    from hyperexp.config import TrainerConfig
    from hyperexp.decode import FitContext, GradientDecoder
    from hyperexp.decode.optim import MXNetAdam
    from hyperexp.threads import apply_thread_budget, thread_budget, usable_cores

    if budget == "auto":
        apply_thread_budget(thread_budget("auto", OmegaConf.create({"launcher": {"n_jobs": jobs}})))
    else:
        apply_thread_budget(usable_cores())
    generator = torch.Generator().manual_seed(0)
    x, t = torch.randn(1050, 4096, generator=generator), torch.randn(1050, 512, generator=generator)
    decoder = GradientDecoder(functools.partial(MXNetAdam, lr=1e-5, weight_decay=0.01))
    decoder.fit(x, t, FitContext(TrainerConfig(epochs=1, progress=False)))  # warm-up
    started = time.perf_counter()
    decoder.fit(x, t, FitContext(TrainerConfig(epochs=epochs, log_every=epochs, progress=False)))
    print(f"{(time.perf_counter() - started) / epochs:.4f} {torch.get_num_threads()}", flush=True)


def run_copies(k: int, epochs: int, budget: str) -> tuple[float, list[str]]:
    """Start k copies together; wall time until all have finished, and their outputs."""
    command = [sys.executable, __file__, "--worker", str(epochs), "--jobs", str(k), "--budget", budget]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(k)]
    outputs = [process.communicate()[0].strip() for process in processes]
    return time.perf_counter() - started, outputs


def sweep_seconds(folder: Path, parallel: bool, epochs: int) -> float:
    overrides = [
        "-m",
        "trainer.progress=false",
        f"trainer.epochs={epochs}",
        f"trainer.log_every={epochs}",
        "data=subject1,subject2",
        "trainer.seed=0,1",
        f"hydra.sweep.dir={folder}/sweep-{parallel}",
        f"tracking.uri=sqlite:///{folder}/mlflow.db",
        f"tracking.artifact_root={folder}/artifacts",
        f"data.cache_dir={REPO / 'data'}",
    ]
    if parallel:
        overrides += ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=4"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hyperexp.train", *overrides], check=True, cwd=folder, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-jobs", type=int, default=4)
    parser.add_argument("--budget", choices=("auto", "none"), default="auto")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.jobs, args.budget)
    from machine import describe  # bench/machine.py, beside this script (run as a script, not imported)

    print(describe())

    print(f"cores {len(os.sched_getaffinity(0))}, load before: {os.getloadavg()[0]:.2f}, budget {args.budget}")
    alone, _ = run_copies(1, args.epochs, args.budget)
    print(f"k=1: {alone:.1f} s wall (one job alone, the baseline)")
    for k in range(2, args.max_jobs + 1):
        wall, outputs = run_copies(k, args.epochs, args.budget)
        per_epoch = ", ".join(line.split()[0] for line in outputs)
        threads = outputs[0].split()[1]
        print(
            f"k={k}: {wall:.1f} s wall, s/epoch per job [{per_epoch}] at {threads} thread(s): "
            f"aggregate throughput {k * alone / wall:.2f}x of sequential (target >= 0.9)"
        )
    if not args.no_sweep:
        with tempfile.TemporaryDirectory() as folder:
            sequential = sweep_seconds(Path(folder), parallel=False, epochs=5 * args.epochs)
            parallel = sweep_seconds(Path(folder), parallel=True, epochs=5 * args.epochs)
        print(
            f"4-job sweep: in sequence {sequential:.1f} s, local_parallel n_jobs=4 {parallel:.1f} s: "
            f"{sequential / parallel:.2f}x (target >= 0.9)"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
