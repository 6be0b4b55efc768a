"""hyperexp: decode perceived faces from fMRI."""

import os

# OpenMP threads that wait at a barrier sleep instead of spinning. Spinning threads take the cores
# that other jobs' threads need, and a barrier then waits on threads that are not running: two
# training jobs on two cores ran ~7x slower each with libgomp's default policy (bench/contention.py).
# libgomp reads this once, when torch loads it, so it is set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
