"""Stage 3: patch-classifier heatmaps (SPEC sections 6 and 9), the pieces every path shares.

Each cropped image, turned to face right and standardized, is cut into 256 x 256 patches on
a grid whose strides are drawn from the run's stride stream (``plan.StrideStream``: rows
list, then columns list, image after image in exam / VIEWS / list order). The patch
classifier's softmax column 0 (malignant) and 1 (benign) are averaged over every pixel's
covering patches, and the two maps are mirrored back to the stored orientation and saved.

The work flows as a stream, the seam a batching scheduler plugs into:

* a :class:`HeatmapJob` per image (prepared image, grid, orientation: :func:`heatmap_job`);
* :func:`patch_batches` cuts the jobs' patches, in order, into batches that may cross
  image boundaries (and exam boundaries, if the jobs of several exams are chained);
* a patch runtime (``patch_runtime``) classifies each batch (:func:`classify_batch`);
* :class:`HeatmapSums` adds the probabilities into per-image sums in patch order and hands
  back each image as soon as its last patch is in.

Memory stays bounded: at most one batch of patches, its activations and the images in
progress are held. The stage script, ``bcc run``'s engine and the single-image path all run
:func:`run_patch_stream` and write with :func:`write_heatmaps`.
"""

import itertools
from dataclasses import dataclass, field

import numpy as np

from .. import formats
from ..errors import InputImageError
from ..standardize import standardize_in_place
from ..views import flip_for_model

PATCH_SIZE = 256  # SPEC 6
STRIDE = 70  # SPEC 6: fixed stride (the reference's "more_patches" = 5 is then unused)
MALIGNANT_COLUMN, BENIGN_COLUMN = 0, 1  # SPEC 6 step 4: softmax columns used
DEFAULT_BATCH_SIZE, DEFAULT_SEED = 100, 0
STAGE = "heatmaps"


# --------------------------------------------------------------------------- patch grid
def stride_list(length, rng):
    """Strides between consecutive patch starts along an axis of ``length`` (SPEC 6 step 2).

    ``length`` must be >= 256. Draws from ``rng`` (a ``random.Random``) only when the
    patches do not tile the axis exactly. ``m`` strides give ``m + 1`` starts; the last
    patch ends at ``length``.
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


class PatchGrid:
    """The patches of one image: patch ``i`` is the ``i``-th of the column-major grid
    (columns outer, rows inner, SPEC 6 step 3)."""

    def __init__(self, row_strides, column_strides):
        self.row_starts = patch_starts(row_strides)
        self.column_starts = patch_starts(column_strides)
        self.num_patches = len(self.row_starts) * len(self.column_starts)

    def position(self, index):
        """(row, column) of patch ``index``'s top-left pixel."""
        column, row = divmod(index, len(self.row_starts))
        return self.row_starts[row], self.column_starts[column]

    def window(self, index):
        """(rows, columns) slices of patch ``index``."""
        r, c = self.position(index)
        return slice(r, r + PATCH_SIZE), slice(c, c + PATCH_SIZE)

    def coverage(self, shape):
        """(H, W) float32: how many patches cover each pixel."""
        counts = np.zeros(shape, dtype=np.float32)
        for c in self.column_starts:
            for r in self.row_starts:
                counts[r:r + PATCH_SIZE, c:c + PATCH_SIZE] += 1
        return counts


# --------------------------------------------------------------------------- one image
def standardize(image):
    """float64 copy of ``image`` minus its mean, divided by max(population std, 1e-5)."""
    return standardize_in_place(np.array(image, dtype=np.float64))


def prepare_image(raw, view, horizontal_flip):
    """Stored (H, W) image → standardized float64 (H, W) image facing right (SPEC 6 step 1)."""
    return standardize(flip_for_model(raw.astype(np.float32), view, horizontal_flip))


@dataclass(eq=False)
class HeatmapJob:
    """One image's stage-3 work: its prepared (H, W) float64 image and patch grid, and the
    ``view`` / ``horizontal_flip`` that turned it (to mirror the maps back)."""

    name: str
    image: np.ndarray
    grid: PatchGrid
    view: str
    horizontal_flip: str

    @property
    def shape(self):
        return self.image.shape

    def patch(self, index):
        """(256, 256) float64 view of patch ``index``."""
        return self.image[self.grid.window(index)]

    def stored(self, maps):
        """Maps in the model's orientation → the stored orientation (a view, no copy)."""
        return tuple(flip_for_model(m, self.view, self.horizontal_flip) for m in maps)


def heatmap_job(raw, image_plan, horizontal_flip, path):
    """The :class:`HeatmapJob` of a stored (H, W) image and its plan entry (``plan.ImagePlan``:
    name, view, strides). Raises :class:`InputImageError` naming ``path`` for an image with
    a side under 256 pixels."""
    check_patchable(raw.shape, path)
    return HeatmapJob(image_plan.name, prepare_image(raw, image_plan.view, horizontal_flip),
                      PatchGrid(image_plan.row_strides, image_plan.column_strides),
                      image_plan.view, horizontal_flip)


# --------------------------------------------------------------------------- the stream
@dataclass
class PatchBatch:
    """Patches cut in job order: ``patches`` (N, 256, 256, 3) float32, and ``spans`` =
    ``[(job, first patch index, count), ...]`` saying whose patches they are, in order."""

    patches: np.ndarray
    spans: list = field(default_factory=list)


def patch_batches(jobs, batch_size):
    """Yield :class:`PatchBatch` es of ``batch_size`` patches (the last may be shorter).

    Jobs are taken from the iterable only when the batches reach them, so an image is read
    and prepared just before its patches are needed. A batch spans every job boundary that
    falls inside it: the stage script and the engine pass one exam's jobs at a time (as the
    reference does), a scheduler may chain several exams'.
    """
    batch, used = _empty_batch(batch_size), 0
    for job in jobs:
        index = 0
        while index < job.grid.num_patches:
            count = min(batch_size - used, job.grid.num_patches - index)
            for offset in range(count):
                batch.patches[used + offset] = job.patch(index + offset)[:, :, None]
            batch.spans.append((job, index, count))
            used, index = used + count, index + count
            if used == batch_size:
                yield batch
                batch, used = _empty_batch(batch_size), 0
    if used:
        yield PatchBatch(batch.patches[:used], batch.spans)


def _empty_batch(batch_size):
    return PatchBatch(np.empty((batch_size, PATCH_SIZE, PATCH_SIZE, 3), dtype=np.float32))


def classify_batch(classify, patches, constants):
    """(N, 4) float32 probabilities of ``patches`` from the patch runtime ``classify``.

    A constant patch (all background: about one in eight of a real CC crop) goes through the
    model once per value: ``constants`` (value → probabilities, kept for one stream) serves
    its copies, as the model would, whose result for a patch does not depend on the rest
    of its batch. The model sees the other patches in batch order; they are moved to the
    front of ``patches`` in place (a copy would hold a second batch: 79 MB at 100 patches).
    """
    sources, unique, pending = [], [], {}
    for i, patch in enumerate(patches):
        value = _constant_value(patch)
        if value is not None and (value in constants or value in pending):
            sources.append(value)
            continue
        if value is not None:
            pending[value] = len(unique)
        sources.append(len(unique))
        unique.append(i)
    every = len(unique) == len(patches)
    for slot, index in enumerate(unique):  # slot <= index: no patch is overwritten unread
        if slot != index:
            patches[slot] = patches[index]
    outputs = classify(patches[:len(unique)]) if unique else None
    constants.update({value: outputs[slot] for value, slot in pending.items()})
    if every:
        return outputs
    return np.stack([constants[s] if isinstance(s, float) else outputs[s] for s in sources])


def _constant_value(patch):
    """The patch's single value (a float) if every pixel holds it, else None."""
    first = float(patch[0, 0, 0])
    return first if (patch[:, :, 0] == first).all() else None


class HeatmapSums:
    """Per-image float32 sums of patch probabilities, added in patch order (float32 sums
    depend on the order); :meth:`add` hands back the images whose last patch is in."""

    def __init__(self):
        self._open = {}  # job -> (sums (2, H, W) float32: malignant, benign; patches added)

    def add(self, batch, probabilities):
        """Add a batch's (N, 2) (malignant, benign) probabilities; returns
        ``[(job, malignant, benign), ...]`` of the completed images, (H, W) float32 maps in
        the model's orientation."""
        done, row = [], 0
        for job, first, count in batch.spans:
            sums, added = self._open.pop(job, None) or (
                np.zeros((2,) + job.shape, dtype=np.float32), 0)
            if first != added:
                raise RuntimeError(f"{job.name}: patch {first} added out of order")
            for index in range(first, first + count):
                rows, columns = job.grid.window(index)
                sums[:, rows, columns] += probabilities[row][:, None, None]
                row += 1
            if first + count < job.grid.num_patches:
                self._open[job] = (sums, first + count)
                continue
            counts = job.grid.coverage(job.shape)
            done.append((job, sums[0] / counts, sums[1] / counts))
        return done


def run_patch_stream(classify, jobs, batch_size, on_done=None, bar=None):
    """Classify the patches of ``jobs`` (an iterable of :class:`HeatmapJob`) in batches.

    ``classify`` is a patch runtime: an (N, 256, 256, 3) float32 batch in, (N, 4) float32
    softmax probabilities out. ``on_done(job, malignant, benign)`` is called as soon as an
    image is complete (maps in the model's orientation); ``bar`` counts patches.
    """
    sums, constants = HeatmapSums(), {}
    for batch in patch_batches(jobs, batch_size):
        probabilities = classify_batch(classify, batch.patches, constants)
        columns = probabilities[:, [MALIGNANT_COLUMN, BENIGN_COLUMN]]
        for job, malignant, benign in sums.add(batch, columns):
            if on_done is not None:
                on_done(job, malignant, benign)
        if bar is not None:
            bar.update(len(batch.patches))
        del batch  # before the next batch is filled: one batch in memory at a time


def image_heatmaps(classify, job, batch_size):
    """(malignant, benign) float32 heatmaps of one job, in the model's orientation."""
    maps = []
    run_patch_stream(classify, [job], batch_size, lambda _, *pair: maps.extend(pair))
    return tuple(maps)


# --------------------------------------------------------------------------- files
def write_heatmaps(paths, maps):
    """Write ``maps`` = (malignant, benign) (H, W) arrays to ``paths`` = (malignant path,
    benign path), each atomically (SPEC 3 layout: dataset ``image``, transposed, lzf).

    Returns ``{path: SHA-256}`` of the bytes written (the run record takes them from here)."""
    return {path: formats.write_hdf5(path, heatmap) for path, heatmap in zip(paths, maps)}
