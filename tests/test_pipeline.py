"""``bcc run`` (core.pipeline with core.engine and core.plan), end to end on the CPU.

* parity: synth_a through ``run_pipeline`` gives the original's stage 1-2 values exactly, its
  heatmaps within 1e-5 and its two CSVs byte for byte;
* the plan: exams run in reverse order, as subsets, or one per process give the bytes of the
  serial run, which are also run.sh's;
* resume: a run killed with SIGKILL after its second exam, continued with ``--continue``,
  ends with the serial run's bytes without recomputing finished exams; a truncated output
  is found and recomputed; other settings are refused with exit 2.

The resume and plan tests use the four small sample exams and the kit's weights (random
but healthy), with one augmented repetition and ONNX Runtime for the heatmaps to stay quick
(any one runtime gives the same bytes run after run; run.sh's comparison uses the default).
"""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.engine import EngineSettings
from breast_cancer_classifier.core.errors import OutputExistsError, SettingsError
from breast_cancer_classifier.core.exam_list import load_exam_list
from breast_cancer_classifier.core.pipeline import run_pipeline
from breast_cancer_classifier.core.plan import load_plan, plan_arrays
from breast_cancer_classifier.core.stages.cropping import STAGE1_KEYS

from conftest import PARITY, REPO, parity_case
from helpers import jsonable, slow

SAMPLE_LIST = REPO / "sample_data" / "exam_list_before_cropping.pkl"
SAMPLE_IMAGES = REPO / "sample_data" / "images"
TOLERANCE = 1e-5
# Files that legitimately differ between two runs: the record of how each run went.
RECORD_FILES = {"run_manifest.jsonl", "run_settings.json", "plan.npz"}


def kit_settings(**overrides):
    weights = PARITY / "weights"
    if not weights.is_dir():
        pytest.skip(f"parity weights not found at {weights} (set BCC_SHARED)")
    values = dict(patch_model_path=str(weights / "patch.p"),
                  image_model_path=str(weights / "image_split.p"),
                  imageheatmaps_model_path=str(weights / "imageheatmaps_split.p"),
                  device_type="cpu", num_epochs=1, runtime="onnxruntime")
    values.update(overrides)
    return EngineSettings(**values)


def settings_flags(settings):
    return ["--patch-model-path", settings.patch_model_path,
            "--image-model-path", settings.image_model_path,
            "--imageheatmaps-model-path", settings.imageheatmaps_model_path,
            "--device-type", settings.device_type, "--num-epochs", str(settings.num_epochs),
            "--runtime", settings.runtime, "--num-processes", "2"]


def bcc(*args, check=None):
    env = dict(os.environ, BCC_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "breast_cancer_classifier.bcc", *map(str, args)],
                          capture_output=True, text=True, env=env)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def output_files(folder):
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*")
            if p.is_file() and p.name not in RECORD_FILES}


def assert_same_outputs(actual, expected):
    """Every output file byte-identical (the run record aside), and the same plan."""
    got, want = output_files(actual), output_files(expected)
    assert sorted(got) == sorted(want)
    different = [name for name in want if got[name].read_bytes() != want[name].read_bytes()]
    assert not different, f"files differ from the serial run: {different}"
    fresh, saved = (plan_arrays(load_plan(folder / "plan.npz")) for folder in (actual, expected))
    assert all(np.array_equal(fresh[key], saved[key]) for key in saved)


def manifest(folder):
    return [json.loads(line) for line in (folder / "run_manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """The four sample exams, one uninterrupted run."""
    out = tmp_path_factory.mktemp("serial") / "out"
    status = run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, kit_settings(), num_processes=2)
    assert status == 0
    return out


# --------------------------------------------------------------------------- parity
# The default (compiled on the CPU) and the exact fallback (PyTorch eager, SPEC 6 step 3):
# both keep the stage-4 CSVs byte-identical to the reference's.
@pytest.mark.parametrize("runtime", ["auto", "torch"])
def test_parity_synth_a_through_bcc_run(tmp_path, runtime):
    case = parity_case("synth_a")
    out = tmp_path / "out"
    status = run_pipeline(case / "exam_list.pkl", case / "images", out,
                          kit_settings(num_epochs=10, runtime=runtime), num_processes=2)
    assert status == 0
    expected = load_exam_list(case / "expected" / "data.pkl")
    got = load_exam_list(out / "data.pkl")
    for key in STAGE1_KEYS + ("best_center",):
        assert [jsonable(e[key]) for e in got] == [jsonable(e[key]) for e in expected], key
    pixels = json.loads((case / "expected" / "cropped_pixels.json").read_text())
    import hashlib
    for name, info in pixels.items():
        image = formats.read_mammogram_png(out / "cropped_images" / f"{name}.png")
        assert hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() == info["sha256"]
    worst = 0.0
    for kind in ("malignant", "benign"):
        for path in (case / "expected" / "heatmaps" / f"heatmap_{kind}").glob("*.hdf5"):
            mine = formats.read_hdf5(out / "heatmaps" / f"heatmap_{kind}" / path.name)
            theirs = formats.read_hdf5(path)
            worst = max(worst, float(np.abs(mine.astype(np.float64) - theirs).max()))
    assert worst <= TOLERANCE
    for name in ("image_predictions.csv", "imageheatmaps_predictions.csv"):
        assert (out / name).read_bytes() == (case / "expected" / name).read_bytes(), name


def test_same_bytes_as_run_sh(tmp_path):
    settings = kit_settings(runtime="auto")  # run.sh's stage 3 runs the default runtime
    mine_dir = tmp_path / "bcc"
    assert run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, mine_dir, settings, num_processes=2) == 0
    out = tmp_path / "rs"
    env = dict(os.environ, BCC_NO_PROGRESS="1", DEVICE_TYPE="cpu", NUM_EPOCHS="1",
               NUM_PROCESSES="2", PYTHON=sys.executable,
               PATCH_MODEL_PATH=settings.patch_model_path,
               IMAGE_MODEL_PATH=settings.image_model_path,
               IMAGEHEATMAPS_MODEL_PATH=settings.imageheatmaps_model_path,
               CROPPED_IMAGE_PATH=str(out / "cropped_images"),
               CROPPED_EXAM_LIST_PATH=str(out / "cropped_images" / "cropped_exam_list.pkl"),
               EXAM_LIST_PATH=str(out / "data.pkl"), HEATMAPS_PATH=str(out / "heatmaps"),
               IMAGE_PREDICTIONS_PATH=str(out / "image_predictions.csv"),
               IMAGEHEATMAPS_PREDICTIONS_PATH=str(out / "imageheatmaps_predictions.csv"))
    proc = subprocess.run(["bash", str(REPO / "run.sh")], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = output_files(out)
    mine = output_files(mine_dir)
    assert sorted(theirs) and set(theirs) <= set(mine) and "qa.csv" in theirs
    assert [n for n in theirs if theirs[n].read_bytes() != mine[n].read_bytes()] == []


# --------------------------------------------------------------------------- the plan
def test_exams_in_reverse_order_give_the_serial_bytes(serial_run, tmp_path):
    out = tmp_path / "out"
    settings = kit_settings()
    assert run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, settings, num_processes=2,
                        exams="3") == 3  # not finished yet: no CSVs
    assert not (out / "image_predictions.csv").exists()
    for exams in ("2", "1", "0"):
        run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, settings, num_processes=2,
                     resume=True, exams=exams)
    assert (out / "image_predictions.csv").exists()
    assert_same_outputs(out, serial_run)
    assert [e["exam"] for e in manifest(out) if "exam" in e] == [3, 2, 1, 0]


def test_a_subset_gives_the_serial_bytes_for_its_exams(serial_run, tmp_path):
    out = tmp_path / "out"
    run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, kit_settings(), num_processes=2, exams="1,3")
    for index in (1, 3):
        name = f"exams/{index}.json"
        assert (out / name).read_bytes() == (serial_run / name).read_bytes()
    mine, serial = output_files(out), output_files(serial_run)
    assert not [n for n in mine if mine[n].read_bytes() != serial[n].read_bytes()]
    assert not (out / "exams" / "0.json").exists()


@slow  # a process per exam; test_killed_run_continues covers --continue across processes
def test_one_exam_per_process_gives_the_serial_bytes(serial_run, tmp_path):
    out = tmp_path / "out"
    flags = settings_flags(kit_settings())
    common = ["run", "--exam-list", SAMPLE_LIST, "--data-folder", SAMPLE_IMAGES,
              "--output-dir", out, *flags]
    bcc(*common, "--exams", "0", check=3)
    for index in (1, 2, 3):
        bcc(*common, "--continue", "--exams", index, check=0 if index == 3 else 3)
    assert_same_outputs(out, serial_run)


# --------------------------------------------------------------------------- resume
def test_killed_run_continues_to_the_serial_bytes(serial_run, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "breast_cancer_classifier.bcc", "run", "--exam-list",
               SAMPLE_LIST, "--data-folder", SAMPLE_IMAGES, "--output-dir", out,
               *settings_flags(kit_settings())]
    env = dict(os.environ, BCC_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([str(c) for c in command], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            lines = (out / "run_manifest.jsonl").read_text().splitlines() \
                if (out / "run_manifest.jsonl").exists() else []
            if sum('"exam":' in line for line in lines) >= 2:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = [e["exam"] for e in manifest(out) if "exam" in e]
    assert killed_at[:2] == [0, 1] and len(killed_at) < 4, "killed too late to test anything"
    assert not (out / "image_predictions.csv").exists()

    bcc("run", "--exam-list", SAMPLE_LIST, "--data-folder", SAMPLE_IMAGES, "--output-dir",
        out, *settings_flags(kit_settings()), "--continue", check=0)
    assert_same_outputs(out, serial_run)
    entries = manifest(out)
    counts = {i: sum(e.get("exam") == i for e in entries) for i in range(4)}
    assert counts[0] == counts[1] == 1, f"finished exams were recomputed: {entries}"
    resumed = [e for e in entries if e.get("event") == "continue"][0]
    assert set(resumed["reused"]) == set(killed_at)
    assert sum(e.get("unit") == "pass1" for e in entries) == 1  # stages 1-2 not redone


def test_truncated_output_is_found_and_recomputed(serial_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(serial_run, out)
    victim = out / "heatmaps" / "heatmap_benign" / "2_R_MLO.hdf5"
    victim.write_bytes(victim.read_bytes()[:100])
    (out / "image_predictions.csv").unlink()
    status = run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, kit_settings(), num_processes=2,
                          resume=True)
    assert status == 0
    assert_same_outputs(out, serial_run)
    resumed = [e for e in manifest(out) if e.get("event") == "continue"][-1]
    assert resumed["recomputing"] == [2] and resumed["reused"] == [0, 1, 3]
    with h5py.File(victim, "r") as f:
        assert f["image"].shape[::-1] == formats.read_mammogram_png(
            out / "cropped_images" / "2_R_MLO.png").shape


@pytest.mark.parametrize("change, named", [
    (dict(seed=1), "seed"), (dict(num_epochs=2), "num_epochs"),
    (dict(runtime="torch"), "runtime"), (dict(precision="bf16", runtime="torch"), "precision: the run has .fp32.")])
def test_continue_refuses_other_settings(serial_run, tmp_path, change, named):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(serial_run, out)
    with pytest.raises(SettingsError, match=named):
        run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, kit_settings(**change), resume=True)


def test_continue_refuses_other_weights_and_exam_list_exit_2(serial_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(serial_run, out)
    other = tmp_path / "other_list.json"
    exams = load_exam_list(SAMPLE_LIST)[:3]
    other.write_text(json.dumps(exams))
    flags = settings_flags(kit_settings())
    proc = bcc("run", "--exam-list", other, "--data-folder", SAMPLE_IMAGES, "--output-dir",
               out, *flags, "--continue", check=2)
    assert "exam_list_sha256" in proc.stderr
    import torch

    source = kit_settings().imageheatmaps_model_path
    weights = tmp_path / "imageheatmaps.p"
    shutil.copy(source, weights)
    flags[flags.index("--imageheatmaps-model-path") + 1] = str(weights)
    # a copy of the same file has the same digest: accepted; other weights are refused
    bcc("run", "--exam-list", SAMPLE_LIST, "--data-folder", SAMPLE_IMAGES, "--output-dir",
        out, *flags, "--continue", check=0)
    checkpoint = torch.load(source, weights_only=True)
    key = next(k for k in checkpoint["model"] if k.endswith("fc1_cc.bias"))
    checkpoint["model"][key] = checkpoint["model"][key] + 1e-3
    torch.save(checkpoint, weights)
    proc = bcc("run", "--exam-list", SAMPLE_LIST, "--data-folder", SAMPLE_IMAGES,
               "--output-dir", out, *flags, "--continue")
    assert proc.returncode == 2 and "weights_sha256" in proc.stderr


def test_existing_run_needs_continue_or_overwrite(serial_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(serial_run, out)
    with pytest.raises(OutputExistsError, match="--continue"):
        run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, kit_settings())
    (out / "my_notes.txt").write_text("keep me")
    assert run_pipeline(SAMPLE_LIST, SAMPLE_IMAGES, out, kit_settings(), num_processes=2,
                        overwrite=True, exams="0") == 3
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert not (out / "exams" / "1.json").exists()
