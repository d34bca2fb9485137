"""The in-process engine: models loaded once, each exam taken through stages 3 and 4 in memory.

Built once from the weights and settings (in the manner of nnU-Net's predictor: build, then
predict many), it resolves device, precision, runtime and threads in one place. For one
exam and its plan entry (:mod:`plan`) it:

1. reads each cropped image once;
2. makes both heatmaps of each image with the patch classifier, writing each pair as soon as
   it is made (the run.sh layout, SPEC 3), and keeps them in memory;
3. cuts every repetition's windows from those arrays and runs both exam classifiers, the
   image-only one (stage 4a) and the image+heatmaps one (stage 4b), on the plan's draws.

The numbers are those of the stage scripts chained by run.sh. The 1-channel windows of
stage 4a are cut and resized from the image alone: OpenCV's bicubic resize of a 3-channel
array does not give its first channel the bits of a 1-channel resize (up to 2^-6 apart on
16-bit values), so the image channel of stage 4b's windows cannot stand in for them.

Failure policy as in the scripts: an image that cannot be read or patched gets no heatmap;
an exam that lacks a view or an image fails both classifiers; an exam with an image but no
heatmap fails stage 4b only. Failures come back as ``(stage, item, reason)`` triples.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np

from . import formats
from .errors import InputImageError
from .home import weight_default
from .prefetch import prefetch
from .runtime import (GLIBC_DEFAULT_MMAP_MAX, M_MMAP_MAX, M_MMAP_THRESHOLD, glibc_malloc_trim,
                      glibc_mallopt)
from .settings import ComputeSettings
from .stages.heatmaps import _ImageHeatmaps, check_patchable, prepare_image, run_patch_stream
from .views import VIEWS, flip_for_model

HEATMAP_STAGE, IMAGE_STAGE, IMAGEHEATMAPS_STAGE = "heatmaps", "image", "imageheatmaps"
CLASSIFIER_STAGES = (IMAGE_STAGE, IMAGEHEATMAPS_STAGE)


@dataclass(frozen=True)
class EngineSettings(ComputeSettings):
    """The exam pipeline's settings: run.sh's weights, and augmentation on (SPEC 8)."""

    patch_model_path: str = weight_default("sample_patch_model.p")
    image_model_path: str = weight_default("sample_image_model.p")
    imageheatmaps_model_path: str = weight_default("sample_imageheatmaps_model.p")
    use_augmentation: bool = True

    def weight_paths(self):
        return {"patch": self.patch_model_path, "image": self.image_model_path,
                "imageheatmaps": self.imageheatmaps_model_path}


@dataclass
class ExamResult:
    """Pass 2 of one exam: predictions per classifier (None: failed), files, failures."""

    index: int
    predictions: dict = field(default_factory=dict)  # stage -> (4,) float32 or None
    heatmap_files: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (stage, item, reason)
    seconds: float = 0.0


class Engine:
    """Loads the three models once; :meth:`run_exam` takes one exam through pass 2."""

    def __init__(self, settings, device=None):
        """``device``: already resolved (e.g. ``"cuda:0"``), else from the settings."""
        import torch

        from .checkpoints.classifier import load_classifier
        from .patch_runtime import load_patch_runtime
        from .runtime import check_precision, resolve_device, use_full_fp32
        from .stages.classify import ClassifierSettings, RunPlan

        self.settings = settings
        use_full_fp32()  # TF32 off (SPEC 7.4), however the device was chosen
        self.device = (torch.device(device) if device is not None
                       else resolve_device(settings.device_type, settings.gpu_number))
        check_precision(settings.precision, self.device)
        # The device is resolved: the patch runtime must not fall back (or warn) again.
        patch_device = "cpu" if self.device.type == "cpu" else "gpu"
        self.patch_runtime = load_patch_runtime(
            settings.patch_model_path, patch_device, settings.gpu_number,
            settings.trust_checkpoint, settings.runtime, settings.precision)
        self.classifier_settings, self.models = {}, {}
        for stage, path, heatmaps in ((IMAGE_STAGE, settings.image_model_path, False),
                                      (IMAGEHEATMAPS_STAGE, settings.imageheatmaps_model_path,
                                       True)):
            options = ClassifierSettings(
                model_mode="view_split", use_heatmaps=heatmaps,
                use_augmentation=settings.use_augmentation, num_epochs=settings.num_epochs,
                batch_size=settings.batch_size, seed=settings.seed, precision=settings.precision)
            options.check()
            self.classifier_settings[stage] = options
            model = load_classifier(path, "view_split", options.channels,
                                    trust=settings.trust_checkpoint, device=self.device)
            self.models[stage] = model.to(memory_format=torch.channels_last)
        self.run_plan = RunPlan.for_device(self.device)
        self._views_pool = ThreadPoolExecutor(max(1, self.run_plan.view_threads), "views")

    @property
    def runtime_name(self):
        return self.patch_runtime.name

    def close(self):
        self._views_pool.shutdown()

    # ----------------------------------------------------------------------- pass 2
    def run_exam(self, exam, exam_plan, cropped_dir, heatmaps_dir):
        """Stages 3 and 4 of one exam (after stage 2) with its :class:`plan.ExamPlan`."""
        start = time.perf_counter()
        result = ExamResult(exam_plan.index)
        images = self._read_images(exam, exam_plan, cropped_dir, result)
        _heap_for_patches()
        maps = self._heatmaps(exam, exam_plan, images, cropped_dir, heatmaps_dir, result)
        _heap_for_classifiers()
        self._classify(exam, exam_plan, images, maps, result)
        glibc_malloc_trim()  # the next exam starts from the memory of one
        result.seconds = time.perf_counter() - start
        return result

    def _read_images(self, exam, exam_plan, cropped_dir, result):
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
        """``{name: (malignant, benign)}`` in the model's orientation; files written on the way."""
        flip = exam["horizontal_flip"]
        maps = {}

        def items():
            for image in exam_plan.images:
                if image.name not in images:
                    continue
                try:
                    check_patchable(image.shape, formats.image_path(cropped_dir, image.name))
                except InputImageError as err:
                    result.failures.append((HEATMAP_STAGE, image.name, str(err)))
                    continue
                prepared = prepare_image(images[image.name], image.view, flip)
                yield _ImageHeatmaps(image.name, prepared, image.row_strides,
                                     image.column_strides, image.view, flip)

        def save(item):
            malignant, benign = item.heatmaps()
            paths = formats.heatmap_paths(heatmaps_dir, item.name)
            for heatmap, path in zip((malignant, benign), paths):
                formats.write_hdf5(path, flip_for_model(heatmap, item.view, flip))
            result.heatmap_files.extend(paths)
            maps[item.name] = (malignant, benign)
            item.image = item.sums = None

        with closing(prefetch(items(), self.patch_runtime.read_ahead)) as stream:
            run_patch_stream(self.patch_runtime, stream, self.settings.heatmap_batch_size, save)
        return maps

    def _classify(self, exam, exam_plan, images, maps, result):
        """Both exam classifiers on the plan's draws; predictions into ``result``.

        One classifier's inputs at a time: a full-size exam's 3-channel arrays alone are
        about 0.4 GB.
        """
        from .stages.classify import check_exam_views

        item = f"exam {exam_plan.index}"
        try:
            check_exam_views(exam)
            joints = self._joint_arrays(exam, images, None)
        except InputImageError as err:
            for stage in CLASSIFIER_STAGES:
                result.failures.append((stage, item, str(err)))
                result.predictions[stage] = None
            return
        result.predictions[IMAGE_STAGE] = self._predict(IMAGE_STAGE, joints,
                                                        exam["best_center"], exam_plan.draws)
        del joints
        glibc_malloc_trim()  # stage 4a's freed activations, before 4b's inputs are built
        try:
            joints = self._joint_arrays(exam, images, maps)
        except InputImageError as err:
            result.failures.append((IMAGEHEATMAPS_STAGE, item, str(err)))
            result.predictions[IMAGEHEATMAPS_STAGE] = None
            return
        images.clear()  # the 3-channel arrays hold all that is still needed
        maps.clear()
        result.predictions[IMAGEHEATMAPS_STAGE] = self._predict(
            IMAGEHEATMAPS_STAGE, joints, exam["best_center"], exam_plan.draws)

    def _joint_arrays(self, exam, images, maps):
        """``{view: [H x W x C float32]}``: C = 1 (``maps`` None) or 3, facing right (SPEC 7.2).

        Channels ``[image, benign, malignant]``; the maps are already in the model's
        orientation, as stage 4 gets them by mirroring the saved files.
        """
        flip = exam["horizontal_flip"]
        joints = {}
        for view in VIEWS:
            joints[view] = []
            for name in exam[view]:
                if name not in images:
                    raise InputImageError(f"{name}: the cropped image could not be read")
                channels = [flip_for_model(images[name].astype(np.float32), view, flip)]
                if maps is not None:
                    if name not in maps:
                        raise InputImageError(f"{name}: no heatmaps (stage 3 failed for it)")
                    malignant, benign = maps[name]
                    channels += [benign, malignant]
                joints[view].append(np.stack(channels, axis=-1))
        return joints

    def _predict(self, stage, joints, best_centers, draws):
        """(4,) float32: the mean over the repetitions of one classifier's label probabilities."""
        from .stages.classify import batch_probabilities, exam_batch

        options = self.classifier_settings[stage]
        size = self.run_plan.forward_size(options.batch_size)
        batches = (exam_batch(joints, best_centers, draws[start:start + size],
                              options.use_augmentation, self._views_pool.map)
                   for start in range(0, len(draws), size))
        parts = []
        with closing(prefetch(batches, self.run_plan.prefetch_depth)) as stream:
            for batch in stream:
                parts.append(batch_probabilities(self.models[stage], batch, options, self.device))
                del batch  # before the next is cut: two full-size batches are 0.5 GB
        return np.concatenate(parts).mean(axis=0, dtype=np.float32)


def _heap_for_patches():
    """Stage 3's allocator setting: blocks of 1 MiB or more mmapped and returned when freed
    (as ``patch_runtime`` sets it for the stage script); stage 4's keeps freed memory."""
    glibc_mallopt((M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX), (M_MMAP_THRESHOLD, 1 << 20))


def _heap_for_classifiers():
    from .stages.classify import reuse_freed_memory

    reuse_freed_memory()
