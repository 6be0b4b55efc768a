"""Files a run leaves behind: reconstructions as the published code saves them, a grid, the
loss curve, the decoder weights and the predicted latents."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are only written to files
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from hyperexp.decode.trainer import History
from hyperexp.evaluate.grids import comparison_grid
from hyperexp.generate import to_uint8


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def plot_losses(history: History, path: Path) -> Path:
    epochs = np.arange(1, history.epochs_done + 1)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, history.train_loss[: history.epochs_done], label="train")
    axes.plot(epochs, history.test_loss[: history.epochs_done], label="test")
    axes.set(xlabel="epoch", ylabel="L2 loss (0.5 x MSE)", yscale="log", title="decoder loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_final_artifacts(folder: Path, stimuli, reconstructions, predicted, model, history: History) -> None:
    """Images are (N, 3, H, W) in [-1, 1]; per-trial PNGs are ``clip(rint(127.5 x + 127.5))``."""
    stimuli, reconstructions = to_uint8(stimuli), to_uint8(reconstructions)
    for trial, (stimulus, reconstruction) in enumerate(zip(stimuli, reconstructions)):
        save_png(stimulus, folder / "stimuli" / f"trial_{trial:02d}.png")
        save_png(reconstruction, folder / "reconstructions" / f"trial_{trial:02d}.png")
    save_png(comparison_grid(stimuli, reconstructions), folder / "reconstructions_grid.png")
    plot_losses(history, folder / "loss_curve.png")
    torch.save({name: tensor.cpu() for name, tensor in model.state_dict().items()}, folder / "decoder.pt")
    np.save(folder / "predicted_latents.npy", predicted.cpu().numpy())
