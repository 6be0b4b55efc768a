"""What a run shows while it trains: every ``log_every`` epochs, the epochs' curves go to MLflow
together with a grid of preview stimuli above their reconstructions and preview image metrics."""

from __future__ import annotations

import time

import torch

from hyperexp.decode import History
from hyperexp.evaluate.grids import comparison_grid
from hyperexp.evaluate.metrics import image_metrics
from hyperexp.generate import render
from hyperexp.track.runs import JobRun


class PreviewLogger:
    """The logger a fit is handed (``FitContext.logger``); ``seconds`` is what logging cost."""

    def __init__(self, job: JobRun, generator, x_preview, t_preview, batch_size: int, size: int | None):
        self.metrics, self.generator, self.x = job.metrics, generator, x_preview
        self.batch_size, self.size = batch_size, size
        self.stimuli = render(generator, t_preview, batch_size, size)  # the top row of every grid
        self.outbox = job.outbox
        self.logged_epochs = job.logged_epochs  # a resumed run holds its earlier epochs already
        self.seconds = 0.0

    def log(self, epoch: int, history: History, predict) -> None:
        if epoch <= self.logged_epochs:
            return  # logged before the run was interrupted
        started = time.perf_counter()
        for index in range(self.logged_epochs, epoch):
            self.metrics.add(history.at(index), index + 1)
        self.logged_epochs = epoch
        with torch.no_grad():
            reconstructions = render(self.generator, predict(self.x), self.batch_size, self.size)
        grid = comparison_grid(self.stimuli, reconstructions)
        self.outbox.log_image(grid, key="reconstructions", step=epoch)
        if len(reconstructions) >= 2:  # identification needs two trials
            preview = image_metrics(self.stimuli, reconstructions)
            self.metrics.add({f"preview_{name}": value for name, value in preview.items()}, epoch)
        self.metrics.flush()
        self.seconds += time.perf_counter() - started
