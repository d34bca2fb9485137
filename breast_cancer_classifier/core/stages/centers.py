"""Stage 2: the optimal center of each cropped image's model window (SPEC section 5).

Every candidate center is scored by the number of non-zero pixels its window covers; the
scores come from one 2-D cumulative sum (an integral image) instead of a sum per window.
"""

from pathlib import Path

import numpy as np

from .. import formats
from ..errors import ExamListError
from ..exam_list import add_stage_key, exam_names, iter_images
from ..failures import FailureReport, outcome
from ..runtime import parallel_map
from ..views import INPUT_SIZE, VIEWS, flip_for_model, view_angle


def candidate_range(image_shape, window):
    """Per-axis ``(lo, hi)`` (hi exclusive) of centers whose window fits (SPEC §5 step 1)."""
    ranges = []
    for size, win in zip(image_shape, window):
        half, rem = win // 2, win - win // 2
        com = size // 2
        lo, hi = half, size - rem  # with step 1: com - (com - half) and com + (size - rem - com)
        if lo >= hi:
            lo = hi = com
        ranges.append((lo, hi + 1))
    return ranges


def constrained_range(image, view, window, rightmost_points, bottommost_points):
    """The candidate ranges after the view's constraint (SPEC §5 step 2)."""
    (lo_y, hi_y), _ = candidate_range(image.shape, window)
    win_h, win_w = window
    rx = rightmost_points[1]
    if view_angle(view) == "CC":
        return (lo_y, hi_y), (rx - win_w // 2 - 1, rx - win_w // 2)
    by = bottommost_points[0]
    rows = np.flatnonzero((image[:, -win_w:] != 0).any(axis=1))
    if rows.size:
        by = min(by, int(rows[-1]))
    lo = (by - win_h // 2 - 1, rx - win_w // 2 - 1)
    return (lo[0], lo[0] + 1), (lo[1], lo[1] + 1)


def _window_edges(centers, size, win):
    """Clipped window start/end per candidate along one axis (SPEC §5 step 4)."""
    half, rem = win // 2, win - win // 2
    start = centers - half
    shift = np.maximum(-start, 0)
    start = np.clip(start, 0, size)
    end = np.clip(centers + rem + shift, 0, size)
    return start, np.maximum(end, start)


def window_scores(foreground, ys, xs, window):
    """(len(ys), len(xs)) count of foreground pixels in each candidate's window."""
    integral = np.zeros((foreground.shape[0] + 1, foreground.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(foreground, axis=0, dtype=np.int64), axis=1, out=integral[1:, 1:])
    y0, y1 = _window_edges(ys, foreground.shape[0], window[0])
    x0, x1 = _window_edges(xs, foreground.shape[1], window[1])
    return (integral[y1[:, None], x1[None, :]] - integral[y0[:, None], x1[None, :]]
            - integral[y1[:, None], x0[None, :]] + integral[y0[:, None], x0[None, :]])


def get_optimal_center(image, view, rightmost_points, bottommost_points):
    """Best window center ``(y, x)`` of a cropped image already in the facing-right frame.

    ``image`` is (H, W), flipped with :func:`flip_for_model`; the center is in that frame.
    """
    window = INPUT_SIZE[view_angle(view)]
    (lo_y, hi_y), (lo_x, hi_x) = constrained_range(image, view, window,
                                                   rightmost_points, bottommost_points)
    ys, xs = np.arange(lo_y, hi_y), np.arange(lo_x, hi_x)
    if ys.size * xs.size == 1:
        return int(lo_y), int(lo_x)
    scores = window_scores(image > 0, ys, xs, window).ravel()
    best = np.flatnonzero(scores == scores.max())
    if best.size > 1:
        com = np.array(image.shape) // 2
        cy, cx = ys[best // xs.size], xs[best % xs.size]
        # argmin keeps the first in y-major candidate order on equal distances.
        best = best[[np.argmin((cy - com[0]) ** 2 + (cx - com[1]) ** 2)]]
    return int(ys[best[0] // xs.size]), int(xs[best[0] % xs.size])


def get_optimal_center_file(image_path, view, horizontal_flip, rightmost_points,
                            bottommost_points):
    image = flip_for_model(formats.read_mammogram_png(image_path), view, horizontal_flip)
    return get_optimal_center(image, view, rightmost_points, bottommost_points)


def _center_task(task):
    """Worker for the process pool: returns (center, None) or (None, error message)."""
    return outcome(get_optimal_center_file, *task, name=task[0])


def get_optimal_centers(exam_list, data_prefix, num_processes=1, failures=None):
    """Add ``best_center`` to every exam; failed images leave their view's lists."""
    failures = failures if failures is not None else FailureReport("get_optimal_centers")
    for index, exam in enumerate(exam_list):
        for key in ("rightmost_points", "bottommost_points"):
            if key not in exam:
                raise ExamListError(f"exam {index} ({exam_names(exam)}): key {key!r} is "
                                    "missing; run stage 1 (crop_mammogram.py) first")
        if "best_center" in exam:
            raise ExamListError(f"exam {index} ({exam_names(exam)}): key 'best_center' is "
                                "already present")
    images = list(iter_images(exam_list))
    tasks = [(Path(data_prefix) / f"{name}.png", view, exam_list[e]["horizontal_flip"],
              exam_list[e]["rightmost_points"][view][i], exam_list[e]["bottommost_points"][view][i])
             for e, view, i, name in images]
    outcomes = parallel_map(_center_task, tasks, num_processes, desc="Centers")
    centers = {}
    for (_, _, _, name), (center, error) in zip(images, outcomes):
        if error:
            failures.add(name, error)
        else:
            centers[name] = center
    return [exam_with_centers(exam, centers) for exam in exam_list]


def exam_with_centers(exam, centers):
    """``exam`` with its failed images left out (with their stage-1 values) and best_center."""
    new = dict(exam)
    for view in VIEWS:
        keep = [i for i, n in enumerate(exam[view]) if n in centers]
        new[view] = [exam[view][i] for i in keep]
        for key, values in exam.items():
            if isinstance(values, dict) and key not in VIEWS and view in values \
                    and len(values[view]) == len(exam[view]) and len(keep) < len(exam[view]):
                new[key] = dict(new[key])
                new[key][view] = [values[view][i] for i in keep]
    return add_stage_key(new, "best_center",
                         {view: [centers[n] for n in new[view]] for view in VIEWS})


def run_get_optimal_centers(cropped_exam_list_path, data_prefix, output_exam_list_path,
                            num_processes=20, overwrite=False):
    """Stage 2 on files: returns the exit status of the failure policy."""
    from ..exam_list import load_exam_list, save_exam_list

    formats.check_output_file(output_exam_list_path, overwrite)
    exam_list = load_exam_list(cropped_exam_list_path)
    failures = FailureReport("get_optimal_centers")
    with_centers = get_optimal_centers(exam_list, data_prefix, num_processes, failures)
    save_exam_list(with_centers, output_exam_list_path)
    failures.write(output_exam_list_path)
    return failures.exit_code(sum(1 for _ in iter_images(exam_list)))


def run_get_optimal_center_single(cropped_path, metadata_path, overwrite=False):
    """Single-image stage 2: adds ``best_center`` to the metadata file (SPEC §9)."""
    from ..exam_list import load_metadata, save_metadata

    meta = load_metadata(metadata_path)
    if "best_center" in meta and not overwrite:
        raise ExamListError(f"{metadata_path}: already holds 'best_center'; pass --overwrite "
                            "to compute it again")
    for key in ("rightmost_points", "bottommost_points"):
        if key not in meta:
            raise ExamListError(f"{metadata_path}: key {key!r} is missing; run crop_single.py "
                                "first")
    meta["best_center"] = get_optimal_center_file(
        cropped_path, meta["full_view"], meta["horizontal_flip"],
        meta["rightmost_points"], meta["bottommost_points"])
    save_metadata(meta, metadata_path)
    return 0
