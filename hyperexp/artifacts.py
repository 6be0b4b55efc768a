"""Files a run leaves in MLflow: the reconstructions as the published code saves them, a grid of
all test trials, the loss curve, the predicted latents, the per-trial metrics and the attribute correlations.

They are written to a staging folder in the run's outbox that is uploaded and then removed
(``Run.staged_artifacts``): a run's artifacts live in MLflow only; Hydra's output folder keeps the
log and the checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are only written to files
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from hyperexp.atomic import atomic_path
from hyperexp.decode import History
from hyperexp.evaluate.grids import comparison_grid


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def plot_losses(history: History, path: Path) -> Path:
    epochs = np.arange(1, history.epochs_done + 1)
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, values in history.metrics.items():
        if name.endswith("_loss"):
            axes.plot(epochs, values[: history.epochs_done], label=name.removesuffix("_loss"))
    axes.set(xlabel="epoch", ylabel="L2 loss (0.5 x MSE)", yscale="log", title="decoder loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_attribute_correlations(correlations: Mapping[str, float], path: Path) -> Path:
    """Per attribute, Pearson r of true and decoded attribute scores over the test trials."""
    names = sorted(correlations, key=lambda name: correlations[name])
    figure, axes = plt.subplots(figsize=(6, 0.5 + 0.25 * len(names)))
    axes.barh(names, [correlations[name] for name in names], color="tab:blue")
    mean = float(np.nanmean(list(correlations.values())))
    axes.axvline(mean, color="black", linewidth=1, linestyle="--", label=f"mean {mean:.3f}")
    axes.set(xlabel="Pearson r (true vs decoded, over test trials)", xlim=(min(0.0, *correlations.values()), 1.0))
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_final_artifacts(
    folder: Path, stimuli: np.ndarray, reconstructions: np.ndarray, predicted, history: History
) -> None:
    """Images are the displayable uint8 (N, H, W, 3) renders; one PNG per trial and a grid."""
    for trial, (stimulus, reconstruction) in enumerate(zip(stimuli, reconstructions)):
        save_png(stimulus, folder / "stimuli" / f"trial_{trial:02d}.png")
        save_png(reconstruction, folder / "reconstructions" / f"trial_{trial:02d}.png")
    save_png(comparison_grid(stimuli, reconstructions), folder / "reconstructions_grid.png")
    plot_losses(history, folder / "loss_curve.png")
    np.save(folder / "predicted_latents.npy", predicted.cpu().numpy())


def save_attribute_correlations(folder: Path, correlations: Mapping[str, float]) -> None:
    """``attribute_correlations.csv`` (attribute, r) and the same as a bar chart."""
    lines = ["attribute,pearson_r"] + [f"{name},{value:.6g}" for name, value in correlations.items()]
    (folder / "attribute_correlations.csv").write_text("\n".join(lines) + "\n")
    plot_attribute_correlations(correlations, folder / "attribute_correlations.png")


def save_per_trial(path: Path, values: dict[str, np.ndarray]) -> Path:
    """``per_trial.csv``: a ``trial`` column (the test trial's index) and one column per metric."""
    names = list(values)
    rows = np.column_stack([values[name] for name in names])
    table = np.column_stack([np.arange(len(rows)), rows])
    with atomic_path(path) as temporary:
        np.savetxt(temporary, table, delimiter=",", fmt="%.17g", header=",".join(["trial", *names]), comments="")
    return path
