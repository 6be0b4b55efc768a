"""What a run shows while it trains: a grid of preview stimuli above their reconstructions at step 0
(the untrained decoder) and every ``log_every`` epochs, with the epochs' curves and preview image
metrics; one loss summary line per grid goes to the ``hyperexp.epochs`` log (``train.log``)."""

from __future__ import annotations

import logging
import time

import torch

from hyperexp.decode import History
from hyperexp.evaluate.grids import preview_card
from hyperexp.evaluate.metrics import image_metrics
from hyperexp.generate import render
from hyperexp.track.runs import Run

# Metric keys by chart section. MLflow orders named sections alphabetically (charts within one by
# key, image cards last): the loss curves first, then the image card, then the preview trials'
# metrics, then the one-point summaries (test/).
CURVES = "learning/"  # per-epoch train_loss, test_loss, test_latent_cosine, validation_loss
GRID_KEY = "preview/reconstructions"  # the image card: a step slider over epochs
PREVIEW_METRICS = "preview_metrics/"  # image metrics of the preview trials at each grid
epoch_log = logging.getLogger("hyperexp.epochs")


def grid_title(epoch: int, epochs: int) -> str:
    return "epoch 0: untrained decoder" if epoch == 0 else f"epoch {epoch} of {epochs}"


class PreviewLogger:
    """The logger a fit is handed (``FitContext.logger``); ``seconds`` is what logging cost."""

    def __init__(self, run: Run, generator, x_preview, t_preview, batch_size: int, size: int | None):
        self.run, self.generator, self.x = run, generator, x_preview
        self.batch_size, self.size = batch_size, size
        self.stimuli = render(generator, t_preview, batch_size, size)  # the top row of every grid
        self.logged_epochs = run.logged_epochs  # a resumed run holds its earlier epochs already
        self.seconds = 0.0

    def log(self, epoch: int, history: History, predict) -> None:
        if 0 < epoch <= self.logged_epochs:
            return  # logged before the run was interrupted
        started = time.perf_counter()
        for index in range(self.logged_epochs, epoch):
            self.run.log_metrics({CURVES + name: value for name, value in history.at(index).items()}, index + 1)
        self.logged_epochs = epoch
        with torch.no_grad():
            reconstructions = render(self.generator, predict(self.x), self.batch_size, self.size)
        grid = preview_card(self.stimuli, reconstructions, title=grid_title(epoch, history.epochs))
        self.run.log_image(grid, key=GRID_KEY, step=epoch)
        if len(reconstructions) >= 2:  # identification needs two trials
            preview = image_metrics(self.stimuli, reconstructions)
            self.run.log_metrics({f"{PREVIEW_METRICS}{name}": value for name, value in preview.items()}, epoch)
        self.run.flush()
        if epoch > 0:
            losses = ", ".join(f"{name} {value:.5g}" for name, value in history.at(epoch - 1).items())
            epoch_log.info("epoch %d/%d: %s", epoch, history.epochs, losses)
        self.seconds += time.perf_counter() - started
