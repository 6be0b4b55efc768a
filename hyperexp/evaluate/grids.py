"""Image grids: test stimuli above their reconstructions, in blocks.

Each block is a row of trial numbers, a row of stimuli and a row of reconstructions, with the rows
named on the left; an optional title (the epoch) heads the grid. :func:`comparison_grid` lays the
blocks out near square (a run's saved grid). :func:`preview_card` is the image a run logs to
MLflow's image card: MLflow shows a 256-pixel thumbnail centred in a square box as wide as the
card, and the card has room for only the box's upper part (below the run's name and params), so
a near-square grid shows only its stimulus row there. The card image is therefore a landscape
strip of ``CARD_COLUMNS`` trials (stimuli over reconstructions) at the top of a square canvas; the
other preview trials follow below it, one click away in the card's image viewer.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 2
MAX_CELL = 256  # grid cells are downsampled to at most this many pixels (a PGGAN render is 1024)
ROW_NAMES = ("stimulus", "reconstruction")
CARD_COLUMNS = 6  # trials in the card's top strip
CARD_STRIP_FRACTION = 0.32  # of the card image's height: the card shows ~38% below 3 lines of params


def _font(cell: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(10, cell // 8))


def near_square_columns(n: int, cell_width: int, block_height: int, margin: int = 0) -> int:
    """The number of columns whose grid of ``n`` cells is closest to square."""

    def aspect_error(columns: int) -> float:
        width, height = margin + columns * cell_width, math.ceil(n / columns) * block_height
        return abs(math.log(width / height))

    return min(range(1, n + 1), key=aspect_error)


def _cells(images: np.ndarray, size: int) -> list[Image.Image]:
    cells = [Image.fromarray(image) for image in images]
    return [
        cell.resize((size, size), Image.Resampling.LANCZOS) if cell.size != (size, size) else cell for cell in cells
    ]


def comparison_grid(
    stimuli: np.ndarray,
    reconstructions: np.ndarray,
    trials: list[int] | None = None,
    title: str | None = None,
    columns: int | None = None,
) -> np.ndarray:
    """uint8 (N, H, W, 3) stimuli and reconstructions -> one uint8 (rows, cols, 3) image.

    Trial ``trials[i]`` (default ``i``) is a column of a block: its number, its stimulus and below
    it its reconstruction. Blocks of ``columns`` trials (default: the number that makes the grid
    near square) stack down the grid. Cells are square, at most ``MAX_CELL`` pixels.
    """
    if stimuli.shape != reconstructions.shape or stimuli.ndim != 4:
        raise ValueError(
            f"stimuli {stimuli.shape} and reconstructions {reconstructions.shape} must both be (N, H, W, 3)"
        )
    n = len(stimuli)
    trials = list(range(n)) if trials is None else list(trials)
    cell = min(max(stimuli.shape[1:3]), MAX_CELL)
    font = _font(cell)
    line = font.size + 6  # height of a text line
    margin = line + 4  # the left column of row names, written upwards
    block = line + 2 * (cell + GAP)
    columns = columns or near_square_columns(n, cell + GAP, block, margin)
    head = line + 4 if title else 0
    canvas = Image.new("RGB", (margin + columns * (cell + GAP), head + math.ceil(n / columns) * block), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((margin, 2), title, fill="black", font=font)
    rows = (_cells(stimuli, cell), _cells(reconstructions, cell))
    for index in range(n):
        top = head + (index // columns) * block
        left = margin + (index % columns) * (cell + GAP)
        draw.text((left + 2, top + 2), f"trial {trials[index]}", fill="dimgray", font=font)
        for row, images in enumerate(rows):
            canvas.paste(images[index], (left, top + line + row * (cell + GAP)))
    for top in range(head, canvas.height, block):
        for row, name in enumerate(ROW_NAMES):
            _write_upwards(canvas, name, (2, top + line + row * (cell + GAP)), cell, font)
    return np.asarray(canvas)


def preview_card(stimuli: np.ndarray, reconstructions: np.ndarray, title: str | None = None) -> np.ndarray:
    """The image for MLflow's image card: the first ``CARD_COLUMNS`` trials as a landscape strip
    (stimuli over reconstructions) at the top, the other trials in blocks below, on a white square
    canvas large enough that the strip fills at most its top ``CARD_STRIP_FRACTION`` (a wider
    image would sit lower in the card's square box, a taller strip would be cut)."""
    columns = min(len(stimuli), CARD_COLUMNS)
    grid = comparison_grid(stimuli, reconstructions, title=title, columns=columns)
    strip = comparison_grid(stimuli[:columns], reconstructions[:columns], title=title, columns=columns)
    height, width = grid.shape[:2]
    side = max(height, width, math.ceil(strip.shape[0] / CARD_STRIP_FRACTION))
    canvas = np.full((side, side, 3), 255, np.uint8)
    left = (side - width) // 2
    canvas[:height, left : left + width] = grid
    return canvas


def _write_upwards(canvas: Image.Image, text: str, corner: tuple[int, int], length: int, font) -> None:
    """``text`` rotated to read upwards, centred along ``length`` pixels below ``corner``."""
    width = int(font.getlength(text)) + 2
    label = Image.new("RGB", (width, font.size + 4), "white")
    ImageDraw.Draw(label).text((1, 0), text, fill="black", font=font)
    label = label.rotate(90, expand=True)
    if label.height > length:  # a name longer than the cell: shrink it to fit
        label = label.resize((max(1, label.width * length // label.height), length), Image.Resampling.LANCZOS)
    canvas.paste(label, (corner[0], corner[1] + (length - label.height) // 2))
