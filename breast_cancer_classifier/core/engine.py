"""The engine: models loaded once, each exam taken through stages 3 and 4 in memory; and the
per-image and per-exam functions that every path (``bcc run``, the stage scripts, ``bcc
single``) runs.

Built once from the weights and settings (in the manner of nnU-Net's predictor: build, then
predict many), :class:`Engine` resolves device, precision, runtime and threads in one place.
For one exam and its plan entry (:mod:`plan`) it:

1. reads each cropped image once;
2. makes both heatmaps of each image with the patch classifier (:func:`exam_heatmaps`),
   writing each pair as soon as it is made (the run.sh layout, SPEC 3), and keeps them in
   memory;
3. runs every registered classifier family it was built with (:mod:`families`; by default
   the image-only one, stage 4a, and the image+heatmaps one, stage 4b) on the plan's draws
   (:func:`predict_exam`), each on windows cut from its own input arrays.

The numbers are those of the stage scripts chained by run.sh. Each family's windows are cut
and resized from its own channels: OpenCV's bicubic resize of a 3-channel array does not
give its first channel the bits of a 1-channel resize (up to 2^-6 apart on 16-bit values),
so the image channel of stage 4b's windows cannot stand in for stage 4a's.

Failure policy as in the scripts: an image that cannot be read or patched gets no heatmap;
an exam that lacks a view or an image fails every classifier; an exam with an image but no
heatmap fails the heatmap families only. Failures come back as ``(stage, item, reason)``.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field

from . import formats
from .allocator import heap_for_classifiers, heap_for_patches, release_free_memory
from .errors import InputImageError
from .families import BUILT_IN, get_family
from .home import weight_default
from .prefetch import prefetch
from .settings import ComputeSettings
from .stages.classify import (ClassifierSettings, DeviceBatching, batch_probabilities,
                              check_exam_views, exam_window_batches, joint_array,
                              mean_probabilities, uses_heatmaps)
from .stages.heatmaps import heatmap_job, run_patch_stream, write_heatmaps
from .views import VIEWS

HEATMAP_STAGE = "heatmaps"


@dataclass(frozen=True)
class EngineSettings(ComputeSettings):
    """The exam pipeline's settings: run.sh's weights, and augmentation on (SPEC 8).

    ``families``: the classifier families to run (:mod:`families`), in order. ``weights``:
    ``((family, path), ...)`` for any family; the two path fields serve the built-ins.
    """

    patch_model_path: str = weight_default("sample_patch_model.p")
    image_model_path: str = weight_default("sample_image_model.p")
    imageheatmaps_model_path: str = weight_default("sample_imageheatmaps_model.p")
    use_augmentation: bool = True
    families: tuple = BUILT_IN
    weights: tuple = ()

    def classifier_families(self):
        """The :class:`families.ClassifierFamily` of each name in ``families``."""
        return tuple(get_family(name) for name in self.families)

    def weight_paths(self):
        """``{"patch": path, family: path, ...}``; a family without weights is refused."""
        from .errors import SettingsError

        given = {"image": self.image_model_path,
                 "imageheatmaps": self.imageheatmaps_model_path, **dict(self.weights)}
        paths = {"patch": self.patch_model_path}
        for family in self.classifier_families():
            if not given.get(family.name):
                raise SettingsError(f"no weights for classifier family {family.name!r}; "
                                    f"give them with --weights {family.name}=PATH")
            paths[family.name] = given[family.name]
        return paths


@dataclass
class ExamResult:
    """Pass 2 of one exam: predictions per family (None: failed), files, failures."""

    index: int
    predictions: dict = field(default_factory=dict)  # family -> (4,) float32 or None
    heatmap_files: dict = field(default_factory=dict)  # path -> SHA-256 of the bytes written
    failures: list = field(default_factory=list)  # (stage, item, reason)
    seconds: float = 0.0


# --------------------------------------------------------------------------- shared steps
def load_patch_runtime_on(settings, device):
    """The patch runtime (``settings.runtime``) on an already resolved ``torch.device``."""
    from .patch_runtime import patch_runtime_on

    return patch_runtime_on(settings.patch_model_path, device, settings.runtime,
                            settings.precision, settings.trust_checkpoint)


def exam_heatmaps(patch_runtime, jobs, batch_size, on_done, read_ahead=None, bar=None):
    """Stage 3 of one exam: its :class:`heatmaps.HeatmapJob` s (an iterable, taken lazily)
    through ``patch_runtime``; ``on_done(job, malignant, benign)`` per image, maps in the
    model's orientation. ``read_ahead`` jobs (default: the runtime's, 1 on a GPU, 0 on the
    CPU, whose cores the model already uses) are prepared in a background thread; the maps
    do not depend on it."""
    depth = patch_runtime.read_ahead if read_ahead is None else read_ahead
    with closing(prefetch(jobs, depth)) as stream:
        run_patch_stream(patch_runtime, stream, batch_size, on_done, bar)


def write_exam_heatmaps(heatmaps_dir, job, maps):
    """Write a job's (malignant, benign) maps (model orientation) under ``heatmaps_dir`` in
    the stored orientation (SPEC 3); returns ``(stored maps, {path: SHA-256})``."""
    stored = job.stored(maps)
    return stored, write_heatmaps(formats.heatmap_paths(heatmaps_dir, job.name), stored)


def exam_inputs(exam, images, maps, channels):
    """``{view: [H x W x C float32]}`` of one exam from arrays in memory: ``images`` maps a
    name to its stored image, ``maps`` to its stored (malignant, benign) heatmaps."""
    flip = exam["horizontal_flip"]
    inputs = {}
    for view in VIEWS:
        inputs[view] = []
        for name in exam[view]:
            if name not in images:
                raise InputImageError(f"{name}: the cropped image could not be read")
            if uses_heatmaps(channels) and name not in maps:
                raise InputImageError(f"{name}: no heatmaps (stage 3 failed for it)")
            inputs[view].append(joint_array(images[name], view, flip, maps.get(name), channels))
    return inputs


def predict_exam(model, inputs, best_centers, draws, settings, device, batching,
                 map_views=map):
    """(4,) float32: one classifier's label probabilities for one exam, the mean over the
    repetitions of ``draws`` (its plan entry), ``batching.forward_size`` at a time."""
    size = batching.forward_size(settings.batch_size)
    batches = exam_window_batches(inputs, best_centers, draws, size, settings.use_augmentation,
                                  map_views)
    parts = []
    with closing(prefetch(batches, batching.prefetch_depth)) as stream:
        for batch in stream:
            parts.append(batch_probabilities(model, batch, settings, device))
            del batch  # before the next is cut: two full-size batches are 0.5 GB
    return mean_probabilities(parts)


# --------------------------------------------------------------------------- the engine
class Engine:
    """Loads the patch model and the families' classifiers once; :meth:`run_exam` takes one
    exam through pass 2."""

    def __init__(self, settings, device=None):
        """``device``: a resolved ``torch.device`` (the executor's), else from the settings."""
        import torch

        from .runtime import check_precision, resolve_device, use_full_fp32

        self.settings = settings
        use_full_fp32()  # TF32 off (SPEC 7.4), however the device was chosen
        self.device = (torch.device(device) if device is not None
                       else resolve_device(settings.device_type, settings.gpu_number))
        check_precision(settings.precision, self.device)
        self.patch_runtime = load_patch_runtime_on(settings, self.device)
        self.families = settings.classifier_families()
        weights = settings.weight_paths()
        self.classifier_settings, self.models = {}, {}
        for family in self.families:
            options = ClassifierSettings(
                model_mode="view_split", use_heatmaps=family.uses_heatmaps,
                use_augmentation=settings.use_augmentation, num_epochs=settings.num_epochs,
                batch_size=settings.batch_size, seed=settings.seed, precision=settings.precision)
            options.check()
            self.classifier_settings[family.name] = options
            self.models[family.name] = family.load(
                weights[family.name], len(family.input_channels), self.device,
                settings.trust_checkpoint)
        self.batching = DeviceBatching.for_device(self.device)
        self._views_pool = ThreadPoolExecutor(max(1, self.batching.view_threads), "views")

    @property
    def runtime_name(self):
        return self.patch_runtime.name

    def close(self):
        self._views_pool.shutdown()

    def run_exam(self, exam, exam_plan, cropped_dir, heatmaps_dir):
        """Stages 3 and 4 of one exam (after stage 2) with its :class:`plan.ExamPlan`."""
        start = time.perf_counter()
        result = ExamResult(exam_plan.index)
        images = self._read_images(exam_plan, cropped_dir, result)
        heap_for_patches()
        maps = self._heatmaps(exam, exam_plan, images, cropped_dir, heatmaps_dir, result)
        heap_for_classifiers()
        self._classify(exam, exam_plan, images, maps, result)
        release_free_memory()  # the next exam starts from the memory of one
        result.seconds = time.perf_counter() - start
        return result

    def _read_images(self, exam_plan, cropped_dir, result):
        """``{name: stored (H, W) array}`` of the exam's readable images; each read once."""
        images = {}
        for image in exam_plan.images:
            path = formats.image_path(cropped_dir, image.name)
            try:
                raw = formats.read_mammogram_png(path)
                if raw.shape != tuple(image.shape):
                    raise InputImageError(f"{path}: image is {raw.shape} but its crop box "
                                          f"(window_location) is {tuple(image.shape)}")
            except InputImageError as err:
                result.failures.append((HEATMAP_STAGE, image.name, str(err)))
                continue
            images[image.name] = raw
        return images

    def _heatmaps(self, exam, exam_plan, images, cropped_dir, heatmaps_dir, result):
        """``{name: (malignant, benign)}`` in the stored orientation; files written on the way."""
        maps = {}

        def jobs():
            for image in exam_plan.images:
                if image.name not in images:
                    continue
                try:
                    job = heatmap_job(images[image.name], image, exam["horizontal_flip"],
                                      formats.image_path(cropped_dir, image.name))
                except InputImageError as err:
                    result.failures.append((HEATMAP_STAGE, image.name, str(err)))
                    continue
                yield job

        def save(job, *pair):
            maps[job.name], digests = write_exam_heatmaps(heatmaps_dir, job, pair)
            result.heatmap_files.update(digests)

        exam_heatmaps(self.patch_runtime, jobs(), self.settings.heatmap_batch_size, save)
        return maps

    def _classify(self, exam, exam_plan, images, maps, result):
        """Every family on the plan's draws; predictions into ``result``.

        One family's inputs at a time: a full-size exam's 3-channel arrays alone are about
        0.4 GB.
        """
        item = f"exam {exam_plan.index}"
        try:
            check_exam_views(exam)
        except InputImageError as err:
            for family in self.families:
                result.failures.append((family.name, item, str(err)))
                result.predictions[family.name] = None
            return
        for position, family in enumerate(self.families):
            try:
                inputs = exam_inputs(exam, images, maps, family.input_channels)
            except InputImageError as err:
                result.failures.append((family.name, item, str(err)))
                result.predictions[family.name] = None
                continue
            if position == len(self.families) - 1:
                images.clear()  # the last inputs hold all that is still needed
                maps.clear()
            result.predictions[family.name] = predict_exam(
                self.models[family.name], inputs, exam["best_center"], exam_plan.draws,
                self.classifier_settings[family.name], self.device, self.batching,
                self._views_pool.map)
            del inputs
            if position < len(self.families) - 1:
                release_free_memory()  # freed activations, before the next inputs are built
