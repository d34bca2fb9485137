"""Stage 2 (SPEC §5): candidate ranges, constraints, scores and tie-breaks."""

import numpy as np

from breast_cancer_classifier.core.stages.centers import (candidate_range, constrained_range,
                                                           get_optimal_center, window_scores)
from breast_cancer_classifier.core.views import INPUT_SIZE


def brute_force_score(foreground, center, window):
    tl = [c - w // 2 for c, w in zip(center, window)]
    shift = [max(-t, 0) for t in tl]
    tl = [max(t, 0) for t in tl]
    br = [min(c + (w - w // 2) + s, n) for c, w, s, n in zip(center, window, shift,
                                                              foreground.shape)]
    return int(foreground[tl[0]:br[0], tl[1]:br[1]].sum())


def test_integral_image_scores_equal_window_sums():
    rng = np.random.default_rng(0)
    fg = rng.random((50, 40)) > 0.6
    window = (21, 14)
    ys, xs = np.arange(-12, 62), np.arange(-9, 50)
    scores = window_scores(fg, ys, xs, window)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            assert scores[i, j] == brute_force_score(fg, (y, x), window)


def test_candidate_range_collapses_to_center_when_window_does_not_fit():
    assert candidate_range((3000, 1000), (2677, 1942)) == [(1338, 3000 - 1339 + 1), (500, 501)]


def test_cc_constraint_pins_x_to_rightmost_point():
    image = np.ones((3000, 2000), np.uint16)
    (ly, hy), (lx, hx) = constrained_range(image, "L-CC", INPUT_SIZE["CC"], ((0, 0), 1500), None)
    assert (lx, hx) == (1500 - 971 - 1, 1500 - 971)
    assert (ly, hy) == (1338, 3000 - 1339 + 1)


def test_mlo_bottom_right_constraint_uses_last_rows_of_right_columns():
    image = np.zeros((3200, 1900), np.uint16)
    image[:2500, :] = 1      # the right-hand W_in columns have pixels down to row 2499
    center = get_optimal_center(image, "L-MLO", ((0, 0), 1800), (3100, (0, 0)))
    assert center == (2499 - 2974 // 2 - 1, 1800 - 1748 // 2 - 1)
    # bottommost above that row wins (min).
    center = get_optimal_center(image, "L-MLO", ((0, 0), 1800), (2000, (0, 0)))
    assert center == (2000 - 1487 - 1, 1800 - 874 - 1)


def test_tie_break_nearest_to_center_of_mass_then_first():
    # Uniform image: every candidate scores the same; the one nearest the center wins.
    image = np.ones((2800, 1000), np.uint16)
    center = get_optimal_center(image, "R-CC", ((0, 0), 1000), None)
    assert center == (1400, 1000 - 971 - 1)


def test_highest_score_wins():
    image = np.zeros((2900, 1000), np.uint16)
    image[-200:, :] = 1  # pixels only at the bottom: the lowest candidate covers most
    center = get_optimal_center(image, "R-CC", ((0, 0), 900), None)
    assert center == (2900 - 1339, 900 - 972)
