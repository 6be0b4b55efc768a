"""Run ``python -m hyperexp.train`` and kill it with SIGKILL at a chosen point (fault injection):

    python -m tests.fault_injection rename:<suffix> <n> [overrides...]
        at the n-th atomic rename onto a file whose name ends in <suffix>, after cutting the
        temporary file to half its size: a write that a kill cut short
    python -m tests.fault_injection copy:<fragment> <n> [overrides...]
        at the n-th file copied to a path containing <fragment> (an artifact upload), after half
        of it was copied

Nothing is patched in the package; the patches live in this process only.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_rename(suffix: str, nth: int) -> None:
    original, seen = os.replace, [0]

    def replace(source, target, *args, **kwargs):
        if str(target).endswith(suffix):
            seen[0] += 1
            if seen[0] == nth:
                os.truncate(source, os.path.getsize(source) // 2)
                die()
        return original(source, target, *args, **kwargs)

    os.replace = replace


def kill_at_copy(fragment: str, nth: int) -> None:
    original, seen = shutil.copy2, [0]

    def copy2(source, target, *args, **kwargs):
        if fragment in str(target):
            seen[0] += 1
            if seen[0] == nth:
                with open(source, "rb") as reader, open(target, "wb") as writer:
                    writer.write(reader.read()[: max(1, os.path.getsize(source) // 2)])
                die()
        return original(source, target, *args, **kwargs)

    shutil.copy2 = copy2


def main() -> None:
    point, nth, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    kind, _, where = point.partition(":")
    {"rename": kill_at_rename, "copy": kill_at_copy}[kind](where, nth)
    from hyperexp.cli import run_app
    from hyperexp.train import main as train

    sys.argv = ["train.py", *overrides]
    run_app(train)


if __name__ == "__main__":
    main()
