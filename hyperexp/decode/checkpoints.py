"""Training state on disk: written atomically every ``every`` epochs and at a stop."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from hyperexp.atomic import atomic_write

log = logging.getLogger("hyperexp")


class Checkpoints:
    def __init__(self, path: str | Path, every: int, on_save: Callable[[Path], None] | None = None):
        self.path, self.every, self.on_save = Path(path), every, on_save

    def due(self, epoch: int) -> bool:
        return bool(self.every) and epoch % self.every == 0

    def save(self, state: dict) -> None:
        """Write ``state``; a disk that is full (or a file size limit) costs this checkpoint, not
        the run: the previous checkpoint stays, and the next one is tried as planned."""
        buffer = io.BytesIO()  # serialised in memory, so that a failed write is an OSError with its reason
        torch.save(state, buffer)
        try:
            atomic_write(self.path, buffer.getbuffer())
        except OSError as error:
            log.warning("checkpoint of epoch %s not written (%s: %s)", state.get("epoch"), self.path, error.strerror)
            return
        if self.on_save is not None:
            self.on_save(self.path)


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
