"""Decoders trained by gradient descent: the published recipe (MXNet Adam) and its variants."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hyperexp.decode.base import Decoder, Dense
from hyperexp.decode.loop import FitContext, train
from hyperexp.errors import InputError

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class GradientDecoder(Decoder):
    """A Dense layer trained with ``optimizer`` (a partial taking the parameters) on the schedule
    in ``context.settings``; ``seed`` draws the initial weights and the batch order (the config
    passes ``trainer.seed``); ``module_`` is the trained layer."""

    def __init__(self, optimizer: OptimizerFactory, init_scale: float = 0.07, seed: int = 0):
        self.optimizer, self.init_scale, self.seed = optimizer, init_scale, seed

    def check_fits(self, n_samples: int, context: FitContext | None = None) -> None:
        lr = getattr(self.optimizer, "keywords", {}).get("lr", 1.0)
        if not isinstance(lr, int | float) or not lr > 0:  # also catches NaN
            raise InputError(f"decoder.optimizer.lr: must be > 0, got {lr}")
        super().check_fits(n_samples, context)
        context = context or FitContext()
        if context.settings.batch_size > n_samples:
            raise InputError(
                f"trainer.batch_size: {context.settings.batch_size} is larger than the training set ({n_samples} trials)"
            )

    def fit(self, x: torch.Tensor, t: torch.Tensor, context: FitContext | None = None) -> GradientDecoder:
        context = context or FitContext()
        self.check_fits(len(x), context)
        init = torch.Generator().manual_seed(self.seed)
        self.module_ = Dense(x.shape[1], t.shape[1], self.init_scale, generator=init).to(x.device)
        optimizer = self.optimizer(self.module_.parameters())
        self.history_ = train(self.module_, optimizer, x, t, context, seed=self.seed)
        return self

    @property
    def coef_(self) -> torch.Tensor:
        return self.module_.weight.detach()

    @property
    def intercept_(self) -> torch.Tensor:
        return self.module_.bias.detach()
