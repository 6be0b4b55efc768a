"""Training-loop speed at the published size (1050 x 4096 -> 512, batch 30, Adam lr 1e-5).

Prints seconds per epoch of hyperexp's loop and of a plain baseline loop (DataLoader batches,
nn.Linear with autograd, torch Adam, ``.item()`` every step), measured in the same run, their
ratio, and the wall time of the cross-validated ridge solver on the same data.

    python bench/train.py [--epochs 10] [--rounds 3] [--device auto]
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from hyperexp.config import TrainerConfig
from hyperexp.data.simulate import Simulation, simulate_experiment
from hyperexp.data.variants import prepare
from hyperexp.decode import FitContext, GradientDecoder
from hyperexp.decode.optim import MXNetAdam
from hyperexp.decode.solvers import ridge_cv
from hyperexp.device import resolve_device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def baseline_seconds_per_epoch(x, t, epochs: int, device) -> float:
    """A straightforward loop, as a tutorial would write it."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], t.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=0.01)
    loader = DataLoader(TensorDataset(x, t), batch_size=30, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, tb in loader:
            xb, tb = xb.to(device), tb.to(device)
            loss = 0.5 * torch.nn.functional.mse_loss(model(xb), tb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
    synchronize(device)
    return (time.perf_counter() - start) / epochs


def hyperexp_seconds_per_epoch(x, t, epochs: int, device) -> float:
    """The published recipe through the decoder interface (no logger: what a run adds is measured by
    its ``timing/logging_seconds``)."""
    x, t = x.to(device), t.to(device)
    decoder = GradientDecoder(functools.partial(MXNetAdam, lr=1e-5, weight_decay=0.01))
    decoder.fit(x, t, FitContext(TrainerConfig(epochs=1, progress=False)))  # warm-up
    synchronize(device)
    start = time.perf_counter()
    decoder.fit(x, t, FitContext(TrainerConfig(epochs=epochs, log_every=epochs, progress=False)))
    synchronize(device)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per timing round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    from machine import describe  # bench/machine.py, beside this script (run as a script, not imported)

    print(describe())
    device = resolve_device(args.device)
    subject = simulate_experiment(Simulation(n_subjects=1))[0]
    data = prepare([subject], "subject", "published")
    x, t = torch.as_tensor(data.x_train), torch.as_tensor(data.t_train)
    print(f"device {device}, threads {torch.get_num_threads()}, data {tuple(x.shape)} -> {t.shape[1]}, batch 30")

    # Alternate the two loops and take medians: a shared machine's noise hits both alike.
    baselines, ours_all = [], []
    for _ in range(args.rounds):
        baselines.append(baseline_seconds_per_epoch(x, t, args.epochs, device))
        ours_all.append(hyperexp_seconds_per_epoch(x, t, args.epochs, device))
    baseline, ours = float(np.median(baselines)), float(np.median(ours_all))
    print("rounds (s/epoch): baseline", [round(v, 4) for v in baselines], "hyperexp", [round(v, 4) for v in ours_all])
    print(f"baseline loop : {baseline:.4f} s/epoch ({1 / baseline:.1f} epochs/s)")
    print(f"hyperexp loop : {ours:.4f} s/epoch ({1 / ours:.1f} epochs/s)")
    print(f"speed-up      : {baseline / ours:.2f}x over the baseline; {0.22 / ours:.2f}x over 0.22 s/epoch")
    print(f"1500 epochs   : {1500 * ours:.0f} s (published schedule)")

    alphas = np.logspace(0, 6, 10)
    start = time.perf_counter()
    result = ridge_cv(data.x_train.astype(np.float64), data.t_train.astype(np.float64), alphas, n_folds=5)
    print(f"ridge_cv      : {time.perf_counter() - start:.2f} s (10 alphas x 5 folds, chose alpha={result.alpha:g})")


if __name__ == "__main__":
    main()
