"""Render latents to PNGs with the published PGGAN or facesketch, or convert PGGAN weights.

python -m hyperexp.generate render latents.npy out/ --weights generator.safetensors
python -m hyperexp.generate render latents.npy out/ --generator facesketch
python -m hyperexp.generate convert generator.params generator.safetensors
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hyperexp.atomic import atomic_path
from hyperexp.device import resolve_device
from hyperexp.errors import InputError
from hyperexp.generate import render
from hyperexp.generate.facesketch import build_facesketch
from hyperexp.generate.pggan_weights import WEIGHTS_SOURCE, build_pggan, convert_weights

GRID_NAME = "grid.png"
GRID_TILE = 256  # grid tiles are at most this many pixels wide
GENERATORS = ("pggan", "facesketch")


def positive_int(text: str) -> int:
    value = int(text)  # a ValueError becomes argparse's "invalid positive_int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def load_latents(path: Path) -> np.ndarray:
    """A ``.npy`` of shape (N, D) (or one latent (D,)) as float32, checked."""
    try:
        latents = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read latents ({err})") from None
    if latents.ndim == 1:
        latents = latents[None]
    if latents.ndim != 2 or len(latents) == 0:
        raise InputError(f"{path}: latents must have shape (N, D) with N >= 1, got {latents.shape}")
    if not np.issubdtype(latents.dtype, np.number) or not np.isfinite(latents).all():
        raise InputError(f"{path}: latents must be finite numbers")
    return latents.astype(np.float32)


def build_generator(args: argparse.Namespace) -> torch.nn.Module:
    device = resolve_device(args.device, key="--device")
    if args.generator == "facesketch":
        return build_facesketch().to(device)
    if args.weights is None:
        raise InputError(
            f"--weights: not given; {WEIGHTS_SOURCE}. Pass --weights generator.params (or a converted "
            ".safetensors), or render cartoon faces with --generator facesketch"
        )
    return build_pggan(args.weights, device=device)


def grid_image(tiles: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one near-square grid (black where the last row is short)."""
    count, height, width, channels = tiles.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    padded = np.zeros((rows * columns, height, width, channels), np.uint8)
    padded[:count] = tiles
    return (
        padded.reshape(rows, columns, height, width, channels)
        .swapaxes(1, 2)
        .reshape(rows * height, columns * width, channels)
    )


def grid_tile(pixels: np.ndarray) -> np.ndarray:
    """One rendered image, box-filtered down to at most ``GRID_TILE`` pixels wide."""
    tile = min(GRID_TILE, pixels.shape[1])
    return np.asarray(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.BOX))


def write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        Image.fromarray(pixels).save(temporary, format="PNG")


def render_command(args: argparse.Namespace) -> None:
    latents = load_latents(args.latents)
    generator = build_generator(args)
    if latents.shape[1] != generator.latent_dim:
        raise InputError(
            f"{args.latents}: latents have {latents.shape[1]} dimensions, {args.generator} takes {generator.latent_dim}"
        )
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{args.out_dir}: cannot create the output folder ({err.strerror})") from None
    digits = max(4, len(str(len(latents) - 1)))
    tiles = []
    # One batch at a time, so 1024x1024 images never pile up in memory.
    for start in range(0, len(latents), args.batch_size):
        images = render(generator, latents[start : start + args.batch_size], args.batch_size, args.size)
        for offset, pixels in enumerate(images):
            write_png(args.out_dir / f"face_{start + offset:0{digits}d}.png", pixels)
            tiles.append(grid_tile(pixels))
    write_png(args.out_dir / GRID_NAME, grid_image(np.stack(tiles)))
    print(f"wrote {len(latents)} images and {GRID_NAME} to {args.out_dir}")


def convert_command(args: argparse.Namespace) -> None:
    convert_weights(args.source, args.destination)
    print(f"wrote {args.destination}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hyperexp.generate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    render_parser = commands.add_parser("render", help="latents .npy (N, 512) -> PNGs and a grid")
    render_parser.add_argument("latents", metavar="LATENTS", type=Path, help=".npy file of shape (N, 512)")
    render_parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder (created if missing)")
    render_parser.add_argument("--generator", choices=GENERATORS, default="pggan", help="default: pggan")
    render_parser.add_argument("--weights", type=Path, help="PGGAN weights: generator.params, .safetensors or .pt")
    render_parser.add_argument("--size", type=positive_int, help="downsample to SIZE x SIZE (area averaging)")
    render_parser.add_argument("--batch-size", type=positive_int, default=4, help="latents per batch (default 4)")
    render_parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    render_parser.set_defaults(run=render_command)

    convert_parser = commands.add_parser("convert", help="PGGAN weights .params -> .safetensors or .pt, checked")
    convert_parser.add_argument("source", metavar="SOURCE", type=Path, help="generator.params (or .safetensors, .pt)")
    convert_parser.add_argument("destination", metavar="DESTINATION", type=Path, help="output .safetensors or .pt")
    convert_parser.set_defaults(run=convert_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "render" and args.generator == "facesketch" and args.weights is not None:
        parser.error("--weights: facesketch takes no weights")
    try:
        args.run(args)
    except InputError as err:
        print(f"hyperexp: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
