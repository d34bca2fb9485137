"""Stage 4: the exam classifiers' inputs, windows and outputs (SPEC 7), the pieces every path
shares. PyTorch is imported where a model runs, so that stage 3 on ONNX Runtime, which
shares the engine's module, never loads it.

Per exam: each view's cropped image(s) and, with heatmaps, both heatmaps are stacked into
one array per image, mirrored so the breast faces right (:func:`joint_array`); for every
repetition of the exam's draws (``plan.window_draws``) one window per view is cut, resized
and standardized (:func:`exam_window_batches`) and the model runs on it
(:func:`batch_probabilities`). Each label's probability is the mean over the repetitions
(float32, :func:`mean_probabilities`). ``--batch-size N`` runs N repetitions in one
forward pass on a GPU (on a CPU one at a time, which is faster there: :class:`DeviceBatching`);
the draws and the numbers are those of batch size 1.
"""

from dataclasses import dataclass

import numpy as np

from .. import formats
from ..errors import InputImageError, PipelineError
from ..runtime import precision_context
from ..views import LABELS, VIEWS, flip_for_model, view_angle
from .augmentation import window_batch

STAGE = "run_model"
# The input channels of a classifier, in SPEC 7.2's order: the image alone (stage 4a), or
# the image and both heatmaps, benign before malignant (stage 4b).
IMAGE_ONLY = ("image",)
IMAGE_AND_HEATMAPS = ("image", "benign", "malignant")


@dataclass(frozen=True)
class ClassifierSettings:
    """What ``run_model`` does besides its paths; defaults are the reference's (SPEC 7.3)."""

    model_mode: str = "view_split"
    use_heatmaps: bool = False
    use_augmentation: bool = False
    use_hdf5: bool = False
    num_epochs: int = 1
    batch_size: int = 1
    seed: int = 0
    precision: str = "fp32"  # --precision (runtime.PRECISIONS); fp32 is the parity path

    @property
    def input_channels(self):
        return IMAGE_AND_HEATMAPS if self.use_heatmaps else IMAGE_ONLY

    @property
    def channels(self):
        return len(self.input_channels)

    def check(self):
        if self.num_epochs < 1 or self.batch_size < 1:
            raise PipelineError(f"--num-epochs and --batch-size must be >= 1, got "
                                f"{self.num_epochs} and {self.batch_size}")


@dataclass(frozen=True)
class DeviceBatching:
    """How stage 4 runs on its device. Nothing here changes a number.

    ``max_forward``: repetitions per forward pass (0: the whole ``--batch-size``).
    ``view_threads``: threads that read and cut the four views in parallel.
    ``prefetch_depth``: inputs prepared ahead in a background thread while the model runs.
    The random draws are taken beforehand, in order (``plan``), whatever the batching.
    """

    max_forward: int = 0
    view_threads: int = 4
    prefetch_depth: int = 0

    @classmethod
    def for_device(cls, device):
        """On a CPU the model already uses every core at close to its peak: one repetition
        per forward pass (batches of 10 were 1.4-1.7x slower and took GB more) and batches
        prepared in turn (preparing ahead competed with the model and was slower); measured
        with benchmarks/bench_classifiers.py. On a GPU the CPU is free while the model runs:
        whole batches, and one prepared ahead."""
        if device.type == "cpu":
            return cls(max_forward=1, prefetch_depth=0)
        return cls(max_forward=0, prefetch_depth=1)

    def forward_size(self, batch_size):
        """Repetitions per forward pass for ``--batch-size batch_size``."""
        return min(batch_size, self.max_forward) if self.max_forward else batch_size


# --------------------------------------------------------------------------- inputs
def uses_heatmaps(channels):
    return any(channel != "image" for channel in channels)


def joint_array(image, view, horizontal_flip, maps=None, channels=IMAGE_ONLY):
    """One image's ``H x W x C`` float32 classifier input, breast facing right (SPEC 7.2).

    ``image``: the stored (H, W) cropped image; ``maps``: its (malignant, benign) heatmaps
    in the stored orientation (as saved), needed when ``channels`` names them. The
    channels come in the order ``channels`` gives (:data:`IMAGE_AND_HEATMAPS`: image,
    benign, malignant).
    """
    arrays = {"image": image}
    if maps is not None:
        arrays["malignant"], arrays["benign"] = maps
    # Mirror each channel while stacking: one pass over the data instead of two.
    return np.stack([flip_for_model(arrays[c].astype(np.float32, copy=False), view,
                                    horizontal_flip) for c in channels], axis=-1)


def read_joint_array(image_path, view, horizontal_flip, heatmap_files=None):
    """:func:`joint_array` from files: ``image_path`` (``.png`` or ``.hdf5``) and, when given,
    ``heatmap_files`` = (malignant path, benign path). Raises :class:`InputImageError` for
    missing, unreadable or mismatched files."""
    image = formats.read_image_file(image_path)
    if heatmap_files is None:
        return joint_array(image, view, horizontal_flip)
    malignant_path, benign_path = heatmap_files
    maps = {}
    for path in (benign_path, malignant_path):  # in channel order: the first error is named
        maps[path] = formats.read_hdf5(path)
        if maps[path].shape != image.shape:
            raise InputImageError(
                f"{path}: heatmap is {maps[path].shape} but its image {image_path} is "
                f"{image.shape}; were they made from the same cropped image?")
    return joint_array(image, view, horizontal_flip, (maps[malignant_path], maps[benign_path]),
                       IMAGE_AND_HEATMAPS)


def check_exam_views(exam):
    """Raise :class:`InputImageError` if a view lists no image (the models need all four)."""
    missing = [view for view in VIEWS if not exam[view]]
    if missing:
        raise InputImageError(f"no image listed for view(s) {', '.join(missing)}; the exam "
                              "classifiers need all four views")


def read_exam_inputs(exam, image_dir, heatmaps_dir, settings, map_views=map):
    """``{view: [H x W x C float32 array per image]}`` of one exam, read from files.

    ``map_views`` maps a function over the four views (``map``, or a thread pool's, to read
    them in parallel); the first failing view in ``VIEWS`` order raises.
    """
    check_exam_views(exam)

    def read_view(view):
        arrays = []
        for name in exam[view]:
            heatmap_files = (formats.heatmap_paths(heatmaps_dir, name) if settings.use_heatmaps
                             else None)
            arrays.append(read_joint_array(
                formats.image_path(image_dir, name, settings.use_hdf5), view,
                exam["horizontal_flip"], heatmap_files))
        return arrays

    return dict(zip(VIEWS, map_views(read_view, VIEWS)))


def exam_batch(inputs, best_centers, draws, augment, map_views=map):
    """``{view: N x H_in x W_in x C}`` float32 windows, one per repetition of ``draws``."""
    def view_batch(view):
        return window_batch(inputs[view], best_centers[view], view_angle(view),
                            [d[view] for d in draws], augment)

    return dict(zip(VIEWS, map_views(view_batch, VIEWS)))


def exam_window_batches(inputs, best_centers, draws, size, augment, map_views=map):
    """:func:`exam_batch` of each run of ``size`` repetitions of ``draws``, in order (lazily:
    two full-size batches are 0.5 GB)."""
    for start in range(0, len(draws), size):
        yield exam_batch(inputs, best_centers, draws[start:start + size], augment, map_views)


def to_model_input(array, device):
    """``N x H x W x C`` numpy → ``N x C x H x W`` tensor (channels-last memory) on ``device``."""
    import torch

    return torch.from_numpy(array).permute(0, 3, 1, 2).to(device)


# --------------------------------------------------------------------------- predictions
def label_probabilities(outputs, model_mode):
    """Model outputs of N repetitions → ``N x 4`` float32, columns in ``LABELS`` order (SPEC 7.3).

    view_split: head rows are the four labels; each label averages its CC and MLO values.
    image: row 0 (benign) and row 1 (malignant) of each view's head; each label averages
    the CC and MLO views of its side.
    """
    import torch

    positive = {key: torch.exp(out.float())[..., 1].cpu() for key, out in outputs.items()}
    if model_mode == "view_split":
        return ((positive["CC"] + positive["MLO"]) / 2).numpy()
    columns = []
    for label in LABELS:
        side = "L" if label.startswith("left") else "R"
        row = 0 if label.endswith("benign") else 1
        columns.append((positive[f"{side}-CC"][:, row] + positive[f"{side}-MLO"][:, row]) / 2)
    return torch.stack(columns, dim=1).numpy()


def batch_probabilities(model, batch, settings, device):
    """``N x 4`` float32 label probabilities of one batch (one row per repetition)."""
    import torch

    with torch.inference_mode(), precision_context(settings.precision, device):
        outputs = model({view: to_model_input(batch[view], device) for view in VIEWS})
    return label_probabilities(outputs, settings.model_mode)


def mean_probabilities(parts):
    """The mean over the repetitions (float32) of per-batch ``N x C`` probabilities."""
    return np.concatenate(parts).mean(axis=0, dtype=np.float32)
