"""What checkpoints cost at the published size (4096 -> 512 Dense, MXNet Adam, batch 30).

Measures, in the same run, the seconds per epoch of the published recipe and the seconds one
checkpoint takes (decoder, both Adam moments, the shuffling RNG and 1500 epochs of metrics,
serialised and written atomically), and prints the cost of checkpointing every ``--every``
epochs as a share of training time. Random data of the published shape: the cost depends on
sizes, not values.

    python bench/checkpoint.py [--epochs 20] [--every 100] [--saves 10]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hyperexp.config import TrainerConfig
from hyperexp.decode import FitContext, GradientDecoder
from hyperexp.decode.checkpoints import Checkpoints
from hyperexp.decode.loop import History, training_state
from hyperexp.decode.optim import MXNetAdam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs timed")
    parser.add_argument("--every", type=int, default=100, help="trainer.checkpoint_every")
    parser.add_argument("--saves", type=int, default=10, help="checkpoints timed")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x, t = torch.randn(1050, 4096, generator=generator), torch.randn(1050, 512, generator=generator)

    decoder = GradientDecoder(functools.partial(MXNetAdam, lr=1e-5, weight_decay=0.01))
    decoder.fit(x, t, FitContext(TrainerConfig(epochs=1, progress=False)))  # warm-up
    started = time.perf_counter()
    decoder.fit(x, t, FitContext(TrainerConfig(epochs=args.epochs, log_every=args.epochs, progress=False)))
    epoch_s = (time.perf_counter() - started) / args.epochs

    module = decoder.module_
    optimizer = MXNetAdam(module.parameters(), lr=1e-5, weight_decay=0.01)
    module.weight.grad, module.bias.grad = torch.zeros_like(module.weight), torch.zeros_like(module.bias)
    optimizer.step()  # the moments exist, as in a checkpoint mid-run
    history = History(1500, x.device)
    for epoch in range(1500):
        history.record(epoch, {name: torch.tensor(1.0) for name in ("train_loss", "test_loss", "latent_cosine")})
    state = training_state(1500, module, optimizer, torch.Generator().manual_seed(0), history)
    with tempfile.TemporaryDirectory() as folder:
        checkpoints, seconds = Checkpoints(Path(folder) / "last.pt", args.every), []
        for _ in range(args.saves):
            started = time.perf_counter()
            checkpoints.save(state)
            seconds.append(time.perf_counter() - started)
        size = checkpoints.path.stat().st_size
    save_s = statistics.median(seconds)
    print(f"threads {torch.get_num_threads()}; {epoch_s:.3f} s per epoch ({args.epochs} epochs)")
    print(
        f"one checkpoint: {size / 2**20:.1f} MiB in {save_s * 1000:.0f} ms (median of {args.saves}; max {max(seconds) * 1000:.0f} ms)"
    )
    share = save_s / (args.every * epoch_s) * 100
    print(f"every {args.every} epochs: {share:.2f}% of training time")


if __name__ == "__main__":
    main()
