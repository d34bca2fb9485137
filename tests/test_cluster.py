"""``bcc run --engine ray`` (tools.cluster) on a local Ray with 2 CPUs.

A synthetic cohort of 7 small phantom exams, one with a corrupt image and one with a missing
one, goes through the serial ``bcc run`` once (the reference bytes), then through Ray with
two one-thread actors: the outputs must be byte-identical, the work shared by both actors,
each exam recorded once, also when an actor process or the driver is killed part-way.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from breast_cancer_classifier.core.errors import SettingsError
from breast_cancer_classifier.core.exam_list import save_exam_list
from breast_cancer_classifier.core.pipeline import run_pipeline
from breast_cancer_classifier.core.run_layout import RunLayout
from breast_cancer_classifier.core.views import VIEWS
from breast_cancer_classifier.tools.phantoms import make_phantom, short_file_path

from conftest import REPO
from helpers import slow
from test_pipeline import assert_same_outputs, kit_settings, manifest, settings_flags

pytest.importorskip("ray", reason="Ray is an optional extra (pip install '.[cluster]'); "
                    "`make test` installs it")

NUM_EXAMS = 7
CORRUPT_EXAM, MISSING_EXAM = 2, 5
PHANTOM_SHAPE = (560, 440)  # small crops: a few patches per image, quick heatmaps
RAY_FLAGS = ("--engine", "ray", "--workers", "2", "--threads-per-worker", "1")
TIMEOUT = 900


def settings():
    # PyTorch eager, the default runtime; one augmented repetition to stay quick.
    return kit_settings(runtime="torch")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """``(exam list, image folder)``: exam 2 has a corrupt PNG, exam 5 a missing one."""
    from breast_cancer_classifier.core import formats

    root = tmp_path_factory.mktemp("cohort")
    images = root / "images"
    images.mkdir()
    exams = []
    for index in range(NUM_EXAMS):
        exam = {"horizontal_flip": "NO"}
        for view in VIEWS:
            name = short_file_path(index, view)
            exam[view] = [name]
            if index == MISSING_EXAM and view == "R-MLO":
                continue
            path = images / f"{name}.png"
            if index == CORRUPT_EXAM and view == "L-CC":
                path.write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
            else:
                formats.write_png(path, make_phantom(index, view, shape=PHANTOM_SHAPE).image)
        exams.append(exam)
    exam_list = root / "exam_list.pkl"
    save_exam_list(exams, exam_list)
    return exam_list, images


@pytest.fixture(scope="module")
def serial(cohort, tmp_path_factory):
    """The serial run: the bytes every Ray run must give."""
    exam_list, images = cohort
    out = tmp_path_factory.mktemp("serial") / "out"
    assert run_pipeline(exam_list, images, out, settings(), num_processes=2) == 3
    return out


def command(cohort, out, *extra):
    exam_list, images = cohort
    return [sys.executable, "-m", "breast_cancer_classifier.bcc", "run", "--exam-list",
            str(exam_list), "--data-folder", str(images), "--output-dir", str(out),
            *settings_flags(settings()), *extra]


def environment():
    return dict(os.environ, BCC_NO_PROGRESS="1", PYTHONPATH=str(REPO), RAY_DEDUP_LOGS="0")


def bcc(cohort, out, *extra, status=None):
    proc = subprocess.run(command(cohort, out, *extra), capture_output=True, text=True,
                          env=environment(), timeout=TIMEOUT)
    if status is not None:
        assert proc.returncode == status, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc


def exam_entries(out):
    return [e for e in manifest(out) if isinstance(e.get("exam"), int)]


def assert_each_exam_once(out):
    counts = {}
    for entry in exam_entries(out):
        counts[entry["exam"]] = counts.get(entry["exam"], 0) + 1
    assert counts == {i: 1 for i in range(NUM_EXAMS)}, counts


def wait_for_exams(out, count, proc):
    """The manifest's exam entries once it has ``count``; fails if the run ends first."""
    deadline = time.monotonic() + TIMEOUT
    path = out / "run_manifest.jsonl"
    while time.monotonic() < deadline:
        if path.exists():
            entries = [json.loads(line) for line in path.read_text().splitlines()
                       if line.endswith("}")]
            entries = [e for e in entries if isinstance(e.get("exam"), int)]
            if len(entries) >= count:
                return entries
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) too early"
        time.sleep(0.05)
    raise AssertionError(f"no {count} exams in {path} after {TIMEOUT} s")


def test_ray_gives_the_serial_bytes_with_two_actors(cohort, serial, tmp_path):
    out = tmp_path / "out"
    proc = bcc(cohort, out, *RAY_FLAGS, status=3)  # two exams fail, as in the serial run
    assert_same_outputs(out, serial)
    for name in ("image_predictions.csv", "imageheatmaps_predictions.csv", "failures.csv",
                 "data.pkl"):
        assert (out / name).read_bytes() == (serial / name).read_bytes(), name
    assert_each_exam_once(out)
    workers = {e["worker"] for e in exam_entries(out)}
    assert len(workers) >= 2, f"one actor did all the work: {workers}"
    failures = (out / "failures.csv").read_text()
    assert short_file_path(CORRUPT_EXAM, "L-CC") in failures
    assert f"exam {MISSING_EXAM}" in failures
    assert "Exams" not in proc.stderr  # BCC_NO_PROGRESS: no bar


@slow  # CI time: the killed driver below covers recovery through the manifest
def test_a_killed_actor_is_replaced_and_no_exam_is_lost_or_twice(cohort, serial, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(command(cohort, out, *RAY_FLAGS), env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for_exams(out, 1, proc)[0]
        pid = int(first["worker"].rpartition(":")[2])
        os.kill(pid, signal.SIGKILL)  # the actor, in the middle of its next exam
        _, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr[-4000:]
    assert_same_outputs(out, serial)
    assert_each_exam_once(out)
    assert pid not in {int(e["worker"].rpartition(":")[2]) for e in exam_entries(out)[1:]}


def test_a_killed_driver_continues_to_the_serial_bytes(cohort, serial, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(command(cohort, out, *RAY_FLAGS), env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        done = wait_for_exams(out, 2, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    assert not (out / "image_predictions.csv").exists()
    bcc(cohort, out, *RAY_FLAGS, "--continue", status=3)
    assert_same_outputs(out, serial)
    entries = manifest(out)
    resumed = [e for e in entries if e.get("event") == "continue"][0]
    assert {e["exam"] for e in done} <= set(resumed["reused"])
    assert resumed["engine"] == "ray"
    assert_each_exam_once(out)


@slow  # CI time: the same plan and manifest as the two-actor run above
def test_a_serial_part_is_finished_on_ray(cohort, serial, tmp_path):
    out = tmp_path / "out"
    exam_list, images = cohort
    assert run_pipeline(exam_list, images, out, settings(), num_processes=2,
                        exams="0-2") == 3  # not finished: no CSVs yet
    assert not (out / "image_predictions.csv").exists()
    bcc(cohort, out, *RAY_FLAGS, "--continue", status=3)
    assert_same_outputs(out, serial)
    assert_each_exam_once(out)
    by_engine = {e["exam"]: e["worker"] for e in exam_entries(out)}
    assert len(set(by_engine.values())) >= 2


def test_without_ray_the_command_exits_2_and_says_what_to_install(cohort, tmp_path):
    blocker = tmp_path / "no_ray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = dict(environment(), PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]))
    proc = subprocess.run(command(cohort, tmp_path / "out", "--engine", "ray"),
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'breast-cancer-classifier[cluster]'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cluster_flags_need_the_ray_engine(cohort, tmp_path):
    proc = bcc(cohort, tmp_path / "out", "--workers", "2", status=2)
    assert "--workers only apply with --engine ray" in proc.stderr


def test_an_output_folder_a_node_cannot_write_is_refused(tmp_path):
    from breast_cancer_classifier.tools.cluster import RayExecutor

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    executor = RayExecutor(init_options={"num_cpus": 2})
    try:
        with pytest.raises(SettingsError, match="cannot write there.*one shared path"):
            executor.check_output_dir(RunLayout(blocked / "out"), tmp_path)
        with pytest.raises(SettingsError, match="no such data folder"):
            executor.check_output_dir(RunLayout(tmp_path), tmp_path / "absent")
        executor.check_output_dir(RunLayout(tmp_path), tmp_path)  # fine: no error
    finally:
        executor.close()
