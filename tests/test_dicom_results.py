"""DICOM results end to end: ``bcc dicom --pseudonymize``, then ``bcc run --dicom-out``.

One session run (untrained random weights marked as demo weights, one augmented repetition)
on one small study whose four views all face the other way, so that its exam has
``horizontal_flip`` YES: the right-side images check that a heatmap maximum lands in the
source image's frame. Everything "How it is checked" of issue 23 asks is asserted on that
run: one SR in the source study, its evidence, the probabilities against the CSVs, the
SCOORD points against the heatmaps and crop windows, one overlay per image, dciodvfy, and no
identifier in any byte. ``bcc dicom-out`` is then run over the same folder.
"""

import csv
import json
import logging
import pickle
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("highdicom", reason="the clinical extra (highdicom) is not installed")

from breast_cancer_classifier import bcc  # noqa: E402
from breast_cancer_classifier.core import formats  # noqa: E402
from breast_cancer_classifier.core.exam_list import load_exam_list  # noqa: E402
from breast_cancer_classifier.core.views import LABELS, VIEWS  # noqa: E402
from breast_cancer_classifier.tools.dicom_results import write_dicom_results  # noqa: E402
from breast_cancer_classifier.tools.visualize import overlay_rgb  # noqa: E402
from dicom_files import dciodvfy, dsrdump_errors  # noqa: E402
# The session run (dicom_run, registered in conftest.py) and its helpers:
from dicom_run_support import (CONCEPTS, IDENTIFIERS, MODEL_NAMES, STUDY_UID,  # noqa: E402
                               _bcc, _concept, _content_items, _probabilities, _run_flags,
                               check_sr_against_csvs)
from helpers import slow  # noqa: E402

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"


def _files(folder, prefix):
    return sorted(Path(folder).glob(f"{prefix}_*.dcm"))


def _item_at(root, identifier):
    item = root
    for position in identifier[1:]:
        item = item.ContentSequence[position - 1]
    return item


def _source_uid(dicom_run, side, view, keyword):
    return dicom_run["pseudonyms"].uid(str(dicom_run["sources"][(side, view)][keyword].value))


# --------------------------------------------------------------------------- the SR
def test_one_mammography_cad_sr_per_study_in_the_source_study(dicom_run):
    srs = _files(dicom_run["out"], "SR")
    assert [p.name for p in srs] == ["SR_exam0.dcm"]
    sr = pydicom.dcmread(srs[0])
    assert sr.SOPClassUID == MAMMOGRAPHY_CAD_SR and sr.Modality == "SR"
    assert sr.StudyInstanceUID == dicom_run["pseudonyms"].uid(STUDY_UID)
    patient = dicom_run["pseudonyms"].patient(IDENTIFIERS["PatientID"])
    assert sr.PatientID == patient == dicom_run["exam"]["patient_id"]
    exam_id = dicom_run["pseudonyms"].exam(IDENTIFIERS["PatientID"], STUDY_UID)
    assert all(name.startswith(exam_id + "_") for view in VIEWS
               for name in dicom_run["exam"][view])  # the PNG names' pseudonym
    source_series = {_source_uid(dicom_run, s, v, "SeriesInstanceUID")
                     for s, v in dicom_run["sources"]}
    assert sr.SeriesInstanceUID not in source_series
    assert "NYU breast cancer" in sr.SeriesDescription
    assert (sr.ManufacturerModelName, sr.SoftwareVersions) == (
        "breast_cancer_classifier", bcc.__version__)
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "4000"


def test_evidence_lists_exactly_the_source_instances(dicom_run):
    sr = pydicom.dcmread(dicom_run["out"] / "SR_exam0.dcm")
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == sr.StudyInstanceUID
    listed = {(series.SeriesInstanceUID, instance.ReferencedSOPClassUID,
               instance.ReferencedSOPInstanceUID)
              for series in study.ReferencedSeriesSequence
              for instance in series.ReferencedSOPSequence}
    expected = {(_source_uid(dicom_run, s, v, "SeriesInstanceUID"), ds.SOPClassUID,
                 _source_uid(dicom_run, s, v, "SOPInstanceUID"))
                for (s, v), ds in dicom_run["sources"].items()}
    assert listed == expected and len(listed) == 4
    library = [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for item, parent in _content_items(sr)
               if item.get("ValueType") == "IMAGE" and _concept(parent) == "111028"]
    assert sorted(library) == sorted(uid for _, _, uid in expected)


def test_probabilities_equal_the_csvs_times_100(dicom_run):
    found = check_sr_against_csvs(pydicom.dcmread(dicom_run["out"] / "SR_exam0.dcm"),
                                  dicom_run["run"])
    # The exact float32 results agree to the CSV's rounding.
    result = json.loads((dicom_run["run"] / "exams" / "0.json").read_text())
    for value, label in zip(result["imageheatmaps"], LABELS):
        side, target = label.split("_")
        got = found[(MODEL_NAMES["imageheatmaps"], CONCEPTS[target], side)]
        assert abs(got - value * 100) <= 0.005 + 1e-9


def _heatmap_findings(sr):
    """``[(source SOP Instance UID, (column, row), value %)]`` of the SCOORD POINT findings."""
    findings = []
    for item, _ in _content_items(sr):
        if _concept(item) != "111059":
            continue
        points = [c for c in item.ContentSequence if c.get("ValueType") == "SCOORD"
                  and c.GraphicType == "POINT"]
        if not points:
            continue
        (point,) = points
        (reference,) = point.ContentSequence
        assert reference.RelationshipType == "SELECTED FROM"
        image = _item_at(sr, reference.ReferencedContentItemIdentifier)
        value = next(c for c in item.ContentSequence if _concept(c) == "111047")
        findings.append((image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
                         tuple(point.GraphicData),
                         float(value.MeasuredValueSequence[0].NumericValue)))
    return findings


def test_scoord_points_are_heatmap_maxima_in_source_coordinates(dicom_run):
    exam, run = dicom_run["exam"], dicom_run["run"]
    assert exam["horizontal_flip"] == "YES"  # the right-side images are mirrored
    findings = {uid: (point, value) for uid, point, value in
                _heatmap_findings(pydicom.dcmread(dicom_run["out"] / "SR_exam0.dcm"))}
    assert len(findings) == 4
    for view in VIEWS:
        (name,) = exam[view]
        side, angle = view.split("-")
        (column, row), value = findings[_source_uid(dicom_run, side, angle, "SOPInstanceUID")]
        top, bottom, left, right = exam["window_location"][view][0]
        assert left <= column <= right and top <= row <= bottom, view
        heatmap = formats.read_hdf5(run / "heatmaps" / "heatmap_malignant" / f"{name}.hdf5")
        assert value == pytest.approx(float(heatmap.max()) * 100, rel=1e-9, abs=1e-9)
        r, c = int(row - 0.5) - top, int(column - 0.5) - left  # the pixel's centre
        assert heatmap[r, c] == heatmap.max()
        # The point is that pixel of the source image: crop and PNG agree there.
        cropped = formats.read_mammogram_png(run / "cropped_images" / f"{name}.png")
        source = formats.read_mammogram_png(dicom_run["root"] / "png" / f"{name}.png")
        assert cropped[r, c] == source[int(row), int(column)]
        assert source.shape == (dicom_run["sources"][(side, angle)].Rows,
                                dicom_run["sources"][(side, angle)].Columns)


# --------------------------------------------------------------------------- overlays
def test_one_secondary_capture_per_source_image(dicom_run):
    sr = pydicom.dcmread(dicom_run["out"] / "SR_exam0.dcm")
    scs = [pydicom.dcmread(p) for p in _files(dicom_run["out"], "SC")]
    assert len(scs) == 4
    referenced = set()
    for sc in scs:
        assert list(sc.ImageType) == ["DERIVED", "SECONDARY"] and sc.BurnedInAnnotation == "YES"
        assert sc.StudyInstanceUID == sr.StudyInstanceUID and sc.PatientID == sr.PatientID
        (source,) = sc.SourceImageSequence
        referenced.add(source.ReferencedSOPInstanceUID)
        side, view = next(k for k in dicom_run["sources"] if _source_uid(
            dicom_run, *k, "SOPInstanceUID") == source.ReferencedSOPInstanceUID)
        assert (sc.Rows, sc.Columns) == (dicom_run["sources"][(side, view)].Rows,
                                         dicom_run["sources"][(side, view)].Columns)
        assert sc.Laterality == side and sc.SamplesPerPixel == 3
        # The pixels: bcc visualize's overlay of the crop in its window, black around it,
        # but for the burned-in text at the top, on the side away from the chest wall.
        name = dicom_run["exam"][f"{side}-{view}"][0]
        run = dicom_run["run"]
        crop = formats.read_mammogram_png(run / "cropped_images" / f"{name}.png")
        heatmap = formats.read_hdf5(run / "heatmaps" / "heatmap_malignant" / f"{name}.hdf5")
        top, bottom, left, right = dicom_run["exam"]["window_location"][f"{side}-{view}"][0]
        expected = np.zeros((sc.Rows, sc.Columns, 3), dtype=np.uint8)
        expected[top:bottom, left:right] = overlay_rgb(crop, heatmap)
        rows, columns = np.nonzero((sc.pixel_array != expected).any(axis=-1))
        assert rows.size > 500 and rows.max() < sc.Rows // 2
        # Mirrored exam: right views have the chest wall at the left edge, left views right;
        # the text box keeps to the other edge.
        far, near = (columns.max(), columns.min()) if side == "R" else (
            sc.Columns - 1 - columns.min(), sc.Columns - 1 - columns.max())
        assert far >= 0.9 * sc.Columns and near > 0, (side, view)
    assert referenced == {_source_uid(dicom_run, s, v, "SOPInstanceUID")
                          for s, v in dicom_run["sources"]}
    series = {sc.SeriesInstanceUID for sc in scs}
    assert len(series) == 4 and sr.SeriesInstanceUID not in series


def test_index_names_every_object(dicom_run):
    with open(dicom_run["out"] / "dicom_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["file"] for r in rows) == sorted(
        p.name for p in dicom_run["out"].glob("*.dcm"))
    for row in rows:
        ds = pydicom.dcmread(dicom_run["out"] / row["file"])
        assert (row["study_instance_uid"], row["sop_instance_uid"]) == (
            ds.StudyInstanceUID, ds.SOPInstanceUID)
    assert not (dicom_run["out"] / "failures.csv").exists()


def test_every_object_passes_dciodvfy_and_the_sr_dsrdump(dicom_run):
    for path in sorted(dicom_run["out"].glob("*.dcm")):
        errors, warnings = dciodvfy(path)
        assert errors == [], (path.name, errors)
        assert all("DICOMDIR" in w or "<99BCC>" in w for w in warnings), (path.name, warnings)
    assert dsrdump_errors(dicom_run["out"] / "SR_exam0.dcm") == []


def test_pseudonymized_outputs_hold_no_identifier(dicom_run):
    sources = dicom_run["sources"].values()
    secrets = list(IDENTIFIERS.values()) + ["Doe", "Jane", STUDY_UID]
    secrets += [str(ds[k].value) for ds in sources for k in ("SOPInstanceUID",
                                                              "SeriesInstanceUID")]
    for folder in (dicom_run["out"], dicom_run["run"]):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not [s for s in secrets if s.encode() in data], path
                assert not [s for s in secrets if s in path.name], path


# --------------------------------------------------------------------------- bcc dicom-out
def _without_creation_times(ds):
    for keyword in ("InstanceCreationDate", "InstanceCreationTime", "DateOfSecondaryCapture",
                    "TimeOfSecondaryCapture", "ContributingEquipmentSequence"):
        ds.pop(keyword, None)
    return ds


def test_dicom_out_writes_what_bcc_run_wrote_and_refuses_to_overwrite(dicom_run, tmp_path,
                                                                      capsys):
    out = tmp_path / "again"
    assert _bcc("dicom-out", "--run-dir", dicom_run["run"], "--output", out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in dicom_run["out"].iterdir())
    for name in names:
        if name.endswith(".dcm"):  # same UIDs and content; only the creation times differ
            assert _without_creation_times(pydicom.dcmread(out / name)) == \
                _without_creation_times(pydicom.dcmread(dicom_run["out"] / name)), name
    assert _bcc("dicom-out", "--run-dir", dicom_run["run"], "--output", out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _bcc("dicom-out", "--run-dir", dicom_run["run"], "--output", out,
                "--overwrite") == 0


def test_exam_list_not_from_bcc_dicom_exits_2_before_any_work(dicom_run, tmp_path, capsys):
    plain = _without_records(dicom_run, tmp_path / "plain.pkl")
    status = _bcc("run", "--exam-list", plain, "--data-folder", dicom_run["root"] / "png",
                  "--output-dir", tmp_path / "run", *_run_flags(dicom_run["weights"]),
                  "--dicom-out", tmp_path / "dcm")
    assert status == 2
    err = capsys.readouterr().err
    assert "no 'dicom' key" in err and "bcc dicom" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "dcm").exists()


def _without_records(dicom_run, path):
    exams = load_exam_list(dicom_run["root"] / "exams.pkl")
    for exam in exams:
        del exam["dicom"]
    path.write_bytes(pickle.dumps(exams))
    return path


def test_the_records_change_no_number(dicom_run):
    """The stages ignore the ``dicom`` key: the plan (every random draw) is that of the
    exam list without it (the CSVs' bytes: the slow test below)."""
    from breast_cancer_classifier.core.plan import make_plan, plan_arrays

    data = load_exam_list(dicom_run["run"] / "data.pkl")
    bare = [{k: v for k, v in exam.items() if k != "dicom"} for exam in data]
    assert "dicom" in data[0] and "best_center" in data[0]
    with_records, without = (plan_arrays(make_plan(d, 0, 1, True)) for d in (data, bare))
    assert with_records.keys() == without.keys()
    for key in with_records:
        np.testing.assert_array_equal(with_records[key], without[key])


@slow
def test_the_csvs_are_those_of_the_exam_list_without_records(dicom_run, tmp_path):
    plain = _without_records(dicom_run, tmp_path / "plain.pkl")
    assert _bcc("run", "--exam-list", plain, "--data-folder", dicom_run["root"] / "png",
                "--output-dir", tmp_path / "run", *_run_flags(dicom_run["weights"])) == 0
    for name in ("image_predictions.csv", "imageheatmaps_predictions.csv"):
        assert (tmp_path / "run" / name).read_bytes() == (dicom_run["run"] / name).read_bytes()


def _copy_run(dicom_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(dicom_run["run"], run)
    return run


def test_a_moved_source_file_gets_a_warning_and_its_sr(dicom_run, tmp_path, caplog):
    run = _copy_run(dicom_run, tmp_path)
    exams = load_exam_list(run / "data.pkl")
    name = exams[0]["R-CC"][0]
    exams[0]["dicom"]["images"][name]["source_file"] = str(tmp_path / "moved" / "x.dcm")
    formats.write_bytes_atomic(run / "data.pkl", pickle.dumps(exams))
    with caplog.at_level(logging.WARNING, logger="breast_cancer_classifier"):
        assert write_dicom_results(run, tmp_path / "dcm") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and name in warnings[0] and "gone" in warnings[0]
    assert (tmp_path / "dcm" / "SR_exam0.dcm").is_file()


def test_an_exam_without_predictions_gets_no_sr_and_is_listed(dicom_run, tmp_path):
    run = _copy_run(dicom_run, tmp_path)
    formats.write_predictions_csv(run / "imageheatmaps_predictions.csv", [None])
    assert write_dicom_results(run, tmp_path / "dcm") == 1
    assert not list((tmp_path / "dcm").glob("*.dcm"))
    with open(tmp_path / "dcm" / "failures.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["item"].startswith("exam 0") and "no prediction" in row["reason"]


def test_calibration_adds_calibrated_values_and_the_operating_point(dicom_run, tmp_path):
    from breast_cancer_classifier.core.hashing import file_sha256

    calibration = {
        "format": "bcc-calibration", "version": 1, "method": "platt",
        "targets": {"malignant": {"params": {"a": 1.0, "b": 0.0}},
                    "benign": {"params": {"a": 1.0, "b": 1.0}}},
        "fitted_on": {"model": "imageheatmaps", "model_mode": "view_split",
                      "weights_sha256": file_sha256(dicom_run["weights"]["imageheatmaps"])},
        "operating_point": {"threshold": 0.0}}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration))
    assert write_dicom_results(dicom_run["run"], tmp_path / "dcm", calibrations=[path]) == 0
    sr = pydicom.dcmread(tmp_path / "dcm" / "SR_exam0.dcm")
    found = _probabilities(sr)
    name = MODEL_NAMES["imageheatmaps"]
    with open(dicom_run["run"] / "imageheatmaps_predictions.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for side in ("left", "right"):  # Platt with a=1, b=0 is the identity
        raw = Decimal(row[f"{side}_malignant"])
        assert found[(name, "BCC0002", side)] == float(Decimal("%.4f" % float(raw)) * 100)
        assert found[(name, "BCC0003", side)] > found[(name, "BCC0001", side)]
    summary = next(item for item, _ in _content_items(sr) if _concept(item) == "111017")
    text = next(i.TextValue for i in summary.ContentSequence if _concept(i) == "111033")
    assert "right and left breast(s) at or above the operating point 0.0 %" in text
    assert [i.TextValue for i in summary.ContentSequence if _concept(i) == "111001"] == [name]
