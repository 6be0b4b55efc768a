"""Training state on disk: written atomically every ``every`` epochs and at a stop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from hyperexp.atomic import atomic_path


class Checkpoints:
    def __init__(self, path: str | Path, every: int, on_save: Callable[[Path], None] | None = None):
        self.path, self.every, self.on_save = Path(path), every, on_save

    def due(self, epoch: int) -> bool:
        return bool(self.every) and epoch % self.every == 0

    def save(self, state: dict) -> None:
        with atomic_path(self.path) as temporary:
            torch.save(state, temporary)
        if self.on_save is not None:
            self.on_save(self.path)


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
