"""Demo weights: deterministic, UNTRAINED stand-ins for the five official checkpoints.

When the official weights are absent (no network, or before ``download_files``), the
pipeline can still run end to end on these. They are written in the original release's
formats, so they load through the same checkpoint code as the official files:

- ``sample_patch_model.p``: a bare state dict of torchvision's DenseNet-121 with 4 classes;
- ``sample_image_model.p`` / ``sample_imageheatmaps_model.p``: ``{"model": state_dict}`` of
  the view_split classifier, 1 / 3 input channels;
- ``ImageOnly__ModeImage_weights.p`` / ``ImageHeatmaps__ModeImage_weights.p``: the same for
  the image-mode classifier. As in the original files, the state dict holds the shared
  columns (``four_view_resnet.cc.``/``.mlo.``) and identical copies under the per-view
  aliases ``l_cc``, ``l_mlo``, ``r_cc``, ``r_mlo``.

Parameters are PyTorch's default initialisation after ``torch.manual_seed(seed)``. The
BatchNorm running statistics are then measured on synthetic phantoms (one pass in train
mode with a cumulative average), so activations keep a sensible scale and outputs are not
saturated. The numbers these weights produce are NOT predictions: ``DEMO_WEIGHTS.txt`` in
the models folder says so and records the git blob SHA-1 of every demo file, which is how
other commands tell demo files from official ones.
"""

from pathlib import Path

import numpy as np

from ..core.checkpoints.classifier import with_column_aliases
from ..core.hashing import git_blob_sha1
from .download import OFFICIAL_FILES_PATH, verified_official_weights
from ..core.errors import OutputExistsError
from .demo_marker import (DEMO_FILES, MARKER_NAME, _marker_seed, _read_marker, _write_marker,  # noqa: F401
                          demo_weight_files, forget_demo_weights)
from ..core.formats import atomic_path
from ..core.runtime import log
from ..core.standardize import standardize_in_place
from ..core.views import INPUT_SIZE, VIEWS, flip_for_model, view_angle

DEMO_SEED = 0
# Calibration inputs: phantom windows at half the model's input size (SPEC 1) keep the
# measurement to a few seconds per model; patches 256 px (SPEC 6) on a 128-px grid.
WINDOW_SCALE = 0.5
PATCH_SIZE, PATCH_GRID = 256, 128
PATCHES_PER_IMAGE = None  # all grid positions (14 patches in all)
CALIBRATION_EXAMS = (0, 1)
HEATMAP_LEVEL = 0.25  # what the untrained patch model's softmax gives, about 1/4 per class



# --------------------------------------------------------------------------- state dicts
def make_patch_state_dict(seed=DEMO_SEED, patches_per_image=None):
    """Demo DenseNet-121 patch classifier: a bare state dict with torchvision's keys."""
    import torch
    from torchvision.models import densenet121

    from ..core.patch_model import PatchClassifier

    with torch.random.fork_rng(devices=[]):  # seed a private copy of the global generator
        torch.manual_seed(seed)
        reference = densenet121(weights=None, num_classes=4)
        model = PatchClassifier()
    model.load_state_dict(reference.state_dict())
    batch = torch.from_numpy(_calibration_patches(seed, patches_per_image))
    _calibrate_batchnorm(model, lambda: model(batch))
    return model.state_dict()


def make_classifier_state_dict(mode, channels, seed=DEMO_SEED, window_scale=WINDOW_SCALE):
    """Demo cancer classifier (``mode`` 'view_split' or 'image'): the checkpoint's state dict.

    Keys are the original files', aliases included (they share storage with the columns).
    """
    import torch

    from ..core.classifier_models import build_image_model, build_view_split_model

    builders = {"view_split": build_view_split_model, "image": build_image_model}
    if mode not in builders:
        raise ValueError(f"mode must be 'view_split' or 'image', got {mode!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builders[mode](channels)
    views = {view: torch.from_numpy(_calibration_windows(view, channels, seed, window_scale))
             for view in VIEWS}
    _calibrate_batchnorm(model, lambda: model(views))
    return with_column_aliases(model.state_dict())


def _calibrate_batchnorm(model, forward):
    """Set every BatchNorm's running statistics to those of one ``forward()`` pass; eval mode."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass gives exactly its statistics
    model.train()
    with torch.no_grad():
        forward()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


# --------------------------------------------------------------------------- calibration data
def _phantom_crop(exam_index, view, seed):
    """A phantom cut to its breast's bounding box, flipped to face right, as float64."""
    from .phantoms import make_phantom

    phantom = make_phantom(exam_index, view, seed)
    rows = np.flatnonzero(phantom.breast.any(axis=1))
    cols = np.flatnonzero(phantom.breast.any(axis=0))
    crop = phantom.image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return flip_for_model(crop, view, "NO").astype(np.float64)


def _standardized(image):
    return standardize_in_place(np.array(image, dtype=np.float64))


def _calibration_patches(seed, per_image=None):
    """(N, 3, 256, 256) float32 patches of standardized phantoms, as stage 3 feeds them."""
    patches = []
    for view in ("L-CC", "L-MLO"):
        image = _standardized(_phantom_crop(CALIBRATION_EXAMS[0], view, seed))
        starts = [(r, c) for r in range(0, image.shape[0] - PATCH_SIZE + 1, PATCH_GRID)
                  for c in range(0, image.shape[1] - PATCH_SIZE + 1, PATCH_GRID)]
        for r, c in starts[:per_image]:
            patches.append(image[r:r + PATCH_SIZE, c:c + PATCH_SIZE])
    batch = np.stack(patches).astype(np.float32)[:, None]
    return np.ascontiguousarray(np.repeat(batch, 3, axis=1))


def _calibration_windows(view, channels, seed, window_scale):
    """(N, C, h, w) float32 model inputs of ``view`` built from phantoms of a few exams.

    Each crop sits in a zero window as stage 4 pads small crops (CC centred vertically,
    MLO at the top, both at the chest-wall side); the image channel is standardized over
    the window and heatmap channels hold ``HEATMAP_LEVEL`` over the crop.
    """
    height, width = (max(int(round(n * window_scale)), 32) for n in INPUT_SIZE[view_angle(view)])
    batch = np.zeros((len(CALIBRATION_EXAMS), channels, height, width), dtype=np.float32)
    for i, exam_index in enumerate(CALIBRATION_EXAMS):
        crop = _phantom_crop(exam_index, view, seed)[:height, :width]
        top = (height - crop.shape[0]) // 2 if view_angle(view) == "CC" else 0
        window = np.zeros((height, width))
        window[top:top + crop.shape[0], :crop.shape[1]] = crop
        batch[i, 0] = _standardized(window)
        batch[i, 1:, top:top + crop.shape[0], :crop.shape[1]] = HEATMAP_LEVEL
    return batch


# --------------------------------------------------------------------------- files

def weights_status(models_dir, official_files_path=OFFICIAL_FILES_PATH):
    """``{name: 'official' | 'demo' | 'missing' | 'other'}`` for the five checkpoints."""
    models_dir = Path(models_dir)
    official = verified_official_weights(models_dir, official_files_path)
    demo = demo_weight_files(models_dir)
    return {name: ("official" if name in official else "demo" if name in demo
                   else "other" if (models_dir / name).exists() else "missing")
            for name in DEMO_FILES}



def write_demo_weights(models_dir, seed=DEMO_SEED, overwrite=False,
                       official_files_path=OFFICIAL_FILES_PATH):
    """Write the demo checkpoints that are missing; returns ``(written, kept)`` paths.

    Official files (verified against ``official_files.tsv``) are never replaced, not even with
    ``overwrite``; demo files already made with ``seed`` are kept; any other existing file
    of the same name is refused unless ``overwrite``.
    """
    import torch

    models_dir = Path(models_dir)
    status = weights_status(models_dir, official_files_path)
    recorded = {name: sha1 for name, sha1 in _read_marker(models_dir).items()
                if status.get(name) == "demo"}
    same_seed = _marker_seed(models_dir) == seed
    others = [n for n, s in status.items() if s == "other"]
    if others and not overwrite:
        raise OutputExistsError(
            f"{models_dir}: {', '.join(others)} exist but are neither the official weights "
            "nor demo weights; move them away or pass --overwrite to replace them")
    written, kept = [], []
    for name, (model, channels) in DEMO_FILES.items():
        path = models_dir / name
        if status[name] == "official" or (status[name] == "demo" and same_seed):
            log.info("%s: %s weights present, kept", path, status[name])
            kept.append(path)
            continue
        log.info("%s: making demo weights (%s, %d channel(s))", path, model, channels)
        if model == "patch":
            checkpoint = make_patch_state_dict(seed, PATCHES_PER_IMAGE)
        else:
            checkpoint = {"model": make_classifier_state_dict(model, channels, seed,
                                                              WINDOW_SCALE)}
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
        recorded[name] = git_blob_sha1(path)
        written.append(path)
    _write_marker(models_dir, recorded, seed)
    return written, kept
