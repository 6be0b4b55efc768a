"""``python -m hyperexp.track sync <output dir>``: upload what runs could not deliver to their
tracking store (it was unreachable until they ended); see :mod:`hyperexp.track.outbox`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyperexp.track.outbox import RUN_FILE, sync
from hyperexp.track.store import bound_http_retries


def outboxes(folder: Path) -> list[Path]:
    """The run outboxes in a run's or a sweep's output folder (or the outbox folder itself)."""
    return sorted(path.parent for path in folder.rglob(RUN_FILE))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hyperexp.track", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("sync", help="upload the updates runs left in an output folder")
    command.add_argument("folder", type=Path, help="a run's output folder, or a sweep's")
    command.add_argument("--tracking-uri", help="deliver to this store instead of the one the run used")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.exit(1, f"hyperexp: error: {args.folder}: no such folder\n")
    found = outboxes(args.folder)
    if not found:
        print(f"{args.folder}: nothing to upload")
        return
    bound_http_retries()
    for outbox in found:
        try:
            run_id, count = sync(outbox, args.tracking_uri)
        except Exception as error:  # the store still does not answer: say so, keep the rest
            first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            parser.exit(1, f"hyperexp: error: {outbox}: not delivered, still queued ({first})\n")
        print(f"run {run_id}: {count} updates delivered from {outbox}")


if __name__ == "__main__":
    main(sys.argv[1:])
