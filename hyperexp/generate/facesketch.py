"""facesketch: a small, differentiable cartoon-face renderer for the simulated experiment.

A 512-d latent is projected by a fixed, seeded orthonormal matrix onto 20 interpretable
attributes (each ~N(0, 1) when the latent is ~N(0, I)); the attributes set the geometry and
colours of soft-edged shapes that are alpha-composited into an RGB image. Everything is batched
torch arithmetic, so gradients flow from pixels back to latents, and nearby latents give
similar faces. The attribute values are the simulated experiment's ground truth.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTRIBUTES = (
    "face_width",
    "face_length",
    "skin_tone",
    "hair_darkness",
    "hair_length",
    "eye_size",
    "eye_spacing",
    "eye_colour",
    "brow_thickness",
    "brow_tilt",
    "nose_length",
    "nose_width",
    "mouth_width",
    "smile",
    "glasses",
    "head_yaw",
    "head_roll",
    "background_hue",
    "background_brightness",
    "lip_redness",
)


def _lerp(low: float, high: float, attribute: torch.Tensor) -> torch.Tensor:
    """Map an ~N(0,1) attribute smoothly into [low, high] (sigmoid keeps it bounded)."""
    return low + (high - low) * torch.sigmoid(1.2 * attribute)


def _mix(colour_a: tuple, colour_b: tuple, weight: torch.Tensor) -> torch.Tensor:
    """Per-face colour between two RGB colours in [-1, 1]; weight (N,) in [0, 1] -> (N, 3, 1, 1)."""
    a = torch.tensor(colour_a, dtype=weight.dtype, device=weight.device)
    b = torch.tensor(colour_b, dtype=weight.dtype, device=weight.device)
    return (a + (b - a) * weight[:, None])[:, :, None, None]


class FaceSketch(nn.Module):
    """Latents (N, latent_dim) -> cartoon faces (N, 3, size, size) in [-1, 1]."""

    def __init__(self, latent_dim: int = 512, size: int = 128, seed: int = 0, softness: float = 0.8):
        super().__init__()
        if latent_dim < len(ATTRIBUTES):
            raise ValueError(f"facesketch needs latent_dim >= {len(ATTRIBUTES)}, got {latent_dim}")
        self.latent_dim, self.size = latent_dim, size
        self.softness = softness * 2.0 / size  # edge width in image units ([-1, 1] spans the image)
        generator = torch.Generator().manual_seed(seed)
        gaussian = torch.randn(latent_dim, len(ATTRIBUTES), generator=generator, dtype=torch.float64)
        projection = torch.linalg.qr(gaussian).Q.float()  # orthonormal columns: attributes ~ N(0, 1)
        self.register_buffer("projection", projection)
        axis = torch.linspace(-1.0, 1.0, size)
        self.register_buffer("grid_y", axis[:, None].expand(size, size).clone())
        self.register_buffer("grid_x", axis[None, :].expand(size, size).clone())

    @property
    def image_size(self) -> int:
        return self.size

    def attributes(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent_dim) -> attribute values (N, 20), ~N(0, 1) for z ~ N(0, I)."""
        return z.to(self.projection.dtype) @ self.projection

    def _mask(self, signed_distance: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-signed_distance / self.softness)

    def _ellipse(self, x, y, cx, cy, rx, ry) -> torch.Tensor:
        """Soft mask of an axis-aligned ellipse; centres and radii are (N, 1, 1)."""
        radius = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + 1e-12)
        return self._mask((radius - 1.0) * torch.minimum(rx, ry))

    def forward(self, z: torch.Tensor, layer: int = 1) -> torch.Tensor:
        """Layer 0: the attribute values (N, 20); layer 1: the image."""
        if layer not in (0, 1):
            raise ValueError(f"facesketch layers are 0 (attributes) and 1 (image), got {layer!r}")
        a = self.attributes(z)
        if layer == 0:
            return a
        p = {name: a[:, i, None, None] for i, name in enumerate(ATTRIBUTES)}
        n = len(z)

        # Head pose: roll rotates the face about its centre, yaw slides the features sideways.
        angle = _lerp(-0.35, 0.35, p["head_roll"])
        cos, sin = torch.cos(angle), torch.sin(angle)
        gx, gy = self.grid_x[None], self.grid_y[None] - 0.05
        x, y = cos * gx + sin * gy, -sin * gx + cos * gy
        yaw = _lerp(-0.14, 0.14, p["head_yaw"])
        zero = torch.zeros_like(yaw)  # (N, 1, 1) centre for shapes that do not move with yaw

        hue = _lerp(0.0, 1.0, p["background_hue"])[:, 0, 0]
        brightness = _lerp(0.25, 0.95, p["background_brightness"])[:, 0, 0]
        angles = 2 * math.pi * (hue[:, None] + torch.tensor([0.0, 1 / 3, 2 / 3], device=z.device))
        background = (brightness[:, None] * (0.55 + 0.35 * torch.cos(angles))) * 2 - 1
        image = background[:, :, None, None].expand(n, 3, self.size, self.size)

        def paint(image, mask, colour):
            return image + (colour - image) * mask[:, None]

        face_rx, face_ry = _lerp(0.42, 0.62, p["face_width"]), _lerp(0.55, 0.75, p["face_length"])
        skin = _mix((0.95, 0.72, 0.55), (0.25, -0.15, -0.45), _lerp(0, 1, p["skin_tone"])[:, 0, 0])
        hair = _mix((0.85, 0.65, 0.0), (-0.85, -0.9, -0.92), _lerp(0, 1, p["hair_darkness"])[:, 0, 0])

        # Hair behind the head: an ellipse that reaches further down for longer hair.
        hair_length = _lerp(-0.1, 0.75, p["hair_length"])
        back_ry = (face_ry + 0.12 + hair_length) / 2
        back = self._ellipse(x, y, yaw * 0.3, -face_ry - 0.1 + back_ry, face_rx + 0.1, back_ry)
        image = paint(image, back, hair)
        image = paint(image, self._ellipse(x, y, zero, zero, face_rx, face_ry), skin)
        # Fringe: the top of a slightly larger ellipse, cut at the forehead.
        cap = self._ellipse(x, y, yaw * 0.3, zero - 0.02, face_rx + 0.05, face_ry + 0.08)
        image = paint(image, cap * self._mask(y + face_ry * 0.55), hair)

        eye_y = zero - 0.08
        spacing = _lerp(0.17, 0.3, p["eye_spacing"])
        eye_r = _lerp(0.045, 0.095, p["eye_size"])
        iris = _mix((0.1, 0.45, 0.9), (-0.3, -0.6, -0.85), _lerp(0, 1, p["eye_colour"])[:, 0, 0])
        brow_h = _lerp(0.012, 0.045, p["brow_thickness"])
        brow_tilt = _lerp(-0.25, 0.25, p["brow_tilt"])
        glasses_opacity = torch.sigmoid(3.0 * (p["glasses"] - 0.6))
        for side in (-1.0, 1.0):
            cx = yaw + side * spacing
            image = paint(image, self._ellipse(x, y, cx, eye_y, eye_r * 1.3, eye_r), torch.ones_like(skin))
            image = paint(image, self._ellipse(x, y, cx, eye_y, eye_r * 0.6, eye_r * 0.6), iris)
            image = paint(image, self._ellipse(x, y, cx, eye_y, eye_r * 0.28, eye_r * 0.28), -torch.ones_like(skin))
            brow_y = eye_y - eye_r - 0.07 + side * brow_tilt * (x - cx)
            brow = self._mask(torch.abs(y - brow_y) - brow_h) * self._mask(torch.abs(x - cx) - eye_r * 1.5)
            image = paint(image, brow, hair)
            ring = torch.abs(torch.sqrt((x - cx) ** 2 + (y - eye_y) ** 2 + 1e-12) - eye_r * 2.0) - 0.012
            image = paint(image, self._mask(ring) * glasses_opacity, -0.9 * torch.ones_like(skin))
        bridge = self._mask(torch.abs(y - eye_y) - 0.01) * self._mask(torch.abs(x - yaw) - (spacing - eye_r * 2.0))
        image = paint(image, bridge * glasses_opacity, -0.9 * torch.ones_like(skin))

        nose_length = _lerp(0.08, 0.2, p["nose_length"])
        nose = self._ellipse(
            x, y, yaw * 1.2, 0.02 + nose_length / 2, _lerp(0.03, 0.08, p["nose_width"]), nose_length / 2
        )
        image = paint(image, nose * 0.6, skin * 0.75 - 0.15)

        # Mouth: a band along a parabola whose curvature is the smile.
        mouth_w = _lerp(0.1, 0.26, p["mouth_width"])
        smile = _lerp(-0.12, 0.2, p["smile"])
        mouth_y = 0.35 - smile * (1 - ((x - yaw) / mouth_w) ** 2)
        lips = _mix((0.55, -0.1, -0.2), (0.95, -0.55, -0.5), _lerp(0, 1, p["lip_redness"])[:, 0, 0])
        mouth = self._mask(torch.abs(y - mouth_y) - 0.025) * self._mask(torch.abs(x - yaw) - mouth_w)
        image = paint(image, mouth, lips)
        return image.clamp(-1.0, 1.0)


def build_facesketch(latent_dim: int = 512, size: int = 128, seed: int = 0) -> FaceSketch:
    """Hydra factory for ``generator=facesketch``."""
    return FaceSketch(latent_dim=latent_dim, size=size, seed=seed)
