"""The random-number plan of a run: every draw of stages 3 and 4, made before any exam runs.

Only two things tie a run's exams together (SPEC 6 and 7.2):

* stage 3's stride stream, one ``random.Random(seed)``: each image draws its row strides,
  then its column strides, in exam / VIEWS / list order; the draws depend on crop shapes;
* stage 4's stream, one ``numpy.random.RandomState(seed)``: each exam draws, per
  repetition and view, an image index (with two or more images), a shift and four
  size-noise factors; the draw counts depend on the exam list alone. Stages 4a and 4b
  each start their own stream from the same seed over the same list, so one set of draws
  serves both.

Stages 1-2 draw nothing, so once they are done (the crop shapes are known) :func:`make_plan`
takes every draw in SPEC order, in milliseconds per thousand images. Stages 3-4 are then
pure functions of (exam, its plan entry, models): exams can run in any order, as a subset
or on any worker, and give the bytes of one serial run.

The plan is saved as ``plan.npz`` beside the outputs (:func:`save_plan`, :func:`load_plan`).
"""

import random
from dataclasses import dataclass

import numpy as np

from .errors import PipelineError
from .stages.augmentation import WindowDraw, draw_exam
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
    """(H, W) of a cropped image from the exam list's ``window_location`` (its crop box)."""
    top, bottom, left, right = exam["window_location"][view][list_index]
    return int(bottom) - int(top), int(right) - int(left)


def make_plan(exam_list, seed=0, num_epochs=10, use_augmentation=True):
    """Take every draw of stages 3 and 4 for ``exam_list`` (after stage 2), in SPEC order.

    The crop shapes come from ``window_location``: a cropped image is exactly its box.
    """
    stride_rng = random.Random(seed)
    window_rng = np.random.RandomState(seed)
    exams = []
    for index, exam in enumerate(exam_list):
        images = []
        for view in VIEWS:
            for list_index, name in enumerate(exam[view]):
                shape = crop_shape(exam, view, list_index)
                strides = (draw_strides(shape, stride_rng) if min(shape) >= PATCH_SIZE
                           else (None, None))
                images.append(ImagePlan(name, view, shape, *(
                    None if s is None else tuple(s) for s in strides)))
        counts = {view: len(exam[view]) for view in VIEWS}
        draws = draw_exam(window_rng, counts, num_epochs, use_augmentation)
        exams.append(ExamPlan(index, tuple(images), tuple(draws)))
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
