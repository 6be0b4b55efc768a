"""Speed of the PGGAN generator (1024x1024 images, random weights: speed does not depend on them).

Prints CPU seconds per image at batch 1 and at the best of several batch sizes, the ratio to a
plain NCHW run measured here and to MXNet 1.9.1's own timings of the published generator on the
same machine class (tests/fixtures/mxnet/generator/info.json), and images/s on CUDA when present.

    python bench/generator.py [--batch-sizes 1 2 4 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from hyperexp.generate.pggan_weights import build_pggan

MXNET_INFO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mxnet" / "generator" / "info.json"


def best_seconds_per_image(runs: dict[str, tuple], repeats: int, device: torch.device) -> dict[str, float]:
    """Best seconds per image of each ``name: (generator, batch_size)`` over ``repeats`` rounds.

    One untimed warm-up each (kernel selection), then round-robin, so load from other processes
    on a shared machine hits every setting alike; the best round counts.
    """
    inputs = {name: torch.randn(batch, model.latent_dim, device=device) for name, (model, batch) in runs.items()}
    best = dict.fromkeys(runs, float("inf"))
    with torch.inference_mode():
        for round_index in range(repeats + 1):
            for name, (generator, batch) in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                generator(inputs[name])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if round_index:
                    best[name] = min(best[name], (time.perf_counter() - start) / batch)
    return best


def bench_cpu(batch_sizes: list[int], repeats: int) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"CPU: torch {torch.__version__}, {torch.get_num_threads()} threads, best of {repeats} rounds after a "
        f"warm-up; load average before: {load} (other processes slow these timings)"
    )
    generator = build_pggan(random_init=True, device="cpu")
    plain = build_pggan(random_init=True, device="cpu", channels_last=False)
    runs = {f"batch {batch}": (generator, batch) for batch in batch_sizes}
    runs["plain NCHW batch 1"] = (plain, 1)
    timings = best_seconds_per_image(runs, repeats, torch.device("cpu"))
    plain_batch1 = timings.pop("plain NCHW batch 1")
    for name, seconds in timings.items():
        print(f"  {name}: {seconds:.3f} s/image")
    best_name = min(timings, key=timings.get)
    batch1 = timings.get("batch 1")
    print(f"  best: {best_name}, {timings[best_name]:.3f} s/image")
    print(f"  plain NCHW batch 1 (same run): {plain_batch1:.3f} s/image")
    if batch1 is not None:
        print(f"  speed-up of channels-last over NCHW at batch 1: {plain_batch1 / batch1:.2f}x")

    mxnet = json.loads(MXNET_INFO.read_text())["timing"]
    mxnet_batch1 = mxnet["batch1_seconds"]
    mxnet_batch4 = [seconds / 4 for seconds in mxnet["batch4_seconds"]]
    print(
        f"MXNet 1.9.1 (info.json, 2-core machine): batch 1 {min(mxnet_batch1):.2f}-{max(mxnet_batch1):.2f} "
        f"s/image (median {statistics.median(mxnet_batch1):.2f}), "
        f"batch 4 {min(mxnet_batch4):.2f}-{max(mxnet_batch4):.2f} s/image"
    )
    if batch1 is not None:
        print(
            f"  ratio MXNet/ours at batch 1: {min(mxnet_batch1) / batch1:.2f}x (vs MXNet's best run), "
            f"{statistics.median(mxnet_batch1) / batch1:.2f}x (vs its median)"
        )
    mxnet_best = min(min(mxnet_batch1), min(mxnet_batch4))
    print(f"  ratio MXNet best/ours best: {mxnet_best / timings[best_name]:.2f}x (> 1: ours is faster)")


def bench_cuda(batch_sizes: list[int], repeats: int) -> None:
    cuda = torch.device("cuda")
    print(f"CUDA: {torch.cuda.get_device_name(cuda)}")
    for dtype, tf32 in (("float32", False), ("float32", True), ("bfloat16", False)):
        generator = build_pggan(random_init=True, device="cuda", dtype=dtype, tf32=tf32)
        runs = {batch: (generator, batch) for batch in batch_sizes}
        rates = {batch: 1 / seconds for batch, seconds in best_seconds_per_image(runs, repeats, cuda).items()}
        best = max(rates, key=rates.get)
        print(
            f"  {dtype}{' tf32' if tf32 else ''}: "
            + ", ".join(f"batch {b} {r:.1f}" for b, r in rates.items())
            + f" images/s (best: batch {best})"
        )
        del generator, runs
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8], help="CPU batch sizes")
    parser.add_argument("--cuda-batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (the best counts)")
    args = parser.parse_args()
    bench_cpu(args.batch_sizes, args.repeats)
    if torch.cuda.is_available():
        bench_cuda(args.cuda_batch_sizes, args.repeats)
    else:
        print("CUDA: not available")


if __name__ == "__main__":
    main()
