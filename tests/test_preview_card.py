"""The image a run logs to MLflow's image card: the first trials as a landscape strip at the top of
a square canvas (the part of the card's square box that the card shows), the rest below."""

import numpy as np

from hyperexp.evaluate.grids import CARD_COLUMNS, CARD_STRIP_FRACTION, GAP, preview_card


def coloured(n: int, channel: int) -> np.ndarray:
    images = np.zeros((n, 16, 16, 3), np.uint8)
    images[..., channel] = 200
    return images


def cell_corners(mask: np.ndarray) -> list[tuple[int, int]]:
    return [(r, c) for r, c in zip(*np.nonzero(mask)) if not mask[r - 1, c] and not mask[r, c - 1]]


def test_the_card_is_square_with_the_first_trials_in_one_strip_on_top_and_the_rest_below():
    for n in (3, 8, 12):
        card = preview_card(coloured(n, 0), coloured(n, 2), title="epoch 10 of 60")
        assert card.shape[0] == card.shape[1], card.shape  # square: the thumbnail's top is what the card shows
        is_red, is_blue = (card == (200, 0, 0)).all(axis=-1), (card == (0, 0, 200)).all(axis=-1)
        corners = cell_corners(is_red)
        assert len(corners) == n and is_blue.sum() == n * 16 * 16
        first_row = min(top for top, _ in corners)
        strip = [corner for corner in corners if corner[0] == first_row]
        assert len(strip) == min(n, CARD_COLUMNS)  # the strip: one row of stimuli ...
        for top, left in strip:  # ... with each reconstruction right below its stimulus
            assert is_blue[top + 16 + GAP : top + 32 + GAP, left : left + 16].all()
        strip_bottom = first_row + 32 + GAP
        assert strip_bottom <= CARD_STRIP_FRACTION * card.shape[0]  # within the upper part the card shows
        assert all(top > strip_bottom for top, _ in corners if (top, _) not in strip)  # the rest below
