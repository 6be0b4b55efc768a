"""Decode stage: voxel responses -> generator latents.

Gradient-trained decoders (:mod:`.model`, :mod:`.trainer`) and closed-form ones
(:mod:`.solvers`); :func:`fit_closed_form` puts a closed-form solution into the same
:class:`~hyperexp.decode.model.LinearDecoder` the trainer uses, so evaluation is shared.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hyperexp.decode.model import LinearDecoder
from hyperexp.decode.solvers import RidgeCVResult


def fit_closed_form(
    solver: Callable, x_train: np.ndarray, t_train: np.ndarray
) -> tuple[LinearDecoder, dict[str, float]]:
    """Run ``solver(X, T)`` (returning ``(W, b)`` or a :class:`RidgeCVResult`) and wrap the
    solution in a float32 LinearDecoder; also returns what the solver chose (e.g. ridge alpha)."""
    solution = solver(np.asarray(x_train, dtype=np.float64), np.asarray(t_train, dtype=np.float64))
    info: dict[str, float] = {}
    if isinstance(solution, RidgeCVResult):
        weight, bias = solution.W, solution.b
        info["ridge_alpha"] = float(solution.alpha)
    else:
        weight, bias = solution
    decoder = LinearDecoder(weight.shape[0], weight.shape[1])
    with torch.no_grad():
        decoder.weight.copy_(torch.as_tensor(weight))
        decoder.bias.copy_(torch.as_tensor(bias))
    return decoder, info
