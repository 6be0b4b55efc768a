"""The align stage of the pipeline: hyperalign a pool of subjects and average them, by protocol.

- ``published`` (the tutorial): test rows are stacked above the training rows before alignment,
  so the test responses take part in fitting the common space.
- ``strict``: alignment is fitted on training rows only, then applied to the test rows.
"""

from __future__ import annotations

import numpy as np

from hyperexp.align.estimator import Hyperalignment
from hyperexp.timed import timed


def aligned_average(subjects, protocol: str, device=None) -> tuple[np.ndarray, np.ndarray]:
    """Subjects (with ``x_train``, ``x_test``) -> the average of their aligned (train, test) rows."""
    with timed(f"hyperaligning {len(subjects)} subjects ({protocol} protocol)"):
        return _aligned_average(Hyperalignment(device=device or "auto"), subjects, protocol)


def _aligned_average(aligner: Hyperalignment, subjects, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    if protocol == "published":
        stacked = [np.vstack([s.x_test, s.x_train]).astype(np.float64) for s in subjects]
        average = np.mean(list(aligner.fit_transform(stacked).values()), axis=0)
        n_test = len(subjects[0].x_test)
        return average[n_test:], average[:n_test]
    train = aligner.fit_transform([s.x_train.astype(np.float64) for s in subjects])
    test = aligner.transform({k: s.x_test.astype(np.float64) for k, s in enumerate(subjects)})
    return np.mean(list(train.values()), axis=0), np.mean(list(test.values()), axis=0)
