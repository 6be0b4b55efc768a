"""Evaluation stage: what a run measures and how it is shown.

:mod:`.metrics` holds the pure metric functions, :mod:`.evaluation` chooses which of them a run
reports (per-epoch curves and end-of-run metrics), :mod:`.trials` computes them per test trial (for
the reports' statistics), :mod:`.convergence` tells whether a fit had converged, :mod:`.grids`
draws stimuli beside their reconstructions. To add a metric: a function in ``metrics.py``, one
line in ``Evaluation``.
"""

from hyperexp.evaluate.evaluation import EpochMetrics, Evaluation

__all__ = ["EpochMetrics", "Evaluation"]
