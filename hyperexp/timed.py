"""Log lines around the slow steps a run may take before training (simulation, alignment)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger("hyperexp")


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """``<what> ...`` when the step starts, ``<what>: done in N s`` when it ends."""
    log.info("%s ...", what)
    started = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", what, time.perf_counter() - started)
