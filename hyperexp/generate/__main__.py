"""Render latents with the published PGGAN generator, or convert its weights.

python -m hyperexp.generate render latents.npy --weights generator.params --out faces/
python -m hyperexp.generate convert generator.params generator.safetensors
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hyperexp.generate import to_uint8
from hyperexp.generate.mxnet_params import ParamsFileError, replace_atomically
from hyperexp.generate.pggan import LATENT_DIM, GeneratorWeightsError, build_pggan, convert_weights

GRID_NAME = "grid.png"


class CommandError(Exception):
    """Bad input for a subcommand; reported as one ``error:`` line and exit status 1."""


def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize (N, 3, H, W) to (N, 3, size, size) with antialiased bilinear filtering."""
    if size is None or images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


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


def write_png_atomically(path: Path, pixels: np.ndarray) -> None:
    """Write a PNG under a temporary name and rename it, so no half-written file is left."""
    with replace_atomically(path) as temporary:
        Image.fromarray(pixels).save(temporary, format="PNG")


def load_latents(path: Path) -> np.ndarray:
    """A ``.npy`` of shape (N, 512) (or one latent (512,)) as float32, checked."""
    try:
        latents = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CommandError(f"{path}: cannot read latents ({err})") from None
    if latents.ndim == 1:
        latents = latents[None]
    if latents.ndim != 2 or latents.shape[1] != LATENT_DIM or len(latents) == 0:
        raise CommandError(f"{path}: latents must have shape (N, {LATENT_DIM}) with N >= 1, got {latents.shape}")
    if not np.issubdtype(latents.dtype, np.number) or not np.isfinite(latents).all():
        raise CommandError(f"{path}: latents must be finite numbers")
    return latents.astype(np.float32)


def render(args: argparse.Namespace) -> None:
    latents = load_latents(args.latents)
    if args.batch_size < 1 or (args.size is not None and args.size < 1) or args.grid_tile < 1:
        raise CommandError("--batch-size, --size and --grid-tile must be >= 1")
    generator = build_pggan(args.weights, random_init=args.random_init, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(len(latents) - 1)))
    tiles = []
    for start in range(0, len(latents), args.batch_size):
        images = generator.generate(latents[start : start + args.batch_size], batch_size=args.batch_size)
        for offset, pixels in enumerate(to_uint8(resize_images(images, args.size))):
            write_png_atomically(args.out / f"{args.prefix}{start + offset:0{digits}d}.png", pixels)
        tiles.append(to_uint8(resize_images(images, min(args.grid_tile, args.size or images.shape[-1]))))
    write_png_atomically(args.out / GRID_NAME, grid_image(np.concatenate(tiles)))
    print(f"wrote {len(latents)} images and {GRID_NAME} to {args.out}")


def convert(args: argparse.Namespace) -> None:
    if args.target.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        raise CommandError(f"{args.target}: output must end in .safetensors or .pt")
    if args.target.resolve() == args.source.resolve():
        raise CommandError("source and target are the same file")
    convert_weights(args.source, args.target)
    print(f"wrote {args.target}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hyperexp.generate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    render_parser = commands.add_parser("render", help="latents .npy (N, 512) -> PNGs and a grid")
    render_parser.add_argument("latents", type=Path, help=".npy file of shape (N, 512)")
    render_parser.add_argument("--weights", type=Path, help="generator.params, .safetensors or .pt")
    render_parser.add_argument("--random-init", action="store_true", help="untrained weights (testing only)")
    render_parser.add_argument("--out", type=Path, default=Path("generated"), help="output folder")
    render_parser.add_argument("--batch-size", type=int, default=4)
    render_parser.add_argument("--size", type=int, help="resize each PNG to SIZE x SIZE (default 1024)")
    render_parser.add_argument("--grid-tile", type=int, default=256, help="grid tile size in pixels")
    render_parser.add_argument("--prefix", default="face_", help="PNG name prefix")
    render_parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    render_parser.set_defaults(run=render)

    convert_parser = commands.add_parser("convert", help=".params -> .safetensors (or .pt), checked")
    convert_parser.add_argument("source", type=Path, help="generator.params")
    convert_parser.add_argument("target", type=Path, help="output .safetensors or .pt")
    convert_parser.set_defaults(run=convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CommandError, ParamsFileError, GeneratorWeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
