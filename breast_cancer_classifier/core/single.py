"""The single-image path (SPEC 9): crop, center, heatmaps, both image-wise classifiers.

:func:`run_single` (``bcc single``) runs it in one process and writes run_single.sh's files
into one folder (``cropped.png``, ``cropped_metadata.pkl``, ``malignant_heatmap.hdf5``,
``benign_heatmap.hdf5``, ``predictions.jsonl``) with the same numbers; the single-image
stage scripts (``stage_scripts``) run the same two functions, :func:`single_image_heatmaps`
and :func:`classify_single_image`. The reference's quirks are explicit: the heatmaps are
made without mirroring unless ``proper_mirroring``, and each heatmap run and each
classifier run draws from a fresh stream (``plan.single_image_plan`` and
``plan.single_image_draws``), as each of its runs was a process of its own.
"""

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from . import formats
from .errors import ExamListError
from .exam_list import save_metadata
from .home import weight_default
from .plan import single_image_draws, single_image_plan
from .prefetch import prefetch
from .settings import ComputeSettings
from .stages.augmentation import window_batch
from .stages.centers import get_optimal_center
from .stages.classify import ClassifierSettings, DeviceBatching, joint_array, mean_probabilities
from .stages.cropping import crop_and_write, single_metadata
from .stages.heatmaps import (DEFAULT_BATCH_SIZE, DEFAULT_SEED, heatmap_job, image_heatmaps,
                              write_heatmaps)
from .views import VIEWS, flip_for_model, view_angle

SINGLE_FILES = ("cropped.png", "cropped_metadata.pkl", "malignant_heatmap.hdf5",
                "benign_heatmap.hdf5", "predictions.jsonl")


@dataclass(frozen=True)
class SingleSettings(ComputeSettings):
    """run_single.sh's weights and flip (SPEC 8 and 9); the quirk of SPEC 9 unless asked."""

    patch_model_path: str = weight_default("sample_patch_model.p")
    image_model_path: str = weight_default("ImageOnly__ModeImage_weights.p")
    imageheatmaps_model_path: str = weight_default("ImageHeatmaps__ModeImage_weights.p")
    horizontal_flip: str = "NO"
    proper_mirroring: bool = False


def single_image_heatmaps(classify_patches, raw, metadata, path, *,
                          batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED,
                          proper_mirroring=False):
    """(malignant, benign) heatmaps of one stored cropped image (read from ``path``), in
    its stored orientation, as they are saved.

    By default this reproduces the reference's single-image quirk (SPEC 9): the image is
    oriented with the short ``view`` (``CC``/``MLO``), which never mirrors, so right-side
    images are patched facing left and their heatmaps are not mirrored back.
    ``proper_mirroring`` orients with ``full_view`` instead, as the exam path does.
    """
    view = metadata["full_view"] if proper_mirroring else metadata["view"]
    image_plan = single_image_plan(seed, str(path), view, raw.shape)
    job = heatmap_job(raw, image_plan, metadata["horizontal_flip"], path)
    return job.stored(image_heatmaps(classify_patches, job, batch_size))


def load_single_classifier(path, view, channels, trust, device):
    """The image-wise classifier of ``view`` (SPEC 9), channels-last on ``device``."""
    import torch

    from .checkpoints.classifier import load_single_image_model

    model = load_single_image_model(path, view, channels, trust=trust, device=device)
    return model.to(memory_format=torch.channels_last)


def classify_single_image(model, joint, best_center, angle, settings, device, batching=None):
    """``{"benign": p, "malignant": p}``: float32 means over the repetitions, as Python floats.

    ``model`` is a :class:`SingleImageModel` (N x 2 x 2 outputs); ``joint`` the image's
    :func:`classify.joint_array`. ``batching``: a :class:`classify.DeviceBatching`
    (default: the device's).
    """
    import torch

    from .runtime import precision_context
    from .stages.classify import to_model_input

    batching = batching or DeviceBatching.for_device(device)
    draws = single_image_draws(settings.seed, settings.num_epochs, settings.use_augmentation)
    size = batching.forward_size(settings.batch_size)
    batches = (window_batch([joint], [best_center], angle, draws[start:start + size],
                            settings.use_augmentation)
               for start in range(0, len(draws), size))
    probabilities = []
    with closing(prefetch(batches, batching.prefetch_depth)) as windows_stream:
        for windows in windows_stream:
            with torch.inference_mode(), precision_context(settings.precision, device):
                output = model(to_model_input(windows, device))
            probabilities.append(torch.exp(output.float())[..., 1].cpu().numpy())
    benign, malignant = mean_probabilities(probabilities)
    return {"benign": float(benign), "malignant": float(malignant)}


def _crop_and_center(image_path, view, horizontal_flip, paths):
    """Stages 1 and 2 of the image: ``(cropped image, metadata)``, both written."""
    image = formats.read_mammogram_png(image_path)
    cropped, crop = crop_and_write(image, image_path, paths["cropped.png"], view,
                                   horizontal_flip)
    metadata = single_metadata(view, horizontal_flip, crop)
    metadata["best_center"] = get_optimal_center(
        flip_for_model(cropped, view, horizontal_flip), view, crop.rightmost_points,
        crop.bottommost_points)
    save_metadata(metadata, paths["cropped_metadata.pkl"])
    return cropped, metadata


def run_single(image_path, view, output_dir, settings, overwrite=False):
    """Run the single-image path; returns ``{"image": {...}, "imageheatmaps": {...}}``."""
    from .allocator import heap_for_classifiers
    from .engine import load_patch_runtime_on
    from .runtime import check_precision, resolve_device

    if view not in VIEWS:
        raise ExamListError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    paths = {name: Path(output_dir) / name for name in SINGLE_FILES}
    for path in paths.values():
        formats.check_output_file(path, overwrite)
    device = resolve_device(settings.device_type, settings.gpu_number)
    check_precision(settings.precision, device)
    cropped, metadata = _crop_and_center(image_path, view, settings.horizontal_flip, paths)
    maps = single_image_heatmaps(
        load_patch_runtime_on(settings, device), cropped, metadata, paths["cropped.png"],
        batch_size=settings.heatmap_batch_size, seed=settings.seed,
        proper_mirroring=settings.proper_mirroring)
    write_heatmaps((paths["malignant_heatmap.hdf5"], paths["benign_heatmap.hdf5"]), maps)

    heap_for_classifiers()
    predictions, lines = {}, []
    for stage, path, heatmaps in (("image", settings.image_model_path, False),
                                  ("imageheatmaps", settings.imageheatmaps_model_path, True)):
        options = ClassifierSettings(model_mode="image", use_heatmaps=heatmaps,
                                     use_augmentation=True, num_epochs=settings.num_epochs,
                                     batch_size=settings.batch_size, seed=settings.seed,
                                     precision=settings.precision)
        options.check()
        model = load_single_classifier(path, view, options.channels, settings.trust_checkpoint,
                                       device)
        # As the classifier reads the saved maps: mirrored with full_view (SPEC 9).
        joint = joint_array(cropped, view, settings.horizontal_flip, maps,
                            options.input_channels)
        predictions[stage] = classify_single_image(model, joint, metadata["best_center"],
                                                   view_angle(view), options, device)
        lines.append(formats.single_prediction_line(predictions[stage]))
        print(lines[-1], flush=True)
    formats.write_bytes_atomic(paths["predictions.jsonl"], ("\n".join(lines) + "\n").encode())
    return predictions
