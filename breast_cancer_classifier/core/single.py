"""The single-image path (SPEC 9) in one process: crop, center, heatmaps, both classifiers.

It writes run_single.sh's files into one folder (``cropped.png``, ``cropped_metadata.pkl``,
``malignant_heatmap.hdf5``, ``benign_heatmap.hdf5``, ``predictions.jsonl``) with the same
numbers. The reference's quirks are explicit options: the heatmaps are made without
mirroring unless ``proper_mirroring``, and each classifier draws from a fresh
``RandomState(seed)``, as each of its runs was a process of its own.
"""

from dataclasses import dataclass
from pathlib import Path

from . import formats
from .errors import ExamListError
from .exam_list import save_metadata
from .home import weight_default
from .settings import ComputeSettings
from .stages.cropping import crop_mammogram_array, single_metadata
from .stages.centers import get_optimal_center
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


def run_single(image_path, view, output_dir, settings, overwrite=False):
    """Run the single-image path; returns ``{"image": {...}, "imageheatmaps": {...}}``."""
    import numpy as np
    import torch

    from .checkpoints.classifier import load_single_image_model
    from .patch_runtime import load_patch_runtime
    from .runtime import check_precision, resolve_device
    from .stages.classify import (ClassifierSettings, classify_single_image,
                                  format_single_prediction, reuse_freed_memory)
    from .stages.heatmaps import produce_single_heatmaps

    if view not in VIEWS:
        raise ExamListError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    output_dir = Path(output_dir)
    paths = {name: output_dir / name for name in SINGLE_FILES}
    for path in paths.values():
        formats.check_output_file(path, overwrite)
    device = resolve_device(settings.device_type, settings.gpu_number)
    check_precision(settings.precision, device)

    image = formats.read_mammogram_png(image_path)
    cropped, crop = crop_mammogram_array(image, view, settings.horizontal_flip)
    formats.write_png(paths["cropped.png"], cropped)
    metadata = single_metadata(view, settings.horizontal_flip, crop)
    metadata["best_center"] = get_optimal_center(
        flip_for_model(cropped, view, settings.horizontal_flip), view,
        crop.rightmost_points, crop.bottommost_points)
    save_metadata(metadata, paths["cropped_metadata.pkl"])

    patch_device = "cpu" if device.type == "cpu" else "gpu"
    classify = load_patch_runtime(settings.patch_model_path, patch_device, settings.gpu_number,
                                  settings.trust_checkpoint, settings.runtime, settings.precision)
    malignant, benign = produce_single_heatmaps(
        classify, paths["cropped.png"], metadata, batch_size=settings.heatmap_batch_size,
        seed=settings.seed, proper_mirroring=settings.proper_mirroring)
    formats.write_hdf5(paths["malignant_heatmap.hdf5"], malignant)
    formats.write_hdf5(paths["benign_heatmap.hdf5"], benign)

    reuse_freed_memory()
    flip = settings.horizontal_flip
    image32 = flip_for_model(cropped.astype(np.float32), view, flip)
    # As the classifier reads the saved maps: mirrored with full_view (SPEC 9).
    channels = {False: [image32],
                True: [image32, flip_for_model(benign, view, flip),
                       flip_for_model(malignant, view, flip)]}
    predictions, lines = {}, []
    for stage, path, heatmaps in (("image", settings.image_model_path, False),
                                  ("imageheatmaps", settings.imageheatmaps_model_path, True)):
        options = ClassifierSettings(model_mode="image", use_heatmaps=heatmaps,
                                     use_augmentation=True, num_epochs=settings.num_epochs,
                                     batch_size=settings.batch_size, seed=settings.seed,
                                     precision=settings.precision)
        options.check()
        model = load_single_image_model(path, view, options.channels,
                                        trust=settings.trust_checkpoint, device=device)
        model = model.to(memory_format=torch.channels_last)
        joint = np.stack(channels[heatmaps], axis=-1)
        predictions[stage] = classify_single_image(model, joint, metadata["best_center"],
                                                   view_angle(view), options, device)
        lines.append(format_single_prediction(predictions[stage]))
        print(lines[-1], flush=True)
    formats.write_bytes_atomic(paths["predictions.jsonl"], ("\n".join(lines) + "\n").encode())
    return predictions
