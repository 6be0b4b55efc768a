"""Where the time of ``make train`` goes: the default run, profiled, against the 180 s target.

Runs ``python -m hyperexp.train`` (the published recipe on the simulated experiment; extra
arguments are overrides) under cProfile, in a fresh folder with its own store and data cache,
so that it pays what a fresh clone pays (simulating the subjects). Prints the wall time of the
process and its ratio to the target, then each stage's share: cumulative time of the function
that does it, in the main thread (the outbox's delivery thread works beside it; the wait for it
at the end is its own row). cProfile adds a few percent to Python-heavy stages.

    python bench/profile_train.py [--keep DIR] [overrides...]   # e.g. trainer.epochs=300
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 180.0
# (label, file suffix, function[, only when called from this file]): the stages of hyperexp.train.run.
STAGES = [
    ("checks before any work", "hyperexp/preflight.py", "check_before_work"),
    ("data: simulate, read, align, z-score", "hyperexp/data/__init__.py", "build"),
    ("open the MLflow run, log its dataset inputs", "hyperexp/track/runs.py", "log_datasets"),
    ("fit (all epochs, previews included)", "hyperexp/decode/gradient.py", "fit"),
    ("  previews: grids, preview metrics, curves", "hyperexp/track/preview.py", "log"),
    ("final renders", "hyperexp/generate/__init__.py", "render", "hyperexp/train.py"),
    ("final metrics", "hyperexp/evaluate/evaluation.py", "__call__", "hyperexp/train.py"),
    ("final artifacts (images, curves, per-trial table)", "hyperexp/artifacts.py", "save_final_artifacts"),
    ("the decoder as an MLflow model (saved into the outbox)", "hyperexp/track/runs.py", "log_model"),
    ("waiting for the outbox at the end", "hyperexp/track/outbox.py", "close"),
    ("hyperexp.train.run (everything above)", "hyperexp/train.py", "run"),
]


def cumulative(stats: pstats.Stats, suffix: str, function: str, caller: str | None = None) -> float:
    """Seconds spent in ``function`` of the file ending in ``suffix`` and below it (only in the
    calls made from the file ending in ``caller``, if given)."""
    total = 0.0
    for (path, _, name), (_, _, _, seconds, callers) in stats.stats.items():
        if name != function or not path.endswith(suffix):
            continue
        if caller is None:
            total += seconds
        else:
            total += sum(row[3] for (where, _, _), row in callers.items() if where.endswith(caller))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args, overrides = parser.parse_known_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="hyperexp-profile-"))
    folder.mkdir(parents=True, exist_ok=True)
    profile = folder / "train.prof"
    command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "hyperexp.train", "trainer.progress=false"]
    command += [f"hydra.run.dir={folder / 'out'}", f"data.cache_dir={folder / 'data'}"]
    command += [f"tracking.uri=sqlite:///{folder / 'runs' / 'mlflow.db'}", f"tracking.artifact_root={folder / 'art'}"]
    from machine import describe  # bench/machine.py, beside this script (run as a script, not imported)

    print(describe())
    started = time.perf_counter()
    subprocess.run([*command, *overrides], check=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - started
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    stats = pstats.Stats(str(profile))
    total = stats.total_tt
    print(f"\nwall time {wall:.1f} s (target {TARGET_S:.0f} s: ratio {wall / TARGET_S:.2f}); profiled {total:.1f} s")
    print(f"{'stage':<52} {'seconds':>8} {'share':>6}")
    for label, *where in STAGES:
        seconds = cumulative(stats, *where)
        print(f"{label:<52} {seconds:8.1f} {seconds / wall:6.1%}")
    run_seconds = cumulative(stats, "hyperexp/train.py", "run")
    print(
        f"{'start-up: interpreter, imports, Hydra, exit':<52} {wall - run_seconds:8.1f} {1 - run_seconds / wall:6.1%}"
    )
    if args.keep is None:
        print(f"(profile kept in {profile}; open with python -m pstats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
