"""Stage-4 inputs: window sampling, size noise, resize and standardization (SPEC 7.2).

Every random number of stage 4 is drawn in :func:`draw_window`, from the run's one numpy
stream (made by ``plan.window_draws``), in the SPEC order: per view (VIEWS order) of
each repetition, the image index (augmentation only), the window shift ``mult`` (augmentation
only) and the four size-noise factors (always, even without augmentation). The draws do not
depend on pixel values, so :func:`draw_exam` takes them all before an exam's files are read;
the geometry functions below are then pure.

Arrays: a view's joint array ``J`` is ``H x W x C`` float32, channels ``[image]`` or
``[image, benign heatmap, malignant heatmap]``, already mirrored by ``flip_for_model`` (the
breast faces right). A model window is ``H_in x W_in x C`` float32, ``(H_in, W_in)`` from
``views.INPUT_SIZE``.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from ..standardize import standardize_in_place
from ..views import INPUT_SIZE, VIEWS

# SPEC 7.2: shift noise (rows, columns) and size noise, in pixels, when augmenting.
AUGMENT_NOISE = (100, 100)
AUGMENT_SIZE_NOISE = 100


@dataclass(frozen=True)
class WindowDraw:
    """The random numbers of one view of one repetition.

    ``image_index``: which image of the view; ``mult``: (2,) float64 shift factors in
    [-1, 1) for (rows, columns), zeros without augmentation; ``size``: (4,) float64
    size-noise factors for (top, bottom, left, right).
    """

    image_index: int
    mult: np.ndarray
    size: np.ndarray


def noise_settings(augment):
    """``(noise (rows, columns), size_noise)`` of SPEC 7.2 for the augmentation switch."""
    return (AUGMENT_NOISE, AUGMENT_SIZE_NOISE) if augment else ((0, 0), 0)


def draw_window(rng, num_images, augment):
    """Draw one view's numbers from ``rng`` (a ``numpy.random.RandomState``), SPEC order.

    ``randint(0, 1)`` consumes no state, so a one-image view draws only the uniforms; with
    two or more images the index draw consumes state (numpy's own generator is called,
    never re-implemented).
    """
    (noise_y, noise_x), _ = noise_settings(augment)
    index = int(rng.randint(low=0, high=num_images)) if augment else 0
    if noise_y or noise_x:
        mult = rng.uniform(-1, 1, size=2)
    else:
        mult = np.zeros(2)
    size = rng.uniform(-1, 1, size=4)
    return WindowDraw(index, mult, size)


def draw_exam(rng, image_counts, num_epochs, augment):
    """All draws of one exam: a list (one per repetition) of ``{view: WindowDraw}``.

    ``image_counts`` maps each view to its number of images. A view with no images (an exam
    that will fail) draws as a one-image view would, so that the stream, and with it every
    other exam's prediction, is the same as in a run where the exam's files were complete.
    """
    return [{view: draw_window(rng, max(int(image_counts[view]), 1), augment) for view in VIEWS}
            for _ in range(num_epochs)]


def draw_single_image(rng, num_epochs, augment):
    """The draws of the single-image path (SPEC 9): no image-index draw, one per repetition."""
    (noise_y, noise_x), _ = noise_settings(augment)
    draws = []
    for _ in range(num_epochs):
        mult = rng.uniform(-1, 1, size=2) if (noise_y or noise_x) else np.zeros(2)
        draws.append(WindowDraw(0, mult, rng.uniform(-1, 1, size=4)))
    return draws


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Window:
    """Where a window is cut: zero padding added to ``J`` and the borders inside the padded array.

    ``pad_top``, ``pad_bottom`` (rows) and ``pad_right`` (columns) are zeros conceptually added
    to ``J``; ``top, bottom, left, right`` index the padded array (ends exclusive).
    """

    pad_top: int
    pad_bottom: int
    pad_right: int
    top: int
    bottom: int
    left: int
    right: int


def _fit_axis(start, end, extent, size):
    """Shift ``[start, end)`` of length ``size`` to lie inside ``[0, extent)``."""
    if start < 0:
        return 0, size
    if end > extent:
        return extent - size, extent
    return start, end


def _padding(shape_hw, angle, noise, size_noise):
    """Zero padding ``(top, bottom, right)`` for arrays too small for the window, SPEC 7.2."""
    (height, width), (h_in, w_in) = shape_hw, INPUT_SIZE[angle]
    m_y, m_x = noise[0] + size_noise, noise[1] + size_noise
    pad_top = pad_bottom = pad_right = 0
    if angle == "CC" and height < h_in + 2 * m_y:
        pad = h_in - height + 2 * m_y
        pad_top, pad_bottom = int(pad / 2), pad - int(pad / 2)
    elif angle == "MLO" and height < h_in + m_y:
        pad_bottom = h_in - height + m_y
    if width < w_in + m_x:
        pad_right = w_in - width + m_x
    return pad_top, pad_bottom, pad_right


def window_location(shape_hw, angle, best_center, draw, augment):
    """Sample the window of one view (SPEC 7.2 steps 2 and 3) → :class:`Window`.

    ``shape_hw``: ``(H, W)`` of the view's flipped array; ``angle``: ``"CC"``/``"MLO"``;
    ``best_center``: ``(row, column)`` from stage 2; ``draw``: its :class:`WindowDraw`.
    """
    noise, size_noise = noise_settings(augment)
    h_in, w_in = INPUT_SIZE[angle]
    cy, cx = int(best_center[0]), int(best_center[1])
    top, bottom = cy - h_in // 2, cy + h_in - h_in // 2
    left, right = cx - w_in // 2, cx + w_in - w_in // 2

    pad_top, pad_bottom, pad_right = _padding(shape_hw, angle, noise, size_noise)
    m_y, m_x = noise[0] + size_noise, noise[1] + size_noise
    if pad_top or pad_bottom:
        top, bottom = (m_y, m_y + h_in) if angle == "CC" else (0, h_in)
    if pad_right:
        left, right = 0, w_in
    height = shape_hw[0] + pad_top + pad_bottom
    width = shape_hw[1] + pad_right
    top, bottom = _fit_axis(top, bottom, height, h_in)
    left, right = _fit_axis(left, right, width, w_in)

    borders = _shifted(top, bottom, left, right, height, width, noise, draw.mult)
    borders = _size_noised(borders, height, width, size_noise, (h_in, w_in), draw.size)
    return Window(pad_top, pad_bottom, pad_right, *(int(b) for b in borders))


def _shifted(top, bottom, left, right, height, width, noise, mult):
    """Shift noise: away from a border the window touches, capped by the room on that side."""
    mult = np.array(mult, dtype=np.float64)
    if top == 0:
        mult[0] = abs(mult[0])
    elif bottom == height:
        mult[0] = -abs(mult[0])
    if left == 0:
        mult[1] = abs(mult[1])
    elif right == width:
        mult[1] = -abs(mult[1])
    room_y = height - bottom if mult[0] >= 0 else top
    room_x = width - right if mult[1] >= 0 else left
    dy = int(np.round(min(noise[0], room_y) * mult[0]))  # numpy rounds half to even
    dx = int(np.round(min(noise[1], room_x) * mult[1]))
    return np.array([top + dy, bottom + dy, left + dx, right + dx], dtype=np.int32)


def _size_noised(borders, height, width, size_noise, input_size, factors):
    """Size noise: each border moves on its own, by at most the room on every side."""
    top, bottom, left, right = (int(b) for b in borders)
    h_in, w_in = input_size
    cap = min(size_noise, top, height - bottom, left, width - right)
    horizontal = np.round(cap * w_in / h_in)  # H_in >= W_in for both angles
    caps = np.array([cap, cap, horizontal, horizontal], dtype=np.int32)
    return borders + np.round(caps * factors).astype(np.int32)


# --------------------------------------------------------------------------- pixels
def cut_window(joint, window):
    """``J`` zero-padded as ``window`` says, cut at its borders: ``h x w x C`` float32.

    The padded array is never built: a window inside ``J`` is returned as a view, one that
    reaches into the padding is assembled from zeros and the overlapping part.
    """
    height, width = joint.shape[:2]
    r0, r1 = window.top - window.pad_top, window.bottom - window.pad_top
    c0, c1 = window.left, window.right
    if r0 >= 0 and r1 <= height and c1 <= width:
        return joint[r0:r1, c0:c1]
    out = np.zeros((r1 - r0, c1 - c0) + joint.shape[2:], dtype=joint.dtype)
    rr0, rr1, cc1 = max(r0, 0), min(r1, height), min(c1, width)
    if rr1 > rr0 and cc1 > c0:
        out[rr0 - r0:rr1 - r0, :cc1 - c0] = joint[rr0:rr1, c0:cc1]
    return out


def resize_window(cut, angle, out=None):
    """Resize a cut to ``INPUT_SIZE[angle]`` with OpenCV bicubic, all channels together.

    Writes into ``out`` (``H_in x W_in x C`` float32, C-contiguous) when given, so a batch
    is filled without copies; a cut that already has the input size is copied into it.
    """
    h_in, w_in = INPUT_SIZE[angle]
    if out is None:
        out = np.empty((h_in, w_in) + cut.shape[2:], dtype=np.float32)
    if cut.shape[:2] == (h_in, w_in):
        out[...] = cut
        return out
    # OpenCV reads and writes a single channel as a 2-D array: hand it 2-D views.
    flat = out.reshape(h_in, w_in, -1)
    src = cut[..., 0] if cut.shape[2] == 1 else cut
    dst = flat[..., 0] if flat.shape[2] == 1 else flat
    written = cv2.resize(src, (w_in, h_in), dst=dst, interpolation=cv2.INTER_CUBIC)
    if not np.shares_memory(written, out):  # OpenCV allocates anew if dst does not suit it
        flat[...] = written.reshape(flat.shape)
    return out


def standardize_image(window, in_place=False):
    """Standardize channel 0 (the image) of an ``H x W x C`` window; heatmaps stay as they are.

    float32 throughout, as numpy computes it on a C-contiguous copy: subtract the mean, then
    divide by ``max(std, 1e-5)`` of the centred array. Returns a new C-contiguous array, or,
    with ``in_place`` (``window`` must then be a C-contiguous float32 array), ``window``.
    """
    out = window if in_place else np.array(window, dtype=np.float32, order="C")
    image = np.ascontiguousarray(out[..., 0])  # a view when C == 1
    out[..., 0] = standardize_in_place(image)
    return out


def model_window(joint, angle, best_center, draw, augment, out=None):
    """One model input, ``H_in x W_in x C`` float32: sample, cut, resize, standardize.

    Written into ``out`` when given (e.g. one slot of a batch array), else a new array.
    """
    window = window_location(joint.shape[:2], angle, best_center, draw, augment)
    out = resize_window(cut_window(joint, window), angle, out)
    return standardize_image(out, in_place=True)


def window_batch(joints, best_centers, angle, draws, augment):
    """``N x H_in x W_in x C`` float32: the window of each :class:`WindowDraw` in ``draws``.

    ``joints`` and ``best_centers`` list a view's images and centers; each draw picks one by
    its ``image_index``. The windows are written straight into the batch array.
    """
    channels = joints[0].shape[2]
    batch = np.empty((len(draws),) + INPUT_SIZE[angle] + (channels,), dtype=np.float32)
    for slot, draw in zip(batch, draws):
        index = draw.image_index
        model_window(joints[index], angle, best_centers[index], draw, augment, out=slot)
    return batch
