"""DICOM in (breast_cancer_classifier.tools.dicom): headers, pixel rule, grouping, skips, report.

Every DICOM file is built with pydicom by tests/dicom_files.py (compressed ones too, so the
decoders are checked against data they did not produce).
"""

import csv
from fractions import Fraction

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1

from breast_cancer_classifier.tools import dicom
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.errors import OutputExistsError, PipelineError
from breast_cancer_classifier.core.exam_list import load_exam_list
from breast_cancer_classifier.core.views import VIEWS
from dicom_files import MG_FOR_PROCESSING, mammogram, phantom, structured_report
from helpers import run_script


# --------------------------------------------------------------------------- test data
def expected_png(stored, bits, monochrome1=False):
    """SPEC 10 with exact fractions: invert MONOCHROME1, then round(v * 65535 / (2^b - 1))."""
    top = 2 ** bits - 1
    flat = [top - int(v) if monochrome1 else int(v) for v in stored.ravel()]
    return np.array([round(Fraction(v * 65535, top)) for v in flat],
                    dtype=np.uint16).reshape(stored.shape)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Two studies in nested folders plus everything a real archive has that must be skipped.

    Returns (folder, {relative path: (stored pixels, bits, MONOCHROME1?)}).
    """
    root = tmp_path_factory.mktemp("archive")
    pixels = {}

    def add(rel, stored, bits, monochrome1=False, **kwargs):
        mammogram(root / rel, stored, bits=bits, monochrome1=monochrome1, **kwargs)
        pixels[rel] = (stored, bits, monochrome1)

    # Study 1 (patient PA): facing as expected (left views' chest wall at the left edge).
    add("PA/s1/lcc.dcm", phantom(12, "left", 1), 12, side="L", view="CC")
    top14 = 2 ** 14 - 1
    add("PA/s1/rcc.dcm", top14 - phantom(14, "right", 2), 14, monochrome1=True,
        side="R", view="RIGHT CC")
    add("PA/s1/deep/lmlo.dcm", phantom(12, "left", 3), 12, side="L", view="MLO",
        side_tag="Laterality", syntax=JPEG2000Lossless)
    add("PA/s1/deep/rmlo.dcm", phantom(12, "right", 4), 12, side="R", view=None,
        syntax=JPEGLosslessSV1, view_code=("399368009", "SCT", "medio-lateral oblique"))
    mammogram(root / "PA/s1/lcc_raw.dcm", phantom(14, "left", 5), bits=14, side="L",
              view="CC", intent="FOR PROCESSING", sop_class=MG_FOR_PROCESSING)
    mammogram(root / "PA/s1/lml.dcm", phantom(12, "left", 6), side="L", view="ML")
    structured_report(root / "PA/s1/report.dcm")
    (root / "PA/s1/corrupt.dcm").write_bytes(np.random.RandomState(0).bytes(3000))
    truncated = mammogram(root / "PA/s1/truncated.dcm", phantom(12, "right", 7), side="R",
                          view="CC")
    truncated.write_bytes(truncated.read_bytes()[:-1500])

    # Study 2 (patient PB), nested deeper: every image mirrored, two L-CC images, and the
    # view only in ViewCodeSequence (SNOMED RT code) for one of them.
    study2 = "1.2.3.2"
    for rel, side, view, wall, seed, extra in [
            ("PB/2021/a/img1.dcm", "L", "CC", "right", 11, {"InstanceNumber": 2}),
            ("PB/2021/a/img2.dcm", "L", "LCC", "right", 12, {"InstanceNumber": 1}),
            ("PB/2021/b/img3.dcm", "R", None, "left", 13,
             {"view_code": ("R-10242", "SRT", "cranio-caudal")}),
            ("PB/2021/b/img4.dcm", "L", "MLO", "right", 14, {}),
            ("PB/2021/b/img5.dcm", "R", "R MLO", "left", 15, {})]:
        add(rel, phantom(16, wall, seed), 16, side=side, view=view, study=study2,
            patient="PB", date="20210304", **extra)
    return root, pixels


@pytest.fixture(scope="module")
def converted(archive, tmp_path_factory):
    root, _ = archive
    out = tmp_path_factory.mktemp("converted")
    result = dicom.dicom_to_exam_list(root, out / "png", out / "exams.pkl", num_processes=2)
    with open(out / "exams.pkl.report.csv", newline="") as f:
        report = {row["path"]: row for row in csv.DictReader(f)}
    return out, result, report


# --------------------------------------------------------------------------- pixels
def test_png_pixels_follow_the_rule_exactly(archive, converted):
    _, pixels = archive
    out, _, report = converted
    for rel, (stored, bits, monochrome1) in pixels.items():
        png = formats.read_mammogram_png(out / "png" / report[rel]["output_png"])
        assert png.dtype == np.uint16
        np.testing.assert_array_equal(png, expected_png(stored, bits, monochrome1), err_msg=rel)


def test_full_scale_maps_to_65535_and_monochrome1_is_inverted():
    ds = Dataset()
    ds.BitsStored, ds.PhotometricInterpretation = 12, "MONOCHROME1"
    image, notes = dicom.mammogram_pixels(np.array([[0, 4095, 1, 2048]], np.uint16), ds)
    assert image.tolist() == [[65535, 0, 65519, 32759]] and notes == []
    ds.PhotometricInterpretation = "MONOCHROME2"
    image, _ = dicom.mammogram_pixels(np.array([[0, 4095, 1, 2048]], np.uint16), ds)
    assert image.tolist() == [[0, 65535, 16, 32776]]


def test_modality_rescale_applies_when_not_identity_and_clips():
    ds = Dataset()
    ds.BitsStored, ds.PhotometricInterpretation = 12, "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    stored = np.array([[0, 100, 4095]], np.uint16)
    assert dicom.mammogram_pixels(stored, ds)[0].tolist() == [[0, 1600, 65535]]
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    image, notes = dicom.mammogram_pixels(stored, ds)
    # 0 -> -100 (clipped to 0), 100 -> 100, 4095 -> 8090 (clipped to 4095)
    assert image.tolist() == [[0, 1600, 65535]]
    assert notes == ["2 value(s) outside 0..4095 clipped"]
    assert ds.RescaleSlope == 2 and ds.BitsStored == 12  # the dataset is not changed


def test_voi_window_only_when_asked():
    ds = Dataset()
    ds.BitsStored, ds.PhotometricInterpretation = 12, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048.5, 1025  # LINEAR: 1536..2560 -> 0..4095
    stored = np.array([[0, 1536, 2048, 2560, 4095]], np.uint16)
    raw, _ = dicom.mammogram_pixels(stored, ds)
    assert raw.tolist() == expected_png(stored, 12).tolist()
    windowed, notes = dicom.mammogram_pixels(stored, ds, apply_voi_lut=True)
    assert windowed.tolist() == [[0, 0, 32768, 65535, 65535]] and notes == []
    del ds.WindowCenter, ds.WindowWidth
    _, notes = dicom.mammogram_pixels(stored, ds, apply_voi_lut=True)
    assert notes == ["no VOI LUT or window in the file: none applied"]


def test_voi_lut_sequence_sets_the_output_bit_depth():
    ds = Dataset()
    ds.BitsStored, ds.PhotometricInterpretation = 12, "MONOCHROME1"
    lut = Dataset()
    lut.LUTDescriptor = [4, 1, 8]  # 4 entries, first maps input 1, 8-bit output
    lut.LUTData = [10, 100, 200, 255]
    ds.VOILUTSequence = [lut]
    stored = np.array([[0, 1, 2, 3, 4, 4095]], np.uint16)
    image, _ = dicom.mammogram_pixels(stored, ds, apply_voi_lut=True)
    # LUT output (10, 10, 100, 200, 255, 255), inverted within 0..255, then times 65535/255.
    assert image.tolist() == [[(255 - v) * 257 for v in (10, 10, 100, 200, 255, 255)]]


# --------------------------------------------------------------------------- headers
@pytest.mark.parametrize("text, expected", [
    ("CC", (None, "CC")), ("MLO", (None, "MLO")), ("RIGHT CC", ("R", "CC")),
    ("L MLO", ("L", "MLO")), ("RCC", ("R", "CC")), ("L-MLO", ("L", "MLO")),
    ("LMLO", ("L", "MLO")), ("CC ID", (None, "CC")), ("ML", (None, "ML")),
    ("RML", ("R", "ML")), ("XCCL", (None, "XCCL")), ("LM", (None, "LM")),
    ("CC SPOT", (None, "CC SPOT")), ("", (None, None)), (None, (None, None))])
def test_view_position_forms(text, expected):
    assert dicom.parse_view_position(text) == expected


def test_skip_reasons_for_headers(tmp_path):
    def header(**kwargs):
        path = mammogram(tmp_path / "x.dcm", phantom(12), **kwargs)
        return dicom.skip_reason(pydicom.dcmread(path, stop_before_pixels=True))

    assert header() == ""
    assert header(intent=None) == ""
    assert header(side="B").startswith("ImageLaterality is 'B'")
    assert header(side=None).startswith("no laterality")
    assert header(side=None, view="LCC") == ""
    assert header(view=None).startswith("no view")
    assert header(view="XCCL") == "view 'XCCL' is not CC or MLO"
    assert header(view=None, view_code=("R-10224", "SRT", "medio-lateral")) == \
        "view 'medio-lateral' is not CC or MLO"
    assert header(NumberOfFrames=3).startswith("multi-frame image (3 frames")
    assert "signed pixel data" in header(PixelRepresentation=1)
    assert header(Modality="CR").startswith("Modality CR, not MG")
    spot = Dataset()
    spot.CodeValue, spot.CodingSchemeDesignator, spot.CodeMeaning = \
        "R-102D7", "SRT", "Spot Compression"
    assert header(ViewModifierCodeSequence=[spot]).startswith("spot compression view")


# --------------------------------------------------------------------------- exams, report
def test_grouping_views_and_names(converted):
    out, result, _ = converted
    assert result.exit_code == 3  # the truncated mammogram failed; everything else is fine
    exams = load_exam_list(out / "exams.pkl")
    assert exams == result.exam_list
    assert [{k: v for k, v in exam.items() if k != "dicom"} for exam in exams] == [
        {"horizontal_flip": "NO", "L-CC": ["PA_20200102_L_CC"], "R-CC": ["PA_20200102_R_CC"],
         "L-MLO": ["PA_20200102_L_MLO"], "R-MLO": ["PA_20200102_R_MLO"]},
        # InstanceNumber orders the two L-CC images (img2 is instance 1).
        {"horizontal_flip": "YES", "L-CC": ["PB_20210304_L_CC_1", "PB_20210304_L_CC_2"],
         "R-CC": ["PB_20210304_R_CC"], "L-MLO": ["PB_20210304_L_MLO"],
         "R-MLO": ["PB_20210304_R_MLO"]}]
    assert sorted(p.name for p in (out / "png").iterdir()) == sorted(
        f"{name}.png" for exam in exams for view in VIEWS for name in exam[view])


def test_exams_record_the_source_instances(archive, converted):
    """The ``dicom`` key: each PNG's source UIDs, size and place, and the study's attributes."""
    root, _ = archive
    out, result, report = converted
    exams = load_exam_list(out / "exams.pkl")
    by_png = {row["output_png"][:-4]: path for path, row in report.items() if row["output_png"]}
    for exam in exams:
        study, images = exam["dicom"]["study"], exam["dicom"]["images"]
        names = [n for view in VIEWS for n in exam[view]]
        assert exam["dicom"]["version"] == 1 and sorted(images) == sorted(names)
        for view in VIEWS:
            for name in exam[view]:
                ds = pydicom.dcmread(root / by_png[name], stop_before_pixels=True)
                record = images[name]
                for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID",
                                "StudyInstanceUID"):
                    assert record[keyword] == str(ds[keyword].value), (name, keyword)
                assert (record["Rows"], record["Columns"]) == (ds.Rows, ds.Columns)
                assert (record["side"], record["view"]) == tuple(view.split("-"))
                assert record["source_file"] == str((root / by_png[name]).resolve())
                assert record["file"] == by_png[name]
                assert study["StudyInstanceUID"] == record["StudyInstanceUID"]
        assert study["PatientID"] == ds.PatientID and study["StudyDate"] == ds.StudyDate
    # The view coded in ViewCodeSequence is kept as coded.
    rcc = exams[1]["dicom"]["images"]["PB_20210304_R_CC"]
    assert rcc["ViewCodeSequence"] == [["R-10242", "SRT", "cranio-caudal"]]
    assert rcc["ViewPosition"] == ""


def test_json_exam_list_carries_the_records_and_the_report_acquisition_columns(tmp_path):
    root = tmp_path / "in"
    mammogram(root / "a.dcm", phantom(12), Manufacturer="ACME", ManufacturerModelName="M 1",
              KVP="28", Exposure="63", CompressionForce="101.5", BodyPartThickness="52",
              LossyImageCompression="00")
    mammogram(root / "b.dcm", phantom(12, "right"), side="R")
    result = dicom.dicom_to_exam_list(root, tmp_path / "png", tmp_path / "e.json")
    exam = load_exam_list(tmp_path / "e.json")[0]
    assert exam["dicom"] == result.exam_list[0]["dicom"]
    assert exam["dicom"]["images"]["PA_20200102_L_CC"]["SOPInstanceUID"] == str(
        pydicom.dcmread(root / "a.dcm").SOPInstanceUID)
    with open(tmp_path / "e.json.report.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == dicom.REPORT_COLUMNS
        assert reader.fieldnames[:14] == ["path", "status", "reason", "exam", "exam_id", "study",
                                          "patient", "side", "view", "bits", "photometric",
                                          "transfer_syntax", "orientation", "output_png"]
        rows = {row["path"]: row for row in reader}
    assert [rows["a.dcm"][c] for c in dicom.ACQUISITION_COLUMNS] == [
        "ACME", "M 1", "28", "63", "101.5", "52", "00"]
    assert [rows["b.dcm"][c] for c in dicom.ACQUISITION_COLUMNS] == [""] * 7


def test_report_rows(archive, converted):
    root, _ = archive
    _, _, report = converted
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert sorted(report) == files
    status = {path: row["status"] for path, row in report.items()}
    kept = [p for p in files if status[p] == "kept"]
    assert len(kept) == 9
    assert status["PA/s1/truncated.dcm"] == "failed"
    assert "pixel data cannot be decoded" in report["PA/s1/truncated.dcm"]["reason"]
    reasons = {p: report[p]["reason"] for p in files if status[p] == "skipped"}
    assert reasons["PA/s1/lcc_raw.dcm"].startswith("FOR PROCESSING image")
    assert reasons["PA/s1/lml.dcm"] == "view 'ML' is not CC or MLO"
    assert reasons["PA/s1/report.dcm"] == "not an image (Basic Text SR Storage)"
    assert reasons["PA/s1/corrupt.dcm"].startswith("not a DICOM file")
    assert len(reasons) == 4
    rcc = report["PA/s1/rcc.dcm"]
    assert (rcc["exam"], rcc["exam_id"], rcc["study"], rcc["patient"], rcc["side"], rcc["view"],
            rcc["bits"], rcc["photometric"], rcc["orientation"], rcc["output_png"]) == \
        ("0", "PA_20200102", "1.2.3.1", "PA", "R", "CC", "14", "MONOCHROME1", "expected",
         "PA_20200102_R_CC.png")
    assert report["PA/s1/deep/lmlo.dcm"]["transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    assert report["PA/s1/deep/rmlo.dcm"]["view"] == "MLO"
    assert report["PB/2021/a/img1.dcm"]["orientation"] == "mirrored"
    assert report["PB/2021/a/img1.dcm"]["reason"] == ""


def test_one_mirrored_image_is_reported_and_exam_stays_no(tmp_path):
    root = tmp_path / "in"
    for name, side, view, wall in [("a.dcm", "L", "CC", "left"), ("b.dcm", "R", "CC", "right"),
                                   ("c.dcm", "L", "MLO", "right"), ("d.dcm", "R", "MLO", "right")]:
        mammogram(root / name, phantom(12, wall), side=side, view=view)
    result = dicom.dicom_to_exam_list(root, tmp_path / "png", tmp_path / "exams.json")
    assert result.exit_code == 0
    assert [e["horizontal_flip"] for e in load_exam_list(tmp_path / "exams.json")] == ["NO"]
    rows = {r["path"]: r for r in result.rows}
    assert rows["c.dcm"]["orientation"] == "mirrored"
    assert "breast faces the other way" in rows["c.dcm"]["reason"]
    assert rows["d.dcm"]["reason"] == ""


def test_studies_sharing_patient_and_date_get_distinct_stable_names(tmp_path):
    root = tmp_path / "in"
    mammogram(root / "a.dcm", phantom(12), study="1.2.9.1")
    mammogram(root / "b.dcm", phantom(12), study="1.2.9.2")
    first = dicom.dicom_to_exam_list(root, tmp_path / "png", tmp_path / "e.pkl").exam_list
    again = dicom.dicom_to_exam_list(root, tmp_path / "png", tmp_path / "e.pkl",
                                     overwrite=True).exam_list
    assert first == again
    names = [exam["L-CC"][0] for exam in first]
    assert len(set(names)) == 2
    assert all(n.startswith("PA_20200102-") and n.endswith("_L_CC") for n in names)


def test_existing_outputs_are_refused_without_overwrite(converted, archive):
    root, _ = archive
    out, _, _ = converted
    with pytest.raises(OutputExistsError, match="--overwrite"):
        dicom.dicom_to_exam_list(root, out / "png", out / "other.pkl")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        dicom.dicom_to_exam_list(root, out / "new_png", out / "exams.pkl")


def test_nothing_kept_writes_the_report_and_raises(tmp_path):
    root = tmp_path / "in"
    structured_report(root / "sr.dcm")
    with pytest.raises(PipelineError, match="no usable image"):
        dicom.dicom_to_exam_list(root, tmp_path / "png", tmp_path / "e.pkl")
    assert (tmp_path / "e.pkl.report.csv").is_file()
    assert not (tmp_path / "png").exists() and not (tmp_path / "e.pkl").exists()


def test_script_exit_codes(archive, tmp_path):
    root, _ = archive
    args = ["--dicom-folder", root, "--output-data-folder", tmp_path / "png",
            "--exam-list-path", tmp_path / "exams.pkl", "--num-processes", "1"]
    run_script("utilities/dicom_to_exam_list.py", *args, check=3)
    assert len(load_exam_list(tmp_path / "exams.pkl")) == 2
    assert (tmp_path / "exams.pkl.failures.csv").is_file()
    proc = run_script("utilities/dicom_to_exam_list.py", *args, check=2)
    assert "--overwrite" in proc.stderr
    run_script("utilities/dicom_to_exam_list.py", *args, "--overwrite",
               "--report", tmp_path / "r.csv", check=3)
    assert (tmp_path / "r.csv").is_file()


# --------------------------------------------------------------------------- pseudonyms
IDENTIFIERS = {"PatientID": "MRN7734Q", "PatientName": "Doe^Jane",
               "PatientBirthDate": "19610309", "StudyDate": "20190817",
               "StudyInstanceUID": "1.2.826.0.1.3680043.99.7734"}


@pytest.fixture(scope="module")
def identified_archive(tmp_path_factory):
    """Two studies of one patient in folders named by patient ID and date, with a file that
    fails (its reason quotes paths), a duplicate and a skipped view."""
    root = tmp_path_factory.mktemp("identified")
    ids = IDENTIFIERS
    folder = root / ids["PatientID"] / ids["StudyDate"]
    common = dict(patient=ids["PatientID"], PatientName=ids["PatientName"],
                  PatientBirthDate=ids["PatientBirthDate"])
    for n, (side, view, wall) in enumerate([("L", "CC", "left"), ("R", "CC", "right"),
                                            ("L", "MLO", "left"), ("R", "MLO", "right")]):
        mammogram(folder / f"{ids['PatientID']}_{side}{view}.dcm", phantom(12, wall, n),
                  study=ids["StudyInstanceUID"], date=ids["StudyDate"], side=side, view=view,
                  sop=f"{ids['StudyInstanceUID']}.{n}", **common)
    (folder / "copy.dcm").write_bytes((folder / f"{ids['PatientID']}_LCC.dcm").read_bytes())
    mammogram(folder / "ml.dcm", phantom(12), study=ids["StudyInstanceUID"],
              date=ids["StudyDate"], view="ML", **common)
    broken = mammogram(folder / "broken.dcm", phantom(12, "right", 9), side="R", view="CC",
                       study=ids["StudyInstanceUID"], date=ids["StudyDate"], **common)
    broken.write_bytes(broken.read_bytes()[:-1500])
    mammogram(root / ids["PatientID"] / "2021" / "a.dcm", phantom(12), study="1.2.3.77",
              date="20210101", **common)
    return root


def _convert(root, out, key):
    return dicom.dicom_to_exam_list(root, out / "png", out / "exams.json", pseudonymize=key)


def test_pseudonymized_outputs_carry_no_identifier(identified_archive, tmp_path):
    from PIL import Image

    out, key = tmp_path / "out", tmp_path / "keys" / "site.key"
    result = _convert(identified_archive, out, key)
    assert result.exit_code == 3  # the broken file
    secrets = list(IDENTIFIERS.values()) + ["20210101", "1.2.3.77", "Doe", "Jane"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"exams.json", "exams.json.report.csv",
                                       "exams.json.failures.csv"}
    for path in files:
        assert not [s for s in secrets if s.lower() in path.name.lower()], path.name
        data = path.read_bytes()
        assert not [s for s in secrets if s.encode() in data], path
        if path.suffix == ".csv" or path.suffix == ".json":
            text = path.read_text().lower()
            assert not [s for s in secrets if s.lower() in text], path
    pngs = [p for p in files if p.suffix == ".png"]
    assert len(pngs) == 5
    for png in pngs:
        with Image.open(png) as image:
            assert not image.text and set(image.info) <= {"dpi", "gamma"}
        assert not [c for c in (b"tEXt", b"zTXt", b"iTXt", b"eXIf") if c in png.read_bytes()]
    exams = load_exam_list(out / "exams.json")
    assert len(exams) == 2 and exams[0]["patient_id"] == exams[1]["patient_id"]
    # The records hold pseudonyms: keyed 2.25 UIDs, one study UID per exam, no path or date.
    for exam in exams:
        study, images = exam["dicom"]["study"], exam["dicom"]["images"]
        assert study["PatientID"] == exam["patient_id"]
        assert study["PatientName"] == exam["patient_id"] + "^"
        assert study["StudyInstanceUID"].startswith("2.25.")
        assert study["StudyDate"] == study["PatientBirthDate"] == ""
        for record in images.values():
            assert record["StudyInstanceUID"] == study["StudyInstanceUID"]
            assert record["SOPInstanceUID"].startswith("2.25.")
            assert record["source_file"] is None and record["file"].startswith("f")
    assert exams[0]["dicom"]["study"]["StudyInstanceUID"] != \
        exams[1]["dicom"]["study"]["StudyInstanceUID"]
    assert exams[0]["patient_id"].startswith("p") and len(exams[0]["patient_id"]) == 17
    rows = list(csv.DictReader(open(out / "exams.json.report.csv", newline="")))
    assert {r["patient"] for r in rows} == {exams[0]["patient_id"]}
    assert {r["status"] for r in rows} == {"kept", "skipped", "failed"}
    # The mapping back lies beside the key only, private like the key.
    mapping = key.with_name("site.key.mapping.csv")
    assert oct(key.stat().st_mode & 0o777) == oct(mapping.stat().st_mode & 0o777) == "0o600"
    back = list(csv.DictReader(open(mapping, newline="")))
    assert {r["PatientID"] for r in back} == {IDENTIFIERS["PatientID"]}
    assert {r["file"] for r in back} == {r["path"] for r in rows}
    assert not list(out.rglob("*mapping*"))


def test_same_key_same_names_other_key_other_names(identified_archive, tmp_path):
    key = tmp_path / "a.key"
    first = _convert(identified_archive, tmp_path / "one", key).exam_list
    again = _convert(identified_archive, tmp_path / "two", key).exam_list
    assert first == again
    other = _convert(identified_archive, tmp_path / "three", tmp_path / "b.key").exam_list
    names = {n for exam in first for v in VIEWS for n in exam[v]}
    other_names = {n for exam in other for v in VIEWS for n in exam[v]}
    assert len(names) == len(other_names) == 5 and not names & other_names
    # Without the flag the names are those of today: patient ID and study date.
    plain = dicom.dicom_to_exam_list(identified_archive, tmp_path / "p" / "png",
                                     tmp_path / "p" / "e.pkl").exam_list
    assert plain[0]["L-CC"] == [f"{IDENTIFIERS['PatientID']}_{IDENTIFIERS['StudyDate']}_L_CC"]
    assert "patient_id" not in plain[0]


def test_pseudonymize_flag_and_key_place(tmp_path):
    from breast_cancer_classifier.commands.dicom import build_parser
    from breast_cancer_classifier.core.errors import SettingsError

    args = build_parser().parse_args(["--dicom-folder", "d", "--output-data-folder", "o",
                                      "--exam-list-path", "e.pkl", "--pseudonymize", "k.key"])
    assert args.pseudonymize == "k.key"
    (tmp_path / "in").mkdir()
    with pytest.raises(SettingsError, match="must not lie inside the output folder"):
        dicom.dicom_to_exam_list(tmp_path / "in", tmp_path / "png", tmp_path / "e.pkl",
                                 pseudonymize=tmp_path / "png" / "k.key")
    (tmp_path / "short.key").write_text("abc\n")
    with pytest.raises(SettingsError, match="at least 16"):
        dicom.dicom_to_exam_list(tmp_path / "in", tmp_path / "png", tmp_path / "e.pkl",
                                 pseudonymize=tmp_path / "short.key")
