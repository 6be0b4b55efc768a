"""Evaluation stage: what a run measures and how it is shown.

:mod:`.registry` lists every metric once (:data:`METRICS`: name, which way is better, range, how
it is computed per trial); evaluation, the per-trial file, the reports and the UI read it. To add
a metric, add one entry there. :mod:`.measures` holds the arithmetic, :mod:`.metrics` the metrics
as pure functions, :mod:`.evaluation` what a run computes (per-epoch curves and end-of-run
metrics), :mod:`.trials` the per-trial file's name and the test set's key, :mod:`.convergence`
whether a fit had converged, :mod:`.grids` stimuli beside their reconstructions.
"""

from hyperexp.evaluate.evaluation import EpochMetrics, Evaluation
from hyperexp.evaluate.registry import METRICS, Metric, metric, trial_metrics

__all__ = ["METRICS", "EpochMetrics", "Evaluation", "Metric", "metric", "trial_metrics"]
