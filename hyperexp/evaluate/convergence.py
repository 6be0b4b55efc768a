"""Whether a fit had converged: what share of its whole improvement in test loss came in the last
10% of its epochs.

Measured against the run's own improvement (first epoch to last), not the loss's size: a slow
recipe's loss can fall by well under 1% per epoch and still be far from done. A curve that
levels off puts almost none of its improvement in the tail; one still falling steadily puts
about 10% there. A run still falling at the end measures an unfinished fit, so its comparison
with other runs is preliminary: the run logs a warning (``hyperexp.train``) and reports flag it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TAIL = 0.1  # the last 10% of the epochs
TOLERANCE = 0.01  # a tail improvement above this share of the whole counts as still falling


@dataclass(frozen=True)
class TailDrop:
    fraction: float  # (loss where the tail starts - final loss) / (first loss - final loss)
    tail_epochs: int
    tolerance: float

    @property
    def still_falling(self) -> bool:
        return self.fraction > self.tolerance


def tail_drop(losses: Sequence[float], tail: float = TAIL, tolerance: float = TOLERANCE) -> TailDrop | None:
    """The share of the improvement of ``losses`` (one per epoch) made in their last ``tail`` of
    epochs (0 when the loss did not improve overall); None with fewer than three epochs (a
    closed-form fit has nothing to converge)."""
    if len(losses) < 3:
        return None
    tail_epochs = max(1, round(tail * len(losses)))
    first, start, end = (float(losses[index]) for index in (0, -1 - tail_epochs, -1))
    fraction = (start - end) / (first - end) if first > end else 0.0
    return TailDrop(fraction, tail_epochs, tolerance)
