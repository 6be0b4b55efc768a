"""render(): latents -> the uint8 images that PNGs, grids and metrics share, as the paper saves them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperexp.errors import InputError
from hyperexp.evaluate.metrics import image_metrics
from hyperexp.generate import check_precision, render
from hyperexp.generate.facesketch import FaceSketch


class Preset(nn.Module):
    """A generator of preset images: a latent's first entry picks the image; batch sizes are recorded."""

    latent_dim = 1

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("images", images)
        self.batch_sizes: list[int] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(z))
        return self.images[z[:, 0].long()]


def published_uint8(images: torch.Tensor) -> np.ndarray:
    """The published code's conversion, in NumPy: (N, 3, H, W) -> (N, H, W, 3) uint8."""
    x = images.numpy().transpose(0, 2, 3, 1)
    return np.clip(np.rint(np.float32(127.5) * x + np.float32(127.5)), 0, 255).astype(np.uint8)


def picks(count: int) -> torch.Tensor:
    return torch.arange(count, dtype=torch.float32)[:, None]


def test_quantises_like_the_published_code_and_clips_out_of_range_values():
    values = torch.tensor([-3.0, -1.0, -0.999, 0.0, 0.5, 1.0, 1.2, 2.0])
    generator = Preset(values.view(1, 1, 1, 8).expand(1, 3, 1, 8).clone())
    pixels = render(generator, picks(1), batch_size=1)
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 1, 8, 3)
    assert pixels[0, 0, :, 0].tolist() == [0, 0, 0, 128, 191, 255, 255, 255]

    noisy = 1.5 * torch.randn(3, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(render(Preset(noisy), picks(3), batch_size=2), published_uint8(noisy))


def test_batches_and_downsamples_before_quantising():
    # Area-averaged first, [-3, 1, 1, 1] is 0 -> 128; clipped first it would be 191.
    square = torch.tensor([[-3.0, 1.0], [1.0, 1.0]]).expand(5, 3, 2, 2).clone()
    generator = Preset(square)
    pixels = render(generator, picks(5), batch_size=2, size=1)
    assert generator.batch_sizes == [2, 2, 1]
    assert pixels.shape == (5, 1, 1, 3) and (pixels == 128).all()
    assert render(generator, picks(0), batch_size=2, size=4).shape == (0, 4, 4, 3)
    with pytest.raises(ValueError, match="batch_size"):
        render(generator, picks(1), batch_size=0)


def test_facesketch_faces_at_full_and_reduced_size():
    model = FaceSketch(size=64)
    z = torch.randn(5, 512, generator=torch.Generator().manual_seed(0))
    faces = model(z)
    np.testing.assert_array_equal(render(model, z.numpy(), batch_size=2), published_uint8(faces))
    np.testing.assert_array_equal(render(model, z, batch_size=5, size=16), published_uint8(F.avg_pool2d(faces, 4)))


def test_rendered_images_feed_image_metrics_even_when_the_generator_overshoots():
    # PGGAN outputs exceed [-1, 1]; metrics once failed with "float images must lie in [0, 1]".
    overshooting = 2.5 * torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    pixels = render(Preset(overshooting), picks(3), batch_size=3)
    assert pixels.dtype == np.uint8 and pixels.min() == 0 and pixels.max() == 255
    assert np.isfinite(list(image_metrics(pixels, pixels[::-1].copy()).values())).all()


def test_a_bfloat16_generator_is_widened_to_float32_before_quantising():
    # What a CUDA run with generator.model.dtype=bfloat16 renders (its values, here on the CPU).
    values = (1.2 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))).to(torch.bfloat16)
    pixels = render(Preset(values), picks(2), batch_size=1, size=4)
    np.testing.assert_array_equal(pixels, published_uint8(F.avg_pool2d(values.float(), 2)))


def test_half_precision_generators_are_refused_off_cuda():
    check_precision(FaceSketch(size=16))  # float32: any device
    with pytest.raises(InputError) as refused:
        check_precision(nn.Linear(2, 2).to(torch.bfloat16))  # e.g. built on CUDA, moved by trainer.device=cpu
    assert str(refused.value) == "generator.model.dtype: bfloat16 runs on CUDA only; the generator is on cpu"
