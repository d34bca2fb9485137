"""The data quality check (core.qa, ``bcc qa``): one generated fault per check is
flagged, the kit's real images and the sample exams are not, raw and cropped lists give the
same rows, and the hook of ``bcc run`` writes its CSV from its workers' measures and warns
without raising."""

import csv
import logging

import numpy as np
import pytest

from breast_cancer_classifier.commands import qa as qa_command
from breast_cancer_classifier.core import formats, qa
from breast_cancer_classifier.core.exam_list import load_exam_list, save_exam_list
from breast_cancer_classifier.core.stages.cropping import crop_exam_list
from breast_cancer_classifier.core.stages.preprocess import preprocess_exam_list
from breast_cancer_classifier.core.views import VIEWS
from breast_cancer_classifier.tools.phantoms import make_phantom

from conftest import REPO, parity_case


def _scaled(image, top):
    return np.rint(image.astype(np.int64) * top / 65535).astype(np.uint16)


def _faults():
    """{name: (image, view, horizontal_flip, the check that must fire)}."""
    lcc = make_phantom(1, "L-CC").image
    return {
        "eight_bit": ((lcc >> 8).astype(np.uint8), "L-CC", "NO", "eight_bit"),
        "twelve_bit": (_scaled(make_phantom(1, "R-CC").image, 4095), "R-CC", "NO",
                       "not_rescaled"),
        "inverted": (65535 - make_phantom(1, "L-MLO").image, "L-MLO", "NO", "inverted"),
        "tiny": (make_phantom(1, "R-MLO", shape=(420, 330)).image, "R-MLO", "NO", "tiny_crop"),
        "flipped": (make_phantom(1, "L-CC").image, "L-CC", "YES", "wrong_horizontal_flip"),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Exam 0 healthy (four views, two L-CC images); exam 1 one fault per view; exam 2 a
    horizontal_flip that is wrong and a missing R-MLO view."""
    root = tmp_path_factory.mktemp("qa")
    (root / "images").mkdir()
    exams = [{"horizontal_flip": "NO", **{v: [] for v in VIEWS}} for _ in range(2)]
    exams.append({"horizontal_flip": "YES", **{v: [] for v in VIEWS}})
    for view in VIEWS:
        name = f"ok_{view}"
        formats.write_png(root / "images" / f"{name}.png", make_phantom(0, view).image)
        exams[0][view].append(name)
    formats.write_png(root / "images" / "ok_L-CC_2.png", make_phantom(2, "L-CC").image)
    exams[0]["L-CC"].append("ok_L-CC_2")
    for name, (image, view, flip, _) in _faults().items():
        formats.write_png(root / "images" / f"{name}.png", image)
        exams[2 if flip == "YES" else 1][view].append(name)
    for view in ("R-CC", "L-MLO"):
        formats.write_png(root / "images" / f"flip_{view}.png", make_phantom(2, view).image)
        exams[2][view].append(f"flip_{view}")
    save_exam_list(exams, root / "exams.pkl")
    return root, exams


def _by_image(rows):
    return {r["image"] or f"{r['exam']} {r['view']}": r for r in rows}


def test_each_fault_is_flagged_and_the_healthy_exam_is_not(data):
    root, exams = data
    rows = _by_image(qa.check_exam_list(exams, root / "images", num_processes=2))
    for name, (_, _, _, check) in _faults().items():
        assert check in rows[name]["flags"].split(";"), (name, rows[name]["flags"])
        assert rows[name][check] == 1
    assert rows["eight_bit"]["max_value"] <= 255
    assert rows["twelve_bit"]["bits_used"] == 12
    assert rows["flipped"]["distance_from_starting_side"] > 0
    # Exam 2's other images are also on the wrong side for horizontal_flip YES.
    assert all("wrong_horizontal_flip" in rows[f"flip_{v}"]["flags"] for v in ("R-CC", "L-MLO"))
    assert rows["2 R-MLO"]["flags"] == "missing_view" and rows["2 R-MLO"]["image"] == ""
    assert rows["ok_L-CC"]["flags"] == rows["ok_L-CC_2"]["flags"] == "extra_images"
    assert all(rows[f"ok_{v}"]["flags"] == "" for v in VIEWS[1:])
    assert [r for r in rows.values() if r["unreadable"]] == []


def test_dim_tissue_is_outside_the_intensity_range():
    """Over-exposed or another vendor's data: full 16-bit range, but dim tissue."""
    image = make_phantom(0, "L-CC").image
    dim = image // 5
    dim[image == image.max()] = 65535
    assert qa.fired(qa.measure(image, "L-CC", 0)) == []
    measures = qa.measure(dim, "L-CC", 0)
    assert measures["tissue_median"] < qa.TISSUE_MEDIAN_RANGE[0]
    assert qa.fired(measures) == ["intensity"]


def test_cropped_list_gives_the_rows_of_the_raw_list(data, tmp_path):
    root, exams = data
    cropped = crop_exam_list(exams, root / "images", tmp_path, num_processes=2)
    raw = qa.check_exam_list(exams, root / "images", num_processes=2)
    assert qa.check_exam_list(cropped, tmp_path, num_processes=2) == raw


def test_command_writes_the_csv_and_a_summary(data, tmp_path, capsys):
    root, _ = data
    out = tmp_path / "qa.csv"
    with pytest.raises(SystemExit) as exit_info:
        qa_command.main(["--exam-list", str(root / "exams.pkl"), "--data-folder",
                         str(root / "images"), "--output", str(out)])
    assert exit_info.value.code == 0  # flags are warnings, not failures
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == qa.COLUMNS
    assert {"image", "flags", *qa.CHECK_NAMES} <= set(reader.fieldnames)
    assert rows[0]["image"] == "ok_L-CC" and rows[0]["flags"] == "extra_images"
    assert len(rows) == 13 and sum(r["flags"] != "" for r in rows) == 10
    err = capsys.readouterr().err
    assert "quality check: 12 image(s) in 3 exam(s); 10 row(s) flagged" in err
    assert "quality check: inverted: 1: inverted" in err
    with pytest.raises(SystemExit) as exit_info:  # an existing output needs --overwrite
        qa_command.main(["--exam-list", str(root / "exams.pkl"), "--data-folder",
                         str(root / "images"), "--output", str(out)])
    assert exit_info.value.code == 2


def test_unreadable_image_exits_3(data, tmp_path):
    root, exams = data
    broken = [dict(exams[1], **{"R-CC": ["missing_file"]})]
    save_exam_list(broken, tmp_path / "e.pkl")
    status = qa.check_files(tmp_path / "e.pkl", root / "images", tmp_path / "qa.csv")
    assert status == 3
    row = _by_image(qa.check_exam_list(broken, root / "images"))["missing_file"]
    assert row["flags"] == "unreadable" and "image file not found" in row["note"]


def test_no_false_alarm_on_the_kit_real_images():
    case = parity_case("real_cc")
    rows = qa.check_exam_list(load_exam_list(case / "exam_list.pkl"), case / "images",
                                   num_processes=2)
    images = [r for r in rows if r["image"]]
    assert len(images) == 4 and all(r["flags"] == "" for r in images)
    assert all(r["range_used"] == 1.0 and r["bits_used"] == 16 for r in images)
    # The kit has CC views only: its MLO views are reported missing, nothing else.
    assert {r["flags"] for r in rows if not r["image"]} == {"missing_view"}


def test_no_false_alarm_on_the_sample_exams():
    exams = load_exam_list(REPO / "sample_data" / "exam_list_before_cropping.pkl")
    rows = qa.check_exam_list(exams, REPO / "sample_data" / "images", num_processes=2)
    assert len(rows) == 16 and all(r["flags"] == "" for r in rows)


def test_run_hook_writes_the_csv_from_the_workers_measures_and_never_raises(data, tmp_path,
                                                                           caplog):
    # bcc run's pass 1 takes the measures on the crops it holds: the same rows as bcc qa
    # reading those crops back, without a second decode.
    root, exams = data
    measured = {}
    cropped, _ = preprocess_exam_list(exams[1:2], root / "images", tmp_path / "crops",
                                      measured=measured)
    with caplog.at_level(logging.WARNING, logger="breast_cancer_classifier"):
        rows = qa.check_run(cropped, measured, tmp_path / "qa.csv")
    assert (tmp_path / "qa.csv").read_text().count("\n") == len(rows) + 1 == 5
    assert "quality check: eight_bit: 1: eight_bit" in caplog.text
    assert rows == qa.check_exam_list(cropped, tmp_path / "crops")
    measured.pop(cropped[0]["L-CC"][0])
    assert qa.check_run(cropped, measured, tmp_path / "x.csv") is None
    assert "quality check could not run" in caplog.text and not (tmp_path / "x.csv").exists()
