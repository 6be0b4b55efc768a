"""Files a run leaves behind: the reconstructions as the published code saves them, a grid, the
loss curve, the decoder weights, the predicted latents and the per-trial metrics."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are only written to files
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from hyperexp.atomic import atomic_path
from hyperexp.decode import Decoder, History
from hyperexp.evaluate.grids import comparison_grid


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def plot_losses(history: History, path: Path) -> Path:
    epochs = np.arange(1, history.epochs_done + 1)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, history.train_loss, label="train")
    axes.plot(epochs, history.test_loss, label="test")
    axes.set(xlabel="epoch", ylabel="L2 loss (0.5 x MSE)", yscale="log", title="decoder loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_final_artifacts(
    folder: Path, stimuli: np.ndarray, reconstructions: np.ndarray, predicted, decoder: Decoder, history: History
) -> None:
    """Images are the displayable uint8 (N, H, W, 3) renders; one PNG per trial and a grid."""
    for trial, (stimulus, reconstruction) in enumerate(zip(stimuli, reconstructions)):
        save_png(stimulus, folder / "stimuli" / f"trial_{trial:02d}.png")
        save_png(reconstruction, folder / "reconstructions" / f"trial_{trial:02d}.png")
    save_png(comparison_grid(stimuli, reconstructions), folder / "reconstructions_grid.png")
    plot_losses(history, folder / "loss_curve.png")
    torch.save(decoder.state_dict(), folder / "decoder.pt")
    np.save(folder / "predicted_latents.npy", predicted.cpu().numpy())


def save_per_trial(path: Path, values: dict[str, np.ndarray]) -> Path:
    """``per_trial.csv``: a ``trial`` column (the test trial's index) and one column per metric."""
    names = list(values)
    rows = np.column_stack([values[name] for name in names])
    table = np.column_stack([np.arange(len(rows)), rows])
    with atomic_path(path) as temporary:
        np.savetxt(temporary, table, delimiter=",", fmt="%.17g", header=",".join(["trial", *names]), comments="")
    return path
