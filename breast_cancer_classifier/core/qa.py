"""Data quality check: the faults that make results on one's own data poor (issue 17).

Every measure is taken on stage 1's crop (the pixels the model sees) and its metadata, so
the check gives the same figures on raw images (cropped here, in memory) and on stage 1's
output. Each check is a small pure function of those measures with a name; the CSV has one
0/1 column per check and ``flags``, the names that fired. docs/qa.md says, for
each check, why it matters and what to do. The check warns; it never blocks a run.

Reference ranges come from the parity kit's real mammograms (real_cc: four CC views, 16-bit
PNGs of 12-bit data rescaled as the seed README says, v * 65535 / 4095) and are wide on
purpose (a factor 2 around what those images show); docs/qa.md gives the values.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import formats
from .exam_list import iter_images, load_exam_list
from .failures import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, outcome
from .runtime import log, parallel_map
from .stages.cropping import crop_mammogram_array
from .views import INPUT_SIZE, VIEWS, view_angle

FULL_SCALE = 65535
# Values below 2^14 cannot come from data rescaled to 16 bits: a real mammogram's brightest
# pixel (dense tissue, markers) is near the top of its stored range (real_cc: 65535).
RESCALED_MIN_MAX = 2 ** 14
MIN_CROP_SIDE = 256  # stage 3's patches are 256 pixels
MIN_WINDOW_SHARE = 0.15  # of the model window's side (views.INPUT_SIZE)
BREAST_AREA_RANGE = (0.30, 0.95)  # real_cc crops: 0.61-0.63 of the crop is non-zero
# Tissue (non-zero crop pixels) median and 95th percentile: half the smallest to twice the
# largest of real_cc's crops (medians 14931-16532, 95th percentiles 39625-43258).
TISSUE_MEDIAN_RANGE = (7465, 33064)
TISSUE_P95_RANGE = (19812, FULL_SCALE)
DARK, BRIGHT = 0.1, 0.9  # of the image's own maximum

MEASURES = ("max_value", "bits_used", "range_used", "crop_height", "crop_width",
            "distance_from_starting_side", "breast_fraction", "dark_share", "bright_share",
            "tissue_median", "tissue_p95")


@dataclass(frozen=True)
class Check:
    name: str
    fires: object  # measures dict -> bool
    summary: str


def _eight_bit(m):
    return m["dtype_bits"] == 8 or m["max_value"] <= 255


def _not_rescaled(m):
    return not _eight_bit(m) and m["max_value"] < RESCALED_MIN_MAX


def _inverted(m):
    # Air is the largest uniform region: dark in a correct image, bright when inverted.
    return m["bright_share"] > m["dark_share"]


def _tiny_crop(m):
    window = INPUT_SIZE[view_angle(m["view"])]
    return (min(m["crop_height"], m["crop_width"]) < MIN_CROP_SIDE
            or m["crop_height"] < MIN_WINDOW_SHARE * window[0]
            or m["crop_width"] < MIN_WINDOW_SHARE * window[1])


def _outside(value, bounds):
    return not bounds[0] <= value <= bounds[1]


IMAGE_CHECKS = (
    Check("eight_bit", _eight_bit, "8-bit image (or values <= 255)"),
    Check("not_rescaled", _not_rescaled,
          f"values below {RESCALED_MIN_MAX}: 10-14-bit data not rescaled to 16 bits"),
    Check("inverted", _inverted, "background brighter than tissue (MONOCHROME1 not inverted?)"),
    Check("wrong_horizontal_flip", lambda m: m["distance_from_starting_side"] > 0,
          "breast does not touch the chest-wall edge horizontal_flip implies"),
    Check("tiny_crop", _tiny_crop, "crop too small to be a mammogram"),
    Check("breast_area", lambda m: _outside(m["breast_fraction"], BREAST_AREA_RANGE),
          "share of non-zero pixels in the crop outside the reference range"),
    Check("intensity", lambda m: (_outside(m["tissue_median"], TISSUE_MEDIAN_RANGE)
                                  or _outside(m["tissue_p95"], TISSUE_P95_RANGE)),
          "tissue intensities outside the reference range"),
)
EXAM_CHECKS = ("extra_images", "missing_view", "unreadable")
CHECK_NAMES = tuple(c.name for c in IMAGE_CHECKS) + EXAM_CHECKS
COLUMNS = ("image", "exam", "view") + MEASURES + CHECK_NAMES + ("flags", "note")


# --------------------------------------------------------------------------- measures
def measure(crop, view, distance_from_starting_side):
    """The measures of one cropped image (2-D uint8/uint16) of ``view``."""
    crop = np.asarray(crop)
    top = int(crop.max()) if crop.size else 0
    tissue = crop[crop > 0]
    median, p95 = (np.percentile(tissue, [50, 95]) if tissue.size else (0.0, 0.0))
    return {
        "view": view, "dtype_bits": 8 * crop.dtype.itemsize, "max_value": top,
        "bits_used": top.bit_length(), "range_used": top / FULL_SCALE,
        "crop_height": int(crop.shape[0]), "crop_width": int(crop.shape[1]),
        "distance_from_starting_side": int(distance_from_starting_side),
        "breast_fraction": tissue.size / max(crop.size, 1),
        "dark_share": float(np.mean(crop <= DARK * top)) if top else 1.0,
        "bright_share": float(np.mean(crop >= BRIGHT * top)) if top else 0.0,
        "tissue_median": float(median), "tissue_p95": float(p95),
    }


def fired(measures):
    """Names of the image checks that fire on ``measures``."""
    return [c.name for c in IMAGE_CHECKS if c.fires(measures)]


def _measure_file(path, view, horizontal_flip, distance):
    """Measures of one image file: stage 1's crop when ``distance`` is given, else the raw
    image, cropped here (in memory) as stage 1 does."""
    image = formats.read_mammogram_png(path)
    if distance is None:
        image, result = crop_mammogram_array(image, view, horizontal_flip)
        distance = result.distance_from_starting_side
    return measure(image, view, distance)


def _measure_task(task):
    return outcome(_measure_file, *task, name=task[0])


def measure_crop(crop, view, distance_from_starting_side, name):
    """``(measures, None)`` of a crop in memory, or ``(None, message)`` if that fails (never
    raises: stage 1's workers take the check's measures on the crop they hold)."""
    return outcome(measure, crop, view, distance_from_starting_side, name=name)


# --------------------------------------------------------------------------- rows
def _format(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def image_row(name, exam, view, measures=None, extra=(), note=""):
    flags = (fired(measures) if measures else []) + list(extra)
    row = {"image": name, "exam": exam, "view": view, "flags": ";".join(flags), "note": note}
    row.update({k: (measures or {}).get(k) for k in MEASURES})
    row.update({c: int(c in flags) for c in CHECK_NAMES})
    return row


def check_exam_list(exam_list, data_folder, map_tasks=None, num_processes=1):
    """One row per image (and one per missing view) of ``exam_list``, in exam-list order.

    A list with stage 1's keys is read as stage 1's output (``data_folder`` holds the crops);
    any other list is cropped here from the raw images in ``data_folder``.
    """
    if map_tasks is None:
        def map_tasks(function, items, desc):
            return parallel_map(function, items, num_processes, desc=desc)
    tasks = []
    for e, view, i, name in iter_images(exam_list):
        exam = exam_list[e]
        distance = (exam["distance_from_starting_side"][view][i]
                    if "distance_from_starting_side" in exam else None)
        tasks.append((str(Path(data_folder) / f"{name}.png"), view, exam["horizontal_flip"],
                      distance))
    return quality_rows(exam_list, map_tasks(_measure_task, tasks, "Quality check"))


def quality_rows(exam_list, measured):
    """The rows of ``exam_list`` from ``measured``: ``(measures, error)`` per image, in
    ``iter_images`` order (an error makes the image ``unreadable``)."""
    results = iter(measured)
    rows = []
    for e, exam in enumerate(exam_list):
        for view in VIEWS:
            extra = ["extra_images"] if len(exam[view]) > 1 else []
            for name in exam[view]:
                measures, error = next(results)
                rows.append(image_row(name, e, view, measures, extra + ["unreadable"] * bool(error),
                                      note=error or ""))
            if not exam[view]:
                rows.append(image_row("", e, view, extra=["missing_view"],
                                      note=f"exam {e} has no {view} image"))
    return rows


def write_rows(path, rows):
    formats.write_csv(path, COLUMNS, [[_format(row[c]) for c in COLUMNS] for row in rows])


def summarize(rows, limit=10):
    """Log a summary on stderr: counts per check and the first flagged rows of each."""
    images = [r for r in rows if r["image"]]
    flagged = [r for r in rows if r["flags"]]
    log.info("quality check: %d image(s) in %d exam(s); %d row(s) flagged",
             len(images), len({r["exam"] for r in rows}), len(flagged))
    for name in CHECK_NAMES:
        hits = [r for r in rows if r[name]]
        if not hits:
            continue
        shown = ", ".join(r["image"] or f"exam {r['exam']} {r['view']}" for r in hits[:limit])
        more = f" and {len(hits) - limit} more" if len(hits) > limit else ""
        log.warning("quality check: %s: %d: %s%s", name, len(hits), shown, more)
    if flagged:
        log.warning("quality check: see docs/qa.md for what each check means "
                    "and what to do")


def check_files(exam_list_path, data_folder, output_path, *, num_processes=1,
                overwrite=False):
    """``bcc qa``: write the CSV and the summary; returns the exit status.

    0 when every image was checked (flags are findings, not failures), 3 when some images
    could not be read or cropped, 1 when none could.
    """
    formats.check_output_file(output_path, overwrite)
    exam_list = load_exam_list(exam_list_path)
    rows = check_exam_list(exam_list, data_folder, num_processes=num_processes)
    write_rows(output_path, rows)
    summarize(rows)
    images = [r for r in rows if r["image"]]
    unreadable = sum(r["unreadable"] for r in images)
    if not unreadable:
        return EXIT_OK
    return EXIT_NOTHING_DONE if unreadable == len(images) else EXIT_PARTIAL


def check_run(cropped_exam_list, measured, output_path):
    """The check inside ``bcc run``, from the measures stage 1's workers took on the crops
    they held (``measured``: ``{name: (measures, error)}``, see :func:`measure_crop`), so no
    crop is decoded twice. Writes the CSV and the summary; warns, never raises."""
    try:
        rows = quality_rows(cropped_exam_list,
                            (measured[name] for _, _, _, name in iter_images(cropped_exam_list)))
        write_rows(output_path, rows)
        summarize(rows)
        return rows
    except Exception as err:  # noqa: BLE001 - the check must never stop a run
        log.warning("quality check could not run (%s: %s); the run goes on without %s",
                    type(err).__name__, err, output_path)
        return None
