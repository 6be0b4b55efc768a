"""What every decoder is: ``fit(x, t, context) -> History`` and ``predict(x)``, linear in x.

Decoders follow scikit-learn's conventions: settings in ``__init__``, fitted state in attributes
ending in ``_`` (``coef_`` (voxels, latents), ``intercept_`` (latents,)), on the data's device.
To add a decoder, write one subclass and one ``conf/decoder/<name>.yaml`` naming it in ``_target_``.
"""

from __future__ import annotations

import torch
from torch import nn

from hyperexp.decode.loop import FitContext, History
from hyperexp.decode.losses import l2_loss
from hyperexp.errors import InputError


class Dense(nn.Module):
    """Dense layer voxels -> latents, ``y = x @ weight + bias``.

    The weight is stored (in_features, out_features), the transpose of MXNet's Dense, because
    ``x @ weight`` with that layout is about twice as fast on CPU for small batches. Initialised
    like Gluon's default: weights Uniform(-init_scale, init_scale), bias zero.
    """

    def __init__(self, in_features: int, out_features: int, init_scale: float = 0.07, generator=None):
        super().__init__()
        weight = torch.empty(in_features, out_features).uniform_(-init_scale, init_scale, generator=generator)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class Decoder:
    """Base class: a linear map from responses to latents, fitted by a subclass's ``fit``."""

    coef_: torch.Tensor
    intercept_: torch.Tensor

    def check_fits(self, n_samples: int, context: FitContext) -> None:
        """Refuse settings that cannot work with ``n_samples`` training trials (before any work)."""
        if n_samples < 2:
            raise InputError(f"training set: needs at least 2 trials, got {n_samples}")

    def fit(self, x: torch.Tensor, t: torch.Tensor, context: FitContext | None = None) -> History:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        return torch.addmm(self.intercept_, x, self.coef_)

    def fitted_summary(self) -> dict[str, float]:
        """Scalars a fit chose (e.g. a penalty), for the run's record."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weight": self.coef_.detach().cpu(), "bias": self.intercept_.detach().cpu()}

    def as_module(self) -> Dense:
        """The fitted map as a float32 torch module on the CPU (for saving and serving)."""
        module = Dense(*self.coef_.shape)
        module.load_state_dict(self.state_dict())
        return module


def evaluated_once(decoder: Decoder, x: torch.Tensor, t: torch.Tensor, context: FitContext, seconds: float) -> History:
    """A one-step history for a decoder fitted in closed form, logged like a trained epoch."""
    history = History(epochs=1, device=x.device)
    history.seconds = seconds
    if context.logger is not None:  # step 0: knowing nothing, a decoder predicts the mean training latent
        context.logger.log(0, history, lambda rows: t.mean(dim=0).expand(len(rows), -1))
    with torch.no_grad():
        history.record(0, {"train_loss": l2_loss(decoder.predict(x), t)})
        if context.monitor is not None:
            history.record(0, context.monitor(decoder.predict))
    history.sync(1)
    if context.logger is not None:
        context.logger.log(1, history, decoder.predict)
    return history
