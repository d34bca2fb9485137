"""Stage 4: classify exams (``run_model``) and single images (``run_model_single``), SPEC 7 and 9.

Per exam: read each view's cropped image(s) and, with heatmaps, both heatmaps (mirrored so
the breast faces right), draw the exam's random numbers (``augmentation.draw_exam``), then
for every repetition cut, resize and standardize one window per view and run the model.
``--batch-size N`` runs N repetitions in one forward pass on a GPU (on a CPU one at a time,
which is faster there: ``RunPlan``); the draws and the numbers are those of batch size 1.
Each label's probability is the mean over the repetitions (float32).

Failure policy (README, "Failures and exit codes"): an exam that lacks a view, or whose
image or heatmap is missing or unreadable, gets a row of empty values in the CSV (rows stay
aligned with the exam list), is listed in ``<output>.failures.csv``, and the run exits 3.
Its random numbers are still drawn, exactly as for a complete exam (a view with no image
draws as a one-image view), so every other row is identical to that of a run in which the
failed exam's files were present: a failure never shifts the stream of the exams after it.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch

from .. import formats
from .augmentation import draw_exam, draw_single_image, window_batch
from ..checkpoints.classifier import load_classifier, load_single_image_model
from ..errors import ExamListError, InputImageError, PipelineError
from ..exam_list import exam_names, load_exam_list, load_metadata
from ..failures import FailureReport
from ..prefetch import prefetch
from ..runtime import (M_MMAP_MAX, M_TRIM_THRESHOLD, check_precision, glibc_mallopt, log,
                       precision_context, progress, resolve_device)
from ..views import LABELS, VIEWS, flip_for_model, view_angle

STAGE = "run_model"


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
    def channels(self):
        return 3 if self.use_heatmaps else 1

    def check(self):
        if self.num_epochs < 1 or self.batch_size < 1:
            raise PipelineError(f"--num-epochs and --batch-size must be >= 1, got "
                                f"{self.num_epochs} and {self.batch_size}")


def reuse_freed_memory():
    """Make glibc keep freed memory for reuse instead of returning it to the system.

    Every layer of a full-size forward pass allocates tensors of tens of MB. glibc serves
    each from fresh ``mmap`` pages and unmaps them when freed, so every pass pays about
    200,000 page faults, a third of its CPU time. Serving them from the heap and keeping
    freed memory (up to 1 GB above the peak) removes that cost; the numbers are unchanged.
    Process-wide, so only the stage-4 entry points call it. No-op without glibc.
    """
    glibc_mallopt((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 1 << 30))


# --------------------------------------------------------------------------- inputs
def read_joint_array(image_path, view, horizontal_flip, heatmap_files=None):
    """One view's ``H x W x C`` float32 array, breast facing right (SPEC 7.2).

    Channels: ``[image]``, or ``[image, benign, malignant]`` when ``heatmap_files`` =
    ``(malignant_path, benign_path)`` is given. ``image_path`` is the ``.png`` (or
    ``.hdf5``) image. Raises :class:`InputImageError` for missing, unreadable or mismatched files.
    """
    image = formats.read_image_file(image_path).astype(np.float32)
    channels = [image]
    if heatmap_files is not None:
        malignant_path, benign_path = heatmap_files
        for path in (benign_path, malignant_path):
            heatmap = formats.read_hdf5(path).astype(np.float32)
            if heatmap.shape != image.shape:
                raise InputImageError(
                    f"{path}: heatmap is {heatmap.shape} but its image {image_path} is "
                    f"{image.shape}; were they made from the same cropped image?")
            channels.append(heatmap)
    # Mirror each channel while stacking: one pass over the data instead of two.
    return np.stack([flip_for_model(channel, view, horizontal_flip) for channel in channels],
                    axis=-1)


def check_exam_views(exam):
    """Raise :class:`InputImageError` if a view lists no image (the models need all four)."""
    missing = [view for view in VIEWS if not exam[view]]
    if missing:
        raise InputImageError(f"no image listed for view(s) {', '.join(missing)}; the exam "
                              "classifiers need all four views")


def read_exam_inputs(exam, image_dir, heatmaps_dir, settings, map_views=map):
    """``{view: [H x W x C float32 array per image]}`` of one exam.

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


def to_model_input(array, device):
    """``N x H x W x C`` numpy → ``N x C x H x W`` tensor (channels-last memory) on ``device``."""
    return torch.from_numpy(array).permute(0, 3, 1, 2).to(device)


# --------------------------------------------------------------------------- predictions
def label_probabilities(outputs, model_mode):
    """Model outputs of N repetitions → ``N x 4`` float32, columns in ``LABELS`` order (SPEC 7.3).

    view_split: head rows are the four labels; each label averages its CC and MLO values.
    image: row 0 (benign) and row 1 (malignant) of each view's head; each label averages
    the CC and MLO views of its side.
    """
    positive = {key: torch.exp(out.float())[..., 1].cpu() for key, out in outputs.items()}
    if model_mode == "view_split":
        return ((positive["CC"] + positive["MLO"]) / 2).numpy()
    columns = []
    for label in LABELS:
        side = "L" if label.startswith("left") else "R"
        row = 0 if label.endswith("benign") else 1
        columns.append((positive[f"{side}-CC"][:, row] + positive[f"{side}-MLO"][:, row]) / 2)
    return torch.stack(columns, dim=1).numpy()


def exam_batches(exam_list, image_dir, heatmaps_dir, settings, batch_size, map_views=map):
    """``(exam index, batch)`` for every batch of every exam, in order (the input side).

    A batch is ``{view: N x H_in x W_in x C}`` float32 windows of ``batch_size`` (or fewer)
    repetitions. An exam whose inputs cannot be read yields ``(index, error)``
    once, an :class:`InputImageError`, and no batch. One ``numpy.random.RandomState(seed)``
    serves the whole run (SPEC 7.2); each exam draws before its files are read, so a failed
    exam draws exactly what a complete one would.
    """
    rng = np.random.RandomState(settings.seed)
    for index, exam in enumerate(exam_list):
        counts = {view: len(exam[view]) for view in VIEWS}
        draws = draw_exam(rng, counts, settings.num_epochs, settings.use_augmentation)
        try:
            inputs = read_exam_inputs(exam, image_dir, heatmaps_dir, settings, map_views)
        except InputImageError as err:
            yield index, err
            continue
        for start in range(0, len(draws), batch_size):
            yield index, exam_batch(inputs, exam["best_center"], draws[start:start + batch_size],
                                    settings.use_augmentation, map_views)


def batch_probabilities(model, batch, settings, device):
    """``N x 4`` float32 label probabilities of one batch (one row per repetition)."""
    with torch.inference_mode(), precision_context(settings.precision, device):
        outputs = model({view: to_model_input(batch[view], device) for view in VIEWS})
    return label_probabilities(outputs, settings.model_mode)


@dataclass(frozen=True)
class RunPlan:
    """How stage 4 runs on its device. Nothing here changes a number.

    ``max_forward``: repetitions per forward pass (0: the whole ``--batch-size``).
    ``view_threads``: threads that read and cut the four views in parallel.
    ``prefetch_depth``: batches prepared ahead in a background thread while the model runs.
    The random draws stay in one thread, in order, whatever the plan.
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


def classify_exams(exam_list, model, image_dir, heatmaps_dir, settings, device, report,
                   plan=None):
    """Predictions for every exam, in order: a (4,) float32 array, or ``None`` if it failed.

    ``plan``: a :class:`RunPlan` (default: ``RunPlan.for_device(device)``).
    Failures are added to ``report`` (a :class:`FailureReport`).
    """
    plan = plan or RunPlan.for_device(device)
    per_exam = [[] for _ in exam_list]
    bar = progress(total=len(exam_list), desc="Classifying", unit="exam")
    done = 0
    with ThreadPoolExecutor(max(1, plan.view_threads), "views") as pool, \
            closing(prefetch(exam_batches(exam_list, image_dir, heatmaps_dir, settings,
                                          plan.forward_size(settings.batch_size), pool.map),
                             plan.prefetch_depth)) as batches:
        for index, batch in batches:
            if index > done:  # every exam before this one is finished
                bar.update(index - done)
                done = index
            if isinstance(batch, InputImageError):
                report.add(f"exam {index} ({exam_names(exam_list[index])})", batch)
                continue
            per_exam[index].append(batch_probabilities(model, batch, settings, device))
            del batch  # before the next is cut: two full-size batches are 0.5 GB
    bar.update(len(exam_list) - done)
    bar.close()
    return [np.concatenate(parts).mean(axis=0, dtype=np.float32) if parts else None
            for parts in per_exam]


def _check_exam_list_ready(exam_list, data_path):
    for index, exam in enumerate(exam_list):
        if "best_center" not in exam:
            raise ExamListError(f"{data_path}: exam {index} has no 'best_center'; run "
                                "stage 2 (src/optimal_centers/get_optimal_centers.py) first")


def run_model(model_path, data_path, image_dir, output_path, settings, heatmaps_dir=None,
              device_type="cpu", gpu_number=0, overwrite=False, trust_checkpoint=False):
    """Stage 4 over an exam list: write the predictions CSV; return the exit status (0/1/3)."""
    settings.check()
    if settings.use_heatmaps and heatmaps_dir is None:
        raise PipelineError("--use-heatmaps needs --heatmaps-path")
    formats.check_output_file(output_path, overwrite)
    exam_list = load_exam_list(data_path)
    _check_exam_list_ready(exam_list, data_path)
    device = resolve_device(device_type, gpu_number)
    check_precision(settings.precision, device)  # before the model is loaded
    reuse_freed_memory()
    model = load_classifier(model_path, settings.model_mode, settings.channels,
                            trust=trust_checkpoint, device=device)
    model = model.to(memory_format=torch.channels_last)
    report = FailureReport(STAGE)
    predictions = classify_exams(exam_list, model, image_dir, heatmaps_dir, settings, device,
                                 report)
    formats.write_predictions_csv(output_path, predictions)
    report.write(output_path)
    log.info("%s: wrote %s (%d exam(s))", STAGE, output_path, len(predictions))
    return report.exit_code(len(exam_list))


# --------------------------------------------------------------------------- single image
def classify_single_image(model, joint, best_center, angle, settings, device, plan=None):
    """``{"benign": p, "malignant": p}``: float32 means over the repetitions, as Python floats.

    A fresh ``RandomState(settings.seed)`` is drawn per call, as each reference run is its
    own process (SPEC 9). ``model`` is a :class:`SingleImageModel` (N x 2 x 2 outputs).
    ``plan``: a :class:`RunPlan` (default: ``RunPlan.for_device(device)``).
    """
    plan = plan or RunPlan.for_device(device)
    rng = np.random.RandomState(settings.seed)
    draws = draw_single_image(rng, settings.num_epochs, settings.use_augmentation)
    size = plan.forward_size(settings.batch_size)
    batches = (window_batch([joint], [best_center], angle, draws[start:start + size],
                            settings.use_augmentation)
               for start in range(0, len(draws), size))
    probabilities = []
    with closing(prefetch(batches, plan.prefetch_depth)) as windows_stream:
        for windows in windows_stream:
            with torch.inference_mode(), precision_context(settings.precision, device):
                output = model(to_model_input(windows, device))
            probabilities.append(torch.exp(output.float())[..., 1].cpu().numpy())
    benign, malignant = np.concatenate(probabilities).mean(axis=0, dtype=np.float32)
    return {"benign": float(benign), "malignant": float(malignant)}


def run_model_single(model_path, view, cropped_mammogram_path, metadata_path, settings,
                     heatmap_paths=None, device_type="cpu", gpu_number=0,
                     trust_checkpoint=False, plan=None, load_model=None):
    """The single-image classifier of SPEC 9; returns the ``{"benign", "malignant"}`` dict.

    ``heatmap_paths`` = ``(malignant_path, benign_path)`` with ``settings.use_heatmaps``.
    The image and heatmaps are mirrored with the metadata's ``full_view``, the model is
    chosen by ``view``; the two must agree. ``plan``: see :func:`classify_single_image`.
    ``load_model(model_path, view, channels, trust, device)`` replaces the PyTorch model by
    another runtime taking and returning the same tensors (the TensorFlow port).
    """
    settings.check()
    metadata = load_metadata(metadata_path)
    if metadata["full_view"] != view:
        raise ExamListError(f"{metadata_path}: metadata is for view {metadata['full_view']!r} "
                            f"but --view is {view!r}")
    if "best_center" not in metadata:
        raise ExamListError(f"{metadata_path}: no 'best_center'; run the centers step first")
    if settings.use_heatmaps and heatmap_paths is None:
        raise PipelineError("--use-heatmaps needs --heatmap-path-malignant and "
                            "--heatmap-path-benign")
    joint = read_joint_array(cropped_mammogram_path, view, metadata["horizontal_flip"],
                             heatmap_paths if settings.use_heatmaps else None)
    device = resolve_device(device_type, gpu_number)
    check_precision(settings.precision, device)
    reuse_freed_memory()
    if load_model is None:
        model = load_single_image_model(model_path, view, settings.channels,
                                        trust=trust_checkpoint, device=device)
        model = model.to(memory_format=torch.channels_last)
    else:
        model = load_model(model_path, view, settings.channels, trust_checkpoint, device)
    return classify_single_image(model, joint, metadata["best_center"], view_angle(view),
                                 settings, device, plan)


def format_single_prediction(prediction):
    """The one stdout line of ``run_model_single`` (SPEC 8)."""
    return formats.single_prediction_line(prediction)
