"""What bcc dicom records of the source images (tools/dicom_results/sources.py)."""

import pydicom
import pytest
from pydicom.dataset import Dataset

from breast_cancer_classifier.core.errors import ExamListError
from breast_cancer_classifier.tools.dicom_results import sources
from breast_cancer_classifier.tools.pseudonyms import Pseudonyms
from dicom_files import mammogram, phantom


def _header(tmp_path, **extra):
    path = mammogram(tmp_path / "a.dcm", phantom(12), PatientName="Doe^Jane",
                     PatientOrientation=["A", "R"], ImagerPixelSpacing=["0.07", "0.07"],
                     ContentDate="20200103", **extra)
    return path, pydicom.dcmread(path, stop_before_pixels=True)


def test_records_hold_the_identity_and_what_derived_objects_copy(tmp_path):
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = \
        "399162004", "SCT", "cranio-caudal"
    path, ds = _header(tmp_path, ViewCodeSequence=[code], AccessionNumber="A1")
    study = sources.study_record(ds)
    assert (study["PatientID"], study["PatientName"], study["StudyDate"],
            study["AccessionNumber"], study["PatientBirthDate"]) == (
        "PA", "Doe^Jane", "20200102", "A1", "")
    record = sources.image_record(ds, path, "a.dcm", "L", "CC")
    assert record["SOPInstanceUID"] == str(ds.SOPInstanceUID)
    assert (record["Rows"], record["Columns"]) == (ds.Rows, ds.Columns)
    assert record["PatientOrientation"] == ["A", "R"]
    assert record["ImagerPixelSpacing"] == ["0.07", "0.07"] and record["PixelSpacing"] == ""
    assert record["ViewCodeSequence"] == [["399162004", "SCT", "cranio-caudal"]]
    assert (record["side"], record["view"], record["file"]) == ("L", "CC", "a.dcm")
    assert record["source_file"] == str(path)


def test_pseudonymized_records_keep_no_identifier(tmp_path):
    path, ds = _header(tmp_path, AccessionNumber="A1", PatientBirthDate="19600101",
                       StudyTime="101010")
    pseudonyms = Pseudonyms(tmp_path / "k.key")
    study = sources.pseudonymize_study(sources.study_record(ds), pseudonyms)
    record = sources.pseudonymize_image(sources.image_record(ds, path, "a.dcm", "L", "CC"),
                                        pseudonyms, pseudonyms.file("a.dcm"))
    assert study["PatientID"] == pseudonyms.patient("PA")
    assert study["PatientName"] == study["PatientID"] + "^"
    assert study["StudyInstanceUID"] == pseudonyms.uid(ds.StudyInstanceUID)
    assert record["StudyInstanceUID"] == study["StudyInstanceUID"]
    assert record["SOPInstanceUID"] == pseudonyms.uid(ds.SOPInstanceUID) != ds.SOPInstanceUID
    assert record["SOPInstanceUID"].startswith("2.25.") and len(record["SOPInstanceUID"]) <= 64
    assert all(study[k] == "" for k in ("StudyDate", "StudyTime", "AccessionNumber",
                                        "PatientBirthDate"))
    assert record["ContentDate"] == "" and record["source_file"] is None
    text = repr((study, record))
    assert not [s for s in ("Doe", "20200102", "A1", "19600101", str(ds.SOPInstanceUID),
                            str(ds.SeriesInstanceUID), str(tmp_path)) if s in text]
    other = Pseudonyms(tmp_path / "other.key")
    assert other.uid(ds.SOPInstanceUID) != record["SOPInstanceUID"]


def _exam(records=True):
    exam = {"horizontal_flip": "NO", "L-CC": ["a"], "R-CC": [], "L-MLO": [], "R-MLO": []}
    if records:
        exam["dicom"] = sources.exam_record(
            {"StudyInstanceUID": "1.2.3"},
            {"a": {"SOPClassUID": "1.2", "SOPInstanceUID": "1.2.3.4",
                   "SeriesInstanceUID": "1.2.3.5", "Rows": 10, "Columns": 8}})
    return exam


def test_check_exam_list_names_what_is_missing():
    sources.check_exam_list([_exam()])
    with pytest.raises(ExamListError, match="exam 0 .*no 'dicom' key.*bcc dicom"):
        sources.check_exam_list([_exam(records=False)])
    exam = _exam()
    del exam["dicom"]["images"]["a"]
    with pytest.raises(ExamListError, match="L-CC image a: no record"):
        sources.check_exam_list([exam])
    exam = _exam()
    exam["dicom"]["images"]["a"]["SOPInstanceUID"] = ""
    with pytest.raises(ExamListError, match="lacks SOPInstanceUID"):
        sources.check_exam_list([exam])
    exam = _exam()
    exam["dicom"]["version"] = 99
    with pytest.raises(ExamListError, match="not version 1"):
        sources.check_exam_list([exam])


def test_source_file_problem(tmp_path):
    path, ds = _header(tmp_path)
    record = sources.image_record(ds, path)
    assert sources.source_file_problem(record) == ""
    assert sources.source_file_problem(dict(record, source_file=None)) == ""
    assert "another instance" in sources.source_file_problem(
        dict(record, SOPInstanceUID="1.2.3.999"))
    path.unlink()
    assert "gone" in sources.source_file_problem(record)
    path.write_bytes(b"not DICOM")
    assert "can no longer be read" in sources.source_file_problem(record)
