"""Synthetic sample mammograms: a deterministic phantom generator (numpy only).

We cannot ship the original release's sample images, so ``sample_data/`` holds phantoms
made here: four four-view exams named like the original's (``0_L_CC`` ... ``3_R_MLO``).
They are not anatomy and no model output on them means anything; they exist so that every
stage of the pipeline has realistic inputs to chew on:

- single-channel 16-bit PNGs holding 12-bit values rescaled to 16 bits, as the original's
  are (SPEC 10: ``v -> round(v * 65535 / 4095)``), zero background;
- the chest wall at the image edge: left views have the breast at the LEFT edge facing
  right, right views at the RIGHT edge facing left (``horizontal_flip`` ``"NO"``, SPEC 2);
- CC views are half ellipses, MLO views reach the top edge (axilla) and carry a brighter
  pectoral-muscle triangle in the upper chest-wall corner;
- smooth fibroglandular texture, a few bright calcification-like dots and, in the breasts
  the original's labels call positive, a mass-like blob;
- a burned-in marker (a bright block of letter-like pixels, e.g. "L CC") near the top
  corner on the non-chest side, separated from the breast by background, and thin
  artefacts (1-3 pixel lines and specks) in the background. Stage 1's 100 erosions remove
  all of them, and all lie outside the crop window.

Images are (832, 640), a quarter of a 3328 x 2560 detector: the crops of the sample
exams are 670-773 x 455-481 pixels, 28-45 patches each in stage 3 (570 for all 16), so
the whole demo runs in minutes on a 2-core CPU.

Determinism: every draw comes from ``numpy.random.RandomState`` (whose streams numpy keeps
fixed across versions) seeded from ``(seed, exam_index[, view])``, and pixel values are built
from element-wise arithmetic and square roots only (no exp/sin or reductions whose
rounding could vary between builds), so the same seed gives the same pixels everywhere.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import formats
from ..core.errors import ExamListError, InputImageError, OutputExistsError
from ..core.exam_list import load_exam_list, save_exam_list
from ..core.views import VIEWS, is_right, view_angle

IMAGE_SHAPE = (832, 640)  # (H, W): a 3328 x 2560 detector at quarter resolution
MAX_12BIT = 4095
NUM_EXAMS = 4  # the original's sample data: exams 0..3
# Breasts with a mass-like blob, after the original sample exams' labels (seed README):
# exam 1 right malignant, exam 2 left benign, exam 3 all four positive, exam 0 none.
POSITIVE_SIDES = {0: "", 1: "R", 2: "L", 3: "LR"}
EXAM_LIST_NAME = "exam_list_before_cropping.pkl"

# 5 x 7 bitmaps of the letters a marker needs ('#' = ink).
_GLYPHS = {
    "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
    "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
    "C": [".####", "#....", "#....", "#....", "#....", "#....", ".####"],
    "M": ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"],
    "O": [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
    " ": [".....", ".....", ".....", ".....", ".....", ".....", "....."],
}
_GLYPH_SCALE = 3  # each bitmap pixel becomes 3 x 3 image pixels
_MARGIN = 12  # marker distance from the image edges
_CROP_CLEARANCE = 60  # artefacts stay this far outside the breast's bounding box (buffer is 50)


@dataclass(frozen=True)
class Phantom:
    """One synthetic mammogram and where its parts are (all (H, W); masks are bool).

    ``image`` is uint16 (12-bit values rescaled to 16 bits) as stored on disk, so right
    views face left. ``breast`` is the breast (every pixel > 0), ``marker`` the burned-in
    label block and ``artefacts`` the thin lines and specks; everything else is 0.
    """
    image: np.ndarray
    breast: np.ndarray
    marker: np.ndarray
    artefacts: np.ndarray


def scale_12_to_16(values):
    """12-bit integers → 16-bit, ``round(v * 65535 / 4095)`` (SPEC 10), exact integer math.

    ``v * 65535 / 4095 = 16 v + v / 273`` is never halfway between integers, so adding
    2047 before the floor division rounds to nearest.
    """
    values = np.asarray(values, dtype=np.int64)
    return ((values * 65535 + 2047) // MAX_12BIT).astype(np.uint16)


# --------------------------------------------------------------------------- public API
def make_phantom(exam_index, view, seed=0, shape=IMAGE_SHAPE, findings=None):
    """The phantom of ``view`` (e.g. ``"L-MLO"``) in exam ``exam_index``; deterministic.

    The breast's outline comes from the exam (both sides of one exam look alike); texture,
    dots, marker position and artefacts from the image. ``findings`` maps a side (``"L"``,
    ``"R"``) to ``"malignant"`` (the mass-like blob), ``"benign"`` (a smaller, fainter
    round blob) or ``(contrast, (radius low, radius high))`` of a round blob; by default the sample exams' sides of ``POSITIVE_SIDES`` get the mass.
    Returns a :class:`Phantom`.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    exam_rng = np.random.RandomState([seed, exam_index])
    image_rng = np.random.RandomState([seed, exam_index, 1 + VIEWS.index(view)])
    outline = _draw_outline(exam_rng, view_angle(view), shape,
                            jitter=image_rng.uniform(0.97, 1.03))
    if findings is None:
        finding = "malignant" if view[0] in POSITIVE_SIDES.get(exam_index % NUM_EXAMS, "") else None
    else:
        finding = findings.get(view[0])
    values = _breast_values(image_rng, outline, finding)
    breast = outline.inside
    if is_right(view):  # drawn facing right; right views are stored facing left (SPEC 2)
        values, breast = np.fliplr(values), np.fliplr(breast)
    image12 = np.where(breast, values, 0)
    marker = _draw_marker(image12, view, chest_at_left=not is_right(view))
    artefacts = _draw_artefacts(image12, image_rng, breast, marker)
    return Phantom(scale_12_to_16(image12), breast, marker, artefacts)


def sample_exam_list(num_exams=NUM_EXAMS):
    """The exam list of the sample data, in the original's format (SPEC 3)."""
    return [{"horizontal_flip": "NO",
             **{view: [short_file_path(e, view)] for view in VIEWS}} for e in range(num_exams)]


def short_file_path(exam_index, view):
    """``0_L_CC`` style names, as in the original's sample data."""
    return f"{exam_index}_{view.replace('-', '_')}"


def write_sample_data(output_dir, seed=0, num_exams=NUM_EXAMS, overwrite=False,
                      progress_bar=None):
    """Write ``images/<name>.png`` and ``exam_list_before_cropping.pkl`` under ``output_dir``.

    A file that already holds exactly what would be written is left alone, so running this
    twice is cheap; a file with other content is refused unless ``overwrite``. Returns
    ``(written, unchanged)``, lists of paths.
    """
    output_dir = Path(output_dir)
    exam_list = sample_exam_list(num_exams)
    jobs = [(e, view) for e in range(num_exams) for view in VIEWS]
    written, unchanged = [], []
    for exam_index, view in (progress_bar(jobs) if progress_bar else jobs):
        path = output_dir / "images" / f"{short_file_path(exam_index, view)}.png"
        image = make_phantom(exam_index, view, seed).image
        if _same_png(path, image):
            unchanged.append(path)
            continue
        _check_replace(path, overwrite)
        formats.write_png(path, image)
        written.append(path)
    list_path = output_dir / EXAM_LIST_NAME
    if _same_exam_list(list_path, exam_list):
        unchanged.append(list_path)
    else:
        _check_replace(list_path, overwrite)
        save_exam_list(exam_list, list_path)
        written.append(list_path)
    return written, unchanged


# A labelled cohort cycles through four kinds of exam (side -> finding), so that any four
# consecutive exams hold every label: none; right malignant; left malignant and right
# benign; left benign.
COHORT_FINDINGS = ({}, {"R": "malignant"}, {"L": "malignant", "R": "benign"}, {"L": "benign"})
COHORT_LIST_NAME = "exam_list.pkl"
# The cohort's findings are larger than the sample data's: a malignant breast carries a
# saturated blob of about a fifth of the breast's depth, a benign one a small faint blob.
COHORT_BLOBS = {"malignant": (2500.0, (100.0, 130.0)), "benign": (600.0, (20.0, 30.0))}


def labelled_cohort(num_exams, exams_per_patient=2):
    """``(exam list, findings)`` of a synthetic labelled cohort of ``num_exams`` exams.

    Each exam carries ``cancer_label`` (the metarepository's four 0/1 keys) and a
    ``patient_id`` (``exams_per_patient`` consecutive exams per patient); ``findings[e]``
    maps a side to the finding planted there (see :data:`COHORT_FINDINGS`).
    """
    exams, findings = [], []
    for e in range(num_exams):
        found = COHORT_FINDINGS[e % len(COHORT_FINDINGS)]
        exam = {"horizontal_flip": "NO",
                **{view: [f"c{short_file_path(e, view)}"] for view in VIEWS}}
        exam["cancer_label"] = {f"{side}_{kind}": int(found.get(side[0].upper()) == kind)
                                for kind in ("benign", "malignant") for side in ("left", "right")}
        exam["patient_id"] = f"P{e // exams_per_patient:04d}"
        exams.append(exam)
        findings.append(found)
    return exams, findings


def write_labelled_cohort(output_dir, num_exams, seed=0, shape=IMAGE_SHAPE,
                          exams_per_patient=2, upscale=1):
    """Write a labelled cohort: ``images/c<e>_<side>_<view>.png`` and ``exam_list.pkl``.

    Breasts labelled malignant or benign carry a planted finding the negatives lack, so a
    model can learn the labels from the pixels. ``upscale`` repeats each pixel (4: a
    full-size 3328 x 2560 detector, whose crops fill the model's input window as real
    mammograms do, at the cost of drawing quarter-size phantoms only). Returns the exam
    list's path.
    """
    output_dir = Path(output_dir)
    exams, findings = labelled_cohort(num_exams, exams_per_patient)
    for e, (exam, found) in enumerate(zip(exams, findings)):
        for view in VIEWS:
            blobs = {side: COHORT_BLOBS[kind] for side, kind in found.items()}
            image = make_phantom(e, view, seed, shape, findings=blobs).image
            if upscale > 1:
                image = np.kron(image, np.ones((upscale, upscale), dtype=image.dtype))
            formats.write_png(output_dir / "images" / f"{exam[view][0]}.png", image)
    path = output_dir / COHORT_LIST_NAME
    save_exam_list(exams, path)
    return path


def _same_png(path, image):
    if not path.is_file():
        return False
    try:
        return np.array_equal(formats.read_mammogram_png(path), image)
    except InputImageError:
        return False


def _same_exam_list(path, exam_list):
    if not path.is_file():
        return False
    try:
        return load_exam_list(path) == exam_list
    except ExamListError:
        return False


def _check_replace(path, overwrite):
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path}: exists and differs from the phantom this command makes; remove it or "
            "pass --overwrite to replace it")


# --------------------------------------------------------------------------- outline
@dataclass(frozen=True)
class _Outline:
    """A breast drawn facing right (chest wall at column 0), in float64 pixel geometry."""
    inside: np.ndarray  # (H, W) bool
    skin_x: np.ndarray  # (H, 1): the skin line's column in each row (0 where no breast)
    depth: float  # column of the nipple
    nipple_y: float
    muscle: np.ndarray  # (H, W) bool, pectoral muscle (empty for CC)


def _grid(shape):
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    return rows, cols


def _draw_outline(rng, angle, shape, jitter=1.0):
    """The breast outline for ``angle`` ('CC' or 'MLO'), drawn facing right.

    ``rng`` is the exam's generator (both sides of an exam share its draws); ``jitter``
    scales the depth so that the two sides are not exact mirror images.
    """
    height, width = shape
    rows, cols = _grid(shape)
    depth = width * rng.uniform(0.64, 0.70) * jitter
    if angle == "CC":
        center = height * rng.uniform(0.47, 0.51)
        half_top, half_bottom = height * rng.uniform(0.35, 0.38), height * rng.uniform(0.35, 0.38)
        half = np.where(rows < center, half_top, half_bottom)
        t = (rows - center) / half
        skin_x = depth * np.sqrt(np.clip(1.0 - t * t, 0.0, None))
        muscle = np.zeros(shape, dtype=bool)
        nipple_y = center
    else:
        top_x = width * rng.uniform(0.40, 0.46)  # axillary tail at the top edge
        nipple_y = height * rng.uniform(0.52, 0.57)
        fold_y = height * rng.uniform(0.86, 0.88)  # inframammary fold
        upper = (nipple_y - rows) / nipple_y
        lower = (rows - nipple_y) / (fold_y - nipple_y)
        skin_x = np.where(
            rows < nipple_y,
            top_x + (depth - top_x) * np.sqrt(np.clip(1.0 - upper * upper, 0.0, None)),
            depth * np.sqrt(np.clip(1.0 - lower * lower, 0.0, None)))
        muscle_top = width * rng.uniform(0.27, 0.32)
        muscle_height = height * rng.uniform(0.45, 0.55)
        s = rows / muscle_height
        bulge = width * rng.uniform(0.02, 0.05) * s * (1.0 - s)
        muscle = cols < np.clip(muscle_top * (1.0 - s) + bulge, 0.0, None)
    inside = cols < skin_x
    return _Outline(inside, skin_x, depth, nipple_y, muscle & inside)


# --------------------------------------------------------------------------- pixel values
def _box_sum(a, radius):
    """Sum over the (2r+1)^2 box around each pixel, edges reflected; exact on integers."""
    k = 2 * radius + 1
    padded = np.pad(a, radius, mode="reflect")
    c = np.pad(np.cumsum(np.cumsum(padded, axis=0), axis=1), ((1, 0), (1, 0)))
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def _smooth_field(rng, shape, radius, passes):
    """Blurred uniform noise rescaled to [0, 1] (integer box blurs: bit-exact everywhere)."""
    field = rng.randint(0, 256, size=shape).astype(np.int64)
    for _ in range(passes):
        field = _box_sum(field, radius)
    field = field.astype(np.float64)
    low, high = field.min(), field.max()
    return (field - low) / max(high - low, 1.0)


def _bump(rows, cols, y, x, radius):
    """(1 - r^2/R^2)^2 inside the disc of radius R around (y, x), 0 outside."""
    r2 = ((rows - y) ** 2 + (cols - x) ** 2) / (radius * radius)
    inner = np.clip(1.0 - r2, 0.0, None)
    return inner * inner


def _breast_values(rng, outline, finding):
    """12-bit values (float64, (H, W)) of the breast, meaningful only inside the outline."""
    shape = outline.inside.shape
    rows, cols = _grid(shape)
    coarse = _smooth_field(rng, shape, radius=14, passes=3)
    fine = _smooth_field(rng, shape, radius=3, passes=2)
    # Tissue thins towards the skin line: a 60-pixel ramp, and a gentle chest-wall gradient.
    ramp = np.clip((outline.skin_x - cols) / 60.0, 0.0, 1.0)
    values = 650.0 + 450.0 * ramp + 250.0 * (1.0 - cols / shape[1])
    # Fibroglandular tissue behind the nipple, patchy.
    gy = (rows - outline.nipple_y) / (0.42 * shape[0])
    gx = (cols - 0.42 * outline.depth) / (0.48 * outline.depth)
    gland = np.clip(1.0 - gx * gx - gy * gy, 0.0, 1.0) * ramp
    values += 1400.0 * gland * np.clip((coarse - 0.35) / 0.35, 0.0, 1.0) + 220.0 * fine
    if outline.muscle.any():
        values = np.where(outline.muscle, 2250.0 + 250.0 * fine + 200.0 * ramp, values)
    values += _spots(rng, rows, cols, outline, finding)
    values += rng.randint(-10, 11, size=shape)  # quantum-like noise
    return np.clip(np.round(values), 40, MAX_12BIT).astype(np.int64)


# Planted findings: (peak 12-bit contrast, radius range in pixels at the phantom's scale).
FINDINGS = {"malignant": (900.0, (28.0, 42.0)), "benign": (500.0, (12.0, 18.0))}


def _spots(rng, rows, cols, outline, finding):
    """Calcification-like dots, and a round blob for a ``finding`` (see ``FINDINGS``)."""
    spots = np.zeros(outline.inside.shape)
    for _ in range(rng.randint(3, 7)):
        y = outline.nipple_y + rng.uniform(-0.22, 0.22) * outline.inside.shape[0]
        x = outline.depth * rng.uniform(0.2, 0.7)
        spots += 1800.0 * _bump(rows, cols, y, x, rng.uniform(2.0, 4.0))
    if finding is not None:
        if isinstance(finding, str) and finding not in FINDINGS:
            raise ValueError(f"finding must be one of {', '.join(FINDINGS)} or (contrast, "
                             f"(radius low, radius high)), got {finding!r}")
        contrast, (low, high) = FINDINGS[finding] if isinstance(finding, str) else finding
        y = outline.nipple_y + rng.uniform(-0.12, 0.12) * outline.inside.shape[0]
        x = outline.depth * rng.uniform(0.35, 0.6)
        spots += contrast * _bump(rows, cols, y, x, rng.uniform(low, high))
    return spots * outline.inside


# --------------------------------------------------------------------------- marker, artefacts
def _marker_bitmap(text):
    """The text as a (7*s + 2*pad, ...) int array: 2 on ink, 1 on the block behind it."""
    pad = 2 * _GLYPH_SCALE
    glyphs = [np.array([[c == "#" for c in row] for row in _GLYPHS[ch]]) for ch in text]
    spacer = np.zeros((7, 1), dtype=bool)
    ink = np.hstack([part for g in glyphs for part in (g, spacer)][:-1])
    ink = np.kron(ink, np.ones((_GLYPH_SCALE, _GLYPH_SCALE), dtype=bool))
    block = np.ones((ink.shape[0] + 2 * pad, ink.shape[1] + 2 * pad), dtype=np.int64)
    block[pad:-pad, pad:-pad] += ink
    return block


def _draw_marker(image12, view, chest_at_left):
    """Burn a label (e.g. "R MLO") into the top corner away from the chest wall, in place."""
    block = _marker_bitmap(view.replace("-", " "))
    h, w = block.shape
    width = image12.shape[1]
    left = width - _MARGIN - w if chest_at_left else _MARGIN
    region = (slice(_MARGIN, _MARGIN + h), slice(left, left + w))
    image12[region] = np.where(block == 2, MAX_12BIT, 1500)
    marker = np.zeros(image12.shape, dtype=bool)
    marker[region] = True
    return marker


def _draw_artefacts(image12, rng, breast, marker):
    """Thin lines and specks in the background, outside any possible crop window, in place.

    A 2-pixel line along the bottom edge, a 1-pixel line along the non-chest edge and a
    handful of 1-3 pixel specks, all at least ``_CROP_CLEARANCE`` pixels outside the
    breast's bounding box (the crop window lies inside that box plus a 50-pixel buffer)
    and clear of the marker.
    """
    height, width = image12.shape
    free = ~_expanded_box(breast, _CROP_CLEARANCE) & ~_expanded_box(marker, 4)
    artefacts = np.zeros(image12.shape, dtype=bool)
    artefacts[height - 6:height - 4, width // 6:width - width // 6] = True  # 2-px line
    chest_at_left = bool(breast[:, 0].any())
    edge_x = width - 4 if chest_at_left else 3  # the side away from the chest wall
    artefacts[height // 3:height - height // 5, edge_x] = True  # 1-px line
    specks = rng.randint(5, 10)
    for _ in range(200):  # rejection sampling, a fixed number of draws
        size = rng.randint(1, 4)
        y, x = rng.randint(0, height - size), rng.randint(0, width - size)
        if specks and free[y:y + size, x:x + size].all():
            artefacts[y:y + size, x:x + size] = True
            specks -= 1
    artefacts &= free
    image12[artefacts] = rng.randint(1800, MAX_12BIT + 1, size=int(artefacts.sum()))
    return artefacts


def _expanded_box(mask, margin):
    """The bounding box of ``mask`` grown by ``margin`` pixels, as a bool (H, W) mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = np.zeros(mask.shape, dtype=bool)
    box[max(rows[0] - margin, 0):rows[-1] + margin + 1,
        max(cols[0] - margin, 0):cols[-1] + margin + 1] = True
    return box
