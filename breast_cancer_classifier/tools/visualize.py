"""Heatmap overlay pictures: each cropped mammogram with its malignant and benign heatmaps.

An exam becomes one PNG with two blocks side by side, "Malignant heatmap" and "Benign
heatmap". Each block hangs the four views as radiologists do: CC on top, MLO below, right
views in the left column and left views in the right column, chest walls toward the middle.
That is the stored orientation of an exam with ``horizontal_flip == "NO"`` (SPEC 2: left
images face right, right images face left); exams with ``"YES"`` are mirrored for display.
Heatmaps are stored in the orientation of their cropped image (SPEC 3; for single images
the SPEC 9 quirk never mirrors them, so they match the stored crop too), so image and
heatmaps always take the same display transform and stay aligned.

Each heatmap is drawn over the grayscale mammogram in colour, its opacity growing with the
value (``ALPHA_MAX * v ** ALPHA_GAMMA``), so low-probability regions stay readable; the
colour bar spans ``0 .. heatmap_max`` (1 by default: probabilities, comparable across
exams). The title lists each predictions CSV's row for the exam and, when the exam list
carries ``cancer_label``, the labels. Mammograms are area-downsampled to ``PANEL_ROWS`` rows
before plotting. matplotlib draws off screen (no display, no pyplot state).
"""

from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure

from ..core import formats
from ..core.errors import InputImageError, PipelineError
from .evaluate import EvaluationInputError, load_predictions
from ..core.exam_list import exam_names, load_exam_list, load_metadata
from ..core.failures import FailureReport
from ..core.runtime import progress
from ..core.views import LABELS, VIEWS

# Views as radiologists hang them: rows (CC, MLO) x columns (right views, left views).
HANGING = (("R-CC", "L-CC"), ("R-MLO", "L-MLO"))
HEATMAP_KINDS = ("malignant", "benign")
PANEL_ROWS = 800          # rows of a mammogram after downsampling for display
GRAY_PERCENTILE = 99.5    # display white point, over the breast (non-zero) pixels
ALPHA_MAX, ALPHA_GAMMA = 0.6, 0.7
DPI = 100
# Layout, in inches.
CELL_W, CELL_H, CELL_TITLE_H = 2.7, 3.7, 0.3
CBAR_PAD, CBAR_W, CBAR_LABELS_W = 0.1, 0.16, 0.75
BLOCK_GAP, MARGIN, BLOCK_TITLE_H, LINE_H = 0.35, 0.2, 0.35, 0.27
MIN_WIDTH = 8.5           # room for a title line of two predictions per breast
COLORMAPS = {
    "malignant": LinearSegmentedColormap.from_list(
        "malignant", ["#400000", "#d00000", "#ff6000", "#ffff40"]),
    "benign": LinearSegmentedColormap.from_list(
        "benign", ["#002040", "#0060ff", "#00d0ff", "#b0ffff"]),
}
SINGLE_OUTPUT_FILES = {"cropped": "cropped.png", "metadata": "cropped_metadata.pkl",
                       "malignant": "malignant_heatmap.hdf5", "benign": "benign_heatmap.hdf5"}


# --------------------------------------------------------------------------- arrays
def hanging_orientation(array, horizontal_flip):
    """(H, W) array as displayed: stored orientation for ``"NO"``, mirrored for ``"YES"``."""
    return np.fliplr(array) if horizontal_flip == "YES" else array


def downsample(array, shape):
    """Area-average a 2-D array to ``shape`` (rows, columns); float32."""
    array = np.asarray(array, dtype=np.float32)
    if array.shape == tuple(shape):
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def prepare_panel(image, heatmaps, horizontal_flip, max_rows=PANEL_ROWS, title=""):
    """Downsample and orient one view for display.

    ``image``: (H, W) cropped mammogram, stored orientation. ``heatmaps``: ``{kind: (H, W)}``
    in the same orientation (may be empty). Returns a dict: ``image`` (h, w) float32,
    ``gray_range`` (low, high), ``heatmaps`` ``{kind: (h, w) float32}``, ``title``.
    """
    rows, columns = image.shape
    factor = max(1.0, rows / max_rows)
    shape = (max(1, round(rows / factor)), max(1, round(columns / factor)))
    small = hanging_orientation(downsample(image, shape), horizontal_flip)
    return {"image": small, "gray_range": gray_range(small), "title": title,
            "heatmaps": {kind: hanging_orientation(downsample(h, shape), horizontal_flip)
                         for kind, h in heatmaps.items()}}


def gray_range(image):
    """``(0, white point)`` of a mammogram's display: ``GRAY_PERCENTILE`` of its breast
    (non-zero) pixels."""
    image = np.asarray(image)
    breast = image[image > 0]
    high = float(np.percentile(breast, GRAY_PERCENTILE)) if breast.size else 1.0
    return 0.0, max(high, 1e-6)


def overlay_rgba(heatmap, kind, heatmap_max=1.0):
    """(h, w, 4) float RGBA of a heatmap: colour from ``COLORMAPS[kind]`` over 0..heatmap_max,
    opacity ``ALPHA_MAX * v ** ALPHA_GAMMA`` (v the clipped, scaled value)."""
    value = np.clip(np.nan_to_num(heatmap) / heatmap_max, 0.0, 1.0)
    rgba = COLORMAPS[kind](value)
    rgba[..., 3] = ALPHA_MAX * value ** ALPHA_GAMMA
    return rgba


def overlay_rgb(image, heatmap, kind="malignant", heatmap_max=1.0, gray=None, chunk_rows=512):
    """(H, W, 3) uint8 RGB of ``image`` in gray (over ``gray``, default :func:`gray_range`)
    with ``heatmap`` (same shape) over it as each picture cell draws them: the
    :func:`overlay_rgba` colour composited with its opacity. Full-size images are done
    ``chunk_rows`` rows at a time (the RGBA of a whole mammogram is hundreds of MB)."""
    image = np.asarray(image)
    low, high = gray if gray is not None else gray_range(image)
    out = np.empty(image.shape + (3,), dtype=np.uint8)
    for start in range(0, image.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        base = np.clip((image[rows].astype(np.float64) - low) / (high - low), 0.0, 1.0)
        rgba = overlay_rgba(heatmap[rows], kind, heatmap_max)
        alpha = rgba[..., 3:4]
        out[rows] = np.rint((base[..., None] * (1 - alpha) + rgba[..., :3] * alpha) * 255)
    return out


# --------------------------------------------------------------------------- figures
def _block_width(n_columns, with_colorbar):
    return n_columns * CELL_W + (CBAR_PAD + CBAR_W + CBAR_LABELS_W if with_colorbar else 0)


def figure_size(n_rows, n_columns, n_blocks, n_title_lines, with_colorbar=True):
    """(width, height) in inches of a figure with ``n_blocks`` grids of view cells.

    At least ``MIN_WIDTH`` wide, so that the title lines fit; the blocks are centred.
    """
    content = n_blocks * _block_width(n_columns, with_colorbar) + (n_blocks - 1) * BLOCK_GAP
    width = max(MIN_WIDTH, 2 * MARGIN + content)
    height = (2 * MARGIN + n_title_lines * LINE_H + BLOCK_TITLE_H
              + n_rows * (CELL_H + CELL_TITLE_H))
    return width, height


class Note(str):
    """A title line drawn as a warning (e.g. that the weights are untrained demo weights)."""


NOTE_COLOR = "#ff5050"


def draw_figure(panels, hanging, kinds, title_lines, heatmap_max=1.0):
    """Draw blocks of view cells, one per heatmap kind (or one plain block if ``kinds`` is empty).

    ``panels``: ``{view: prepare_panel(...) or None}``; ``hanging``: rows of views, e.g.
    ``HANGING``. Returns ``(figure, axes)`` with ``axes[(kind, view)]`` the cell of a view in
    a block (kind ``"image"`` for the plain block).
    """
    blocks = tuple(kinds) or ("image",)
    n_rows, n_columns = len(hanging), len(hanging[0])
    colorbar = bool(kinds)
    width, height = figure_size(n_rows, n_columns, len(blocks), len(title_lines), colorbar)
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="black")
    for i, line in enumerate(title_lines):
        is_note = isinstance(line, Note)
        fig.text(0.5, 1 - (MARGIN + (i + 0.75) * LINE_H) / height, line,
                 color=NOTE_COLOR if is_note else "white", ha="center", va="baseline",
                 fontsize=12 if i == 0 or is_note else 10,
                 weight="bold" if i == 0 or is_note else "normal")
    block_w = _block_width(n_columns, colorbar)
    left = (width - len(blocks) * block_w - (len(blocks) - 1) * BLOCK_GAP) / 2
    grid_top = height - MARGIN - len(title_lines) * LINE_H - BLOCK_TITLE_H
    axes = {}
    for b, kind in enumerate(blocks):
        x0 = left + b * (block_w + BLOCK_GAP)
        if kind != "image":
            fig.text((x0 + n_columns * CELL_W / 2) / width, (grid_top + 0.1) / height,
                     f"{kind.capitalize()} heatmap", color="white", ha="center",
                     va="bottom", fontsize=12, weight="bold")
        for r, row in enumerate(hanging):
            for c, view in enumerate(row):
                bottom = grid_top - (r + 1) * (CELL_H + CELL_TITLE_H)
                ax = fig.add_axes([(x0 + c * CELL_W) / width, bottom / height,
                                   CELL_W / width, CELL_H / height])
                _draw_cell(ax, panels.get(view), view, kind, heatmap_max)
                axes[(kind, view)] = ax
        if kind != "image":
            _draw_colorbar(fig, kind, heatmap_max, [
                (x0 + n_columns * CELL_W + CBAR_PAD) / width,
                (grid_top - n_rows * (CELL_H + CELL_TITLE_H)) / height, CBAR_W / width,
                (n_rows * (CELL_H + CELL_TITLE_H) - CELL_TITLE_H) / height])
    return fig, axes


def _draw_colorbar(fig, kind, heatmap_max, rect):
    bar = fig.colorbar(ScalarMappable(Normalize(0, heatmap_max), COLORMAPS[kind]),
                       cax=fig.add_axes(rect))
    bar.set_label(f"{kind} probability (per patch)", color="white")
    bar.ax.tick_params(colors="white")
    bar.outline.set_edgecolor("white")


def _draw_cell(ax, panel, view, kind, heatmap_max):
    ax.set_facecolor("black")
    ax.set_axis_off()
    if panel is None:
        ax.text(0.5, 0.5, f"no {view} image", color="0.6", ha="center", va="center",
                transform=ax.transAxes)
        return
    low, high = panel["gray_range"]
    ax.imshow(panel["image"], cmap="gray", vmin=low, vmax=high, interpolation="antialiased")
    if kind in panel["heatmaps"]:
        ax.imshow(overlay_rgba(panel["heatmaps"][kind], kind, heatmap_max),
                  interpolation="antialiased")
    ax.set_title(f"{view}  {panel['title']}".strip(), color="white", fontsize=9)


def png_bytes(fig):
    """The figure as PNG bytes (exactly figsize x DPI pixels)."""
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    return buffer.getvalue()


# --------------------------------------------------------------------------- title text
def _breast_text(values, fmt):
    """'right: benign x, malignant y   left: ...' for four values in LABELS order."""
    v = dict(zip(LABELS, values))
    return "   ".join(f"{side}: benign {fmt(v[f'{side}_benign'])}, "
                      f"malignant {fmt(v[f'{side}_malignant'])}" for side in ("right", "left"))


def exam_title_lines(index, exam, named_predictions):
    """Title lines of exam ``index``: header, one line per predictions row, labels if known."""
    lines = [f"Exam {index}   (horizontal_flip {exam['horizontal_flip']})"]
    for name, row in named_predictions:
        lines.append(f"{name}:  " + ("no prediction (failed exam)" if np.isnan(row).any()
                                     else _breast_text(row, lambda x: f"{x:.4f}")))
    labels = exam.get("cancer_label")
    if isinstance(labels, dict):
        lines.append("labels (cancer_label):  " + _breast_text(
            [labels.get(label) for label in LABELS],
            lambda x: "-" if x is None else str(int(x))))
    return lines


def read_single_predictions(path):
    """``(name, {"benign", "malignant"})`` pairs from a file of single-image JSON lines.

    Every line that is a JSON object with ``benign`` and ``malignant`` counts (other lines,
    such as stage banners, are ignored); they are named by the file stem, numbered when the
    file holds more than one. Exactly two lines are taken as ``run_single.sh`` prints them
    (SPEC 8): the image-only model, then the image+heatmaps model.
    """
    path = Path(path)
    try:
        found = formats.read_single_prediction_lines(path)
    except InputImageError as err:
        raise EvaluationInputError(str(err)) from err
    if not found:
        raise EvaluationInputError(
            f"{path}: no line of the form {{\"benign\": p, \"malignant\": p}} (the JSON "
            "printed by run_single.sh)")
    if len(found) == 2:
        return list(zip(RUN_SINGLE_MODELS, found))
    return [(path.stem if len(found) == 1 else f"{path.stem} #{i + 1}", value)
            for i, value in enumerate(found)]


RUN_SINGLE_MODELS = ("image-only model", "image+heatmaps model")  # run_single.sh's order


# --------------------------------------------------------------------------- exams
def load_panel(cropped_dir, heatmaps_dir, short_file_path, horizontal_flip, use_hdf5=False,
               max_rows=PANEL_ROWS):
    """Read a cropped image and (if ``heatmaps_dir``) its heatmaps; return its display panel."""
    image_path = formats.image_path(cropped_dir, short_file_path, use_hdf5)
    image = formats.read_image(Path(cropped_dir) / short_file_path, use_hdf5)
    heatmaps = {}
    if heatmaps_dir is not None:
        paths = dict(zip(HEATMAP_KINDS, formats.heatmap_paths(heatmaps_dir, short_file_path)))
        heatmaps = {kind: _read_heatmap(path, image.shape, image_path)
                    for kind, path in paths.items()}
    return prepare_panel(image, heatmaps, horizontal_flip, max_rows, title=short_file_path)


def _read_heatmap(path, shape, image_path):
    heatmap = formats.read_hdf5(path)
    if heatmap.shape != tuple(shape):
        raise InputImageError(f"{path}: heatmap is {heatmap.shape} but its cropped image "
                              f"{image_path} is {tuple(shape)}; were both made from the same "
                              "crop? Re-run stage 3 on these cropped images")
    return heatmap


def render_exam(index, exam, cropped_dir, heatmaps_dir, named_predictions, use_hdf5=False,
                heatmap_max=1.0, note=None):
    """PNG pictures of one exam: ``[(file_name, png_bytes)]``.

    Views listing several images give several pictures: picture k shows the k-th image of
    each view (``exam_<i>.png``, then ``exam_<i>_2.png``, ...).
    """
    count = max(len(exam[view]) for view in VIEWS)
    if count == 0:
        raise InputImageError("the exam lists no images")
    kinds = HEATMAP_KINDS if heatmaps_dir is not None else ()
    lines = exam_title_lines(index, exam, named_predictions) + ([Note(note)] if note else [])
    pictures = []
    for k in range(count):
        panels = {view: load_panel(cropped_dir, heatmaps_dir, exam[view][k],
                                   exam["horizontal_flip"], use_hdf5)
                  if k < len(exam[view]) else None for view in VIEWS}
        fig, _ = draw_figure(panels, HANGING, kinds, lines, heatmap_max)
        pictures.append((f"_{k + 1}" if k else "", png_bytes(fig)))
    return pictures


def visualize_exams(exam_list_path, cropped_dir, output_dir, heatmaps_dir=None,
                    prediction_paths=(), use_hdf5=False, heatmap_max=1.0, overwrite=False,
                    note=None):
    """Write ``exam_<index>.png`` per exam of an exam list into ``output_dir``.

    ``prediction_paths``: predictions CSVs (rows in exam-list order) shown in each title;
    ``note``: an extra title line drawn as a warning (``make demo``: demo weights).
    An exam that cannot be drawn is reported (failure policy) and the others go on; the
    folder is built aside and swapped in whole. Returns the exit status (0, 3 or 1).
    """
    exams = load_exam_list(exam_list_path)
    named = [(Path(p).stem, load_predictions(p, len(exams), f"exam list {exam_list_path}"))
             for p in prediction_paths]
    width = len(str(max(len(exams) - 1, 0)))
    report = FailureReport("visualize")
    with formats.staged_output_dir(output_dir, overwrite=overwrite) as stage:
        for index, exam in enumerate(progress(exams, desc="visualize", unit="exam")):
            rows = [(name, predictions[index]) for name, predictions in named]
            try:
                pictures = render_exam(index, exam, cropped_dir, heatmaps_dir, rows,
                                       use_hdf5, heatmap_max, note)
            except PipelineError as err:
                report.add(f"exam {index} ({exam_names(exam)})", err)
                continue
            for suffix, data in pictures:
                (stage / f"exam_{index:0{width}d}{suffix}.png").write_bytes(data)
    report.write(output_dir)
    return report.exit_code(len(exams))


# --------------------------------------------------------------------------- single image
def single_image_paths(single_output_dir):
    """The ``run_single.sh`` output files (SPEC 8) of a folder, by role."""
    return {role: Path(single_output_dir) / name for role, name in SINGLE_OUTPUT_FILES.items()}


def visualize_single_image(cropped_path, metadata_path, output_path, malignant_path=None,
                           benign_path=None, prediction_paths=(), heatmap_max=1.0,
                           overwrite=False, note=None):
    """Write one PNG of a single cropped image with its heatmaps (``run_single.sh`` outputs).

    Heatmaps are optional (both or none). ``prediction_paths``: files holding the JSON
    lines ``run_single.sh`` prints. The view and ``horizontal_flip`` come from the metadata.
    """
    formats.check_output_file(output_path, overwrite)
    if (malignant_path is None) != (benign_path is None):
        raise EvaluationInputError("give both heatmaps (malignant and benign) or neither")
    meta = load_metadata(metadata_path)
    image = formats.read_image_file(cropped_path)
    heatmaps = {}
    if malignant_path is not None:
        # SPEC 9 quirk: single-image heatmaps are never mirrored, i.e. they are in the
        # stored orientation of the crop, like exam heatmaps; no flip is needed to align.
        heatmaps = {kind: _read_heatmap(path, image.shape, cropped_path)
                    for kind, path in zip(HEATMAP_KINDS, (malignant_path, benign_path))}
    view = meta["full_view"]
    panel = prepare_panel(image, heatmaps, meta["horizontal_flip"], title=cropped_path.name)
    lines = [f"Single image {view}   (horizontal_flip {meta['horizontal_flip']})"]
    for path in prediction_paths:
        for name, value in read_single_predictions(path):
            lines.append(f"{name}:  benign {value['benign']:.4f}, "
                         f"malignant {value['malignant']:.4f}")
    if note:
        lines.append(Note(note))
    fig, _ = draw_figure({view: panel}, ((view,),), HEATMAP_KINDS if heatmaps else (),
                         lines, heatmap_max)
    formats.write_bytes_atomic(output_path, png_bytes(fig))
    return Path(output_path)

