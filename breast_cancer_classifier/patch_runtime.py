"""The runtimes that run the patch classifier: one small interface, several engines.

A runtime is called with an (N, 256, 256, 3) float32 batch of patches (channels last, the
layout stage 3 builds) and returns the (N, 4) float32 softmax probabilities.

* ``torch``: PyTorch eager on the model's device, fed the batch's NCHW view without a copy,
  which reproduces the reference bit for bit on the CPU (SPEC 6 step 3).
* ``onnxruntime``: the same loaded model exported to ONNX (softmax and the channel
  permutation inside the graph) and run by ONNX Runtime's CPU provider. Faster on the CPU;
  differs from eager by about 3e-6 per probability (measured on the parity kit; the
  heatmap tolerance is 1e-5). The export is cached on disk, keyed by the checkpoint's
  SHA-256, so it happens once per weight file.

``auto`` (the default) picks onnxruntime on the CPU when it is installed, and torch
otherwise (always torch on a GPU).
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .runtime import log

RUNTIMES = ("auto", "torch", "onnxruntime")
PATCH_SHAPE = (256, 256, 3)
ONNX_OPSET = 17
ONNX_MAX_FORWARD = 10  # patches per session.run (memory, see OnnxRuntime.__call__)


def default_cache_dir():
    """Where exported graphs are kept: $BCC_CACHE_DIR, else ~/.cache/breast_cancer_classifier."""
    base = os.environ.get("BCC_CACHE_DIR") or Path.home() / ".cache" / "breast_cancer_classifier"
    return Path(base)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class TorchRuntime:
    """PyTorch eager; ``max_forward`` bounds the patches per forward pass (activation memory)."""

    name = "torch"

    def __init__(self, model, device, max_forward=None):
        self.model, self.device, self.max_forward = model, device, max_forward

    def __call__(self, batch):
        from .heatmaps import classify_patches

        return classify_patches(self.model, batch, self.device, self.max_forward)


class OnnxRuntime:
    """ONNX Runtime on the CPU, from a graph exported once per checkpoint and cached."""

    name = "onnxruntime"

    def __init__(self, model, checkpoint_path, cache_dir=None, threads=None):
        import onnxruntime as ort

        graph_path = self._exported_graph(model, checkpoint_path, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        self.session = ort.InferenceSession(str(graph_path), options,
                                            providers=["CPUExecutionProvider"])

    @staticmethod
    def _exported_graph(model, checkpoint_path, cache_dir):
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        key = file_sha256(checkpoint_path)[:16]
        import torch

        graph_path = cache_dir / f"patch_classifier_{key}_torch{torch.__version__}_opset{ONNX_OPSET}.onnx"
        if graph_path.is_file():
            return graph_path
        log.info("exporting the patch classifier to ONNX (once per checkpoint): %s", graph_path)
        from . import io

        with io.atomic_path(graph_path) as tmp:
            export_onnx(model, tmp)
        return graph_path

    def __call__(self, batch):
        # Pieces bound the memory ONNX Runtime's arena grows to (a whole batch of 100: peak
        # RSS 4.0 GB on a real CC image; pieces of 10: 1.3 GB, and faster); the results do
        # not depend on the piece size.
        from .heatmaps import _forward_pieces

        return np.concatenate([
            self.session.run(None, {"patches": np.ascontiguousarray(batch[start:stop])})[0]
            for start, stop in _forward_pieces(len(batch), ONNX_MAX_FORWARD)])


def export_onnx(model, path):
    """Export ``model`` (logits, NCHW) as an ONNX graph: NHWC patches in, softmax out."""
    import warnings

    import torch

    class SoftmaxNHWC(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, patches):
            return torch.softmax(self.model(patches.permute(0, 3, 1, 2)), dim=1)

    example = torch.zeros((2,) + PATCH_SHAPE)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(SoftmaxNHWC().cpu().eval(), (example,), str(path),
                          input_names=["patches"], output_names=["probabilities"],
                          dynamic_axes={"patches": {0: "n"}, "probabilities": {0: "n"}},
                          opset_version=ONNX_OPSET, dynamo=False)


def make_patch_runtime(runtime, model, device, checkpoint_path, max_forward=None):
    """Build the runtime named ``runtime`` (one of RUNTIMES) for a loaded patch model."""
    if runtime not in RUNTIMES:
        raise PipelineError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    on_cpu = getattr(device, "type", str(device)) == "cpu"
    if runtime == "auto":
        runtime = "onnxruntime" if on_cpu and onnxruntime_available() else "torch"
    if runtime == "onnxruntime":
        if not on_cpu:
            raise PipelineError("--runtime onnxruntime runs on the CPU only; use --device-type "
                                "cpu, or --runtime torch on a GPU")
        if not onnxruntime_available():
            raise PipelineError("--runtime onnxruntime needs the onnxruntime package "
                                "(pip install onnxruntime onnx)")
        return OnnxRuntime(model, checkpoint_path)
    return TorchRuntime(model, device, max_forward)
