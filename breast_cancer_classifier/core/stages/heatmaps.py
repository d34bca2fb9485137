"""Stage 3: patch-classifier heatmaps (SPEC sections 6 and 9).

Each cropped image, turned to face right and standardized, is cut into 256 x 256 patches on
a grid whose strides come from one ``random.Random(seed)`` stream (rows list, then columns
list, image after image in exam / VIEWS / list order). The patch classifier's softmax
column 0 (malignant) and 1 (benign) are averaged over every pixel's covering patches, and
the two maps are mirrored back to the stored orientation and saved.

Memory stays bounded: patches are cut and classified one batch at a time, as a stream over
the images of an exam (a batch may span images, never exams, as in the reference), so at
most one batch of patches, the batch's activations and the images in progress are held.

Failure policy (README, "Failures and exit codes"): an image that cannot be read or is
smaller than 256 pixels on a side fails alone and is reported. The stride stream stays in
step for the images after it:

* a missing or unreadable image draws the strides that its shape would have drawn, taking
  the shape from the exam list's ``window_location`` (its crop box), so later images get
  exactly the strides of a run in which it was readable; without ``window_location`` the
  shape is unknown, nothing is drawn and a warning says later strides may differ;
* an image smaller than 256 pixels on a side draws nothing (the reference cannot patch
  it either: it stops the whole run there).
"""

import itertools
import random
from contextlib import closing
from pathlib import Path

import numpy as np

from .. import formats
from ..errors import InputImageError
from ..exam_list import iter_images, load_exam_list
from ..failures import FailureReport
from ..prefetch import prefetch
from ..patch_runtime import load_patch_runtime
from ..runtime import log, progress
from ..standardize import standardize_in_place
from ..views import VIEWS, flip_for_model

PATCH_SIZE = 256  # SPEC 6
STRIDE = 70  # SPEC 6: fixed stride (the reference's "more_patches" = 5 is then unused)
MALIGNANT_COLUMN, BENIGN_COLUMN = 0, 1  # SPEC 6 step 4: softmax columns used
DEFAULT_BATCH_SIZE, DEFAULT_SEED = 100, 0
STAGE = "heatmaps"


# --------------------------------------------------------------------------- patch grid
def stride_list(length, rng):
    """Strides between consecutive patch starts along an axis of ``length`` (SPEC 6 step 2).

    ``length`` must be >= 256. Draws from ``rng`` (``random.Random``) only when the patches
    do not tile the axis exactly. ``m`` strides give ``m + 1`` starts; the last patch ends
    at ``length``.
    """
    n = (length - PATCH_SIZE) // STRIDE + 1
    left = (length - PATCH_SIZE) % STRIDE
    if left == 0:
        return [STRIDE] * (n - 1)
    overlap = STRIDE - left
    average = STRIDE - overlap // n
    strides = [average] * n
    for position in rng.sample(range(n), overlap % n):
        strides[position] = average - 1
    return strides


def draw_strides(shape, rng):
    """(row strides, column strides) of an (H, W) image: rows drawn first, then columns."""
    row_strides = stride_list(shape[0], rng)
    column_strides = stride_list(shape[1], rng)
    return row_strides, column_strides


def patch_starts(strides):
    """Patch start offsets ``[0, s0, s0 + s1, ...]`` for a stride list."""
    return list(itertools.accumulate(strides, initial=0))


def check_patchable(shape, name):
    if min(shape) < PATCH_SIZE:
        raise InputImageError(f"{name}: image is {tuple(shape)}; {PATCH_SIZE}x{PATCH_SIZE} "
                              f"patches need both sides >= {PATCH_SIZE}")


# --------------------------------------------------------------------------- one image
def standardize(image):
    """float64 copy of ``image`` minus its mean, divided by max(population std, 1e-5)."""
    return standardize_in_place(np.array(image, dtype=np.float64))


def prepare_image(raw, view, horizontal_flip):
    """Stored (H, W) image → standardized float64 (H, W) image facing right (SPEC 6 step 1)."""
    return standardize(flip_for_model(raw.astype(np.float32), view, horizontal_flip))


class _ImageHeatmaps:
    """The patches of one prepared image and the float32 sums of their probabilities.

    Patch ``i`` is the ``i``-th of the column-major grid (columns outer, rows inner, SPEC 6
    step 3). Probabilities must be added in patch order (float32 sums depend on it).
    """

    def __init__(self, name, image, row_strides, column_strides, view=None,
                 horizontal_flip=None):
        self.name, self.image = name, image
        self.view, self.horizontal_flip = view, horizontal_flip  # to mirror the maps back
        self.row_starts = patch_starts(row_strides)
        self.column_starts = patch_starts(column_strides)
        self.num_patches = len(self.row_starts) * len(self.column_starts)
        self.sums = np.zeros((2,) + image.shape, dtype=np.float32)  # malignant, benign
        self.added = 0

    def position(self, index):
        column, row = divmod(index, len(self.row_starts))
        return self.row_starts[row], self.column_starts[column]

    def patch(self, index):
        """(256, 256) float64 view of patch ``index``."""
        r, c = self.position(index)
        return self.image[r:r + PATCH_SIZE, c:c + PATCH_SIZE]

    def add(self, index, probabilities):
        """Add patch ``index``'s (malignant, benign) float32 probabilities over its area."""
        if index != self.added:
            raise RuntimeError(f"{self.name}: patch {index} added out of order")
        r, c = self.position(index)
        window = (slice(None), slice(r, r + PATCH_SIZE), slice(c, c + PATCH_SIZE))
        self.sums[window] += probabilities[:, None, None]
        self.added += 1

    @property
    def complete(self):
        return self.added == self.num_patches

    def heatmaps(self):
        """(malignant, benign) float32 (H, W) maps in the model's orientation."""
        counts = np.zeros(self.image.shape, dtype=np.float32)
        for c in self.column_starts:
            for r in self.row_starts:
                counts[r:r + PATCH_SIZE, c:c + PATCH_SIZE] += 1
        return self.sums[0] / counts, self.sums[1] / counts


# --------------------------------------------------------------------------- the stream
def run_patch_stream(classify, images, batch_size, on_done=None, bar=None):
    """Classify the patches of ``images`` (an iterable of _ImageHeatmaps) in batches.

    ``classify`` is a patch runtime (``patch_runtime``): an (N, 256, 256, 3) float32 batch
    in, (N, 4) float32 softmax probabilities out.

    Images are taken from the iterable only when the stream reaches them; consecutive
    batches may span images. ``on_done(item)`` is called as soon as an image is complete.
    A constant patch (all background, about one in eight of a real CC crop) goes through
    the model once per value: its copies get the same probabilities, as they would from
    the model, whose result for a patch does not depend on the rest of its batch.
    """
    stream = ((item, index) for item in images for index in range(item.num_patches))
    buffer = np.empty((batch_size, PATCH_SIZE, PATCH_SIZE, 3), dtype=np.float32)
    constant_outputs = {}  # patch value -> probabilities, for constant patches
    while True:
        batch = list(itertools.islice(stream, batch_size))
        if not batch:
            return
        sources, pending, used = [], {}, 0
        for item, index in batch:
            patch = item.patch(index)
            value = _constant_value(patch)
            if value is not None and (value in constant_outputs or value in pending):
                sources.append(value)  # filled in from the first patch of that value
                continue
            buffer[used] = patch[:, :, None]  # float64 -> float32, 3 channels
            if value is not None:
                pending[value] = used
            sources.append(used)
            used += 1
        probabilities = classify(buffer[:used]) if used else None
        constant_outputs.update({v: probabilities[slot] for v, slot in pending.items()})
        for (item, index), source in zip(batch, sources):
            p = probabilities[source] if isinstance(source, int) else constant_outputs[source]
            item.add(index, p[[MALIGNANT_COLUMN, BENIGN_COLUMN]])
            if item.complete and on_done is not None:
                on_done(item)
        if bar is not None:
            bar.update(len(batch))


def _constant_value(patch):
    """The patch's single value (a float) if every pixel holds it, else None."""
    first = float(patch[0, 0])
    return first if (patch == first).all() else None


def compute_heatmaps(classify, image, row_strides, column_strides, batch_size, name="image"):
    """(malignant, benign) float32 heatmaps of one prepared (H, W) float64 image."""
    item = _ImageHeatmaps(name, image, row_strides, column_strides)
    run_patch_stream(classify, [item], batch_size)
    return item.heatmaps()


# --------------------------------------------------------------------------- exam lists
def _crop_shape(exam, view, list_index):
    """(H, W) of a cropped image from the exam list's ``window_location``, or None."""
    try:
        top, bottom, left, right = exam["window_location"][view][list_index]
        return int(bottom) - int(top), int(right) - int(left)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _draw_for_failed_image(exam, view, list_index, name, rng):
    """Keep the stride stream in step for an image that could not be read (module docstring)."""
    shape = _crop_shape(exam, view, list_index)
    if shape is None:
        log.warning("%s: %s: its size is unknown (no window_location in the exam list), so its "
                    "stride draws are skipped; the strides of later images may differ from a "
                    "run in which it was readable", STAGE, name)
    elif min(shape) >= PATCH_SIZE:
        draw_strides(shape, rng)


def _prepared_images(exam, image_dir, use_hdf5, rng, report, bar):
    """Yield an _ImageHeatmaps per readable image of an exam, drawing strides in order."""
    for view in VIEWS:
        for list_index, name in enumerate(exam[view]):
            path = formats.image_path(image_dir, name, use_hdf5)
            try:
                raw = formats.read_image(Path(image_dir) / name, use_hdf5)
            except InputImageError as err:
                report.add(name, err)
                _draw_for_failed_image(exam, view, list_index, name, rng)
                bar.update()
                continue
            try:
                check_patchable(raw.shape, path)
            except InputImageError as err:
                report.add(name, err)
                bar.update()
                continue
            row_strides, column_strides = draw_strides(raw.shape, rng)
            image = prepare_image(raw, view, exam["horizontal_flip"])
            yield _ImageHeatmaps(name, image, row_strides, column_strides,
                                 view, exam["horizontal_flip"])


def produce_heatmaps(exam_list, image_dir, output_dir, classify, *,
                     batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED, use_hdf5=False,
                     report=None, read_ahead=0):
    """Write both heatmaps of every image of ``exam_list`` under ``output_dir``.

    Files: ``output_dir/heatmap_malignant/<short_file_path>.hdf5`` and ``heatmap_benign/``
    (SPEC 3), mirrored back to the stored orientation. Failed images are added to
    ``report`` (a FailureReport). ``read_ahead`` images of an exam are read and prepared
    in a background thread while the model runs (the runtime's ``read_ahead``: 1 on a
    GPU, 0 on the CPU, whose cores the model already uses); the maps do not depend on it.
    Returns the number of images attempted.
    """
    report = report if report is not None else FailureReport(STAGE)
    rng = random.Random(seed)
    total = sum(1 for _ in iter_images(exam_list))
    image_bar = progress(total=total, desc="heatmaps", unit="image")

    def save(item):
        malignant, benign = item.heatmaps()
        malignant_path, benign_path = formats.heatmap_paths(output_dir, item.name)
        formats.write_hdf5(malignant_path, flip_for_model(malignant, item.view, item.horizontal_flip))
        formats.write_hdf5(benign_path, flip_for_model(benign, item.view, item.horizontal_flip))
        item.image = item.sums = None  # release the image before the stream moves on
        image_bar.update()

    for exam_index, exam in enumerate(exam_list):
        images = prefetch(_prepared_images(exam, image_dir, use_hdf5, rng, report, image_bar),
                          read_ahead)
        with progress(desc=f"exam {exam_index} patches", unit="patch", leave=False) as bar, \
                closing(images):
            run_patch_stream(classify, _counted(images, bar), batch_size, save, bar)
    image_bar.close()
    return total


def _counted(items, bar):
    """Pass items through, adding each one's patches to the progress bar's total."""
    for item in items:
        bar.total = (bar.total or 0) + item.num_patches
        bar.refresh()
        yield item


def run_producer(model_path, data_path, image_path, output_heatmap_path, *,
                 batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED, device_type="cpu",
                 gpu_number=0, use_hdf5=False, overwrite=False, trust_checkpoint=False,
                 runtime="auto", precision="fp32"):
    """The ``run_producer.py`` command: heatmaps of an exam list into a fresh folder.

    The folder is built in a staging folder and moved into place when the run ends, so it
    never mixes two runs. Returns the exit status (0, 3 or 1, see ``failures``).
    """
    exam_list = load_exam_list(data_path)
    report = FailureReport(STAGE)
    with formats.staged_output_dir(output_heatmap_path, overwrite) as stage_dir:
        classify = load_patch_runtime(model_path, device_type, gpu_number, trust_checkpoint,
                                      runtime, precision)
        total = produce_heatmaps(exam_list, image_path, stage_dir, classify,
                                 batch_size=batch_size, seed=seed, use_hdf5=use_hdf5,
                                 report=report, read_ahead=classify.read_ahead)
    report.write(output_heatmap_path)
    return report.exit_code(total)


# --------------------------------------------------------------------------- single image
def produce_single_heatmaps(classify, cropped_mammogram_path, metadata, *,
                            batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED,
                            proper_mirroring=False):
    """(malignant, benign) heatmaps of one cropped image, in its stored orientation.

    By default this reproduces the reference's single-image quirk (SPEC 9): the image is
    oriented with the short ``view`` (``CC``/``MLO``), which never mirrors, so right-side
    images are patched facing left and their heatmaps are not mirrored back.
    ``proper_mirroring`` orients with ``full_view`` instead, as the exam path does.
    """
    raw = formats.read_image_file(cropped_mammogram_path)
    check_patchable(raw.shape, cropped_mammogram_path)
    view = metadata["full_view"] if proper_mirroring else metadata["view"]
    horizontal_flip = metadata["horizontal_flip"]
    row_strides, column_strides = draw_strides(raw.shape, random.Random(seed))
    image = prepare_image(raw, view, horizontal_flip)
    maps = compute_heatmaps(classify, image, row_strides, column_strides, batch_size,
                            name=str(cropped_mammogram_path))
    return tuple(flip_for_model(m, view, horizontal_flip) for m in maps)


def run_producer_single(model_path, cropped_mammogram_path, metadata_path,
                        heatmap_path_malignant, heatmap_path_benign, *,
                        batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED, device_type="cpu",
                        gpu_number=0, proper_mirroring=False, overwrite=False,
                        trust_checkpoint=False, runtime="auto", precision="fp32",
                        load_classify=None):
    """The ``run_producer_single.py`` command. Returns exit status 0 (errors raise).

    ``load_classify(model_path, device_type, gpu_number, trust)`` replaces the PyTorch patch
    runtime by another one (the TF port's), after the same checks."""
    from ..exam_list import load_metadata

    metadata = load_metadata(metadata_path)
    for path in (heatmap_path_malignant, heatmap_path_benign):
        formats.check_output_file(path, overwrite)
    if load_classify is None:
        classify = load_patch_runtime(model_path, device_type, gpu_number, trust_checkpoint,
                                      runtime, precision)
    else:
        classify = load_classify(model_path, device_type, gpu_number, trust_checkpoint)
    malignant, benign = produce_single_heatmaps(
        classify, cropped_mammogram_path, metadata, batch_size=batch_size, seed=seed,
        proper_mirroring=proper_mirroring)
    formats.write_hdf5(heatmap_path_malignant, malignant)
    formats.write_hdf5(heatmap_path_benign, benign)
    return 0
