"""Exam pictures of the report: small JPEGs drawn with numpy and Pillow (no matplotlib).

Each image is read once (:func:`visualize.load_panel`: the crop and its two heatmaps,
downsampled to ``PAGE_ROWS`` rows and oriented as radiologists hang them) and gives:

- ``pictures/<exam>_<view>_<k>.jpg``: the crop, then the crop under its malignant and
  under its benign heatmap (:func:`visualize.overlay_rgba`: colour and opacity grow with
  the value, 0..1), side by side, for the exam page;
- ``thumbs/<exam>.jpg``: the four views hung as in :data:`visualize.HANGING` (CC above
  MLO, right views left, chest walls toward the middle), malignant overlay, ``THUMB_ROWS``
  rows per view, for the exam table.

A view without its heatmaps (a failed exam) is drawn as the crop alone; one whose crop is
missing is left black. Reading the full-size crops and heatmaps is the cost (tens of ms per
image at real sizes), so the report draws a bounded number of exams (``--pictures``).
"""

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from ...core import formats
from ...core.errors import InputImageError
from ...core.failures import outcome
from ...core.runtime import parallel_map
from ...core.views import LABELS, VIEWS
from ..visualize import HANGING, HEATMAP_KINDS, downsample, load_panel, overlay_rgba

PAGE_ROWS = 360
THUMB_ROWS = 56
GAP = 4  # black pixels between panels
JPEG_QUALITY = 85
PICTURES_DIR, THUMBS_DIR = "pictures", "thumbs"


def picture_name(index, view, k):
    return f"{PICTURES_DIR}/{index}_{view}_{k}.jpg"


def thumb_name(index):
    return f"{THUMBS_DIR}/{index}.jpg"


LEVELS = 256  # heatmap values 0..1 are looked up in a table of this many overlay colours


@functools.lru_cache(maxsize=None)
def overlay_table(kind):
    """(LEVELS, 4) float32: :func:`visualize.overlay_rgba` of ``LEVELS`` values in 0..1."""
    return overlay_rgba(np.linspace(0.0, 1.0, LEVELS)[None, :], kind)[0].astype(np.float32)


def composite(panel, kind=None):
    """(h, w, 3) uint8: the panel's grey image, under its ``kind`` heatmap when given (the
    overlay of :func:`visualize.overlay_rgba`, values rounded to 1/255)."""
    low, high = panel["gray_range"]
    gray = np.clip((panel["image"] - low) / np.float32(high - low), 0.0, 1.0)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if kind is not None and kind in panel["heatmaps"]:
        value = np.clip(np.nan_to_num(panel["heatmaps"][kind]), 0.0, 1.0)
        rgba = overlay_table(kind)[np.rint(value * (LEVELS - 1)).astype(np.intp)]
        alpha = rgba[..., 3:4]
        rgb = rgb * (1 - alpha) + rgba[..., :3] * alpha
    return (rgb * 255 + 0.5).astype(np.uint8)


def side_by_side(parts, align="top"):
    """Arrays (h_i, w_i, 3) in a row on black, ``GAP`` apart."""
    height = max(p.shape[0] for p in parts)
    width = sum(p.shape[1] for p in parts) + GAP * (len(parts) - 1)
    out = np.zeros((height, width, 3), np.uint8)
    x = 0
    for part in parts:
        out[:part.shape[0], x:x + part.shape[1]] = part
        x += part.shape[1] + GAP
    return out


def _read_panel(run_layout, name, flip):
    """The panel of one image, with heatmaps when both files exist."""
    paths = formats.heatmap_paths(run_layout.heatmaps_dir, name)
    heatmaps_dir = run_layout.heatmaps_dir if all(p.is_file() for p in paths) else None
    return load_panel(run_layout.cropped_dir, heatmaps_dir, name, flip, max_rows=PAGE_ROWS)


def _thumbnail(views):
    """The hanging thumbnail from ``{view: malignant composite (h, w, 3) or None}``."""
    cells = {}
    for view, image in views.items():
        if image is None:
            cells[view] = np.zeros((THUMB_ROWS, THUMB_ROWS * 2 // 3, 3), np.uint8)
            continue
        rows = THUMB_ROWS
        columns = max(1, round(image.shape[1] * rows / image.shape[0]))
        cells[view] = np.clip(downsample(image, (rows, columns)), 0, 255).astype(np.uint8)
    grid = []
    for row in HANGING:
        widths = [max(cells[v].shape[1] for v in column) for column in zip(*HANGING)]
        padded = []
        for c, view in enumerate(row):
            cell = cells[view]
            pad = np.zeros((THUMB_ROWS, widths[c] - cell.shape[1], 3), np.uint8)
            # chest walls toward the middle: the left column is right-aligned
            padded.append(np.concatenate([pad, cell] if c == 0 else [cell, pad], axis=1))
        grid.append(side_by_side(padded))
    spacer = np.zeros((GAP, grid[0].shape[1], 3), np.uint8)
    return np.concatenate([grid[0], spacer, grid[1]], axis=0)


def _save_jpeg(path, array):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, "JPEG", quality=JPEG_QUALITY)


def draw_exam(task):
    """Draw one exam's pictures into the report folder; returns ``{view: [k drawn]}``.

    ``task``: ``(index, exam, run_layout, report_dir)``. Raises InputImageError when no
    image of the exam can be read.
    """
    index, exam, layout, report_dir = task
    drawn, first = {view: [] for view in VIEWS}, {view: None for view in VIEWS}
    errors = []
    for view in VIEWS:
        for k, name in enumerate(exam[view]):
            try:
                panel = _read_panel(layout, name, exam["horizontal_flip"])
            except InputImageError as err:
                errors.append(str(err))
                continue
            parts = [composite(panel)] + [composite(panel, kind) for kind in HEATMAP_KINDS
                                          if kind in panel["heatmaps"]]
            _save_jpeg(Path(report_dir) / picture_name(index, view, k), side_by_side(parts))
            drawn[view].append(k)
            if first[view] is None:
                first[view] = parts[1] if len(parts) > 1 else parts[0]
    if not any(drawn.values()):
        raise InputImageError("; ".join(errors) or "the exam lists no images")
    _save_jpeg(Path(report_dir) / thumb_name(index), _thumbnail(first))
    return drawn


def _draw_task(task):
    return outcome(draw_exam, task, name=f"exam {task[0]}")


def draw_exams(run, indices, report_dir, num_processes=1):
    """Draw the pictures of ``indices``; returns ``({index: {view: [k]}}, {index: error})``."""
    tasks = [(i, run.exams[i], run.layout, str(report_dir)) for i in indices]
    results = parallel_map(_draw_task, tasks, num_processes, desc="Pictures")
    drawn, errors = {}, {}
    for index, (views, error) in zip(indices, results):
        if error:
            errors[index] = error
        else:
            drawn[index] = views
    return drawn, errors


def choose_exams(run, limit):
    """The exams to draw: all (``limit`` None) or the ``limit`` with the highest malignant
    probability (the larger breast, imageheatmaps model, else image model; failed last)."""
    if limit is None or limit >= run.count:
        return list(range(run.count))
    malignant = [LABELS.index("left_malignant"), LABELS.index("right_malignant")]
    score = np.full(run.count, -np.inf)
    for model in ("image", "imageheatmaps"):  # the later model wins where it has a value
        values = np.max(run.predictions[model][:, malignant], axis=1)  # NaN: failed
        score = np.where(np.isnan(values), score, values)
    order = np.argsort(-score, kind="stable")
    return sorted(order[:limit].tolist())
