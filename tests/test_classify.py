"""Stage 4 end to end (SPEC 7, 9): parity with the reference, batching, failures, scripts.

Parity: the kit's four classifier CSVs of ``synth_a`` (small crops, always padded) and
``synth_c`` (large crops, the unpadded window branch), 10 augmented epochs, seed 0, and the
single-image predictions of ``synth_a``, ``synth_c`` and ``real_cc``. The kit holds no cropped
images, only their hashes: they are cut here from the inputs with the kit's own
``window_location`` (SPEC 4: the crop is ``image[top:bottom, left:right]`` of the stored
image) and checked against ``cropped_pixels.json``. Heatmaps are the kit's.

These runs are the slow part of the test suite (a ResNet-22 forward pass on a full-size
window per view and repetition); each configuration runs once and is shared by the tests.
"""

import copy
import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.checkpoints.classifier import load_classifier
from breast_cancer_classifier.core.allocator import heap_for_classifiers
from breast_cancer_classifier.core.stage_scripts import classify_exams, run_model_single
from breast_cancer_classifier.core.stages.classify import (ClassifierSettings, DeviceBatching,
                                                           label_probabilities)
from breast_cancer_classifier.core.exam_list import (STAGE_KEYS, iter_images, load_exam_list,
                                                     save_exam_list)
from breast_cancer_classifier.core.failures import FailureReport, failures_csv_path
from breast_cancer_classifier.core.views import LABELS, VIEWS, view_angle
from conftest import REPO, parity_case

# Kit CSV stem → (model mode, heatmaps, weight file stem).
VARIANTS = {
    "image": ("view_split", False, "image_split"),
    "imageheatmaps": ("view_split", True, "imageheatmaps_split"),
    "image_mode": ("image", False, "image_mode"),
    "imageheatmaps_mode": ("image", True, "imageheatmaps_mode"),
}
SINGLE_IMAGES = [("synth_a", "a0_L_MLO"), ("synth_a", "a1_R_CC"), ("synth_c", "c0_L_MLO"),
                 ("real_cc", "1_L_CC"), ("real_cc", "2_R_CC")]
PARITY_TOL = 1e-4   # issue 5: every CSV value and single-image probability
BATCH_TOL = 1e-5    # batch size N against batch size 1
RUN_MODEL = REPO / "src" / "modeling" / "run_model.py"
RUN_MODEL_SINGLE = REPO / "src" / "modeling" / "run_model_single.py"


# --------------------------------------------------------------------------- kit inputs
def crop_parity_case(case_dir, out_dir):
    """Cut the case's cropped PNGs into ``out_dir``; verify each against the kit's sha256."""
    exam_list = load_exam_list(case_dir / "expected" / "data.pkl")
    hashes = json.loads((case_dir / "expected" / "cropped_pixels.json").read_text())
    for exam_index, view, list_index, name in iter_images(exam_list):
        top, bottom, left, right = exam_list[exam_index]["window_location"][view][list_index]
        image = formats.read_mammogram_png(case_dir / "images" / f"{name}.png")
        cropped = np.ascontiguousarray(image[top:bottom, left:right])
        digest = hashlib.sha256(cropped.tobytes()).hexdigest()
        assert digest == hashes[name]["sha256"], f"{name}: crop differs from the kit's"
        formats.write_png(out_dir / f"{name}.png", cropped)
    return exam_list


def _batching(batch_size):
    """The CPU's batching, but batches of more than one go through the model whole, as on a
    GPU (the CPU's own runs one repetition per forward pass whatever the batch size)."""
    return (DeviceBatching.for_device(torch.device("cpu")) if batch_size == 1
            else DeviceBatching(max_forward=0))


class Kit:
    """Cropped images per case (made once per module) and cached stage-4 predictions."""

    def __init__(self, tmp_path_factory, weights_dir):
        self.tmp_path_factory = tmp_path_factory
        self.weights_dir = weights_dir
        self.cases = {}
        self.predictions = {}

    def case(self, name):
        """``(case folder, cropped-image folder, exam list)``."""
        if name not in self.cases:
            case_dir = parity_case(name)
            out_dir = self.tmp_path_factory.mktemp(f"{name}_cropped")
            self.cases[name] = (case_dir, out_dir, crop_parity_case(case_dir, out_dir))
        return self.cases[name]

    def exam_predictions(self, case, variant, batch_size=1, exams=None):
        """Unrounded ``(exams, 4)`` predictions, 10 augmented epochs, seed 0."""
        key = (case, variant, batch_size, exams)
        if key not in self.predictions:
            case_dir, cropped_dir, exam_list = self.case(case)
            if exams is not None:
                exam_list = [exam_list[i] for i in exams]
            mode, heatmaps, weights = VARIANTS[variant]
            settings = ClassifierSettings(model_mode=mode, use_heatmaps=heatmaps,
                                          use_augmentation=True, num_epochs=10,
                                          batch_size=batch_size, seed=0)
            model = load_classifier(self.weights_dir / f"{weights}.p", mode, settings.channels)
            model = model.to(memory_format=torch.channels_last)
            report = FailureReport("test")
            predictions = classify_exams(exam_list, model, cropped_dir,
                                         case_dir / "expected" / "heatmaps", settings,
                                         torch.device("cpu"), report, _batching(batch_size))
            assert len(report) == 0, report.failures
            self.predictions[key] = np.stack(predictions)
        return self.predictions[key]

    def single_prediction(self, case, image, variant, batch_size=1, precision="fp32"):
        """``{"benign", "malignant"}`` of the single-image path, 10 augmented epochs, seed 0."""
        key = ("single", case, image, variant, batch_size, precision)
        if key not in self.predictions:
            self.predictions[key] = self._single_prediction(case, image, variant, batch_size,
                                                            precision)
        return self.predictions[key]

    def _single_prediction(self, case, image, variant, batch_size, precision):
        case_dir, cropped_dir, _ = self.case(case)
        view = next(item["view"] for item in json.loads((case_dir / "single.json").read_text())
                    if item["image"] == image)
        single_dir = case_dir / "expected" / "single" / image
        heatmaps = variant == "imageheatmaps"
        settings = ClassifierSettings(model_mode="image", use_heatmaps=heatmaps,
                                      use_augmentation=True, num_epochs=10,
                                      batch_size=batch_size, seed=0, precision=precision)
        weights = self.weights_dir / ("imageheatmaps_mode.p" if heatmaps else "image_mode.p")
        return run_model_single(
            weights, view, cropped_dir / f"{image}.png", single_dir / "cropped_metadata.pkl",
            settings, heatmap_paths=(single_dir / "malignant_heatmap.hdf5",
                                     single_dir / "benign_heatmap.hdf5"),
            batching=_batching(batch_size))


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    weights_dir = parity_case("weights")
    heap_for_classifiers()  # as run_model does: a third less CPU time per forward pass
    return Kit(tmp_path_factory, weights_dir)


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", ["synth_a", "synth_c"])
def test_exam_predictions_match_the_reference(kit, case, variant):
    case_dir = kit.case(case)[0]
    expected = formats.read_predictions_csv(case_dir / "expected" / f"{variant}_predictions.csv")
    got = kit.exam_predictions(case, variant)
    np.testing.assert_allclose(got, expected, rtol=0, atol=PARITY_TOL)


@pytest.mark.parametrize("variant", ["image", "imageheatmaps"])
@pytest.mark.parametrize("case,image", SINGLE_IMAGES)
def test_single_image_predictions_match_the_reference(kit, case, image, variant):
    case_dir = kit.case(case)[0]
    expected = next(item for item in
                    json.loads((case_dir / "expected" / "single_predictions.json").read_text())
                    if item["name"] == image)[variant]
    got = kit.single_prediction(case, image, variant)
    assert set(got) == {"benign", "malignant"}
    for key in ("benign", "malignant"):
        assert isinstance(got[key], float)
        assert abs(got[key] - expected[key]) <= PARITY_TOL, (key, got[key], expected[key])


def test_batch_size_10_equals_batch_size_1(kit):
    one = kit.exam_predictions("synth_a", "image", batch_size=1)[0]
    # Exam 0 draws first, so a one-exam list gives it the same random numbers.
    ten = kit.exam_predictions("synth_a", "image", batch_size=10, exams=(0,))[0]
    np.testing.assert_allclose(ten, one, rtol=0, atol=BATCH_TOL)


def test_bf16_is_opt_in_and_close_to_fp32(kit):
    # --precision bf16 (autocast) moves the numbers a little; fp32 stays the parity path.
    fp32 = kit.single_prediction("synth_a", "a0_L_MLO", "imageheatmaps")
    bf16 = kit.single_prediction("synth_a", "a0_L_MLO", "imageheatmaps", precision="bf16")
    deviation = max(abs(bf16[key] - fp32[key]) for key in fp32)
    print(f"bf16 vs fp32, single image: {deviation:.2e}")
    assert 0 < deviation < 0.02


def test_tf32_needs_a_cuda_device(kit, tmp_path):
    case_dir, cropped_dir, _ = kit.case("synth_a")
    single_dir = case_dir / "expected" / "single" / "a0_L_MLO"
    done = subprocess.run(
        [sys.executable, str(RUN_MODEL_SINGLE), "--view", "L-MLO", "--model-path",
         str(kit.weights_dir / "image_mode.p"), "--cropped-mammogram-path",
         str(cropped_dir / "a0_L_MLO.png"), "--metadata-path",
         str(single_dir / "cropped_metadata.pkl"), "--device-type", "cpu",
         "--precision", "tf32"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert "--precision tf32 needs an NVIDIA GPU" in done.stderr


def test_single_image_batch_size_does_not_change_the_numbers(kit):
    one = kit.single_prediction("synth_c", "c0_L_MLO", "imageheatmaps", batch_size=1)
    four = kit.single_prediction("synth_c", "c0_L_MLO", "imageheatmaps", batch_size=4)
    for key in one:
        assert abs(one[key] - four[key]) <= BATCH_TOL


def test_input_side_threads_change_neither_numbers_nor_failures(kit):
    # In turn with one thread (the CPU default's order) vs four view threads and two batches
    # prepared ahead (the GPU default): same numbers, same failed exam, same report.
    case_dir, cropped_dir, exam_list = kit.case("synth_a")
    unreadable = copy.deepcopy(exam_list[1])
    unreadable["L-CC"] = ["no_such_image"]
    exams = [exam_list[0], unreadable, exam_list[1]]
    settings = ClassifierSettings(use_augmentation=True, num_epochs=3, seed=4)
    model = load_classifier(kit.weights_dir / "image_split.p", "view_split", 1)
    results = []
    for batching in (DeviceBatching(max_forward=1, view_threads=1, prefetch_depth=0),
                     DeviceBatching(max_forward=1, view_threads=4, prefetch_depth=2)):
        report = FailureReport("test")
        predictions = classify_exams(exams, model, cropped_dir, None, settings,
                                     torch.device("cpu"), report, batching)
        results.append((predictions, report.failures))
    (first, first_report), (second, second_report) = results
    assert first[1] is None and second[1] is None
    for index in (0, 2):
        np.testing.assert_array_equal(first[index], second[index])
    assert first_report == second_report and "no_such_image" in str(first_report)


def test_device_batching_runs_one_repetition_per_forward_on_a_cpu_and_whole_batches_on_a_gpu():
    cpu = DeviceBatching.for_device(torch.device("cpu"))
    gpu = DeviceBatching.for_device(torch.device("cuda"))
    assert [cpu.forward_size(n) for n in (1, 4, 10)] == [1, 1, 1]
    assert [gpu.forward_size(n) for n in (1, 4, 10)] == [1, 4, 10]
    assert DeviceBatching(max_forward=3).forward_size(10) == 3
    assert cpu.prefetch_depth == 0 and gpu.prefetch_depth == 1


# --------------------------------------------------------------------------- predictions
def _log_pairs(positive):
    """Log-probabilities ``N x R x 2`` whose positive-class probability is ``positive``."""
    positive = torch.as_tensor(positive, dtype=torch.float32)
    return torch.log(torch.stack([1 - positive, positive], dim=-1))


def test_view_split_labels_average_cc_and_mlo():
    outputs = {"CC": _log_pairs([[0.1, 0.2, 0.3, 0.4]]),
               "MLO": _log_pairs([[0.3, 0.4, 0.5, 0.6]])}
    np.testing.assert_allclose(label_probabilities(outputs, "view_split"),
                               [[0.2, 0.3, 0.4, 0.5]], atol=1e-6)


def test_image_mode_labels_use_rows_0_and_1_of_each_side():
    # rows: 0 benign, 1 malignant, 2 and 3 unused (set to 0.99 to show they are ignored)
    outputs = {"L-CC": _log_pairs([[0.1, 0.5, 0.99, 0.99]]),
               "L-MLO": _log_pairs([[0.3, 0.7, 0.99, 0.99]]),
               "R-CC": _log_pairs([[0.2, 0.4, 0.99, 0.99]]),
               "R-MLO": _log_pairs([[0.4, 0.8, 0.99, 0.99]])}
    got = label_probabilities(outputs, "image")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.2, 0.3, 0.6, 0.6]], atol=1e-6)
    assert LABELS == ("left_benign", "right_benign", "left_malignant", "right_malignant")


# --------------------------------------------------------------------------- scripts
def _run(script, *args):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "BCC_NO_PROGRESS": "1"})


def _read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _without_view(exam, view):
    exam = copy.deepcopy(exam)
    exam[view] = []
    for key in STAGE_KEYS:
        if key in exam:
            exam[key][view] = []
    return exam


def _model_args(kit, case, exam_list_path, output, weights="image_split", *extra):
    case_dir, cropped_dir, _ = kit.case(case)
    return ["--model-path", kit.weights_dir / f"{weights}.p", "--data-path", exam_list_path,
            "--image-path", cropped_dir, "--output-path", output, *extra]


def test_exam_missing_a_view_gets_an_empty_row_and_exit_3(kit, tmp_path):
    _, _, exam_list = kit.case("synth_a")
    broken = [_without_view(exam_list[0], "R-MLO"), exam_list[1]]
    broken_path, full_path = tmp_path / "broken.pkl", tmp_path / "full.pkl"
    save_exam_list(broken, broken_path)
    save_exam_list(exam_list, full_path)
    flags = ["--use-augmentation", "--num-epochs", "1"]
    result = _run(RUN_MODEL, *_model_args(kit, "synth_a", broken_path, tmp_path / "b.csv",
                                          "image_split", *flags))
    assert result.returncode == 3, result.stderr
    assert "R-MLO" in result.stderr
    rows = _read_rows(tmp_path / "b.csv")
    assert rows[0] == list(LABELS) and len(rows) == 3
    assert rows[1] == ["", "", "", ""]
    failures = _read_rows(failures_csv_path(tmp_path / "b.csv"))
    assert failures[1][0] == "run_model" and "exam 0" in failures[1][1]
    assert "R-MLO" in failures[1][2]
    # The failed exam still consumed its random numbers: exam 1's row is that of a full run.
    full = _run(RUN_MODEL, *_model_args(kit, "synth_a", full_path, tmp_path / "f.csv",
                                        "image_split", *flags))
    assert full.returncode == 0, full.stderr
    assert _read_rows(tmp_path / "f.csv")[2] == rows[2]
    assert not failures_csv_path(tmp_path / "f.csv").exists()


def test_missing_heatmap_gets_an_empty_row_and_exit_3(kit, tmp_path):
    case_dir, _, exam_list = kit.case("synth_a")
    heatmaps = tmp_path / "heatmaps"
    for kind in ("heatmap_malignant", "heatmap_benign"):
        (heatmaps / kind).mkdir(parents=True)
        for exam in exam_list:
            for view in VIEWS:
                for name in exam[view]:
                    if not (kind == "heatmap_benign" and name == "a1_L_MLO"):
                        (heatmaps / kind / f"{name}.hdf5").symlink_to(
                            case_dir / "expected" / "heatmaps" / kind / f"{name}.hdf5")
    result = _run(RUN_MODEL, *_model_args(
        kit, "synth_a", case_dir / "expected" / "data.pkl", tmp_path / "out.csv",
        "imageheatmaps_split", "--use-heatmaps", "--heatmaps-path", heatmaps))
    assert result.returncode == 3, result.stderr
    rows = _read_rows(tmp_path / "out.csv")
    assert rows[1] != ["", "", "", ""] and rows[2] == ["", "", "", ""]
    assert "a1_L_MLO.hdf5" in _read_rows(failures_csv_path(tmp_path / "out.csv"))[1][2]


def test_existing_output_is_kept_without_overwrite(kit, tmp_path):
    case_dir = kit.case("synth_a")[0]
    output = tmp_path / "out.csv"
    output.write_text("keep me\n")
    result = _run(RUN_MODEL, *_model_args(kit, "synth_a", case_dir / "expected" / "data.pkl",
                                          output))
    assert result.returncode == 2
    assert "--overwrite" in result.stderr
    assert output.read_text() == "keep me\n"


def test_one_channel_checkpoint_with_heatmaps_is_refused(kit, tmp_path):
    case_dir = kit.case("synth_a")[0]
    result = _run(RUN_MODEL, *_model_args(
        kit, "synth_a", case_dir / "expected" / "data.pkl", tmp_path / "out.csv",
        "image_split", "--use-heatmaps", "--heatmaps-path", case_dir / "expected" / "heatmaps"))
    assert result.returncode == 2
    assert "first_conv.weight has 1 input channel" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_run_model_single_prints_one_json_line(kit):
    case_dir, cropped_dir, _ = kit.case("synth_a")
    single_dir = case_dir / "expected" / "single" / "a1_R_CC"
    result = _run(RUN_MODEL_SINGLE, "--view", "R-CC",
                  "--model-path", kit.weights_dir / "imageheatmaps_mode.p",
                  "--cropped-mammogram-path", cropped_dir / "a1_R_CC.png",
                  "--metadata-path", single_dir / "cropped_metadata.pkl", "--use-heatmaps",
                  "--heatmap-path-malignant", single_dir / "malignant_heatmap.hdf5",
                  "--heatmap-path-benign", single_dir / "benign_heatmap.hdf5",
                  "--num-epochs", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    prediction = json.loads(lines[0])
    assert list(prediction) == ["benign", "malignant"]
    assert all(0.0 < p < 1.0 for p in prediction.values())


def test_run_model_single_refuses_a_view_split_checkpoint(kit):
    case_dir, cropped_dir, _ = kit.case("synth_a")
    single_dir = case_dir / "expected" / "single" / "a1_R_CC"
    result = _run(RUN_MODEL_SINGLE, "--view", "R-CC",
                  "--model-path", kit.weights_dir / "image_split.p",
                  "--cropped-mammogram-path", cropped_dir / "a1_R_CC.png",
                  "--metadata-path", single_dir / "cropped_metadata.pkl")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "image-mode checkpoint" in result.stderr


def test_exam_batch_holds_each_views_windows_as_cut_one_view_at_a_time():
    from breast_cancer_classifier.core.stages.augmentation import draw_window, window_batch
    from breast_cancer_classifier.core.stages.classify import exam_batch

    rng = np.random.RandomState(3)
    inputs = {view: [rng.rand(700, 500, 3).astype(np.float32)] for view in VIEWS}
    centers = {view: [(350, 250)] for view in VIEWS}
    draws = [{view: draw_window(rng, 1, augment=True) for view in VIEWS} for _ in range(2)]
    batch = exam_batch(inputs, centers, draws, True)
    for view in VIEWS:  # the same windows as cut one view at a time
        np.testing.assert_array_equal(batch[view], window_batch(
            inputs[view], centers[view], view_angle(view), [d[view] for d in draws], True))
