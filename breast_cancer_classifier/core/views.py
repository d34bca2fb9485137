"""View names, sides and the orientation rule shared by every stage (SPEC sections 1-2)."""

import numpy as np

L_CC, R_CC, L_MLO, R_MLO = "L-CC", "R-CC", "L-MLO", "R-MLO"
# Canonical iteration order: random-number streams are consumed in this order.
VIEWS = (L_CC, R_CC, L_MLO, R_MLO)
LABELS = ("left_benign", "right_benign", "left_malignant", "right_malignant")
# Model input window (H, W) per angle, SPEC section 1.
INPUT_SIZE = {"CC": (2677, 1942), "MLO": (2974, 1748)}


def view_side(view):
    """'L' or 'R' for a full view name such as 'L-CC'."""
    return view[0]


def view_angle(view):
    """'CC' or 'MLO' for a full view name such as 'L-CC'."""
    return view.split("-", 1)[1]


def is_left(view):
    return view in (L_CC, L_MLO)


def is_right(view):
    return view in (R_CC, R_MLO)


def flip_for_model(image, view, horizontal_flip):
    """Mirror ``image`` (rows, columns, ...) left-right so the breast faces right.

    ``"NO"`` mirrors right views, ``"YES"`` mirrors left views; any other flag, or a view
    that is neither left nor right (e.g. ``"CC"``), leaves the image unchanged (SPEC 2, and
    the single-image quirk of SPEC 9 depends on that last rule). Mirroring is its own
    inverse. Returns a view of the input, not a copy.
    """
    if horizontal_flip == "NO":
        flip = is_right(view)
    elif horizontal_flip == "YES":
        flip = is_left(view)
    else:
        flip = False
    return np.fliplr(image) if flip else image
