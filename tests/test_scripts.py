"""The stage 1 and 2 scripts (commands/scripts/, run at src/): exit codes and outputs."""

import csv

import numpy as np
import pytest
from PIL import Image

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.exam_list import load_exam_list, save_exam_list

from helpers import breast_phantom, run_script


def make_exam_folder(folder, names=("0_L_CC", "0_R_CC", "0_L_MLO", "0_R_MLO")):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        formats.write_png(folder / f"{name}.png", breast_phantom(side=name.split("_")[1]))
    exam = {"horizontal_flip": "NO", "L-CC": [names[0]], "R-CC": [names[1]],
            "L-MLO": [names[2]], "R-MLO": [names[3]], "cancer_label": {"left_malignant": 0}}
    save_exam_list([exam], folder / "exam_list.pkl")
    return folder / "exam_list.pkl"


def crop(tmp_path, exam_list, *extra):
    return run_script("cropping/crop_mammogram.py", "--input-data-folder", tmp_path / "in",
                      "--output-data-folder", tmp_path / "cropped", "--exam-list-path", exam_list,
                      "--cropped-exam-list-path", tmp_path / "cropped.pkl",
                      "--num-processes", 1, "--num-iterations", 10, *extra)


def test_one_bad_image_fails_alone(tmp_path):
    exam_list = make_exam_folder(tmp_path / "in")
    Image.new("RGB", (300, 300)).save(tmp_path / "in" / "0_R_CC.png")       # colour
    formats.write_png(tmp_path / "in" / "0_L_MLO.png", np.zeros((300, 300), np.uint16))  # blank
    (tmp_path / "in" / "0_R_MLO.png").unlink()                               # missing
    proc = crop(tmp_path, exam_list)
    assert proc.returncode == 3, proc.stderr
    assert "0_R_CC.png" in proc.stderr and "'RGB'" in proc.stderr
    assert "no foreground region" in proc.stderr and "0_R_MLO.png: image file not found" in proc.stderr
    cropped = load_exam_list(tmp_path / "cropped.pkl")
    assert cropped[0]["L-CC"] == ["0_L_CC"] and cropped[0]["R-CC"] == []
    assert cropped[0]["cancer_label"] == {"left_malignant": 0}
    assert sorted(p.name for p in (tmp_path / "cropped").iterdir()) == ["0_L_CC.png"]
    with open(tmp_path / "cropped.pkl.failures.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["item"] for r in rows] == ["0_R_CC", "0_L_MLO", "0_R_MLO"]
    assert {r["stage"] for r in rows} == {"crop_mammogram"}


def test_nothing_done_exits_1(tmp_path):
    exam_list = make_exam_folder(tmp_path / "in")
    for png in (tmp_path / "in").glob("*.png"):
        png.write_bytes(b"corrupt")
    proc = crop(tmp_path, exam_list)
    assert proc.returncode == 1, proc.stderr


def test_existing_output_refused_then_overwritten(tmp_path):
    exam_list = make_exam_folder(tmp_path / "in")
    assert crop(tmp_path, exam_list).returncode == 0
    (tmp_path / "cropped" / "stale.png").write_bytes(b"old run")
    (tmp_path / "cropped.pkl").unlink()
    proc = crop(tmp_path, exam_list)
    assert proc.returncode == 2 and "cropped: output folder already exists" in proc.stderr
    proc = crop(tmp_path, exam_list, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "cropped" / "stale.png").exists()  # no mix of two runs


def test_unreadable_exam_list_exits_2(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    proc = crop(tmp_path, tmp_path / "bad.pkl")
    assert proc.returncode == 2 and "bad.pkl" in proc.stderr
    assert not (tmp_path / "cropped").exists()


def test_centers_failure_drops_image_and_its_values(tmp_path):
    exam_list = make_exam_folder(tmp_path / "in")
    assert crop(tmp_path, exam_list).returncode == 0
    (tmp_path / "cropped" / "0_R_MLO.png").unlink()
    proc = run_script("optimal_centers/get_optimal_centers.py", "--cropped-exam-list-path",
                      tmp_path / "cropped.pkl", "--data-prefix", tmp_path / "cropped",
                      "--output-exam-list-path", tmp_path / "data.pkl", "--num-processes", 1)
    assert proc.returncode == 3 and "0_R_MLO.png: image file not found" in proc.stderr
    data = load_exam_list(tmp_path / "data.pkl")
    assert data[0]["R-MLO"] == [] and data[0]["window_location"]["R-MLO"] == []
    assert len(data[0]["best_center"]["L-CC"]) == 1


def test_centers_refuse_an_uncropped_list(tmp_path):
    exam_list = make_exam_folder(tmp_path / "in")
    proc = run_script("optimal_centers/get_optimal_centers.py", "--cropped-exam-list-path",
                      exam_list, "--data-prefix", tmp_path / "in",
                      "--output-exam-list-path", tmp_path / "data.pkl")
    assert proc.returncode == 2 and "run stage 1" in proc.stderr


@pytest.mark.parametrize("flip", ["NO", "YES"])
def test_json_exam_lists_work_end_to_end(tmp_path, flip):
    exam_list = make_exam_folder(tmp_path / "in")
    exams = load_exam_list(exam_list)
    exams[0]["horizontal_flip"] = flip
    save_exam_list(exams, tmp_path / "list.json")
    proc = run_script("cropping/crop_mammogram.py", "--input-data-folder", tmp_path / "in",
                      "--output-data-folder", tmp_path / "cropped", "--exam-list-path",
                      tmp_path / "list.json", "--cropped-exam-list-path", tmp_path / "c.json",
                      "--num-iterations", 10, "--num-processes", 2)
    assert proc.returncode == 0, proc.stderr
    assert load_exam_list(tmp_path / "c.json")[0]["horizontal_flip"] == flip


def test_cropped_exam_list_inside_the_output_folder_survives_the_swap(tmp_path):
    # run.sh's default layout: sample_output/cropped_images/cropped_exam_list.pkl
    exam_list = make_exam_folder(tmp_path / "in")
    for extra in ([], ["--overwrite"]):
        proc = run_script("cropping/crop_mammogram.py", "--input-data-folder", tmp_path / "in",
                          "--output-data-folder", tmp_path / "cropped", "--exam-list-path",
                          exam_list, "--cropped-exam-list-path",
                          tmp_path / "cropped" / "cropped_exam_list.pkl",
                          "--num-iterations", 10, *extra)
        assert proc.returncode == 0, proc.stderr
        assert load_exam_list(tmp_path / "cropped" / "cropped_exam_list.pkl")[0]["L-CC"] == ["0_L_CC"]
