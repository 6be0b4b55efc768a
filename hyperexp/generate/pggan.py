"""The published PGGAN face generator (HYPER, Dado et al. 2022) in PyTorch: the architecture.

The MXNet Gluon original, layer by layer: Pixelnorm, Dense(512->8192, no bias) reshaped to
(N, 512, 4, 4), a per-channel bias, LeakyReLU(0.2), Pixelnorm, Conv3x3(512), LeakyReLU,
Pixelnorm; eight blocks (upsample 2x, then twice Conv3x3, LeakyReLU, Pixelnorm); Conv1x1(16->3).
Reading its weight files is :mod:`hyperexp.generate.pggan_weights`.

``forward(z, layer)`` returns what the original's ``generator(x, layer)`` returns: layer 0 is the
4x4 stem, layer k (1..8) the k-th block, layer 9 the (N, 3, 1024, 1024) image in roughly
[-1, 1] (not clipped).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LATENT_DIM = 512
STEM_CHANNELS = 512
IMAGE_LAYER = 9
NEGATIVE_SLOPE = 0.2
PIXEL_NORM_EPS = 1e-8
# (in, out) channels of the eight upsampling blocks, 4x4 -> 1024x1024.
BLOCK_CHANNELS = ((512, 512), (512, 512), (512, 512), (512, 256), (256, 128), (128, 64), (64, 32), (32, 16))
IMAGE_SIZE = 4 * 2 ** len(BLOCK_CHANNELS)


def _inverse_rms(x: Tensor, eps: float) -> Tensor:
    # One fused pass over x (vector_norm) instead of square -> temporary -> mean; the rest acts
    # on the C-times smaller result.
    mean_square = torch.linalg.vector_norm(x, dim=1, keepdim=True).square() / x.shape[1]
    return torch.rsqrt(mean_square + eps)


def pixel_norm(x: Tensor, eps: float = PIXEL_NORM_EPS) -> Tensor:
    """``x * rsqrt(mean(x**2 over dim 1) + eps)``: unit root-mean-square feature vectors."""
    return x * _inverse_rms(x, eps)


def upsample_nearest_2x(x: Tensor) -> Tensor:
    """Repeat every row and column twice (nearest-neighbour 2x, exact)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def _activate(x: Tensor) -> Tensor:
    """LeakyReLU(0.2) then Pixelnorm; in place when no gradient is needed (fewer memory passes)."""
    if x.requires_grad:
        return pixel_norm(F.leaky_relu(x, NEGATIVE_SLOPE))
    x = F.leaky_relu_(x, NEGATIVE_SLOPE)
    return x.mul_(_inverse_rms(x, PIXEL_NORM_EPS))


class UpsampleBlock(nn.Module):
    """Nearest 2x upsampling, then two (Conv3x3, LeakyReLU, Pixelnorm)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = _activate(self.conv0(upsample_nearest_2x(x)))
        return _activate(self.conv1(x))


@contextlib.contextmanager
def _cuda_tf32(enabled: bool) -> Iterator[None]:
    """Set TF32 for cuDNN convolutions and matmuls for one call, then restore."""
    previous = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


class PGGANGenerator(nn.Module):
    """PGGAN generator: latents (N, 512) -> images (N, 3, 1024, 1024) or a hidden layer."""

    latent_dim = LATENT_DIM
    image_size = IMAGE_SIZE

    def __init__(self, channels_last: bool = True, tf32: bool = False) -> None:
        super().__init__()
        self.dense = nn.Linear(LATENT_DIM, STEM_CHANNELS * 16, bias=False)
        self.bias = nn.Parameter(torch.zeros(STEM_CHANNELS))
        self.conv = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, padding=1)
        self.blocks = nn.ModuleList(UpsampleBlock(cin, cout) for cin, cout in BLOCK_CHANNELS)
        self.to_rgb = nn.Conv2d(BLOCK_CHANNELS[-1][1], 3, 1)
        self.channels_last = channels_last
        self.tf32 = tf32
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, z: Tensor, layer: int = IMAGE_LAYER) -> Tensor:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= IMAGE_LAYER:
            raise ValueError(f"layer must be an int in 0..{IMAGE_LAYER}, got {layer!r}")
        if z.ndim != 2 or z.shape[1] != LATENT_DIM:
            raise ValueError(f"latents must have shape (N, {LATENT_DIM}), got {tuple(z.shape)}")
        tf32 = _cuda_tf32(self.tf32) if z.is_cuda else contextlib.nullcontext()
        with tf32:
            return self._run(z.to(self.bias.dtype), layer)

    def _run(self, z: Tensor, layer: int) -> Tensor:
        x = self.dense(pixel_norm(z)).view(-1, STEM_CHANNELS, 4, 4)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = _activate(x + self.bias.view(1, -1, 1, 1))
        x = _activate(self.conv(x))
        for block in self.blocks[: min(layer, len(self.blocks))]:
            x = block(x)
        if layer == IMAGE_LAYER:
            x = self.to_rgb(x)
        return x.contiguous()
