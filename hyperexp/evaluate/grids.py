"""Image grids: test stimuli (top row) above their reconstructions (bottom row), labelled by trial."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

LABEL_HEIGHT = 14
GAP = 2


def comparison_grid(stimuli: np.ndarray, reconstructions: np.ndarray, trials: list[int] | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3) stimuli and reconstructions -> one uint8 (rows, cols, 3) image.

    Column i shows trial ``trials[i]``: its label on a white strip, the stimulus, then the
    reconstruction, separated by ``GAP`` white pixels.
    """
    if stimuli.shape != reconstructions.shape or stimuli.ndim != 4:
        raise ValueError(
            f"stimuli {stimuli.shape} and reconstructions {reconstructions.shape} must both be (N, H, W, 3)"
        )
    n, height, width, _ = stimuli.shape
    trials = list(range(n)) if trials is None else trials
    canvas = Image.new("RGB", (n * (width + GAP) - GAP, LABEL_HEIGHT + 2 * height + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for column in range(n):
        left = column * (width + GAP)
        draw.text((left + 2, 1), f"trial {trials[column]}", fill="black")
        canvas.paste(Image.fromarray(stimuli[column]), (left, LABEL_HEIGHT))
        canvas.paste(Image.fromarray(reconstructions[column]), (left, LABEL_HEIGHT + height + GAP))
    return np.asarray(canvas)
