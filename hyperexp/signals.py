"""Ctrl-C and SIGTERM ask training to stop at the next epoch boundary, after a checkpoint."""

from __future__ import annotations

import logging
import signal

log = logging.getLogger("hyperexp")


class GracefulStop:
    """Callable: has a stop been asked for? A second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> GracefulStop:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"signal {signum} again: stopping now")
        self.requested = True
        log.warning("signal %d: stopping after this epoch (send it again to stop at once)", signum)

    def __call__(self) -> bool:
        return self.requested
