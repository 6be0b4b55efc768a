"""Generators: 512-d latents -> RGB images.

Every generator is a ``torch.nn.Module`` whose ``forward(z)`` maps latents ``(N, latent_dim)``
to images ``(N, 3, H, W)`` in roughly ``[-1, 1]`` (the PGGAN convention), and which exposes
``latent_dim``. Two are provided: :mod:`hyperexp.generate.facesketch` (the cartoon-face
stimulus model of the simulated experiment) and :mod:`hyperexp.generate.pggan` (the published
PGGAN, read from MXNet ``.params`` files).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F


class Generator(Protocol):
    latent_dim: int

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) images in [-1, 1] -> (N, H, W, 3) uint8, as the published code saves them:
    ``clip(rint(127.5 * x + 127.5), 0, 255)``."""
    pixels = torch.clamp(torch.round(127.5 * images.detach().float() + 127.5), 0, 255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def generator_device(generator: torch.nn.Module) -> torch.device:
    """The device of a generator's parameters or buffers (CPU for a parameter-free one)."""
    for tensor in (*generator.parameters(), *generator.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.inference_mode()
def render(
    generator: torch.nn.Module,
    latents: np.ndarray | torch.Tensor,
    batch_size: int = 16,
    size: int | None = None,
) -> torch.Tensor:
    """Render latents ``(N, D)`` in batches; returns float images ``(N, 3, S, S)`` on the CPU.

    ``size`` downsamples each batch right after rendering (area averaging), so previews of a
    1024x1024 generator never hold more than one full-resolution batch in memory.
    """
    device = generator_device(generator)
    latents = torch.as_tensor(latents)
    batches = []
    for start in range(0, len(latents), batch_size):
        z = latents[start : start + batch_size].to(device=device, dtype=torch.float32)
        images = generator(z).float()
        if size is not None and images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="area")
        batches.append(images.cpu())
    return torch.cat(batches) if batches else torch.empty(0, 3, size or 0, size or 0)
