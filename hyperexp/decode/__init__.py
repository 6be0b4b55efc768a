"""Decode stage: voxel responses -> generator latents.

Every decoder is a scikit-learn estimator with one interface (:class:`~hyperexp.decode.base.Decoder`):
``fit(x, t, context)`` returns the decoder, its :class:`~hyperexp.decode.loop.History` in
``history_``; ``predict(x)`` gives latents; ``sklearn.base.clone`` gives an unfitted copy. Gradient-trained
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
