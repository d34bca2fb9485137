"""Stage 1: crop each mammogram around the breast (SPEC section 4).

The core, :func:`crop_mammogram_array`, is pure: array in, crop window and points out. The
mask morphology (100 erosions, then 100 dilations of the largest component, with the
4-connected cross and zeros outside the image) is computed exactly with city-block
(OpenCV L1) distance transforms: ``k`` erosions by the cross keep the pixels whose taxicab distance to
the nearest zero (outside counting as zero) exceeds ``k``; ``k`` dilations add the pixels
within taxicab distance ``k``. ``method="iterative"`` runs scipy's iterated erosion and
dilation instead, the literal form of the SPEC, kept as the reference the tests compare with.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from .. import formats
from ..errors import ExamListError, InputImageError
from ..exam_list import STAGE_KEYS, add_stage_key, exam_names, iter_images
from ..failures import FailureReport, outcome
from ..runtime import log, parallel_map
from ..views import VIEWS, view_side

NUM_ITERATIONS = 100  # SPEC §4 step 3/5
BUFFER_SIZE = 50  # SPEC §4 steps 8 and 10
STAGE1_KEYS = STAGE_KEYS[:4]


@dataclass(frozen=True)
class CropResult:
    """Stage-1 values of one image (SPEC §4 step 13), in the exam list's tuple forms."""
    window_location: tuple
    rightmost_points: tuple
    bottommost_points: tuple
    distance_from_starting_side: int


def breast_direction(view, horizontal_flip):
    """'left' or 'right': where the breast points in the stored image (SPEC §4 step 1)."""
    toward_left = (view_side(view) == "R") == (horizontal_flip == "NO")
    return "left" if toward_left else "right"


# --------------------------------------------------------------------------- masks
def _taxicab_distance_to_zero(mask):
    """Taxicab distance of each pixel to the nearest False pixel (exact: OpenCV's L1 mask)."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L1, 3)


def _erode(mask, iterations, method):
    if method == "iterative":
        return ndimage.binary_erosion(mask, iterations=iterations)
    # Pad with zeros: pixels outside the image count as background for the erosion.
    padded = np.pad(mask, 1, constant_values=False)
    return _taxicab_distance_to_zero(padded)[1:-1, 1:-1] > iterations


def _dilate(mask, iterations, method):
    if method == "iterative":
        return ndimage.binary_dilation(mask, iterations=iterations)
    # The image is a rectangle, so distances through it equal plain taxicab distances.
    return _taxicab_distance_to_zero(~mask) <= iterations


def breast_mask(image, iterations=NUM_ITERATIONS, method="distance"):
    """The dilated largest component of the eroded foreground (SPEC §4 steps 2-5).

    Returns a (H, W) bool array, or ``None`` when nothing survives the erosion.
    """
    eroded = _erode(image > 0, iterations, method)
    if method == "iterative":
        labels, count = ndimage.label(eroded)
        if count == 0:
            return None
        return _dilate(labels == _largest_label(labels, count), iterations, method)
    # Same masks, less work: label only inside the eroded mask's bounding box, and dilate
    # only inside that box grown by `iterations` (the dilation cannot reach further).
    rows, cols = np.flatnonzero(eroded.any(axis=1)), np.flatnonzero(eroded.any(axis=0))
    if rows.size == 0:
        return None
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    labels, count = ndimage.label(eroded[box])
    component = eroded[box] if count == 1 else labels == _largest_label(labels, count)
    grown = tuple(slice(max(b.start - iterations, 0), min(b.stop + iterations, n))
                  for b, n in zip(box, image.shape))
    seed = np.zeros([g.stop - g.start for g in grown], bool)
    seed[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))] = component
    big = np.zeros(image.shape, bool)
    big[grown] = _dilate(seed, iterations, method)
    return big


def _largest_label(labels, count):
    """Label of the largest component; on a tie the lowest label (SPEC §4 step 4)."""
    if count == 1:
        return 1
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return int(np.argmax(sizes)) + 1  # argmax takes the first maximum


# --------------------------------------------------------------------------- crop window
def crop_window(big, mode, buffer_size=BUFFER_SIZE):
    """Crop window and points from the breast mask ``big`` (SPEC §4 steps 6-13)."""
    height, width = big.shape
    rows = np.flatnonzero(big.any(axis=1))
    cols = np.flatnonzero(big.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1

    yb = bottom - 1
    xb = np.flatnonzero(big[yb, :])

    if top > 0:
        top -= min(top, buffer_size)
    if bottom < height:
        bottom += min(height - bottom, buffer_size)
    distance = width - right if mode == "left" else left
    if mode == "left" and left > 0:
        left -= min(left, buffer_size)
    elif mode == "right" and right < width:
        right += min(width - right, buffer_size)

    yb -= top
    # SPEC §4 step 11: `right - x`, not `right - 1 - x`, as the reference does.
    xb = (right - xb)[::-1] if mode == "left" else xb - left

    crop = big[top:bottom, left:right]
    skip = int(crop.shape[0] * (1 / 3))
    lower = crop[skip:, :]
    lower_cols = np.flatnonzero(lower.any(axis=0))
    xr = int(lower_cols[-1] if mode == "right" else lower_cols[0])
    yr = np.flatnonzero(lower[:, xr]) + skip
    if mode == "left":
        xr = crop.shape[1] - xr  # again no `- 1` (SPEC §4 step 12)

    return CropResult(
        window_location=(top, bottom, left, right),
        rightmost_points=((int(yr[0]), int(yr[-1])), xr),
        bottommost_points=(int(yb), (int(xb[0]), int(xb[-1]))),
        distance_from_starting_side=int(distance),
    )


def crop_mammogram_array(image, view, horizontal_flip, iterations=NUM_ITERATIONS,
                         buffer_size=BUFFER_SIZE, method="distance"):
    """Stage 1 for one (H, W) image: returns ``(cropped_image, CropResult)``.

    The crop is ``image[top:bottom, left:right]`` of the stored (unflipped) image, same dtype.
    Raises :class:`InputImageError` when no breast region survives the erosion.
    """
    big = breast_mask(image, iterations, method)
    if big is None:
        raise InputImageError(
            f"no foreground region survives {iterations} erosions (the image is blank or "
            "its non-zero area is too thin); cannot crop")
    result = crop_window(big, breast_direction(view, horizontal_flip), buffer_size)
    top, bottom, left, right = result.window_location
    return image[top:bottom, left:right], result


# --------------------------------------------------------------------------- files
def crop_and_write(image, input_path, output_path, view, horizontal_flip,
                   iterations=NUM_ITERATIONS, buffer_size=BUFFER_SIZE):
    """Crop a stored (H, W) mammogram read from ``input_path`` and write the cropped PNG
    atomically to ``output_path``; returns ``(cropped image, CropResult)``. A crop that
    fails raises :class:`InputImageError` naming ``input_path``."""
    try:
        cropped, result = crop_mammogram_array(image, view, horizontal_flip,
                                               iterations, buffer_size)
    except InputImageError as err:
        raise InputImageError(f"{input_path}: {err}") from None
    formats.write_png(output_path, cropped)
    return cropped, result


def crop_mammogram_file(input_path, output_path, view, horizontal_flip,
                        iterations=NUM_ITERATIONS, buffer_size=BUFFER_SIZE):
    """Read ``input_path``, crop it and write the cropped PNG atomically to ``output_path``."""
    image = formats.read_mammogram_png(input_path)
    return crop_and_write(image, input_path, output_path, view, horizontal_flip, iterations,
                          buffer_size)[1]


def _crop_task(task):
    """Worker for the process pool: returns (CropResult, None) or (None, error message)."""
    return outcome(crop_mammogram_file, *task, name=task[0])


def crop_tasks(exam_list, input_dir, output_dir, iterations, buffer_size, refused_keys):
    """``(images, tasks)``: ``iter_images`` of the list and one crop task per image.

    Refuses an exam list that already holds one of ``refused_keys`` (it was processed).
    """
    for exam in exam_list:
        for key in refused_keys:
            if key in exam:
                raise ExamListError(f"exam {exam_names(exam)}: already has key {key!r}; give "
                                    "the exam list from before cropping")
    images = list(iter_images(exam_list))
    tasks = [(Path(input_dir) / f"{name}.png", Path(output_dir) / f"{name}.png", view,
              exam_list[e]["horizontal_flip"], iterations, buffer_size)
             for e, view, _, name in images]
    return images, tasks


def crop_exam_list(exam_list, input_dir, output_dir, num_processes=1,
                   iterations=NUM_ITERATIONS, buffer_size=BUFFER_SIZE, failures=None):
    """Crop every image of ``exam_list`` from ``input_dir`` into ``output_dir``.

    Returns the cropped exam list: images that failed are left out of their view's list
    (as the reference does) and recorded in ``failures``; unknown keys pass through.
    """
    failures = failures if failures is not None else FailureReport("crop_mammogram")
    images, tasks = crop_tasks(exam_list, input_dir, output_dir, iterations, buffer_size,
                               STAGE1_KEYS)
    outcomes = parallel_map(_crop_task, tasks, num_processes, desc="Cropping")
    results = {}
    for (_, _, _, name), (result, error) in zip(images, outcomes):
        if error:
            failures.add(name, error)
        else:
            results[name] = result
            log.debug("%s: window %s", name, result.window_location)
    return [cropped_exam(exam, results) for exam in exam_list]


def cropped_exam(exam, results):
    """``exam`` with its failed images left out and the stage-1 keys of ``results`` added."""
    kept = {view: [n for n in exam[view] if n in results] for view in VIEWS}
    new = dict(exam)
    new.update(kept)
    for key in STAGE1_KEYS:
        new = add_stage_key(new, key, {view: [getattr(results[n], key) for n in kept[view]]
                                       for view in VIEWS})
    return new


def single_metadata(view, horizontal_flip, result):
    """Single-image metadata of SPEC §9 (``short_file_path`` is None)."""
    return {
        "short_file_path": None,
        "horizontal_flip": horizontal_flip,
        "full_view": view,
        "side": view_side(view),
        "view": view.split("-", 1)[1],
        "window_location": result.window_location,
        "rightmost_points": result.rightmost_points,
        "bottommost_points": result.bottommost_points,
        "distance_from_starting_side": result.distance_from_starting_side,
    }


# --------------------------------------------------------------------------- runs
def run_crop_mammograms(exam_list_path, input_dir, output_dir, cropped_exam_list_path,
                        num_processes=10, iterations=NUM_ITERATIONS,
                        buffer_size=BUFFER_SIZE, overwrite=False):
    """Stage 1 on files: returns the exit status of the failure policy.

    The cropped images appear in ``output_dir`` only when the run completes (staged folder),
    and the cropped exam list is written atomically; existing outputs are refused unless
    ``overwrite``.
    """
    from ..exam_list import load_exam_list, save_exam_list

    formats.check_output_file(cropped_exam_list_path, overwrite)
    exam_list = load_exam_list(exam_list_path)
    failures = FailureReport("crop_mammogram")
    # The original keeps the list inside the image folder (run.sh's default): then it
    # must be written into the staged folder, or the folder swap would drop it.
    inside = _relative_to(cropped_exam_list_path, output_dir)
    with formats.staged_output_dir(output_dir, overwrite) as stage:
        cropped = crop_exam_list(exam_list, input_dir, stage, num_processes, iterations,
                                 buffer_size, failures)
        save_exam_list(cropped, stage / inside if inside else cropped_exam_list_path)
    failures.write(cropped_exam_list_path)
    return failures.exit_code(sum(1 for _ in iter_images(exam_list)))


def _relative_to(path, folder):
    """``path`` relative to ``folder`` if it lies inside it, else None."""
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return None


def run_crop_single(mammogram_path, view, horizontal_flip, cropped_path, metadata_path,
                    iterations=NUM_ITERATIONS, buffer_size=BUFFER_SIZE, overwrite=False):
    """Single-image stage 1 (SPEC §9): cropped PNG plus metadata pickle/JSON."""
    from ..exam_list import save_metadata

    for path in (cropped_path, metadata_path):
        formats.check_output_file(path, overwrite)
    result = crop_mammogram_file(mammogram_path, cropped_path, view, horizontal_flip,
                                 iterations, buffer_size)
    save_metadata(single_metadata(view, horizontal_flip, result), metadata_path)
    return 0
