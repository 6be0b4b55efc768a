"""Training objectives with MXNet Gluon's semantics (the published code's framework)."""

from __future__ import annotations

import torch
from torch import nn

from hyperexp.errors import InputError


def l2_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MXNet's ``gluon.loss.L2Loss`` averaged over the batch: 0.5 x squared error, mean over
    outputs, then mean over samples (Gluon's ``trainer.step(batch_size)`` divides the summed
    per-sample gradients by the batch size, which is the same as this mean)."""
    return 0.5 * torch.mean((prediction - target) ** 2)


class FeatureMatchingLoss(nn.Module):
    """Latent L2 loss plus ``weight`` x the mean squared difference of the generator's layer
    ``layer`` activations for predicted and true latents (the published paper's suggestion).

    The generator is frozen; gradients flow through it into the predicted latents only.
    """

    def __init__(self, generator: nn.Module, layer: int, weight: float):
        super().__init__()
        if weight <= 0:
            raise InputError(f"trainer.feature_loss.weight: must be > 0 to use the feature loss, got {weight}")
        self.generator, self.layer, self.weight = generator, layer, weight
        for parameter in generator.parameters():
            parameter.requires_grad_(False)

    def features(self, latents: torch.Tensor) -> torch.Tensor:
        return self.generator(latents, layer=self.layer)

    def feature_term(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.features(target).float()
        # float32 arithmetic whatever the generator's dtype (a bfloat16 PGGAN on CUDA)
        return torch.mean((self.features(prediction).float() - target_features) ** 2)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l2_loss(prediction, target) + self.weight * self.feature_term(prediction, target)


def training_objective(generator: nn.Module, settings):
    """The published latent L2 loss, or with ``trainer.feature_loss.weight > 0`` the generator-feature
    loss on top (optionally ``torch.compile``d: the first epoch then pays the compilation)."""
    if not settings.feature_loss.weight:
        return l2_loss
    loss = FeatureMatchingLoss(generator, settings.feature_loss.layer, settings.feature_loss.weight)
    return torch.compile(loss) if settings.compile else loss
