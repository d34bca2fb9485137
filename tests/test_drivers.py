"""run.sh and run_single.sh end to end, on one small synthetic exam, on the CPU.

The weights are the deterministic demo weights (`make demo`'s): the numbers mean nothing,
so this checks that every output is there, well formed and consistent, not their values.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.exam_list import load_exam_list
from breast_cancer_classifier.core.views import LABELS, VIEWS
from breast_cancer_classifier.tools.tf_port import tensorflow_available

from conftest import REPO
from helpers import slow

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("drivers")
    run([sys.executable, REPO / "src/utilities/make_sample_data.py", "--output-dir",
         root / "data", "--num-exams", "1"])
    run([sys.executable, REPO / "src/utilities/make_demo_weights.py", "--models-dir",
         root / "models"])
    return root


def run(command, env=None, expect=0):
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          env=dict(os.environ, BCC_NO_PROGRESS="1", **(env or {})))
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_sh_env(root):
    out = root / "out"
    return {
        "DEVICE_TYPE": "gpu",  # no GPU here: must fall back to the CPU with a message
        "NUM_EPOCHS": "1", "NUM_PROCESSES": "2", "PYTHON": sys.executable,
        "DATA_FOLDER": str(root / "data" / "images"),
        "INITIAL_EXAM_LIST_PATH": str(root / "data" / "exam_list_before_cropping.pkl"),
        "PATCH_MODEL_PATH": str(root / "models" / "sample_patch_model.p"),
        "IMAGE_MODEL_PATH": str(root / "models" / "sample_image_model.p"),
        "IMAGEHEATMAPS_MODEL_PATH": str(root / "models" / "sample_imageheatmaps_model.p"),
        "CROPPED_IMAGE_PATH": str(out / "cropped_images"),
        "CROPPED_EXAM_LIST_PATH": str(out / "cropped_images" / "cropped_exam_list.pkl"),
        "EXAM_LIST_PATH": str(out / "data.pkl"),
        "HEATMAPS_PATH": str(out / "heatmaps"),
        "IMAGE_PREDICTIONS_PATH": str(out / "image_predictions.csv"),
        "IMAGEHEATMAPS_PREDICTIONS_PATH": str(out / "imageheatmaps_predictions.csv"),
        "VISUALIZE": "1", "VISUALIZATIONS_PATH": str(out / "visualizations"),
    }


@pytest.fixture(scope="module")
def run_sh(workspace):
    proc = run(["bash", REPO / "run.sh"], run_sh_env(workspace))
    return workspace / "out", proc


def test_run_sh_banners_and_gpu_fallback(run_sh):
    _, proc = run_sh
    banners = [line for line in proc.stdout.splitlines() if line.startswith("Stage")]
    assert banners == ["Stage 1: Crop Mammograms", "Stage 2: Extract Centers",
                       "Stage 3: Generate Heatmaps", "Stage 4a: Run Classifier (Image)",
                       "Stage 4b: Run Classifier (Image+Heatmaps)"]
    assert "no GPU is available: running on the CPU" in proc.stderr


def test_run_sh_outputs(run_sh):
    out, _ = run_sh
    names = [f"0_{v.replace('-', '_')}" for v in VIEWS]
    data = load_exam_list(out / "data.pkl")
    assert len(data) == 1 and all(len(data[0]["best_center"][v]) == 1 for v in VIEWS)
    assert load_exam_list(out / "cropped_images" / "cropped_exam_list.pkl")[0]["L-CC"] == ["0_L_CC"]
    for name in names:
        cropped = formats.read_mammogram_png(out / "cropped_images" / f"{name}.png")
        assert cropped.dtype == np.uint16 and min(cropped.shape) >= 256
        for path in formats.heatmap_paths(out / "heatmaps", name):
            heatmap = formats.read_hdf5(path)
            assert heatmap.shape == cropped.shape and heatmap.dtype == np.float32
            assert 0 < heatmap.min() and heatmap.max() < 1
    for csv_name in ("image_predictions.csv", "imageheatmaps_predictions.csv"):
        lines = (out / csv_name).read_text().splitlines()
        assert lines[0] == ",".join(LABELS) and len(lines) == 2
        values = [float(v) for v in lines[1].split(",")]
        assert all(0 < v < 1 for v in values) and all(len(v.split(".")[1]) == 4
                                                      for v in lines[1].split(","))
    assert (out / "visualizations" / "exam_0.png").stat().st_size > 10_000
    qa = (out / "qa.csv").read_text().splitlines()  # the quality check after stage 1
    assert len(qa) == 5 and [line.split(",")[0] for line in qa[1:]] == names
    assert all(line.endswith(",,") for line in qa[1:])  # no flags, no notes
    assert not list(out.rglob("*.failures.csv"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no leftovers


def test_run_sh_twice_then_a_failing_stage_removes_stale_outputs(run_sh, workspace):
    out, _ = run_sh
    env = run_sh_env(workspace)
    before = (out / "image_predictions.csv").read_text()
    run(["bash", REPO / "run.sh"], env)  # a second run replaces everything, same numbers
    assert (out / "image_predictions.csv").read_text() == before
    env["PATCH_MODEL_PATH"] = str(workspace / "missing_patch_model.p")
    proc = run(["bash", REPO / "run.sh"], env, expect=2)
    assert "Stage 3 failed (exit 2); stopping" in proc.stderr
    assert (out / "data.pkl").exists()  # stages 1-2 of this run
    assert not (out / "visualizations").exists()
    assert not (out / "heatmaps").exists() and not (out / "image_predictions.csv").exists()


def test_run_single_sh(workspace):
    out = workspace / "single"
    env = {"DEVICE_TYPE": "cpu", "NUM_EPOCHS": "2", "PYTHON": sys.executable,
           "OUTPUT_PATH": str(out), "VISUALIZE": "1",
           "PATCH_MODEL_PATH": str(workspace / "models" / "sample_patch_model.p"),
           "IMAGE_MODEL_PATH": str(workspace / "models" / "ImageOnly__ModeImage_weights.p"),
           "IMAGEHEATMAPS_MODEL_PATH": str(workspace / "models" /
                                           "ImageHeatmaps__ModeImage_weights.p")}
    image = workspace / "data" / "images" / "0_R_MLO.png"
    proc = run(["bash", REPO / "run_single.sh", image, "R-MLO"], env)
    predictions = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(predictions) == 2 and all(set(p) == {"benign", "malignant"} for p in predictions)
    assert [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()] \
        == predictions
    for name in ("cropped.png", "cropped_metadata.pkl", "malignant_heatmap.hdf5",
                 "benign_heatmap.hdf5", "visualization.png"):
        assert (out / name).is_file(), name
    # A second run works (outputs of the first are replaced, not refused).
    assert run(["bash", REPO / "run_single.sh", image, "R-MLO"], env).stdout == proc.stdout
    bad = run(["bash", REPO / "run_single.sh", image], env, expect=2)
    assert "usage: bash run_single.sh" in bad.stderr


# --------------------------------------------------------------------------- TensorFlow
def run_single_tf_env(workspace, out):
    return {"DEVICE_TYPE": "cpu", "NUM_EPOCHS": "1", "PYTHON": sys.executable,
            "OUTPUT_PATH": str(out),
            "PATCH_MODEL_PATH": str(workspace / "models" / "sample_patch_model.p"),
            "IMAGE_MODEL_PATH": str(workspace / "models" / "ImageOnly__ModeImage_weights.p"),
            "IMAGEHEATMAPS_MODEL_PATH": str(workspace / "models" /
                                            "ImageHeatmaps__ModeImage_weights.p")}


@slow  # the _tf scripts themselves are checked against the kit in test_tf_port
@pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow not installed ('.[tf]')")
def test_run_single_tf_sh_and_its_heatmaps_feed_the_pytorch_classifier(workspace):
    out = workspace / "single_tf"
    env = run_single_tf_env(workspace, out)
    image = workspace / "data" / "images" / "0_R_MLO.png"
    proc = run(["bash", REPO / "run_single_tf.sh", image, "R-MLO"], env)
    banners = [line for line in proc.stdout.splitlines() if line.startswith("Stage")]
    assert len(banners) == 5 and banners[2] == "Stage 3: Generate Heatmaps"
    predictions = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(predictions) == 2 and all(set(p) == {"benign", "malignant"} for p in predictions)
    assert [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()] \
        == predictions
    for name in ("cropped.png", "cropped_metadata.pkl", "malignant_heatmap.hdf5",
                 "benign_heatmap.hdf5"):
        assert (out / name).is_file(), name
    heatmap = formats.read_hdf5(out / "malignant_heatmap.hdf5")
    assert heatmap.shape == formats.read_mammogram_png(out / "cropped.png").shape
    # The TF heatmaps feed the PyTorch classifier: same numbers as the TF classifier's.
    torch_line = run([sys.executable, REPO / "src" / "modeling" / "run_model_single.py",
                      "--view", "R-MLO", "--model-path", env["IMAGEHEATMAPS_MODEL_PATH"],
                      "--cropped-mammogram-path", out / "cropped.png",
                      "--metadata-path", out / "cropped_metadata.pkl", "--use-heatmaps",
                      "--heatmap-path-malignant", out / "malignant_heatmap.hdf5",
                      "--heatmap-path-benign", out / "benign_heatmap.hdf5",
                      "--use-augmentation", "--num-epochs", "1", "--device-type", "cpu"])
    from_torch = json.loads(torch_line.stdout)
    assert all(abs(from_torch[k] - predictions[1][k]) <= 1e-4 for k in from_torch)
    bad = run(["bash", REPO / "run_single_tf.sh", image], env, expect=2)
    assert "usage: bash run_single_tf.sh" in bad.stderr


def test_run_single_tf_sh_refuses_other_precisions_and_a_python_without_tensorflow(tmp_path):
    out = tmp_path / "out"
    env = {"OUTPUT_PATH": str(out), "PYTHON": sys.executable, "PRECISION": "bf16"}
    image = tmp_path / "x.png"
    proc = run(["bash", REPO / "run_single_tf.sh", image, "L-CC"], env, expect=2)
    assert "fp32 only" in proc.stderr
    # -S leaves site-packages (TensorFlow with them) out: a Python without TensorFlow.
    wrapper = tmp_path / "python-without-tf"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    env.update(PYTHON=str(wrapper), PRECISION="fp32")
    proc = run(["bash", REPO / "run_single_tf.sh", image, "L-CC"], env, expect=2)
    assert "pip install" in proc.stderr and "[tf]" in proc.stderr
    assert not out.exists()  # nothing touched
