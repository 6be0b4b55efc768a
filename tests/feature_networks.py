"""Small TorchScript feature networks standing in for a face-recognition network in tests.

torch 2.13 marks ``torch.jit.script``/``torch.jit.load`` deprecated (a DeprecationWarning);
TorchScript is still the format ``evaluate.feature_extractor`` takes, so tests that script or load
a network filter that warning with :data:`IGNORE_JIT_DEPRECATION`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

IGNORE_JIT_DEPRECATION = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class PooledFeatures(nn.Module):
    """A 4x4 average-pooled image through a seeded linear layer: 16 features per image that
    change with layout and colour, at any input size (as a real network resizes inside)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.project = nn.Linear(3 * 4 * 4, 16)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.project.weight.copy_(torch.randn(16, 48, generator=generator))
            self.project.bias.copy_(torch.randn(16, generator=generator))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(F.adaptive_avg_pool2d(images, 4).flatten(1))


class GreyscaleOnly(nn.Module):
    """Takes one channel: the wrong input for RGB renders."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images).flatten(1)


class OneNumberPerBatch(nn.Module):
    """Drops the batch dimension: no features per image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean()


def save_scripted(module: nn.Module, path: Path) -> Path:
    """``torch.jit.script(module).save(path)``, as a user exports their network."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)
        torch.jit.script(module.eval()).save(str(path))
    return path
