"""Benchmark hyperexp's Hyperalignment against a straightforward dense-SVD implementation.

    python bench/hyperalign.py                      # published size: 2 subjects x 1086 trials x 4096 voxels
    python bench/hyperalign.py --voxels 1024 --train 300

Data come from the project's simulated experiment, test rows first (``np.vstack([x_test,
x_train])``), as in the published recipe. Each implementation runs once, in its own subprocess, so
that its peak resident memory (``ru_maxrss``, which includes the interpreter, imports and the
loaded data) is its own; hyperexp runs before and after the dense one, since a shared machine's
load drifts. Printed: wall time of the fit + mapping of every subject, the ratio (against the
slower hyperexp run), the largest relative differences of the outputs, peak memory, and the load.

``dense_hyperalignment`` is the reference: PyMVPA 2.6.5's default algorithm written the obvious way
in NumPy, with voxels x voxels SVDs (the tests use it too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def zscore(data: np.ndarray) -> np.ndarray:
    """Per-feature z-score, ddof 0; features with (numerically) zero spread are only demeaned."""
    centered = data - data.mean(axis=0)
    spread = data.std(axis=0)
    negligible = spread <= 1e-10 * spread.max()  # the same rule as hyperexp.align.zscore_features
    return centered / np.where(negligible, 1.0, spread)


def dense_procrustes(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyMVPA's scaled Procrustes fit with a dense p_t x p_x SVD: (source mean, projection (p_x, p_t), target mean)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_c, target_c = source - source_mean, target - target_mean
    source_norm, target_norm = np.linalg.norm(source_c), np.linalg.norm(target_c)
    u, s, vh = np.linalg.svd((target_c / target_norm).T @ (source_c / source_norm), full_matrices=False)
    projection = (vh.T @ u.T) * (s.sum() * target_norm / source_norm)
    return source_mean, projection, target_mean


def apply_dense(mapper, rows: np.ndarray) -> np.ndarray:
    source_mean, projection, target_mean = mapper
    return (rows - source_mean) @ projection + target_mean


def dense_hyperalignment(datasets: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, list]:
    """PyMVPA 2.6.5 ``Hyperalignment()`` defaults, dense. Returns (mapped subjects, common space, mappers)."""
    n_subjects = len(datasets)
    reference = int(np.argmax([d.shape[1] for d in datasets]))
    common = zscore(datasets[reference])
    level1 = list(datasets)
    for k in range(n_subjects):
        if k != reference:
            level1[k] = zscore(apply_dense(dense_procrustes(datasets[k], common), datasets[k]))
            common = zscore((level1[k] + common) / 2)
    common = np.mean(level1, axis=0)
    mapped = level1
    for k in range(n_subjects):
        target = zscore((n_subjects * common - mapped[k]) / (n_subjects - 1))
        mapped[k] = zscore(apply_dense(dense_procrustes(datasets[k], target), datasets[k]))
    common = zscore(np.mean(mapped, axis=0))
    mappers = [dense_procrustes(d, common) for d in datasets]
    return [apply_dense(m, d) for m, d in zip(mappers, datasets)], common, mappers


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_worker(implementation: str, folder: Path, name: str) -> None:
    """Load the stacked subjects, fit and map them once, save the outputs, print one JSON line."""
    datasets = [np.load(path) for path in sorted(folder.glob("X*.npy"))]
    if implementation == "fast":
        import torch

        from hyperexp.align import Hyperalignment

        aligner = Hyperalignment(device="cpu")
        rss_before = peak_rss_mb()
        start = time.perf_counter()
        mapped = list(aligner.fit_transform(datasets).values())
        seconds = time.perf_counter() - start
        common, threads = aligner.common_space_, torch.get_num_threads()
    else:
        rss_before = peak_rss_mb()
        start = time.perf_counter()
        mapped, common, _ = dense_hyperalignment(datasets)
        seconds = time.perf_counter() - start
        threads = None
    out = folder / name
    out.mkdir()
    for k, y in enumerate(mapped):
        np.save(out / f"y{k}.npy", y)
    np.save(out / "common.npy", common)
    print(
        json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before, "threads": threads})
    )


def relative_difference(result: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(result - reference).max() / np.abs(reference).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--voxels", type=int, default=4096)
    parser.add_argument("--train", type=int, default=1050)
    parser.add_argument("--test", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="set OMP/MKL/OpenBLAS threads for both implementations")
    parser.add_argument("--worker", choices=["dense", "fast"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.folder, args.name)
        return

    from hyperexp.data.simulate import simulate_experiment

    subjects = simulate_experiment(
        n_subjects=args.subjects, n_voxels=args.voxels, n_train=args.train, n_test=args.test, seed=args.seed
    )
    stacked = [np.vstack([s.x_test, s.x_train]).astype(np.float64) for s in subjects]
    print(
        f"{len(stacked)} subjects x {stacked[0].shape[0]} samples x {stacked[0].shape[1]} voxels"
        f" (simulated, seed {args.seed}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    env = dict(os.environ)
    if args.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, data in enumerate(stacked):
            np.save(folder / f"X{k:04d}.npy", data)  # zero-padded: sorted() keeps the order
        # fast, dense, fast: a shared machine's load drifts, so the fast one is timed on both sides
        runs = []
        for implementation, name in (("fast", "fast-1"), ("dense", "dense"), ("fast", "fast-2")):
            command = [sys.executable, __file__, "--worker", implementation, "--folder", str(folder), "--name", name]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"the {implementation} worker failed:\n{done.stderr}")
            runs.append((name, json.loads(done.stdout.strip().splitlines()[-1])))
        outputs = {name: [np.load(folder / name / f"y{k}.npy") for k in range(len(stacked))] for name, _ in runs}
        commons = {name: np.load(folder / name / "common.npy") for name, _ in runs}

    stats = dict(runs)
    labels = {"dense": "dense-SVD (NumPy)", "fast-1": "hyperexp, 1st run", "fast-2": "hyperexp, 2nd run"}
    for name, stat in runs:
        print(
            f"{labels[name]:18s}: {stat['seconds']:8.2f} s   peak RSS {stat['peak_rss_mb']:6.0f} MB"
            f" (after imports + data: {stat['rss_before_mb']:.0f} MB)"
        )
    slower_fast = max(stats["fast-1"]["seconds"], stats["fast-2"]["seconds"])
    print(f"speed-up (dense / slower hyperexp run): {stats['dense']['seconds'] / slower_fast:.1f} x")
    for name in ("fast-1", "fast-2"):
        mapped = max(relative_difference(f, d) for f, d in zip(outputs[name], outputs["dense"]))
        average = relative_difference(np.mean(outputs[name], axis=0), np.mean(outputs["dense"], axis=0))
        common = relative_difference(commons[name], commons["dense"])
        print(
            f"max relative difference to dense ({labels[name]}): mapped subjects {mapped:.2e},"
            f" average {average:.2e}, common space {common:.2e}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
