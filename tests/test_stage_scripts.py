"""The stage-3 script (core.stage_scripts, SPEC 6 and 9): exam lists, the stride stream
through failures, its command line and exit codes, and parity with the reference.

The parity tests run the kit's ``real_cc`` and ``synth_a`` cases with ``weights/patch.p``
(batch 100, seed 0, CPU) once per module and compare every map with the reference's.
The single-image maps of ``real_cc/1_L_CC`` and the large ``synth_c`` case (about 5,000
patches) take several more minutes on two cores; they run only with BCC_SLOW=1.
Unit tests use a small stand-in model whose outputs are simple patch statistics.
"""

import hashlib
import importlib.util
import json
import logging
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from breast_cancer_classifier.core import formats, patch_runtime, plan, stage_scripts
from breast_cancer_classifier.core.exam_list import iter_images, load_exam_list, load_metadata
from breast_cancer_classifier.core.failures import FailureReport
from breast_cancer_classifier.core.patch_runtime import TorchRuntime, onnxruntime_available
from breast_cancer_classifier.core.runtime import log
from breast_cancer_classifier.core.stages import heatmaps
from breast_cancer_classifier.core.views import flip_for_model

from conftest import REPO, parity_case
from helpers import slow
from patch_helpers import (StatsModel, exam, legacy_copy, naive_heatmaps,
                           random_weights, read_map, windows, write_images)  # noqa: F401

TOLERANCE = 1e-5  # issue 4: max absolute difference per map
DEFAULT_MARGIN = 3e-6  # issue 26: the default runtime's worst map deviation


class RecordDraws:
    """Wrap the plan's draw_strides to record (shape, strides) of every call, in order."""

    def __init__(self, monkeypatch):
        self.calls = []
        self.original = original = plan.draw_strides

        def recording(shape, rng):
            strides = original(shape, rng)
            self.calls.append((tuple(shape), strides))
            return strides
        monkeypatch.setattr(plan, "draw_strides", recording)


class LogRecords(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_records():
    handler = LogRecords()
    log.addHandler(handler)
    yield handler.messages
    log.removeHandler(handler)


# --------------------------------------------------------------------------- exam lists
SHAPES = {"e_L_CC": (510, 345), "e_R_CC": (420, 510), "e_L_MLO": (300, 290),
          "e_R_MLO": (345, 600)}


def run_exam_list(tmp_path, exam_list, images=SHAPES, batch_size=5, model=None, tag="out",
                  read_ahead=0):
    folder = tmp_path / "cropped"
    if not folder.exists():
        write_images(folder, images)
    report = FailureReport("heatmaps")
    output = tmp_path / tag
    total = stage_scripts.produce_heatmaps(exam_list, folder, output,
                                           TorchRuntime(model or StatsModel(), "cpu"),
                                           batch_size=batch_size, report=report,
                                           read_ahead=read_ahead)
    return output, report, total


def test_exam_heatmaps_are_mirrored_back(tmp_path):
    exam_list = [exam("NO", L_CC=["e_L_CC"], R_CC=["e_R_CC"]),
                 exam("YES", L_MLO=["e_L_MLO"], R_MLO=["e_R_MLO"])]
    output, report, total = run_exam_list(tmp_path, exam_list)
    assert total == 4 and not report.failures
    rng = random.Random(0)
    model = StatsModel()
    for exam_index, view, _, name in iter_images(exam_list):
        raw = formats.read_mammogram_png(tmp_path / "cropped" / f"{name}.png")
        rows, columns = heatmaps.draw_strides(raw.shape, rng)
        flip = exam_list[exam_index]["horizontal_flip"]
        image = heatmaps.prepare_image(raw, view, flip)
        malignant, benign = naive_heatmaps(model, image, rows, columns)
        np.testing.assert_allclose(read_map(output, "malignant", name),
                                   flip_for_model(malignant, view, flip), rtol=0, atol=1e-6)
        np.testing.assert_allclose(read_map(output, "benign", name),
                                   flip_for_model(benign, view, flip), rtol=0, atol=1e-6)
    # mirrored: R-CC under "NO" and L-MLO under "YES"; written in the SPEC 3 layout
    with h5py.File(output / "heatmap_benign" / "e_R_CC.hdf5", "r") as f:
        assert f["image"].shape == (510, 420) and f["image"].compression == "lzf"


def test_hdf5_inputs_give_the_same_maps(tmp_path):
    exam_list = [exam("NO", L_CC=["e_L_CC"], R_CC=["e_R_CC"])]
    png_output, _, _ = run_exam_list(tmp_path, exam_list, tag="png")
    for name in ("e_L_CC", "e_R_CC"):
        image = formats.read_mammogram_png(tmp_path / "cropped" / f"{name}.png")
        formats.write_hdf5(tmp_path / "hdf5" / f"{name}.hdf5", image.astype(np.float32))
    output = tmp_path / "from_hdf5"
    stage_scripts.produce_heatmaps(exam_list, tmp_path / "hdf5", output,
                                   TorchRuntime(StatsModel(), "cpu"), batch_size=5,
                                   use_hdf5=True)
    for name in ("e_L_CC", "e_R_CC"):
        np.testing.assert_array_equal(read_map(output, "benign", name),
                                      read_map(png_output, "benign", name))


def test_missing_image_keeps_the_stream_in_step(tmp_path, monkeypatch):
    # A missing or corrupt image draws what its shape (from window_location) would have
    # drawn, so the images after it get the strides of a run in which it was readable.
    full = [exam("NO", windows(L_CC=[SHAPES["e_L_CC"]], R_CC=[SHAPES["e_R_CC"]]),
                 L_CC=["e_L_CC"], R_CC=["e_R_CC"])]
    draws = RecordDraws(monkeypatch)
    good, report, _ = run_exam_list(tmp_path, full, tag="good")
    assert not report.failures
    reference_calls = list(draws.calls)
    (tmp_path / "cropped" / "e_L_CC.png").unlink()
    draws.calls.clear()
    output, report, total = run_exam_list(tmp_path, full, tag="missing")
    assert total == 2 and [item for item, _ in report.failures] == ["e_L_CC"]
    assert "e_L_CC.png: image file not found" in report.failures[0][1]
    # e_L_CC draws with its window_location shape, so e_R_CC gets the strides of the full run
    assert draws.calls == reference_calls
    assert not (output / "heatmap_malignant" / "e_L_CC.hdf5").exists()
    for kind in ("malignant", "benign"):
        np.testing.assert_allclose(read_map(output, kind, "e_R_CC"),
                                   read_map(good, kind, "e_R_CC"), rtol=0, atol=1e-6)
    # a corrupt file is treated the same way
    (tmp_path / "cropped" / "e_L_CC.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    draws.calls.clear()
    output, report, _ = run_exam_list(tmp_path, full, tag="corrupt")
    assert "cannot read image" in report.failures[0][1]
    assert draws.calls == reference_calls


def test_reading_ahead_changes_neither_maps_nor_failures(tmp_path):
    # As on a GPU: two images read ahead in a background thread, one of them missing.
    exam_list = [exam("NO", windows(L_CC=[SHAPES["e_L_CC"], SHAPES["e_L_CC"]]),
                      L_CC=["e_L_CC", "gone"], R_CC=["e_R_CC"], L_MLO=["e_L_MLO"]),
                 exam("YES", R_MLO=["e_R_MLO"])]
    in_turn, in_turn_report, _ = run_exam_list(tmp_path, exam_list, tag="in_turn")
    ahead, ahead_report, _ = run_exam_list(tmp_path, exam_list, tag="ahead", read_ahead=2)
    assert [item for item, _ in in_turn_report.failures] == ["gone"]
    assert ahead_report.failures == in_turn_report.failures
    for name in ("e_L_CC", "e_R_CC", "e_L_MLO", "e_R_MLO"):
        for kind in ("malignant", "benign"):
            np.testing.assert_array_equal(read_map(ahead, kind, name),
                                          read_map(in_turn, kind, name))


def test_missing_image_without_window_location_draws_nothing(tmp_path, monkeypatch,
                                                             log_records):
    exam_list = [exam("NO", L_CC=["absent"], R_CC=["e_R_CC"])]
    draws = RecordDraws(monkeypatch)
    output, report, _ = run_exam_list(tmp_path, exam_list)
    assert [item for item, _ in report.failures] == ["absent"]
    # e_R_CC gets the first draws of the stream, as if "absent" were not listed
    assert draws.calls == [(SHAPES["e_R_CC"],
                            draws.original(SHAPES["e_R_CC"], random.Random(0)))]
    assert any("absent: its size is unknown" in m for m in log_records)
    assert (output / "heatmap_benign" / "e_R_CC.hdf5").exists()


def test_small_image_fails_alone_and_draws_nothing(tmp_path, monkeypatch):
    images = dict(SHAPES, small=(255, 600))
    exam_list = [exam("NO", windows(L_CC=[(255, 600)]), L_CC=["small"], R_CC=["e_R_CC"]),
                 exam("NO", L_CC=["e_L_CC"])]
    draws = RecordDraws(monkeypatch)
    output, report, total = run_exam_list(tmp_path, exam_list, images=images)
    assert total == 3 and [item for item, _ in report.failures] == ["small"]
    assert re.search(r"small\.png: image is \(255, 600\); 256x256 patches need both sides",
                     report.failures[0][1])
    rng = random.Random(0)
    assert draws.calls == [(s, draws.original(s, rng))
                           for s in (SHAPES["e_R_CC"], SHAPES["e_L_CC"])]
    assert sorted(p.name for p in (output / "heatmap_malignant").iterdir()) == [
        "e_L_CC.hdf5", "e_R_CC.hdf5"]
    assert report.exit_code(total) == 3


def num_patches(shape):
    rows, columns = heatmaps.draw_strides(shape, random.Random(0))
    return len(heatmaps.patch_starts(rows)) * len(heatmaps.patch_starts(columns))


def test_batches_span_images_but_never_exams(tmp_path, monkeypatch):
    sizes = []
    original = patch_runtime.classify_patches

    def recording(model, batch, *args, **kwargs):
        sizes.append(len(batch))
        return original(model, batch, *args, **kwargs)
    monkeypatch.setattr(patch_runtime, "classify_patches", recording)
    exam_list = [exam("NO", L_CC=["e_L_CC"], R_CC=["e_R_CC"]), exam("NO", L_CC=["e_L_MLO"])]
    run_exam_list(tmp_path, exam_list, batch_size=8)
    first = num_patches(SHAPES["e_L_CC"]) + num_patches(SHAPES["e_R_CC"])  # 15 + 20
    assert first % 8 and num_patches(SHAPES["e_L_MLO"]) < 8
    assert sizes == [8] * (first // 8) + [first % 8] + [num_patches(SHAPES["e_L_MLO"])]



# --------------------------------------------------------------------------- CLI
def load_script(name):
    path = REPO / "src" / "heatmaps" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name, *argv):
    with pytest.raises(SystemExit) as info:
        load_script(name).main([str(a) for a in argv])
    return info.value.code


@pytest.fixture
def tiny_exam(tmp_path):
    """Two 256 x 300 images (2 patches each) and their exam list."""
    write_images(tmp_path / "cropped", {"t_L_CC": (256, 300), "t_R_CC": (300, 256)})
    data_path = tmp_path / "data.json"
    data_path.write_text(json.dumps([exam("NO", L_CC=["t_L_CC"], R_CC=["t_R_CC"])]))
    return tmp_path, data_path


def producer_args(folder, data_path, weights, *extra):
    return ("--model-path", weights, "--data-path", data_path,
            "--image-path", folder / "cropped", "--output-heatmap-path", folder / "heatmaps",
            *extra)


def test_cli_success_refuses_existing_folder_and_overwrites(tiny_exam, random_weights,
                                                            capsys):
    folder, data_path = tiny_exam
    args = producer_args(folder, data_path, random_weights, "--batch-size", "3")
    assert run_script("run_producer", *args) == 0
    files = sorted(p.relative_to(folder / "heatmaps").as_posix()
                   for p in (folder / "heatmaps").rglob("*") if p.is_file())
    assert files == ["heatmap_benign/t_L_CC.hdf5", "heatmap_benign/t_R_CC.hdf5",
                     "heatmap_malignant/t_L_CC.hdf5", "heatmap_malignant/t_R_CC.hdf5"]
    assert read_map(folder / "heatmaps", "malignant", "t_R_CC").shape == (300, 256)
    first = read_map(folder / "heatmaps", "benign", "t_L_CC")
    assert run_script("run_producer", *args) == 2
    assert "output folder already exists" in capsys.readouterr().err
    (folder / "heatmaps" / "stale.txt").write_text("old run")
    assert run_script("run_producer", *args, "--overwrite") == 0
    assert not (folder / "heatmaps" / "stale.txt").exists()  # never mixes two runs
    np.testing.assert_array_equal(read_map(folder / "heatmaps", "benign", "t_L_CC"), first)


def test_cli_partial_and_total_failure(tiny_exam, random_weights):
    folder, data_path = tiny_exam
    (folder / "cropped" / "t_R_CC.png").unlink()
    assert run_script("run_producer", *producer_args(folder, data_path, random_weights)) == 3
    failures = (folder / "heatmaps.failures.csv").read_text()
    assert "heatmaps,t_R_CC," in failures and "image file not found" in failures
    assert (folder / "heatmaps" / "heatmap_benign" / "t_L_CC.hdf5").exists()
    (folder / "cropped" / "t_L_CC.png").unlink()
    args = producer_args(folder, data_path, random_weights, "--overwrite")
    assert run_script("run_producer", *args) == 1


@pytest.mark.parametrize("kind, message", [
    ("truncated", "truncated or corrupt"),
    ("classifier", "cancer-classifier checkpoint"),
    ("unsafe", "--trust-checkpoint"),
])
def test_cli_bad_checkpoints_exit_2(tiny_exam, random_weights, kind, message, capsys):
    folder, data_path = tiny_exam
    path = folder / f"{kind}.p"
    if kind == "truncated":
        path.write_bytes(random_weights.read_bytes()[:100_000])
    elif kind == "classifier":
        torch.save({"model": {"four_view_resnet.cc.first_conv.weight": torch.zeros(1)}}, path)
    else:
        torch.save({"weights": torch.zeros(1), "args": argparse_namespace()}, path)
    assert run_script("run_producer", *producer_args(folder, data_path, path)) == 2
    err = capsys.readouterr().err
    # (An "exporting ... to ONNX" line may come first: the export is what loads the file.)
    assert message in err.partition("\nrun_producer: error: ")[2] or (
        err.startswith("run_producer: error: ") and message in err)
    assert not (folder / "heatmaps").exists()  # nothing half-made is left behind
    assert not list(folder.glob(".heatmaps*"))


def argparse_namespace():
    import argparse
    return argparse.Namespace(learning_rate=0.1)


def test_cli_bad_exam_list_and_batch_size_exit_2(tiny_exam, random_weights, capsys):
    folder, _ = tiny_exam
    bad = folder / "bad.json"
    bad.write_text("[{}]")
    assert run_script("run_producer", *producer_args(folder, bad, random_weights)) == 2
    assert "horizontal_flip" in capsys.readouterr().err
    assert run_script("run_producer", *producer_args(folder, bad, random_weights),
                      "--batch-size", "0") == 2


def test_cli_single(tmp_path, random_weights, capsys):
    write_images(tmp_path, {"one": (300, 256)})
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"horizontal_flip": "NO", "full_view": "R-CC", "side": "R",
                                "view": "CC", "short_file_path": None}))
    args = ("--model-path", random_weights, "--cropped-mammogram-path", tmp_path / "one.png",
            "--metadata-path", meta, "--heatmap-path-malignant", tmp_path / "m.hdf5",
            "--heatmap-path-benign", tmp_path / "b.hdf5")
    assert run_script("run_producer_single", *args) == 0
    assert formats.read_hdf5(tmp_path / "m.hdf5").shape == (300, 256)
    assert run_script("run_producer_single", *args) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_script("run_producer_single", *args, "--overwrite", "--proper-mirroring") == 0
    (tmp_path / "one.png").write_bytes(b"not a png")
    assert run_script("run_producer_single", *args, "--overwrite") == 1


def test_scripts_run_as_files(tmp_path):
    script = REPO / "src" / "heatmaps" / "run_producer.py"
    bad = tmp_path / "w.p"
    torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7)}, bad)
    bad.write_bytes(bad.read_bytes()[:-300])  # a checkpoint cut short
    data = tmp_path / "data.json"
    data.write_text(json.dumps([exam("NO")]))
    done = subprocess.run([sys.executable, str(script), "--model-path", str(bad), "--data-path",
                           str(data), "--image-path", str(tmp_path), "--output-heatmap-path",
                           str(tmp_path / "h")], capture_output=True, text=True)
    assert done.returncode == 2 and "not a readable PyTorch weight file" in done.stderr
    help_text = subprocess.run([sys.executable, str(REPO / "src" / "heatmaps" /
                                                    "run_producer_single.py"), "--help"],
                               capture_output=True, text=True)
    assert help_text.returncode == 0 and "--proper-mirroring" in help_text.stdout


# --------------------------------------------------------------------------- parity
def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def crop_like_reference(case, name, window_location, folder):
    """Stage-3 input: the kit's input image cut to the reference's crop window."""
    top, bottom, left, right = window_location
    image = formats.read_mammogram_png(case / "images" / f"{name}.png")[top:bottom, left:right]
    pixels = json.loads((case / "expected" / "cropped_pixels.json").read_text())[name]
    assert list(image.shape) == pixels["shape"] and sha256(image) == pixels["sha256"]
    path = Path(folder) / f"{name}.png"
    formats.write_png(path, image)
    return path


def run_parity_exam_list(case_name, tmp_path_factory, parity_root, runtime="auto"):
    case = parity_case(case_name)
    weights = parity_root / "weights" / "patch.p"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    work = tmp_path_factory.mktemp(case_name)
    data_path = case / "expected" / "data.pkl"
    exam_list = load_exam_list(data_path)
    for exam_index, view, list_index, name in iter_images(exam_list):
        window = exam_list[exam_index]["window_location"][view][list_index]
        crop_like_reference(case, name, window, work / "cropped")
    status = stage_scripts.run_producer(weights, data_path, work / "cropped",
                                        work / "heatmaps", batch_size=100, seed=0,
                                        device_type="cpu", runtime=runtime)
    assert status == 0
    return case, exam_list, work / "heatmaps"


def compare_maps(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == np.float32
    deviation = float(np.abs(actual.astype(np.float64) - expected).max())
    print(f"max abs deviation {deviation:.3g}")
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)
    return deviation


@pytest.fixture(scope="module")
def parity_root():
    from conftest import PARITY
    return PARITY


@pytest.fixture(scope="module")
def real_cc_run(tmp_path_factory, parity_root):
    # ONNX Runtime, the opt-in fast runtime on the CPU (the default, compiled: synth_a below,
    # and synth_c's largest map in test_patch_runtime.py).
    return run_parity_exam_list("real_cc", tmp_path_factory, parity_root, "onnxruntime")


@pytest.fixture(scope="module")
def synth_a_run(tmp_path_factory, parity_root):
    # The default runtime (compiled on the CPU: within 1e-6 of PyTorch eager, SPEC 6 step 3).
    return run_parity_exam_list("synth_a", tmp_path_factory, parity_root, "auto")


def check_exam_maps(run):
    """Every map of the run within TOLERANCE of the reference's; returns the worst deviation."""
    case, exam_list, output = run
    worst = 0.0
    for _, _, _, name in iter_images(exam_list):
        for kind in ("malignant", "benign"):
            expected = read_map(case / "expected" / "heatmaps", kind, name)
            worst = max(worst, compare_maps(read_map(output, kind, name), expected))
    return worst


def test_parity_real_cc_heatmaps(real_cc_run):
    check_exam_maps(real_cc_run)


def test_parity_synth_a_heatmaps(synth_a_run):
    # The default runtime holds issue 26's budget too: every map within 3e-6.
    assert check_exam_maps(synth_a_run) <= DEFAULT_MARGIN


@slow
def test_parity_synth_c_heatmaps(tmp_path_factory, parity_root):
    check_exam_maps(run_parity_exam_list("synth_c", tmp_path_factory, parity_root))


@pytest.fixture(scope="module")
def legacy_weights(tmp_path_factory, parity_root):
    weights = parity_root / "weights" / "patch.p"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    return legacy_copy(weights, tmp_path_factory.mktemp("legacy") / "legacy_patch.p")


SINGLE_CASES = [("synth_a", "a0_L_MLO", "torch"), ("synth_a", "a1_R_CC", "torch"),
                ("real_cc", "2_R_CC", "auto"), ("real_cc", "1_L_CC", "onnxruntime")]


@pytest.mark.parametrize("case_name, name, runtime", SINGLE_CASES)
def test_parity_single_image(case_name, name, runtime, tmp_path, legacy_weights):
    # Runs the script with the legacy-keyed copy: its maps must equal the reference's, which
    # were made with patch.p, so both key styles give the same heatmaps.
    case = parity_case(case_name)
    expected_dir = case / "expected" / "single" / name
    metadata_path = expected_dir / "cropped_metadata.pkl"
    image_path = crop_like_reference(case, name, load_metadata(metadata_path)["window_location"],
                                     tmp_path)
    status = run_script("run_producer_single", "--model-path", legacy_weights,
                        "--cropped-mammogram-path", image_path, "--metadata-path", metadata_path,
                        "--batch-size", 100, "--seed", 0, "--device-type", "cpu",
                        "--runtime", runtime,
                        "--heatmap-path-malignant", tmp_path / "malignant_heatmap.hdf5",
                        "--heatmap-path-benign", tmp_path / "benign_heatmap.hdf5")
    assert status == 0
    for kind in ("malignant", "benign"):
        compare_maps(formats.read_hdf5(tmp_path / f"{kind}_heatmap.hdf5"),
                     formats.read_hdf5(expected_dir / f"{kind}_heatmap.hdf5"))


# --------------------------------------------------------------------------- ONNX without torch
TORCH_FREE_RUN = """
import sys
sys.path.insert(0, {repo!r})
from breast_cancer_classifier.core import stage_scripts
from breast_cancer_classifier.core.runtime import setup_logging
setup_logging()
status = stage_scripts.run_producer({weights!r}, {data!r}, {images!r}, {output!r},
                                    device_type={device!r}, runtime="onnxruntime")
print(status, "torch" in sys.modules)
"""


@pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")
def test_cpu_stage_3_on_onnxruntime_never_imports_torch(tiny_exam, random_weights, tmp_path):
    # The export (first run, cold cache) happens in a child process; the second run uses
    # the cached graph. Neither run imports PyTorch, and both give the same maps as eager
    # PyTorch within the heatmap tolerance.
    folder, data_path = tiny_exam
    env = dict(os.environ, BCC_CACHE_DIR=str(tmp_path / "cache"))
    maps = []
    for run, device in enumerate(("cpu", "gpu")):  # no GPU driver here: gpu means the CPU
        if device == "gpu" and runs_on_cpu_probe() is False:
            pytest.skip("a GPU driver library is present on this machine")
        output = folder / f"heatmaps{run}"
        code = TORCH_FREE_RUN.format(repo=str(REPO), weights=str(random_weights),
                                     data=str(data_path), images=str(folder / "cropped"),
                                     output=str(output), device=device)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["0", "False"]
        assert ("exporting the patch classifier" in done.stderr) == (run == 0)
        maps.append(read_map(output, "benign", "t_R_CC"))
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1
    np.testing.assert_array_equal(maps[0], maps[1])
    eager = stage_scripts.run_producer(random_weights, data_path, folder / "cropped",
                                       folder / "eager", device_type="cpu", runtime="torch")
    assert eager == 0
    np.testing.assert_allclose(maps[0], read_map(folder / "eager", "benign", "t_R_CC"),
                               rtol=0, atol=TOLERANCE)


def runs_on_cpu_probe():
    """Whether this machine lacks a GPU driver library (runs_on_cpu's own test)."""
    from breast_cancer_classifier.core.runtime import runs_on_cpu
    return runs_on_cpu("gpu") if sys.platform.startswith("linux") else False


def test_missing_weight_file_exits_2(tiny_exam, capsys):
    folder, data_path = tiny_exam
    missing = folder / "no_such_weights.p"
    assert run_script("run_producer", *producer_args(folder, data_path, missing)) == 2
    assert f"{missing}: weight file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- precision
def test_bf16_runs_on_torch_and_stays_close(tiny_exam, random_weights, tmp_path):
    folder, data_path = tiny_exam
    classify = patch_runtime.load_patch_runtime(random_weights, "cpu", precision="bf16")
    assert isinstance(classify, TorchRuntime) and classify.precision == "bf16"
    status = stage_scripts.run_producer(random_weights, data_path, folder / "cropped",
                                        folder / "bf16", precision="bf16")
    assert status == 0
    fp32 = stage_scripts.run_producer(random_weights, data_path, folder / "cropped",
                                      folder / "fp32", runtime="torch")
    assert fp32 == 0
    deviation = max(float(np.abs(read_map(folder / "bf16", kind, "t_L_CC")
                                 - read_map(folder / "fp32", kind, "t_L_CC")).max())
                    for kind in ("malignant", "benign"))
    assert 0 < deviation < 0.05


@pytest.mark.parametrize("extra, message", [
    (("--precision", "tf32"), "--precision tf32 needs an NVIDIA GPU"),
    (("--precision", "bf16", "--runtime", "onnxruntime"), "runs fp32 only"),
])
def test_precision_that_cannot_run_here_exits_2(tiny_exam, random_weights, extra, message,
                                                capsys):
    folder, data_path = tiny_exam
    assert run_script("run_producer", *producer_args(folder, data_path, random_weights),
                      *extra) == 2
    assert message in capsys.readouterr().err
    assert not (folder / "heatmaps").exists()



@pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")
def test_failed_export_names_the_cause_and_exits_1(tiny_exam, random_weights, tmp_path,
                                                   monkeypatch, capsys):
    # The cache folder cannot be made (a file stands in its way): the export child fails,
    # and its error reaches the user with the way out.
    folder, data_path = tiny_exam
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("BCC_CACHE_DIR", str(blocker / "cache"))
    assert run_script("run_producer", *producer_args(folder, data_path, random_weights,
                                                     "--runtime", "onnxruntime")) == 1
    err = capsys.readouterr().err
    assert "to ONNX failed" in err and "not_a_folder" in err and "--runtime torch" in err
    assert not (folder / "heatmaps").exists()
