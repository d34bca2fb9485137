"""Device, precision and torch-free decisions (core.runtime)."""

import pytest
import torch


def test_runs_on_cpu_decides_without_torch(monkeypatch, caplog):
    from breast_cancer_classifier.core import runtime

    assert runtime.runs_on_cpu("cpu") is True
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda name: object())  # a driver loads
    assert runtime.runs_on_cpu("gpu") is False

    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(runtime.ctypes, "CDLL", no_library)
    assert runtime.runs_on_cpu("gpu") is True
    monkeypatch.setattr(runtime.sys, "platform", "darwin")  # MPS: only torch can tell
    assert runtime.runs_on_cpu("gpu") is False


def test_precision_context():
    from breast_cancer_classifier.core.errors import SettingsError
    from breast_cancer_classifier.core.runtime import precision_context

    x = torch.ones(2, 2)
    with precision_context("fp32", "cpu"):
        assert (x @ x).dtype == torch.float32
    with precision_context("bf16", "cpu"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(SettingsError, match="tf32 needs an NVIDIA GPU"):
        precision_context("tf32", "cpu")
    with pytest.raises(SettingsError, match="unknown precision 'fp8'"):
        precision_context("fp8", "cpu")

