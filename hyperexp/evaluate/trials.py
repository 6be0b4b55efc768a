"""Per-trial values: one per test trial, so that reports can put intervals over trials and pair two
runs trial by trial (:mod:`hyperexp.report.statistics`). The values themselves come from the metric
registry (:mod:`.registry`), which computes each metric once per trial; this module names their
file and the test set they belong to.
"""

from __future__ import annotations

import hashlib

import numpy as np

from hyperexp.evaluate.measures import rowwise_cosine

__all__ = ["PER_TRIAL_FILE", "rowwise_cosine", "stimulus_set_key"]

PER_TRIAL_FILE = "per_trial.csv"


def stimulus_set_key(true_latents) -> str:
    """A short content key of the test stimuli: runs with the same key were tested on the same trials."""
    latents = np.ascontiguousarray(np.asarray(true_latents, dtype=np.float32))
    return hashlib.sha256(latents.tobytes() + str(latents.shape).encode()).hexdigest()[:12]
