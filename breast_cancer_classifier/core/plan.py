"""The random-number plan of a run: every draw of stages 3 and 4, made before any exam runs.

This module is the only place in ``core`` that creates a random stream. Only two tie a
run's exams together (SPEC 6 and 7.2):

* stage 3's stride stream, one ``random.Random(seed)``: each image draws its row strides,
  then its column strides, in exam / VIEWS / list order; the draws depend on crop shapes
  (:class:`StrideStream`);
* stage 4's stream, one ``numpy.random.RandomState(seed)``: each exam draws, per
  repetition and view, an image index (with two or more images), a shift and four
  size-noise factors; the draw counts depend on the exam list alone. Stages 4a and 4b
  each start their own stream from the same seed over the same list, so one set of draws
  serves both.

Stages 1-2 draw nothing, so once they are done (the crop shapes are known) :func:`make_plan`
takes every draw in SPEC order, in milliseconds per thousand images. Stages 3-4 are then
pure functions of (exam, its plan entry, models): exams can run in any order, as a subset
or on any worker, and give the bytes of one serial run. The stage scripts draw from the same
streams (their own seed and exam list): the stage-3 script as it reads each image, since
its shapes come from the files (:class:`StrideStream`), the stage-4 script up front
(:func:`window_draws`). The single-image path starts a fresh stream per image and per
classifier run (:func:`single_image_plan`, :func:`single_image_draws`; SPEC 9).

The plan is saved as ``plan.npz`` beside the outputs (:func:`save_plan`, :func:`load_plan`).
"""

import random
from dataclasses import dataclass

import numpy as np

from .errors import ExamListError, PipelineError
from .stages.augmentation import WindowDraw, draw_exam, draw_single_image
from .stages.heatmaps import PATCH_SIZE, draw_strides
from .views import VIEWS

PLAN_VERSION = 1


@dataclass(frozen=True)
class ImagePlan:
    """Stage-3 strides of one image: ``None`` when it draws nothing (a side under 256)."""

    name: str
    view: str
    shape: tuple
    row_strides: tuple = None
    column_strides: tuple = None

    @property
    def patchable(self):
        return self.row_strides is not None

    @property
    def strides(self):
        """(row strides, column strides)."""
        return self.row_strides, self.column_strides


@dataclass(frozen=True)
class ExamPlan:
    """Everything exam ``index`` draws: its images' strides and its stage-4 window draws."""

    index: int
    images: tuple  # ImagePlan per image, in VIEWS / list order
    draws: tuple  # per repetition: {view: WindowDraw}

    def strides_of(self, name):
        return next(image for image in self.images if image.name == name)


class Plan:
    """The plan of a whole run; ``plan[i]`` is exam ``i``'s :class:`ExamPlan`."""

    def __init__(self, exams, seed, num_epochs, use_augmentation):
        self.exams = list(exams)
        self.seed, self.num_epochs = int(seed), int(num_epochs)
        self.use_augmentation = bool(use_augmentation)

    def __len__(self):
        return len(self.exams)

    def __getitem__(self, index):
        return self.exams[index]

    def same_settings(self, other):
        return (self.seed, self.num_epochs, self.use_augmentation) == \
            (other.seed, other.num_epochs, other.use_augmentation)


def crop_shape(exam, view, list_index):
    """(H, W) of a cropped image from the exam list's ``window_location`` (its crop box), or
    None when the list has no usable box for it (an exam list made without stage 1)."""
    try:
        top, bottom, left, right = exam["window_location"][view][list_index]
        return int(bottom) - int(top), int(right) - int(left)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


class StrideStream:
    """Stage 3's stride stream (SPEC 6): one stream per run, drawn image after image.

    Each patchable image draws its row strides, then its column strides; an image with a
    side under 256 draws nothing. Callers take images in exam / VIEWS / list order.
    """

    def __init__(self, seed):
        self._rng = random.Random(seed)

    def image_plan(self, name, view, shape):
        """The :class:`ImagePlan` of an image of ``shape`` (drawing its strides if it has any)."""
        if shape is None or min(shape) < PATCH_SIZE:
            return ImagePlan(name, view, None if shape is None else tuple(shape))
        rows, columns = draw_strides(shape, self._rng)
        return ImagePlan(name, view, tuple(shape), tuple(rows), tuple(columns))


def single_image_plan(seed, name, view, shape):
    """The single-image path's strides (SPEC 9): a fresh stream per image, as each reference
    run of the single-image script was a process of its own."""
    return StrideStream(seed).image_plan(name, view, shape)


def window_draws(exam_list, seed=0, num_epochs=10, use_augmentation=True):
    """Stage 4's draws for every exam, in order (a generator, one exam at a time): per exam a
    tuple (one per repetition) of ``{view: WindowDraw}``. One stream serves the run; the draw
    counts depend on the exam list alone, so a failed exam draws what a complete one would
    (augmentation.draw_exam)."""
    rng = np.random.RandomState(seed)
    for exam in exam_list:
        yield tuple(draw_exam(rng, {view: len(exam[view]) for view in VIEWS}, num_epochs,
                              use_augmentation))


def single_image_draws(seed, num_epochs, use_augmentation):
    """The single-image classifier's draws (SPEC 9): a fresh stream per classifier run."""
    return draw_single_image(np.random.RandomState(seed), num_epochs, use_augmentation)


def make_plan(exam_list, seed=0, num_epochs=10, use_augmentation=True):
    """Take every draw of stages 3 and 4 for ``exam_list`` (after stage 2), in SPEC order.

    The crop shapes come from ``window_location``: a cropped image is exactly its box.
    """
    strides = StrideStream(seed)
    draws = window_draws(exam_list, seed, num_epochs, use_augmentation)
    exams = []
    for index, (exam, exam_draws) in enumerate(zip(exam_list, draws)):
        images = []
        for view in VIEWS:
            for list_index, name in enumerate(exam[view]):
                shape = crop_shape(exam, view, list_index)
                if shape is None:
                    raise ExamListError(f"exam {index}: {name} has no window_location; the "
                                        "plan needs stage 1's crop boxes")
                images.append(strides.image_plan(name, view, shape))
        exams.append(ExamPlan(index, tuple(images), exam_draws))
    return Plan(exams, seed, num_epochs, use_augmentation)


# --------------------------------------------------------------------------- plan.npz
def _ragged(lists):
    """Concatenated int32 values and the offsets that cut them back into ``lists``."""
    lengths = [len(values) for values in lists]
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = [v for values in lists for v in values]
    return np.asarray(flat, dtype=np.int32), offsets


def _unragged(values, offsets):
    return [tuple(int(v) for v in values[offsets[i]:offsets[i + 1]])
            for i in range(len(offsets) - 1)]


def plan_arrays(plan):
    """The plan as named numpy arrays (what ``plan.npz`` holds); float64 draws are exact."""
    images = [image for exam in plan for image in exam.images]
    repetitions = [len(exam.draws) for exam in plan]
    draws = [exam.draws[r][view] for exam in plan for r in range(len(exam.draws))
             for view in VIEWS]
    rows, row_offsets = _ragged([i.row_strides or () for i in images])
    columns, column_offsets = _ragged([i.column_strides or () for i in images])
    return {
        "version": np.array(PLAN_VERSION),
        "settings": np.array([plan.seed, plan.num_epochs, int(plan.use_augmentation)]),
        "exam_images": np.array([len(exam.images) for exam in plan], dtype=np.int64),
        "exam_repetitions": np.array(repetitions, dtype=np.int64),
        "image_names": np.array([i.name for i in images], dtype=str),
        "image_views": np.array([VIEWS.index(i.view) for i in images], dtype=np.int8),
        "image_shapes": np.array([i.shape for i in images], dtype=np.int64).reshape(-1, 2),
        "image_patchable": np.array([i.patchable for i in images], dtype=bool),
        "row_strides": rows, "row_offsets": row_offsets,
        "column_strides": columns, "column_offsets": column_offsets,
        "draw_index": np.array([d.image_index for d in draws], dtype=np.int64),
        "draw_mult": np.array([d.mult for d in draws], dtype=np.float64).reshape(-1, 2),
        "draw_size": np.array([d.size for d in draws], dtype=np.float64).reshape(-1, 4),
    }


def save_plan(plan, path):
    """Write ``plan.npz`` atomically."""
    from .formats import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **plan_arrays(plan))


def load_plan(path):
    """Read a plan written by :func:`save_plan`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError) as err:
        raise PipelineError(f"{path}: cannot read the run's plan ({err})") from err
    if int(arrays["version"]) != PLAN_VERSION:
        raise PipelineError(f"{path}: plan version {int(arrays['version'])}, expected "
                            f"{PLAN_VERSION}")
    return plan_from_arrays(arrays)


def plan_from_arrays(arrays):
    seed, num_epochs, augment = (int(v) for v in arrays["settings"])
    rows = _unragged(arrays["row_strides"], arrays["row_offsets"])
    columns = _unragged(arrays["column_strides"], arrays["column_offsets"])
    images = [ImagePlan(str(name), VIEWS[int(view)], tuple(int(s) for s in shape),
                        r if patchable else None, c if patchable else None)
              for name, view, shape, patchable, r, c in zip(
                  arrays["image_names"], arrays["image_views"], arrays["image_shapes"],
                  arrays["image_patchable"], rows, columns)]
    draws = [WindowDraw(int(i), m, s) for i, m, s in zip(
        arrays["draw_index"], arrays["draw_mult"], arrays["draw_size"])]
    exams, image_at, draw_at = [], 0, 0
    for index, (count, repetitions) in enumerate(zip(arrays["exam_images"],
                                                     arrays["exam_repetitions"])):
        exam_draws = []
        for _ in range(int(repetitions)):
            exam_draws.append(dict(zip(VIEWS, draws[draw_at:draw_at + len(VIEWS)])))
            draw_at += len(VIEWS)
        exams.append(ExamPlan(index, tuple(images[image_at:image_at + int(count)]),
                              tuple(exam_draws)))
        image_at += int(count)
    return Plan(exams, seed, num_epochs, bool(augment))
