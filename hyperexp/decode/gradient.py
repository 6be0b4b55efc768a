"""Decoders trained by gradient descent: the published recipe (MXNet Adam) and its variants."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hyperexp.decode.base import Decoder, Dense
from hyperexp.decode.loop import FitContext, History, train
from hyperexp.errors import InputError

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class GradientDecoder(Decoder):
    """A Dense layer trained with ``optimizer`` (a partial taking the parameters) on the schedule
    in ``context.settings``; ``module_`` is the trained layer."""

    def __init__(self, optimizer: OptimizerFactory, init_scale: float = 0.07):
        lr = getattr(optimizer, "keywords", {}).get("lr", 1.0)
        if not isinstance(lr, int | float) or not lr > 0:  # also catches NaN
            raise InputError(f"decoder.optimizer.lr: must be > 0, got {lr}")
        self.optimizer, self.init_scale = optimizer, init_scale

    def check_fits(self, n_samples: int, context: FitContext) -> None:
        super().check_fits(n_samples, context)
        if context.settings.batch_size > n_samples:
            raise InputError(
                f"trainer.batch_size: {context.settings.batch_size} is larger than the training set ({n_samples} trials)"
            )

    def fit(self, x: torch.Tensor, t: torch.Tensor, context: FitContext | None = None) -> History:
        context = context or FitContext()
        self.check_fits(len(x), context)
        init = torch.Generator().manual_seed(context.settings.seed)
        self.module_ = Dense(x.shape[1], t.shape[1], self.init_scale, generator=init).to(x.device)
        return train(self.module_, self.optimizer(self.module_.parameters()), x, t, context)

    @property
    def coef_(self) -> torch.Tensor:
        return self.module_.weight.detach()

    @property
    def intercept_(self) -> torch.Tensor:
        return self.module_.bias.detach()
