"""What ``bcc export`` exports: every network, with named inputs and outputs, and check inputs.

Each network is wrapped so that its signature is plain tensors in, a tuple of tensors out
(the classifiers take dicts of views in the pipeline), the same signature for every format:

| network | checkpoint | inputs (float32, NCHW) | outputs |
| --- | --- | --- | --- |
| ``patch`` | patch | ``patches`` N x 3 x 256 x 256 | ``probabilities`` N x 4 (softmax) |
| ``view_split[_heatmaps]`` | view_split | ``L_CC R_CC`` N x C x 2677 x 1942, ``L_MLO R_MLO`` N x C x 2974 x 1748 | ``CC_log_probs MLO_log_probs`` N x 4 x 2 |
| ``image[_heatmaps]`` | image mode | the same four | ``L_CC_log_probs R_CC_log_probs L_MLO_log_probs R_MLO_log_probs`` N x 4 x 2 |
| ``single_image[_heatmaps]`` | image mode, one view | ``image`` N x C x H x W (the view's window) | ``log_probs`` N x 2 x 2 |

C is 1 (image only) or 3 (image, benign heatmap, malignant heatmap). Only the batch axis N
is dynamic; ``window_scale`` < 1 exports the classifiers for proportionally smaller windows
(quick checks; the pipeline's windows are scale 1). The patch network ends with the softmax
stage 3 applies, so that its outputs are what the heatmaps are made of (its 1e-5 tolerance
is the heatmaps'); the classifiers give the modules' (negative, positive) log-probability
pairs.

The check inputs come from one four-view exam of uncropped PNGs (the sample data or the
parity kit): each view is cropped and centered (stages 1-2) and its model window cut at the
best center without augmentation; the patches are cut from the L-CC crop as stage 3 cuts
them. Heatmap channels come from a heatmaps folder when given (run.sh's layout), else are a
stand-in: the window's intensities scaled to [0, 1].
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import formats
from ..core.errors import SettingsError
from ..core.views import INPUT_SIZE, VIEWS, flip_for_model, view_angle

PATCH_CHECK_COUNT = 4  # patches in the check batch
TRACE_BATCH = 2  # batch of the example inputs the exporters trace (the check runs others)
INPUT_NAMES = {view: view.replace("-", "_") for view in VIEWS}  # L-CC -> L_CC


@dataclass(frozen=True)
class Network:
    """One exportable network: how it is built and how it is checked."""

    name: str
    kind: str  # patch | view_split | image | single_image
    channels: int  # input channels: 3 for the patch network
    checkpoint: str  # the ExportSettings field naming its weight file
    keras: bool  # has a Keras port, hence a TF SavedModel export

    @property
    def tolerance_kind(self):
        return "patch" if self.kind == "patch" else "classifier"


NETWORKS = {n.name: n for n in (
    Network("patch", "patch", 3, "patch_model_path", True),
    Network("view_split", "view_split", 1, "image_model_path", False),
    Network("view_split_heatmaps", "view_split", 3, "imageheatmaps_model_path", False),
    Network("image", "image", 1, "image_mode_model_path", False),
    Network("image_heatmaps", "image", 3, "imageheatmaps_mode_model_path", False),
    Network("single_image", "single_image", 1, "image_mode_model_path", True),
    Network("single_image_heatmaps", "single_image", 3, "imageheatmaps_mode_model_path", True),
)}


def input_names(network):
    if network.kind == "patch":
        return ("patches",)
    if network.kind == "single_image":
        return ("image",)
    return tuple(INPUT_NAMES[view] for view in VIEWS)


def output_names(network):
    if network.kind == "patch":
        return ("probabilities",)
    if network.kind == "single_image":
        return ("log_probs",)
    keys = ("CC", "MLO") if network.kind == "view_split" else [INPUT_NAMES[v] for v in VIEWS]
    return tuple(f"{key}_log_probs" for key in keys)


def load_torch_network(network, checkpoint_path, view, trust=False):
    """The PyTorch module of ``network`` (eval mode, CPU), loaded with every checkpoint check
    (a :class:`CheckpointError` names the file and what it looks like)."""
    from ..core.checkpoints.classifier import load_classifier, load_single_image_model
    from ..core.checkpoints.patch import load_patch_classifier

    if network.kind == "patch":
        return load_patch_classifier(checkpoint_path, "cpu", trust=trust)
    if network.kind == "single_image":
        return load_single_image_model(checkpoint_path, view, network.channels, trust=trust)
    return load_classifier(checkpoint_path, network.kind, network.channels, trust=trust)


def exportable(network, module):
    """``module`` with tensors in and a tuple out, in the order of the names above."""
    import torch

    if network.kind in ("patch", "single_image"):
        softmax = network.kind == "patch"

        class Single(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = module

            def forward(self, x):
                out = self.model(x)
                return (torch.softmax(out, dim=1) if softmax else out,)

        return Single().eval()
    keys = ("CC", "MLO") if network.kind == "view_split" else VIEWS

    class FourViews(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = module

        def forward(self, L_CC, R_CC, L_MLO, R_MLO):  # noqa: N803 (the inputs' names)
            out = self.model(dict(zip(VIEWS, (L_CC, R_CC, L_MLO, R_MLO))))
            return tuple(out[key] for key in keys)

    return FourViews().eval()


# --------------------------------------------------------------------------- check inputs
@dataclass(frozen=True)
class CheckExam:
    """The four cropped views of the check exam: ``{view: (cropped uint16, best_center)}``."""

    views: dict
    heatmaps: dict  # {view: (malignant, benign) float32 maps in stored orientation} or {}
    horizontal_flip: str = "NO"


def exam_paths(prefix):
    """``PREFIX_L_CC.png`` ... for the four views (``sample_data/images/0`` → ``0_L_CC.png``)."""
    prefix = Path(prefix)
    return {view: prefix.with_name(f"{prefix.name}_{INPUT_NAMES[view]}.png") for view in VIEWS}


def read_check_exam(prefix, heatmaps_dir=None):
    """Crop and center the four views named by ``prefix``; read their heatmaps if a folder
    is given (``heatmaps_dir/heatmap_{malignant,benign}/<stem>.hdf5``)."""
    from ..core.stages.centers import get_optimal_center
    from ..core.stages.cropping import crop_mammogram_array

    views, heatmaps = {}, {}
    for view, path in exam_paths(prefix).items():
        if not path.is_file():
            raise SettingsError(f"{path}: check image not found; --check-exam PREFIX needs "
                                "PREFIX_L_CC.png, PREFIX_R_CC.png, PREFIX_L_MLO.png and "
                                "PREFIX_R_MLO.png")
        cropped, crop = crop_mammogram_array(formats.read_mammogram_png(path), view, "NO")
        center = get_optimal_center(flip_for_model(cropped, view, "NO"), view,
                                    crop.rightmost_points, crop.bottommost_points)
        views[view] = (cropped, center)
        if heatmaps_dir is not None:
            maps = tuple(formats.read_hdf5(p).astype(np.float32)
                         for p in formats.heatmap_paths(heatmaps_dir, path.stem))
            if any(m.shape != cropped.shape for m in maps):
                raise SettingsError(f"{heatmaps_dir}: the heatmaps of {path.stem} are "
                                    f"{maps[0].shape}, its crop is {cropped.shape}; were they "
                                    "made from the same images?")
            heatmaps[view] = maps
    return CheckExam(views, heatmaps)


def view_window(exam, view, channels, window_scale=1.0):
    """``1 x C x H x W`` float32: the view's model window at its best center, no augmentation,
    resized by ``window_scale`` when it is not 1."""
    import cv2

    from ..core.stages.augmentation import WindowDraw, model_window
    from ..core.stages.classify import IMAGE_AND_HEATMAPS, IMAGE_ONLY, joint_array

    cropped, center = exam.views[view]
    maps = None
    if channels == 3:
        maps = exam.heatmaps.get(view)  # (malignant, benign)
        if maps is None:  # stand-in maps, in the range of probabilities
            image = cropped.astype(np.float32)
            benign = (image - image.min()) / max(float(np.ptp(image)), 1.0)
            maps = (benign ** 2, benign)
    joint = joint_array(cropped, view, exam.horizontal_flip, maps,
                        IMAGE_AND_HEATMAPS if channels == 3 else IMAGE_ONLY)
    draw = WindowDraw(0, np.zeros(2), np.zeros(4))
    window = model_window(joint, view_angle(view), center, draw, augment=False)
    if window_scale != 1:
        height, width = scaled_window_size(view, window_scale)
        window = cv2.resize(window, (width, height), interpolation=cv2.INTER_AREA)
        window = window.reshape(height, width, channels)
    return np.ascontiguousarray(window.transpose(2, 0, 1)[None])


def check_patches(exam, count=PATCH_CHECK_COUNT):
    """``count x 3 x 256 x 256`` float32: patches of the L-CC crop along its diagonal,
    standardized and repeated over 3 channels as stage 3 does."""
    from ..core.stages.heatmaps import PATCH_SIZE, check_patchable, prepare_image

    cropped, _ = exam.views["L-CC"]
    check_patchable(cropped.shape, "the check exam's L-CC crop")
    image = prepare_image(cropped, "L-CC", exam.horizontal_flip)
    rows = np.linspace(0, image.shape[0] - PATCH_SIZE, count).astype(int)
    columns = np.linspace(0, image.shape[1] - PATCH_SIZE, count).astype(int)
    patches = np.stack([image[r:r + PATCH_SIZE, c:c + PATCH_SIZE] for r, c in zip(rows, columns)])
    return np.ascontiguousarray(np.repeat(patches[:, None].astype(np.float32), 3, axis=1))


def check_inputs(network, exam, view, window_scale=1.0):
    """The network's check inputs: a tuple of float32 NCHW arrays in input order."""
    if network.kind == "patch":
        return (check_patches(exam),)
    if network.kind == "single_image":
        return (view_window(exam, view, network.channels, window_scale),)
    return tuple(view_window(exam, v, network.channels, window_scale) for v in VIEWS)


def trace_inputs(inputs):
    """Example inputs for the exporters: each check input's first item, ``TRACE_BATCH`` times
    (another batch than the check's, so the check shows the batch axis is dynamic)."""
    return tuple(np.ascontiguousarray(np.repeat(x[:1], TRACE_BATCH, axis=0)) for x in inputs)


def scaled_window_size(view, window_scale):
    """(height, width) of the view's classifier window at ``window_scale``."""
    if not 0 < window_scale <= 1:
        raise SettingsError(f"the window scale must be in (0, 1], got {window_scale}")
    return tuple(max(int(round(side * window_scale)), 64)
                 for side in INPUT_SIZE[view_angle(view)])
