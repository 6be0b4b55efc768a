"""Benchmark hyperexp's Hyperalignment against a straightforward dense-SVD implementation.

    python bench/hyperalign.py                       # published size: 2 subjects x 1086 samples x 4096 voxels
    python bench/hyperalign.py --voxels 1024 --train 300
    python bench/hyperalign.py --shapes 2x1086x4096 2x4000x4096 --threads 1
    python bench/hyperalign.py --quick               # a small shape sweep (about a minute)
    python bench/hyperalign.py --sweep               # samples 500 -> 8000 at 4096 voxels; 2, 4, 8, 16
                                                     # subjects; 16384 voxels (hours: the dense side)

A shape is subjects x samples x voxels. Data come from the project's simulated experiment, test
rows first (``np.vstack([x_test, x_train])``), as in the published recipe; a sweep's shapes use 36
test rows. Each implementation runs once per shape, in its own subprocess, so that its peak
resident memory (``ru_maxrss``, which includes the interpreter, imports and the loaded data) is its
own; hyperexp runs before and after the dense one, since a shared machine's load drifts. Printed
per shape: wall time of the fit + mapping of every subject, the ratio (dense / the slower hyperexp
run), the same for CPU time (steadier than wall time on a loaded machine when single-threaded), peak memory, the largest relative difference of the outputs, and the routes hyperexp's cost
model took (fits by route and basis).

``dense_hyperalignment`` is the reference: PyMVPA 2.6.5's default algorithm written the obvious way
in NumPy, with voxels x voxels SVDs (the tests use it too).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEST_ROWS = 36
QUICK = [
    "2x100x512",
    "2x250x512",
    "2x500x512",
    "2x1000x512",
    "2x2000x512",
    "3x1000x512",
    "4x250x512",
    "8x250x512",
    "2x250x2048",
]
SWEEP = (
    [f"2x{n}x4096" for n in (500, 1000, 2000, 4000, 8000)]
    + [f"{k}x1086x4096" for k in (2, 4, 8, 16)]
    + ["2x1086x16384"]
)


def zscore(data: np.ndarray) -> np.ndarray:
    """Per-feature z-score, ddof 0; features with (numerically) zero spread are only demeaned."""
    centered = data - data.mean(axis=0)
    spread = data.std(axis=0)
    negligible = spread <= 1e-10 * spread.max()  # the same rule as hyperexp.align.coordinates.zscore_coordinates_
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


def fast_hyperalignment(datasets: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, dict[str, int]]:
    """hyperexp's Hyperalignment on CPU. Returns (mapped subjects, common space, fits by route and basis)."""
    import hyperexp.align.routes as routes
    from hyperexp.align import Hyperalignment

    fits = collections.Counter()
    for route in ("gram", "svd"):
        fit = getattr(routes, f"fit_{route}")

        def counted(basis, *args, fit=fit, route=route):
            fits[f"{route}/{type(basis).__name__.removesuffix('Basis').lower()}"] += 1
            return fit(basis, *args)

        setattr(routes, f"fit_{route}", counted)
    aligner = Hyperalignment(device="cpu")
    return list(aligner.fit_transform(datasets).values()), aligner.common_space_, dict(fits)


def run_worker(implementation: str, folder: Path, name: str) -> None:
    """Load the stacked subjects, fit and map them once, save the outputs, print one JSON line."""
    datasets = [np.load(path) for path in sorted(folder.glob("X*.npy"))]
    if implementation == "fast":
        import hyperexp.align  # noqa: F401  (imports are not part of the timing)
    rss_before = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    if implementation == "fast":
        mapped, common, fits = fast_hyperalignment(datasets)
    else:
        (mapped, common, _), fits = dense_hyperalignment(datasets), None
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    out = folder / name
    out.mkdir()
    for k, y in enumerate(mapped):
        np.save(out / f"y{k}.npy", y)
    np.save(out / "common.npy", common)
    stats = {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}
    print(json.dumps({**stats, "fits": fits}))


def relative_difference(result: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(result - reference).max() / np.abs(reference).max())


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        subjects, samples, voxels = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SUBJECTSxSAMPLESxVOXELS, e.g. 2x1086x4096, got {text!r}") from None
    if subjects < 2 or samples <= TEST_ROWS or voxels < 1:
        raise argparse.ArgumentTypeError(f"{text}: needs >= 2 subjects and more than {TEST_ROWS} samples")
    return subjects, samples, voxels


def bench_shape(subjects: int, samples: int, voxels: int, n_test: int, seed: int, env: dict) -> dict:
    """Simulate, run hyperexp, dense, hyperexp in subprocesses; compare the outputs."""
    from hyperexp.data.simulate import simulate_experiment

    simulated = simulate_experiment(
        n_subjects=subjects, n_voxels=voxels, n_train=samples - n_test, n_test=n_test, seed=seed
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, subject in enumerate(simulated):  # zero-padded names: sorted() keeps the order
            np.save(folder / f"X{k:04d}.npy", np.vstack([subject.x_test, subject.x_train]).astype(np.float64))
        del simulated
        runs = {}
        for implementation, name in (("fast", "fast-1"), ("dense", "dense"), ("fast", "fast-2")):
            command = [sys.executable, __file__, "--worker", implementation, "--folder", str(folder), "--name", name]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"the {implementation} worker failed:\n{done.stderr}")
            runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
        load = lambda name, file: np.load(folder / name / file)  # noqa: E731
        differences = [
            relative_difference(load(name, f"y{k}.npy"), load("dense", f"y{k}.npy"))
            for name in ("fast-1", "fast-2")
            for k in range(subjects)
        ]
        differences += [
            relative_difference(load(name, "common.npy"), load("dense", "common.npy")) for name in ("fast-1", "fast-2")
        ]
    ratios = {
        unit: runs["dense"][unit] / max(runs["fast-1"][unit], runs["fast-2"][unit])
        for unit in ("seconds", "cpu_seconds")
    }
    return {"runs": runs, "ratios": ratios, "max_difference": max(differences)}


def print_result(shape: str, result: dict) -> None:
    runs = result["runs"]
    fast_rss = max(runs["fast-1"]["peak_rss_mb"], runs["fast-2"]["peak_rss_mb"])
    fits = ", ".join(f"{route} {count}" for route, count in sorted(runs["fast-1"]["fits"].items()))
    print(
        f"{shape:>13s}  hyperexp {runs['fast-1']['seconds']:7.2f} / {runs['fast-2']['seconds']:7.2f} s"
        f"  dense {runs['dense']['seconds']:8.2f} s  {result['ratios']['seconds']:6.1f}x"
        f" (CPU time {runs['fast-1']['cpu_seconds']:.2f} / {runs['fast-2']['cpu_seconds']:.2f}"
        f" vs {runs['dense']['cpu_seconds']:.2f} s: {result['ratios']['cpu_seconds']:.1f}x)"
        f"  peak RSS {fast_rss:6.0f} / {runs['dense']['peak_rss_mb']:6.0f} MB"
        f" (loaded {runs['fast-1']['rss_before_mb']:.0f} / {runs['dense']['rss_before_mb']:.0f})"
        f"  max rel diff {result['max_difference']:.1e}  fits: {fits}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--voxels", type=int, default=4096)
    parser.add_argument("--train", type=int, default=1050)
    parser.add_argument("--test", type=int, default=TEST_ROWS)
    parser.add_argument("--shapes", nargs="+", type=parse_shape, help="SUBJECTSxSAMPLESxVOXELS, e.g. 2x1086x4096")
    parser.add_argument("--quick", action="store_true", help="a sweep of small shapes: " + " ".join(QUICK))
    parser.add_argument("--sweep", action="store_true", help="the full shape sweep: " + " ".join(SWEEP))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="set OMP/MKL/OpenBLAS threads for both implementations")
    parser.add_argument("--worker", choices=["dense", "fast"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from machine import describe  # bench/machine.py, beside this script (run as a script, not imported)

    print(describe())
    if args.worker:
        run_worker(args.worker, args.folder, args.name)
        return

    if args.quick or args.sweep:
        shapes, n_test = [parse_shape(shape) for shape in (QUICK if args.quick else SWEEP)], TEST_ROWS
    elif args.shapes:
        shapes, n_test = args.shapes, TEST_ROWS
    else:
        shapes, n_test = [(args.subjects, args.train + args.test, args.voxels)], args.test
    env = dict(os.environ)
    if args.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(args.threads)
    threads = env.get("OMP_NUM_THREADS", "unset")
    print(
        f"simulated data, seed {args.seed}; OMP_NUM_THREADS={threads}; {os.cpu_count()} CPUs;"
        f" load average {os.getloadavg()[0]:.1f} at the start"
    )
    for subjects, samples, voxels in shapes:
        print_result(f"{subjects}x{samples}x{voxels}", bench_shape(subjects, samples, voxels, n_test, args.seed, env))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
