"""Decode stage: voxel responses -> generator latents.

Every decoder has one interface (:class:`~hyperexp.decode.base.Decoder`): ``fit(x, t, context)``
returns a :class:`~hyperexp.decode.loop.History`, ``predict(x)`` gives latents. Gradient-trained
decoders (:mod:`.gradient`, trained by :mod:`.loop`) and closed-form ones (:mod:`.closed_form`)
differ only inside ``fit``.
"""

from hyperexp.decode.base import Decoder, Dense
from hyperexp.decode.closed_form import OLSDecoder, PLSDecoder, RidgeCVDecoder
from hyperexp.decode.gradient import GradientDecoder
from hyperexp.decode.loop import FitContext, History, StopRequested

__all__ = [
    "Decoder",
    "Dense",
    "FitContext",
    "GradientDecoder",
    "History",
    "OLSDecoder",
    "PLSDecoder",
    "RidgeCVDecoder",
    "StopRequested",
]
