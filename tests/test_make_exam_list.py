"""Exam lists from PNGs (breast_cancer_classifier.tools.make_exam_list): manifests, file names, report."""

import csv

import numpy as np
import pytest

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.tools import make_exam_list as builder
from breast_cancer_classifier.core.errors import ExamListError, OutputExistsError, PipelineError
from breast_cancer_classifier.core.exam_list import load_exam_list
from helpers import run_script


def facing(chest_wall, shape=(30, 40), dtype=np.uint16):
    """A tiny image whose pixel mass lies at the ``chest_wall`` edge ('left'/'right')."""
    image = np.zeros(shape, dtype)
    cols = slice(0, shape[1] // 3) if chest_wall == "left" else slice(-(shape[1] // 3), None)
    image[:, cols] = 5000 if dtype == np.uint16 else 200
    return image


def expected_wall(side):
    """Where the chest wall is when horizontal_flip is NO (SPEC 2)."""
    return "left" if side == "L" else "right"


def other(wall):
    return "right" if wall == "left" else "left"


def write_exam(folder, exam, mirrored=False):
    for side in "LR":
        for angle in ("CC", "MLO"):
            wall = expected_wall(side)
            formats.write_png(folder / f"{exam}_{side}_{angle}.png",
                         facing(other(wall) if mirrored else wall))


def read_report(path):
    with open(path, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


# --------------------------------------------------------------------------- orientation
def test_breast_facing_and_orientation():
    assert builder.breast_facing(facing("left")) == "right"
    assert builder.breast_facing(facing("right")) == "left"
    assert builder.breast_facing(np.zeros((4, 5), np.uint16)) == "unknown"
    assert builder.orientation("right", "L") == "expected"
    assert builder.orientation("right", "R") == "mirrored"
    assert builder.orientation("left", "R") == "expected"
    assert builder.orientation("unknown", "R") == "unknown"
    assert builder.exam_horizontal_flip(["mirrored"] * 4) == "YES"
    assert builder.exam_horizontal_flip(["mirrored"] * 3 + ["unknown"]) == "NO"
    assert builder.exam_horizontal_flip([]) == "NO"


# --------------------------------------------------------------------------- file names
@pytest.fixture
def png_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    write_exam(folder, "10")
    write_exam(folder, "2", mirrored=True)
    formats.write_png(folder / "3_L_CC.png", facing("left"))
    formats.write_png(folder / "3_L_CC_2.png", facing("left"))
    formats.write_png(folder / "3_R_CC.png", facing("left"))  # mirrored inside a normal exam
    formats.write_png(folder / "scan.png", facing("left"))
    (folder / "notes.txt").write_text("not an image")
    (folder / "3_R_MLO.png").write_bytes(b"\x89PNG broken")
    return folder


def test_exam_list_from_file_names(png_folder, tmp_path):
    result = builder.make_exam_list(png_folder, tmp_path / "exams.pkl")
    assert result.exit_code == 3  # the broken PNG
    exams = load_exam_list(tmp_path / "exams.pkl")
    assert exams == result.exam_list
    assert exams == [
        {"horizontal_flip": "YES", "L-CC": ["2_L_CC"], "R-CC": ["2_R_CC"],
         "L-MLO": ["2_L_MLO"], "R-MLO": ["2_R_MLO"]},
        {"horizontal_flip": "NO", "L-CC": ["3_L_CC", "3_L_CC_2"], "R-CC": ["3_R_CC"],
         "L-MLO": [], "R-MLO": []},
        {"horizontal_flip": "NO", "L-CC": ["10_L_CC"], "R-CC": ["10_R_CC"],
         "L-MLO": ["10_L_MLO"], "R-MLO": ["10_R_MLO"]}]
    report = read_report(tmp_path / "exams.pkl.report.csv")
    assert len(report) == 14
    assert report["notes.txt"]["reason"] == "not a .png file"
    assert report["scan.png"]["status"] == "skipped"
    assert report["scan.png"]["reason"].startswith("file name does not match")
    assert report["3_R_MLO.png"]["status"] == "failed"
    assert "cannot read image" in report["3_R_MLO.png"]["reason"]
    row = report["3_R_CC.png"]
    assert (row["status"], row["exam"], row["exam_id"], row["side"], row["view"], row["bits"],
            row["orientation"], row["short_file_path"]) == \
        ("kept", "1", "3", "R", "CC", "16", "mirrored", "3_R_CC")
    assert "breast faces the other way" in row["reason"]
    assert report["2_L_CC.png"]["orientation"] == "mirrored"
    assert report["2_L_CC.png"]["reason"] == ""


def test_horizontal_flip_flag_overrides_auto(png_folder, tmp_path):
    result = builder.make_exam_list(png_folder, tmp_path / "exams.json", horizontal_flip="NO")
    assert [e["horizontal_flip"] for e in result.exam_list] == ["NO", "NO", "NO"]
    rows = {r["path"]: r for r in result.rows}
    assert "breast faces the other way" in rows["2_L_CC.png"]["reason"]


def test_existing_outputs_are_refused(png_folder, tmp_path):
    builder.make_exam_list(png_folder, tmp_path / "exams.pkl")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        builder.make_exam_list(png_folder, tmp_path / "exams.pkl")
    with pytest.raises(OutputExistsError, match="--overwrite"):  # the report exists too
        builder.make_exam_list(png_folder, tmp_path / "other.pkl",
                                report_path=tmp_path / "exams.pkl.report.csv")
    builder.make_exam_list(png_folder, tmp_path / "exams.pkl", overwrite=True)


def test_nothing_usable_raises(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.txt").write_text("x")
    with pytest.raises(PipelineError, match="no usable image"):
        builder.make_exam_list(tmp_path / "images", tmp_path / "exams.pkl")
    assert not (tmp_path / "exams.pkl").exists()
    assert read_report(tmp_path / "exams.pkl.report.csv")["a.txt"]["status"] == "skipped"


# --------------------------------------------------------------------------- manifests
def write_manifest(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def labelled(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for name, wall in [("a_lcc", "left"), ("a_rcc", "right"), ("sub/a_lmlo", "left"),
                       ("a_rmlo", "right"), ("b_lcc", "right"), ("b_rcc", "left"),
                       ("c_lcc", "left"), ("c_rcc", "right")]:
        formats.write_png(folder / f"{name}.png", facing(wall))
    formats.write_png(folder / "small.png", facing("left", dtype=np.uint8))
    header = ["exam_id", "file", "side", "view", "horizontal_flip", "left_benign",
              "right_benign", "left_malignant", "right_malignant"]
    rows = [["A", "a_lcc.png", "L", "CC", "", "0", "1", "0", "0"],
            ["A", "a_rcc", "right", "cc", "", "", "", "", ""],
            ["A", "sub/a_lmlo.png", "LEFT", "MLO", "", "0", "1", "0", "0"],
            ["A", "a_rmlo.png", "R", "MLO", "", "", "", "", ""],
            ["B", "b_lcc.png", "L", "CC", "NO", "1", "0", "1", "0"],
            ["B", "b_rcc.png", "R", "CC", "", "", "", "", ""],
            ["C", "c_lcc.png", "L", "CC", "", "0", "0", "0", "0"],
            ["C", "c_rcc.png", "R", "CC", "", "0", "0", "1", "0"],
            ["D", "missing.png", "L", "CC", "", "0", "0", "0", "0"],
            ["D", "a_lcc.png", "L", "CC", "", "0", "0", "0", "0"],
            ["E", "small.png", "L", "XCCL", "", "0", "0", "0", "0"],
            ["F", "small.png", "L", "CC", "", "0", "0", "0", "0"],
            ["G", "../outside.png", "L", "CC", "", "0", "0", "0", "0"]]
    return folder, write_manifest(tmp_path / "manifest.csv", header, rows)


def test_exam_list_from_manifest_with_labels(labelled, tmp_path):
    folder, manifest_path = labelled
    result = builder.make_exam_list(folder, tmp_path / "exams.pkl",
                                     manifest_path=manifest_path, num_processes=2)
    assert result.exit_code == 3  # missing.png
    assert load_exam_list(tmp_path / "exams.pkl") == [
        {"horizontal_flip": "NO", "L-CC": ["a_lcc"], "R-CC": ["a_rcc"],
         "L-MLO": ["sub/a_lmlo"], "R-MLO": ["a_rmlo"],
         "cancer_label": {"left_benign": 0, "right_benign": 1, "left_malignant": 0,
                          "right_malignant": 0}},
        # B's images are all mirrored, but the manifest says NO.
        {"horizontal_flip": "NO", "L-CC": ["b_lcc"], "R-CC": ["b_rcc"], "L-MLO": [],
         "R-MLO": [],
         "cancer_label": {"left_benign": 1, "right_benign": 0, "left_malignant": 1,
                          "right_malignant": 0}},
        {"horizontal_flip": "NO", "L-CC": ["small"], "R-CC": [], "L-MLO": [], "R-MLO": [],
         "cancer_label": {"left_benign": 0, "right_benign": 0, "left_malignant": 0,
                          "right_malignant": 0}}]
    rows = result.rows
    assert [r["status"] for r in rows] == (
        ["kept"] * 6 + ["skipped"] * 2 + ["failed", "skipped", "skipped", "kept", "skipped"])
    assert rows[6]["reason"] == ("exam C: rows disagree on left_malignant: '0' (line 8), "
                                 "'1' (line 9)")
    assert "image file not found" in rows[8]["reason"]
    assert rows[9]["reason"].startswith("a_lcc.png is already listed (exam A L-CC)")
    assert rows[10]["reason"].startswith("manifest line 12: side must be L or R and view CC")
    assert rows[11]["reason"] == "8-bit PNG; the models were trained on 16-bit images"
    assert rows[12]["reason"].startswith("manifest line 14: file '../outside.png' is not inside")
    assert "breast faces the other way" in rows[4]["reason"]


def test_make_exam_list_column_errors(tmp_path):
    (tmp_path / "images").mkdir()
    bad = write_manifest(tmp_path / "m.csv", ["exam_id", "file", "side"], [["A", "x", "L"]])
    with pytest.raises(ExamListError, match="missing view"):
        builder.make_exam_list(tmp_path / "images", tmp_path / "e.pkl", manifest_path=bad)
    typo = write_manifest(tmp_path / "m.csv", ["exam_id", "file", "side", "view",
                                               "left_malignent"], [["A", "x", "L", "CC", "1"]])
    with pytest.raises(ExamListError, match="unknown left_malignent"):
        builder.make_exam_list(tmp_path / "images", tmp_path / "e.pkl", manifest_path=typo)


def test_make_exam_list_without_labels_and_missing_label_value(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    formats.write_png(folder / "x.png", facing("right"))
    formats.write_png(folder / "y.png", facing("right"))
    plain = write_manifest(tmp_path / "m.csv", ["exam_id", "file", "side", "view"],
                           [["1", "x.png", "L", "CC"]])
    result = builder.make_exam_list(folder, tmp_path / "e.json", manifest_path=plain)
    assert result.exam_list == [{"horizontal_flip": "YES", "L-CC": ["x"], "R-CC": [],
                                 "L-MLO": [], "R-MLO": []}]
    partial = write_manifest(tmp_path / "m2.csv",
                             ["exam_id", "file", "side", "view", "right_malignant"],
                             [["1", "x.png", "L", "CC", "1"], ["2", "y.png", "L", "CC", ""]])
    result = builder.make_exam_list(folder, tmp_path / "e2.json", manifest_path=partial)
    assert result.exam_list[0]["cancer_label"] == {"right_malignant": 1}
    assert result.rows[1]["reason"] == "exam 2: no value for label right_malignant"


def test_script(png_folder, tmp_path):
    args = ["--input-data-folder", png_folder, "--exam-list-path", tmp_path / "exams.json"]
    run_script("utilities/make_exam_list.py", *args, check=3)
    assert len(load_exam_list(tmp_path / "exams.json")) == 3
    proc = run_script("utilities/make_exam_list.py", *args, check=2)
    assert "--overwrite" in proc.stderr
    bad = write_manifest(tmp_path / "m.csv", ["exam", "file"], [["1", "x"]])
    proc = run_script("utilities/make_exam_list.py", *args, "--overwrite", "--manifest", bad,
                      check=2)
    assert "missing exam_id" in proc.stderr
