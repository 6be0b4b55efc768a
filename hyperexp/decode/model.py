"""The decoder model and its loss, with MXNet Gluon's semantics (the published code's framework)."""

from __future__ import annotations

import math

import torch
from torch import nn


class LinearDecoder(nn.Module):
    """Dense layer voxels -> latents, ``y = x @ weight + bias``.

    The weight is stored (in_features, out_features), the transpose of MXNet's Dense, because
    ``x @ weight`` with that layout is about twice as fast on CPU for small batches. Initialised
    like Gluon's default: weights Uniform(-0.07, 0.07), bias zero.
    """

    def __init__(self, in_features: int, out_features: int, init_scale: float = 0.07):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-init_scale, init_scale))
        self.bias = nn.Parameter(torch.zeros(out_features))

    @property
    def in_features(self) -> int:
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


def l2_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MXNet's ``gluon.loss.L2Loss`` averaged over the batch: 0.5 x squared error, mean over
    outputs, then mean over samples (Gluon's ``trainer.step(batch_size)`` divides the summed
    per-sample gradients by the batch size, which is the same as this mean)."""
    return 0.5 * torch.mean((prediction - target) ** 2)


class MXNetAdam(torch.optim.Adam):
    """Adam with MXNet's update rule: coupled weight decay (``grad += wd * weight``) and epsilon
    added to the *uncorrected* ``sqrt(v)``:

        w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    PyTorch adds epsilon after bias correction; scaling its epsilon by ``1/sqrt(1 - b2^t)`` each
    step gives exactly MXNet's rule while keeping PyTorch's fused kernel.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        fused: bool = True,
    ):
        # fused: one kernel per step on CPU and CUDA; PyTorch's CPU default (foreach) is ~3x slower here
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)
        for group in self.param_groups:
            group["mxnet_eps"], group["mxnet_step"] = eps, 0  # kept in param_groups: saved with state_dict

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["mxnet_step"] += 1  # a host-side count: reading PyTorch's step tensor would sync a GPU
            group["eps"] = group["mxnet_eps"] / math.sqrt(1.0 - group["betas"][1] ** group["mxnet_step"])
        return super().step(closure)


class FeatureMatchingLoss(nn.Module):
    """Latent L2 loss plus ``weight`` x the mean squared difference of the generator's layer
    ``layer`` activations for predicted and true latents (the published paper's suggestion).

    The generator is frozen; gradients flow through it into the predicted latents only.
    """

    def __init__(self, generator: nn.Module, layer: int, weight: float):
        super().__init__()
        if weight <= 0:
            raise ValueError(f"trainer.feature_loss.weight must be > 0 to use the feature loss, got {weight}")
        self.generator, self.layer, self.weight = generator, layer, weight
        for parameter in generator.parameters():
            parameter.requires_grad_(False)

    def features(self, latents: torch.Tensor) -> torch.Tensor:
        return self.generator(latents, layer=self.layer)

    def feature_term(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.features(target)
        return torch.mean((self.features(prediction) - target_features) ** 2)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l2_loss(prediction, target) + self.weight * self.feature_term(prediction, target)
