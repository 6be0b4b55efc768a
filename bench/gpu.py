"""The GPU check: the CUDA paths of the test suite, then timings, in one short script.

    python bench/gpu.py                      # on a machine with CUDA (a few minutes)
    python bench/gpu.py --device cpu --dry-run   # the same steps at toy sizes on the CPU (tested)

Checks: the published recipe trains on the device and matches the CPU result; hyperalignment on
the device matches the CPU; the PGGAN at float32 and bfloat16 (max abs difference); the feature
loss backpropagates through the PGGAN. Timings: the published recipe's epoch and a full
1500-epoch fit, PGGAN images/s at batch 1/8/32 in bfloat16 and float32, hyperalignment of 2 and 16
subjects x 1086 x 4096. Prints one table; exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch

from hyperexp.align import Hyperalignment
from hyperexp.config import TrainerConfig
from hyperexp.decode import FitContext, GradientDecoder
from hyperexp.decode.losses import FeatureMatchingLoss
from hyperexp.decode.optim import MXNetAdam
from hyperexp.device import resolve_device
from hyperexp.generate.pggan_weights import build_pggan


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device, function, *args):
    synchronize(device)
    started = time.perf_counter()
    result = function(*args)
    synchronize(device)
    return time.perf_counter() - started, result


def recipe(x, t, epochs: int):
    decoder = GradientDecoder(functools.partial(MXNetAdam, lr=1e-5, weight_decay=0.01))
    decoder.fit(x, t, FitContext(TrainerConfig(epochs=epochs, log_every=epochs, progress=False)))
    return decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes, a minute on a CPU")
    args = parser.parse_args()
    device = resolve_device(args.device, key="--device")
    small = args.dry_run
    trials, voxels, latent = (60, 128, 512) if small else (1050, 4096, 512)
    rows, epochs, batches = [], (3 if small else 1500), ((1,) if small else (1, 8, 32))
    failed = []

    def check(name: str, ok: bool, detail: str) -> None:
        rows.append((name, "ok" if ok else "FAILED", detail))
        if not ok:
            failed.append(name)

    generator = torch.Generator().manual_seed(0)
    x, t = torch.randn(trials, voxels, generator=generator), torch.randn(trials, latent, generator=generator)
    on_cpu = recipe(x, t, 3)
    on_device = recipe(x.to(device), t.to(device), 3)
    difference = (on_device.coef_.cpu() - on_cpu.coef_).abs().max().item()
    check("recipe on device = CPU (3 epochs)", difference < 1e-5, f"max |dW| {difference:.1e}")
    seconds, _ = timed(device, recipe, x.to(device), t.to(device), epochs)
    rows.append((f"recipe: {epochs} epochs", "time", f"{seconds:.1f} s, {seconds / epochs * 1e3:.2f} ms/epoch"))

    subjects = [np.random.default_rng(k).standard_normal((trials + 36, voxels)) for k in range(2)]
    aligned_cpu = Hyperalignment(device="cpu").fit(subjects).transform(dict(enumerate(subjects)))
    aligned = Hyperalignment(device=str(device)).fit(subjects).transform(dict(enumerate(subjects)))
    difference = max(float(np.abs(aligned[k] - aligned_cpu[k]).max()) for k in aligned)
    check("hyperalignment on device = CPU", difference < 1e-8, f"max diff {difference:.1e}")
    for count in (2, 4) if small else (2, 16):
        many = [np.random.default_rng(k).standard_normal((trials + 36, voxels)) for k in range(count)]
        seconds, _ = timed(device, Hyperalignment(device=str(device)).fit, many)
        rows.append((f"hyperalignment {count} x {trials + 36} x {voxels}", "time", f"{seconds:.2f} s"))

    pggan32 = build_pggan(random_init=True, device=str(device))
    z = torch.randn(max(batches), 512, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        reference = pggan32(z[:1]).float()
    if device.type == "cuda":
        pggan16 = build_pggan(random_init=True, device=str(device), dtype="bfloat16")
        pggan16.load_state_dict(pggan32.state_dict())
        with torch.inference_mode():
            difference = (pggan16(z[:1]).float() - reference).abs().max().item()
        check("PGGAN bfloat16 vs float32", difference < 0.2, f"max |diff| {difference:.3f} (images in [-1, 1])")
    models = {"float32": pggan32} | ({"bfloat16": pggan16} if device.type == "cuda" else {})
    for dtype, model in models.items():
        for batch in batches:
            with torch.inference_mode():
                model(z[:batch])  # warm-up
                seconds, _ = timed(device, model, z[:batch])
            rows.append((f"PGGAN 1024^2 {dtype}, batch {batch}", "time", f"{batch / seconds:.2f} images/s"))

    loss = FeatureMatchingLoss(pggan32, layer=2, weight=0.5)
    pair = torch.randn(4, 512, generator=torch.Generator().manual_seed(2)).to(device)
    prediction = pair[:2].clone().requires_grad_(True)
    loss(prediction, pair[2:]).backward()
    check("feature loss backpropagates through the PGGAN", prediction.grad.abs().sum().item() > 0, "layer 2")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}{', dry run' if small else ''}")
    print("| step | result | value |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
