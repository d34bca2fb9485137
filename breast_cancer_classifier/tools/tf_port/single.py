"""Stages 3 and 4 of the single-image path (SPEC 9) with the networks run by TensorFlow.

Everything but the network runtime is the PyTorch path's own code: the single-image
scripts of ``core.stage_scripts`` (the plan's strides and draws, the patch stream and
heatmap averaging of ``core.stages.heatmaps``, the windows and augmentation of
``core.stages.classify``), the checkpoint checks of ``core.checkpoints``. So the heatmaps
and predictions have the same files and layout as the PyTorch scripts', and either
script's heatmaps feed either classifier.
"""

import numpy as np

from ...core.checkpoints.classifier import load_single_image_model
from ...core.checkpoints.patch import load_patch_classifier
from ...core.patch_runtime import CPU_MAX_FORWARD, PATCH_SHAPE, forward_pieces
from ...core.runtime import log
from ...core.stage_scripts import run_model_single, run_producer_single
from ...core.stages.heatmaps import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from . import require_tensorflow


def tf_device(device_type="cpu", gpu_number=0):
    """The TensorFlow device name for ``--device-type``/``--gpu-number``; a GPU asked for
    but absent means the CPU, said on stderr (as the PyTorch scripts do)."""
    import tensorflow as tf

    if device_type == "cpu":
        return "/CPU:0"
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        log.warning("device type 'gpu' requested but TensorFlow sees no GPU: running on the CPU")
        return "/CPU:0"
    if gpu_number >= len(gpus):
        log.warning("GPU %d requested but TensorFlow sees %d GPU(s); using GPU 0",
                    gpu_number, len(gpus))
        gpu_number = 0
    return f"/GPU:{gpu_number}"


def _compiled(model, channels, device, softmax=False):
    """``model`` as one traced graph on ``device`` for NHWC float32 input of any size
    (with ``softmax``: the softmax of its outputs over axis 1)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
    def forward(x):
        with tf.device(device):
            out = model(x, training=False)
            return tf.nn.softmax(out, axis=1) if softmax else out
    return forward


class TfPatchRuntime:
    """The patch runtime interface of ``core.patch_runtime`` on TensorFlow: an
    (N, 256, 256, 3) float32 batch in, (N, 4) float32 softmax probabilities out."""

    name = "tensorflow"
    read_ahead = 0

    def __init__(self, keras_model, device="/CPU:0", max_forward=CPU_MAX_FORWARD):
        self._forward = _compiled(keras_model, PATCH_SHAPE[-1], device, softmax=True)
        self.max_forward = max_forward

    def __call__(self, batch):
        # Pieces bound the activation memory, as for PyTorch on the CPU.
        return np.concatenate([
            self._forward(np.ascontiguousarray(batch[start:stop])).numpy()
            for start, stop in forward_pieces(len(batch), self.max_forward)]).astype(np.float32)


def load_tf_patch_runtime(model_path, device_type="cpu", gpu_number=0, trust_checkpoint=False):
    """Read and check the patch checkpoint (either serialization), port it to Keras."""
    from .keras_models import build_patch_classifier

    require_tensorflow()
    device = tf_device(device_type, gpu_number)
    torch_model = load_patch_classifier(model_path, "cpu", trust=trust_checkpoint)
    return TfPatchRuntime(build_patch_classifier(torch_model), device)


class TfSingleImageModel:
    """The Keras single-image classifier behind the PyTorch module's call interface: an
    N x C x H x W torch tensor in, N x 2 x 2 log-probabilities (a torch tensor) out, so
    ``single.classify_single_image`` runs it unchanged."""

    def __init__(self, keras_model, channels, device="/CPU:0"):
        self._forward = _compiled(keras_model, channels, device)

    def __call__(self, x):
        import torch

        # The windows are NHWC arrays seen as NCHW: permuting back is free.
        nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())
        return torch.from_numpy(self._forward(nhwc).numpy())


def tf_single_image_loader(device_type="cpu", gpu_number=0):
    """A ``load_model`` for ``stage_scripts.run_model_single`` that ports the checkpoint to
    Keras."""
    from .keras_models import build_single_image_classifier

    require_tensorflow()
    device = tf_device(device_type, gpu_number)

    def load(model_path, view, channels, trust, _torch_device):
        torch_model = load_single_image_model(model_path, view, channels, trust=trust)
        return TfSingleImageModel(build_single_image_classifier(torch_model), channels, device)
    return load


def run_producer_single_tf(model_path, cropped_mammogram_path, metadata_path,
                           heatmap_path_malignant, heatmap_path_benign, *,
                           batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED, device_type="cpu",
                           gpu_number=0, proper_mirroring=False, overwrite=False,
                           trust_checkpoint=False):
    """``run_producer_single_tf.py``: ``stage_scripts.run_producer_single`` on TensorFlow."""
    require_tensorflow()
    return run_producer_single(
        model_path, cropped_mammogram_path, metadata_path, heatmap_path_malignant,
        heatmap_path_benign, batch_size=batch_size, seed=seed, device_type=device_type,
        gpu_number=gpu_number, proper_mirroring=proper_mirroring, overwrite=overwrite,
        trust_checkpoint=trust_checkpoint, load_classify=load_tf_patch_runtime)


def run_model_single_tf(model_path, view, cropped_mammogram_path, metadata_path, settings,
                        heatmap_paths=None, device_type="cpu", gpu_number=0,
                        trust_checkpoint=False):
    """``run_model_single_tf.py``: ``stage_scripts.run_model_single`` with the Keras classifier.

    The windows are cut by PyTorch-side code on the CPU; only the network runs on
    ``device_type`` (TensorFlow's device), one repetition per forward pass.
    """
    if settings.precision != "fp32":
        raise ValueError("the TensorFlow path runs fp32 only")
    return run_model_single(model_path, view, cropped_mammogram_path, metadata_path, settings,
                            heatmap_paths=heatmap_paths, device_type="cpu",
                            trust_checkpoint=trust_checkpoint,
                            load_model=tf_single_image_loader(device_type, gpu_number))
