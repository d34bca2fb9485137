"""The Mammography CAD SR content tree (tools/dicom_results/sr.py), on synthetic inputs."""

from decimal import Decimal

import pydicom
import pytest

pytest.importorskip("highdicom", reason="the clinical extra (highdicom) is not installed")

from breast_cancer_classifier.tools.dicom_results import sr  # noqa: E402
from dicom_files import dciodvfy, dsrdump_errors  # noqa: E402

MG = "1.2.840.10008.5.1.4.1.1.1.2"
VIEWS = (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))


def _study(**extra):
    study = {"SpecificCharacterSet": "", "PatientName": "Doe^Jane", "PatientID": "P1",
             "PatientBirthDate": "19600101", "PatientSex": "F", "StudyInstanceUID": "1.2.3",
             "StudyDate": "20200102", "StudyTime": "101010", "AccessionNumber": "A1",
             "StudyID": "", "ReferringPhysicianName": "", "StudyDescription": "MAMMO SCREEN"}
    study.update(extra)
    return study


def _images():
    images = []
    for k, (side, view) in enumerate(VIEWS):
        record = {"SOPClassUID": MG, "SOPInstanceUID": f"1.2.3.1.{k}",
                  "SeriesInstanceUID": f"1.2.3.2.{k // 2}", "Rows": 400, "Columns": 300,
                  "side": side, "view": view, "PatientOrientation": ["A", "R"],
                  "PixelSpacing": ["0.1", "0.2"], "ContentDate": "20200102"}
        images.append(sr.ImageResult(f"x_{side}_{view}", record, (10, 390, 0, 280),
                                     (100 + k, 50 + k), 0.25 + k / 10))
    return images


def _models():
    algorithm = sr.Algorithm("model", "0123456789ab", ("num_epochs=1",))
    percent = {(s, t): Decimal("0.1234") * 100 for s in "RL" for t in sr.TARGETS}
    return [sr.ModelResult("image-only", algorithm, percent),
            sr.ModelResult("image+heatmaps", sr.Algorithm("h", "ba9876543210"), percent)]


def _document():
    return sr.Document("2.25.1", "2.25.2", "CAD SR", 1, "20200103", "120000")


def _items(item):
    for child in item.get("ContentSequence", []):
        yield child
        yield from _items(child)


def _code(item):
    return item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else None


def _check(ds, tmp_path):
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    errors, warnings = dciodvfy(path)
    assert errors == [] and all("DICOMDIR" in w or "<99BCC>" in w for w in warnings), warnings
    assert dsrdump_errors(path) == []
    return pydicom.dcmread(path)


def test_cad_sr_is_valid_and_names_its_rows(tmp_path):
    ds = _check(sr.cad_sr(_study(), _images(), _models(), sr.Algorithm("patch", "abc"),
                          _document()), tmp_path)
    assert ds.SOPClassUID == sr.MAMMOGRAPHY_CAD_SR and ds.StudyDescription == "MAMMO SCREEN"
    assert (ds.ContentDate, ds.ContentTime) == ("20200103", "120000")
    children = [_code(c) for c in ds.ContentSequence]
    assert children == ["121049", "111028", "111017", "111064", "111065"]  # TID 4000 order
    library = ds.ContentSequence[1].ContentSequence
    first = {_code(i): i for i in library[0].ContentSequence}
    assert first["111027"].ConceptCodeSequence[0].CodeMeaning == "Left breast"
    assert first["111031"].ConceptCodeSequence[0].CodeValue == "399162004"
    assert float(first["111026"].MeasuredValueSequence[0].NumericValue) == 0.2  # columns
    assert float(first["111066"].MeasuredValueSequence[0].NumericValue) == 0.1  # rows
    assert first["111060"].Date == "20200102" and first["111044"].TextValue == "A"
    # Each heatmap finding points at its own library image, at the pixel's centre.
    points = [i for i in _items(ds) if i.get("GraphicType") == "POINT"]
    assert len(points) == 4
    for k, point in enumerate(points):
        assert list(point.GraphicData) == [50 + k + 0.5, 100 + k + 0.5]
        assert list(point.ContentSequence[0].ReferencedContentItemIdentifier) == [1, 2, k + 1]
    outlines = [i for i in _items(ds) if i.get("GraphicType") == "POLYLINE"]
    assert [list(o.GraphicData) for o in outlines][0] == [0, 10, 280, 10, 280, 390, 0, 390,
                                                        0, 10]
    numbers = [float(i.MeasuredValueSequence[0].NumericValue) for i in _items(ds)
               if _code(i) == "111047"]
    assert sorted(numbers) == [12.34] * 4 + [25.0, 35.0, 45.0, 55.0]


def test_library_rows_follow_the_source_header(tmp_path):
    images = _images()
    for image in images:
        for keyword in ("PatientOrientation", "PixelSpacing", "ContentDate"):
            image.record.pop(keyword)
    ds = _check(sr.cad_sr(_study(StudyDate="", StudyTime=""), images, _models(),
                          sr.Algorithm("patch", "abc"), _document()), tmp_path)
    library = ds.ContentSequence[1].ContentSequence
    assert [_code(i) for i in library[0].ContentSequence] == ["111027", "111031"]


def test_failure_sr_says_why(tmp_path):
    records = []
    for k, (side, view) in enumerate(VIEWS):
        records.append({"SOPClassUID": MG, "SOPInstanceUID": f"1.2.3.1.{k}",
                        "SeriesInstanceUID": "1.2.3.2", "ImageLaterality": side,
                        "ViewPosition": view})
    ds = _check(sr.failure_sr(_study(), records, "pixel data cannot be decoded"), tmp_path)
    summary = ds.ContentSequence[2]
    assert summary.ConceptCodeSequence[0].CodeValue == "111245"
    texts = [i.TextValue for i in summary.ContentSequence if _code(i) == "111033"]
    assert texts == ["Analysis failed: pixel data cannot be decoded"]
    assert ds.ContentSequence[3].ConceptCodeSequence[0].CodeValue == "111224"  # failed
    assert ds.ContentSequence[4].ConceptCodeSequence[0].CodeValue == "111225"  # not attempted
    assert ds.StudyInstanceUID == "1.2.3" and ds.SOPInstanceUID.startswith("2.25.")
    assert len(ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
               .ReferencedSOPSequence) == 4
    with pytest.raises(ValueError, match="at least one source image"):
        sr.failure_sr(_study(), [], "x")
    with pytest.raises(ValueError, match="no SOPInstanceUID"):
        sr.failure_sr(_study(), [dict(records[0], SOPInstanceUID="")], "x")
    # A header that names no screening view: its library entry says nothing of it.
    ds = _check(sr.failure_sr(_study(), [dict(records[0], ViewPosition="ML",
                                               ImageLaterality="")], "x"), tmp_path)
    entry = ds.ContentSequence[1].ContentSequence[0]
    assert [_code(i) for i in entry.ContentSequence] == ["111060", "111061"]  # dates only


def test_codes_are_those_of_the_standard():
    """Every DCM and SCT concept the SR writes has pydicom's code value and meaning (PS3.16
    Annex D; pydicom's meanings carry zero-width spaces that we leave out)."""
    from pydicom.sr.codedict import codes

    standard = {}
    for scheme in ("DCM", "SCT"):
        collection = getattr(codes, scheme)
        for keyword in collection.dir():
            code = getattr(collection, keyword)
            standard.setdefault((scheme, code.value), set()).add(
                code.meaning.replace("\u200b", "").lower())
    ours = []
    for value in vars(sr.Codes).values():
        ours += list(value.values()) if isinstance(value, dict) else [value]
    checked = 0
    for concept in ours:
        if not hasattr(concept, "scheme_designator") or concept.scheme_designator not in (
                "DCM", "SCT"):
            continue
        key = (concept.scheme_designator, concept.value)
        assert concept.meaning.lower() in standard.get(key, set()), key
        checked += 1
    assert checked >= 48  # all but the RFC5646, UCUM and private ones
