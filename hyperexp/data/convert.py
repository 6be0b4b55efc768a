"""Convert a published ``data_k.dat`` pickle to ``.npz`` (read safely, validated on the way).

python -m hyperexp.data.convert data_1.dat [data_1.npz] [--max-bytes N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyperexp.data.files import DEFAULT_MAX_BYTES, load_subject, save_subject_npz
from hyperexp.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="data_k.dat pickle")
    parser.add_argument("target", type=Path, nargs="?", help="output .npz (default: beside the source)")
    parser.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse files declaring more array data than this"
    )
    args = parser.parse_args(argv)
    target = args.target or args.source.with_suffix(".npz")
    try:
        subject = load_subject(args.source, max_bytes=args.max_bytes)
        save_subject_npz(target, subject)
    except InputError as error:
        print(f"hyperexp: error: {error}", file=sys.stderr)
        return 1
    except (
        OSError
    ) as error:  # load_subject reports unreadable sources itself, so this is the target (a read-only folder)
        print(f"hyperexp: error: {target}: cannot write ({error.strerror or error})", file=sys.stderr)
        return 1
    print(
        f"wrote {target}: {len(subject.x_train)} training and {len(subject.x_test)} test trials, "
        f"{subject.n_voxels} voxels, {subject.latent_dim}-d latents"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
