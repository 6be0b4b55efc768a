"""Generators: 512-d latents -> RGB images, and the one path from their output to images.

Every generator is a ``torch.nn.Module`` whose ``forward(z)`` maps latents ``(N, latent_dim)``
to images ``(N, 3, H, W)`` in roughly ``[-1, 1]`` (the PGGAN convention), and which exposes
``latent_dim`` and ``image_size`` (H = W). Two are provided: :mod:`hyperexp.generate.facesketch`
(the cartoon-face stimulus model of the simulated experiment) and :mod:`hyperexp.generate.pggan`
(the published PGGAN; its weight files are :mod:`hyperexp.generate.pggan_weights`).

:func:`render` is the only place where generator output becomes images: PNGs, grids and image
metrics all use its quantised uint8 images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hyperexp.device import module_device
from hyperexp.errors import InputError


def check_precision(generator: torch.nn.Module) -> None:
    """Half-precision generators (``generator.model.dtype``) are for CUDA: refuse one on another
    device, e.g. built on a GPU and then moved to the CPU by ``trainer.device=cpu``."""
    device = module_device(generator)
    reduced = sorted({str(p.dtype).removeprefix("torch.") for p in generator.parameters()} - {"float32"})
    if reduced and device.type != "cuda":
        raise InputError(f"generator.model.dtype: {', '.join(reduced)} runs on CUDA only; the generator is on {device}")


@torch.inference_mode()
def render(
    generator: torch.nn.Module,
    latents: np.ndarray | torch.Tensor,
    batch_size: int,
    size: int | None = None,
) -> np.ndarray:
    """Render latents ``(N, D)`` in batches to uint8 images ``(N, H, W, 3)``, as the published
    code saves them: ``clip(rint(127.5 * x + 127.5), 0, 255)``.

    ``size`` downsamples each batch to ``size x size`` (area averaging) right after the generator
    and before quantising, so a 1024x1024 generator never holds more than one full batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = module_device(generator)
    latents = torch.as_tensor(latents)
    images = None
    for start in range(0, len(latents), batch_size):
        batch = generator(latents[start : start + batch_size].to(device=device, dtype=torch.float32)).float()
        if size is not None and batch.shape[-2:] != (size, size):
            batch = F.interpolate(batch, size=(size, size), mode="area")
        pixels = torch.clamp(torch.round(127.5 * batch + 127.5), 0, 255).to(torch.uint8)
        pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
        if images is None:  # the first batch tells the image size
            images = np.empty((len(latents), *pixels.shape[1:]), np.uint8)
        images[start : start + len(pixels)] = pixels
    return images if images is not None else np.empty((0, size or 0, size or 0, 3), np.uint8)
