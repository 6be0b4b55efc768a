"""Tracking with MLflow: one tracker (:class:`.tracker.MlflowTracker`, built from ``conf/tracking``)
that checks its store and opens runs; every write of a run goes through its outbox.

:mod:`.store` where runs are stored (and its checks); :mod:`.runs` one run, its lifetime and what
it logs; :mod:`.outbox` the queue on disk that delivers it; :mod:`.sweep` a sweep's bookkeeping
(each job a child run of the sweep's parent run).
"""

from hyperexp.track.tracker import MlflowTracker

__all__ = ["MlflowTracker"]
