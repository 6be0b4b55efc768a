"""Convert a published ``data_k.dat`` pickle to ``.npz`` (read safely, validated on the way).

python -m hyperexp.data.convert data_1.dat [data_1.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyperexp.data.files import DataFileError, load_subject, save_subject_npz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="data_k.dat pickle")
    parser.add_argument("target", type=Path, nargs="?", help="output .npz (default: beside the source)")
    args = parser.parse_args(argv)
    try:
        subject = load_subject(args.source)
    except DataFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    target = args.target or args.source.with_suffix(".npz")
    save_subject_npz(target, subject)
    print(
        f"wrote {target}: {len(subject.x_train)} training and {len(subject.x_test)} test trials, "
        f"{subject.n_voxels} voxels, {subject.latent_dim}-d latents"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
