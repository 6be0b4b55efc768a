"""MXNet's Adam on PyTorch's fused kernel (the published recipe's optimizer)."""

from __future__ import annotations

import math

import torch


class MXNetAdam(torch.optim.Adam):
    """Adam with MXNet's update rule: coupled weight decay (``grad += wd * weight``) and epsilon
    added to the *uncorrected* ``sqrt(v)``:

        w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    PyTorch adds epsilon after bias correction; scaling its epsilon by ``1/sqrt(1 - b2^t)`` each
    step gives exactly MXNet's rule while keeping PyTorch's fused kernel.
    """

    def __init__(
        self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0, fused=True
    ):
        # fused: one kernel per step on CPU and CUDA; PyTorch's CPU default (foreach) is ~3x slower here
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused)
        for group in self.param_groups:
            group["mxnet_eps"], group["mxnet_step"] = eps, 0  # kept in param_groups: saved with state_dict

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["mxnet_step"] += 1  # a host-side count: reading PyTorch's step tensor would sync a GPU
            group["eps"] = group["mxnet_eps"] / math.sqrt(1.0 - group["betas"][1] ** group["mxnet_step"])
        return super().step(closure)
