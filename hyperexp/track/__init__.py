"""Tracking with MLflow: runs, sweeps.

:mod:`.store` where runs are stored (tracking URI, experiment); :mod:`.runs` one run per job
(status, params, batched metrics); :mod:`.sweep` one parent run per Hydra multirun, with every
job a child run of it.
"""
