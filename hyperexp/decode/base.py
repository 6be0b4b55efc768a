"""What every decoder is: a scikit-learn estimator, linear in x, ``fit(x, t, context)`` and ``predict(x)``.

Decoders follow scikit-learn's conventions: ``__init__`` only stores its settings (the seed among
them), so ``get_params``, ``set_params`` and ``sklearn.base.clone`` work; settings are checked in
``fit`` (:meth:`Decoder.check_fits`, which a run also calls before any work); ``fit`` returns the
decoder, with fitted state in attributes ending in ``_``: ``coef_`` (voxels, latents) and
``intercept_`` (latents,) on the data's device, and the per-epoch values in ``history_``.

What a fit is handed at run time (the schedule, a preview logger, checkpoints, a stop flag) is a
:class:`~hyperexp.decode.loop.FitContext` passed to ``fit``, not a setting: a clone never holds it.
To add a decoder, write one subclass and one ``conf/decoder/<name>.yaml`` naming it in ``_target_``.
"""

from __future__ import annotations

import torch
from sklearn.base import BaseEstimator, RegressorMixin
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


class Decoder(RegressorMixin, BaseEstimator):
    """Base class: a linear map from responses to latents, fitted by a subclass's ``fit``."""

    coef_: torch.Tensor
    intercept_: torch.Tensor
    history_: History

    def check_fits(self, n_samples: int, context: FitContext | None = None) -> None:
        """Refuse settings that cannot work, or cannot work with ``n_samples`` training trials
        (InputError naming the key). ``fit`` calls it first; a run calls it before any work."""
        if n_samples < 2:
            raise InputError(f"training set: needs at least 2 trials, got {n_samples}")

    def fit(self, x: torch.Tensor, t: torch.Tensor, context: FitContext | None = None) -> Decoder:
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
