"""Patch-classifier runtimes: ONNX Runtime agrees with PyTorch eager; exports are cached."""

import numpy as np
import pytest
import torch

from breast_cancer_classifier.core.errors import PipelineError
from breast_cancer_classifier.core.patch_runtime import (OnnxRuntime, TorchRuntime,
                                                         make_patch_runtime,
                                                         onnxruntime_available)

pytestmark = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")


@pytest.fixture(scope="module")
def patch_checkpoint(tmp_path_factory):
    """A small random-weights patch checkpoint (a fixture only: its outputs mean nothing)."""
    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier
    from breast_cancer_classifier.core.patch_model import PatchClassifier

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "patch.p"
    model = PatchClassifier()
    with torch.no_grad():  # non-trivial BatchNorm statistics so outputs vary by patch
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.uniform_(-0.2, 0.2)
    torch.save(model.state_dict(), path)
    return path, load_patch_classifier(path, torch.device("cpu"))


def patches(n=6, seed=0):
    rng = np.random.default_rng(seed)
    gray = rng.standard_normal((n, 256, 256)).astype(np.float32)
    return np.repeat(gray[..., None], 3, axis=3)


def test_onnxruntime_matches_eager_within_heatmap_tolerance(patch_checkpoint, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("BCC_CACHE_DIR", str(tmp_path))
    path, model = patch_checkpoint
    batch = patches()
    eager = TorchRuntime(model, torch.device("cpu"))(batch)
    onnx = make_patch_runtime("auto", model, torch.device("cpu"), path)
    assert isinstance(onnx, OnnxRuntime)
    result = onnx(batch)
    assert result.shape == (6, 4) and result.dtype == np.float32
    np.testing.assert_allclose(result, eager, rtol=0, atol=1e-5)
    assert np.ptp(eager[:, 0]) > 1e-4  # the check compares outputs that differ by patch
    # A second runtime for the same checkpoint reuses the cached export.
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1
    mtime = exported[0].stat().st_mtime_ns
    make_patch_runtime("onnxruntime", model, torch.device("cpu"), path)
    assert exported[0].stat().st_mtime_ns == mtime


def test_runtime_choice_and_errors(patch_checkpoint):
    path, model = patch_checkpoint
    assert isinstance(make_patch_runtime("torch", model, torch.device("cpu"), path), TorchRuntime)
    with pytest.raises(PipelineError, match="unknown runtime 'tensorrt'"):
        make_patch_runtime("tensorrt", model, torch.device("cpu"), path)
    with pytest.raises(PipelineError, match="CPU only"):
        make_patch_runtime("onnxruntime", model, torch.device("cuda:0"), path)
