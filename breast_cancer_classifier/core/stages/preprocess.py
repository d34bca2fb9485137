"""Stages 1 and 2 in one pass per image: crop, write the cropped PNG, find the best center.

The engine's pass 1. Each worker crops an image, finds its center and takes the quality
check's measures (``core.qa``) from the crop it just made, so no cropped PNG is decoded
again (the file scripts decode it a second time in stage 2, ``bcc qa`` a third). The
results are those of ``crop_mammogram.py`` then ``get_optimal_centers.py``: an image that
fails either step is left out of its view's list (SPEC 4 and 5), and its failure is
reported under that step's name.
"""

from .. import formats
from ..failures import FailureReport, outcome
from ..qa import measure_crop
from ..runtime import parallel_map
from ..views import flip_for_model
from .centers import exam_with_centers, get_optimal_center
from .cropping import (BUFFER_SIZE, NUM_ITERATIONS, STAGE1_KEYS, crop_and_write, crop_tasks,
                       cropped_exam)

CROP_STAGE, CENTER_STAGE = "crop_mammogram", "get_optimal_centers"


def crop_and_center_file(input_path, output_path, view, horizontal_flip,
                         iterations=NUM_ITERATIONS, buffer_size=BUFFER_SIZE):
    """Crop one mammogram into ``output_path``, find its center and take the quality
    check's measures (``core.qa``) on the crop in hand.

    Returns ``(CropResult, (center, error), (measures, error))``: an error is None or the
    message of that step alone; a failed crop raises.
    """
    image = formats.read_mammogram_png(input_path)
    cropped, result = crop_and_write(image, input_path, output_path, view, horizontal_flip,
                                     iterations, buffer_size)
    center = outcome(get_optimal_center, flip_for_model(cropped, view, horizontal_flip), view,
                     result.rightmost_points, result.bottommost_points, name=output_path)
    quality = measure_crop(cropped, view, result.distance_from_starting_side, output_path)
    return result, center, quality


def crop_and_center_task(task):
    """One image's pass-1 work for a pool or cluster worker: ``(result, None)`` or
    ``(None, message)``, never raises (one image's failure is a message)."""
    return outcome(crop_and_center_file, *task, name=task[0])


def preprocess_exam_list(exam_list, input_dir, output_dir, num_processes=1,
                         iterations=NUM_ITERATIONS, buffer_size=BUFFER_SIZE, reports=None,
                         map_tasks=None, measured=None):
    """Stages 1 and 2 of ``exam_list``: ``(cropped exam list, exam list with centers)``.

    Cropped PNGs are written under ``output_dir``. ``reports`` = ``(crop, centers)``
    FailureReports collect the failed images of each step. ``map_tasks(function, tasks,
    desc)`` runs the per-image work and returns its results in order (default: a pool of
    ``num_processes`` processes; a cluster passes its own). ``measured`` (a dict), if
    given, gets each cropped image's quality-check ``(measures, error)`` by name.
    """
    if map_tasks is None:
        def map_tasks(function, items, desc):
            return parallel_map(function, items, num_processes, desc=desc)

    crop_report, center_report = reports or (FailureReport(CROP_STAGE),
                                             FailureReport(CENTER_STAGE))
    images, tasks = crop_tasks(exam_list, input_dir, output_dir, iterations, buffer_size,
                               STAGE1_KEYS + ("best_center",))
    results, centers = {}, {}
    for (_, _, _, name), (value, error) in zip(images, map_tasks(
            crop_and_center_task, tasks, "Crop and centers")):
        if error:
            crop_report.add(name, error)
            continue
        results[name], (center, center_error), quality = value
        if measured is not None:
            measured[name] = quality
        if center_error:
            center_report.add(name, center_error)
        else:
            centers[name] = center
    cropped = [cropped_exam(exam, results) for exam in exam_list]
    return cropped, [exam_with_centers(exam, centers) for exam in cropped]
