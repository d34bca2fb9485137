"""The Mammography CAD SR (SOP Class 1.2.840.10008.5.1.4.1.1.88.50) of one exam.

The content tree follows PS3.16 TID 4000 "Mammography CAD Document Root" and the templates
it includes (the rows filled are listed in docs/dicom_results.md, and beside the code that
writes them). Value types and relationships keep to the Mammography CAD SR IOD's constraints
(PS3.3 Table A.35.5-2); dcmtk's ``dsrdump`` checks them in the tests, ``dciodvfy`` the IOD.

- Image Library (TID 4000 rows 3-4, TID 4020): one IMAGE per source image, with its
  laterality, view, patient orientation, study and content date and time and pixel spacing
  where the source header had them.
- CAD Processing and Findings Summary (TID 4001): "All algorithms succeeded; with
  findings", and one Individual Impression/Recommendation (TID 4003) per model:
  image-only, then image+heatmaps. Each holds its model's Algorithm Identification
  (TID 4019) and, in the Impression/Recommendation Body (TID 4002 rows 12-13), four NUMs in
  % with a Laterality modifier: (111047, DCM, "Probability of cancer") and
  (BCC0001, 99BCC, "Probability of benign finding") for each breast (with a calibration,
  the two calibrated ones too: BCC0002, BCC0003). Its findings (TID 4003 row 5,
  TID 4006): for the image+heatmaps model, per image the maximum of the malignant heatmap
  as (129793001, SCT, "Mammography breast density") with its value as Probability of cancer
  and its place as a SCOORD POINT (111010, DCM, "Center") SELECTED FROM the image (by
  reference into the Image Library); for the image-only model, per image the crop window it
  saw, as (111099, DCM, "Selected region") with a SCOORD POLYLINE (111041, DCM, "Outline"),
  not for presentation.
- A calibration with an operating point adds the overall body (TID 4001 row 2, TID 4002
  row 5): which breasts are at or above it.
- Summary of Detections (TID 4015/4017): the heatmap maxima of the patch classifier on every
  image; Summary of Analyses (TID 4016/4018): one Individual Impression/Recommendation
  Analysis per model.

Coordinates are the source image's pixel coordinates (column, row), 0.5 being the centre of
the first pixel (PS3.3 C.18.6.1.1).
"""

import datetime
from dataclasses import dataclass, field
from decimal import Decimal

import highdicom as hd
import highdicom.coding_schemes
import numpy as np
from pydicom.dataset import Dataset

from ... import __version__

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
PRIVATE_SCHEME = "99BCC"  # our codes (PS3.16 8.2: coding schemes beginning with "99")
SR_SERIES_NUMBER = 9001
SIDES = ("R", "L")
TARGETS = ("malignant", "benign")


def _code(value, scheme, meaning):
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _dcm(value, meaning):
    return _code(value, "DCM", meaning)


class Codes:
    """Every coded concept the SR uses (meanings as in PS3.16 Annex D / SNOMED CT)."""

    MAMMOGRAPHY_CAD_REPORT = _dcm("111036", "Mammography CAD Report")
    LANGUAGE = _dcm("121049", "Language of Content Item and Descendants")
    ENGLISH_US = _code("en-US", "RFC5646", "English (United States)")
    IMAGE_LIBRARY = _dcm("111028", "Image Library")
    IMAGE_LATERALITY = _dcm("111027", "Image Laterality")
    IMAGE_VIEW = _dcm("111031", "Image View")
    PATIENT_ORIENTATION_ROW = _dcm("111044", "Patient Orientation Row")
    PATIENT_ORIENTATION_COLUMN = _dcm("111043", "Patient Orientation Column")
    STUDY_DATE = _dcm("111060", "Study Date")
    STUDY_TIME = _dcm("111061", "Study Time")
    CONTENT_DATE = _dcm("111018", "Content Date")
    CONTENT_TIME = _dcm("111019", "Content Time")
    HORIZONTAL_PIXEL_SPACING = _dcm("111026", "Horizontal Pixel Spacing")
    VERTICAL_PIXEL_SPACING = _dcm("111066", "Vertical Pixel Spacing")
    CAD_PROCESSING_SUMMARY = _dcm("111017", "CAD Processing and Findings Summary")
    ALL_SUCCEEDED_WITH_FINDINGS = _dcm("111242", "All algorithms succeeded; with findings")
    NONE_SUCCEEDED = _dcm("111245", "No algorithms succeeded; without findings")
    INDIVIDUAL_IMPRESSION = _dcm("111034", "Individual Impression/Recommendation")
    RENDERING_INTENT = _dcm("111056", "Rendering Intent")
    PRESENTATION_REQUIRED = _dcm(
        "111150", "Presentation Required: Rendering device is expected to present")
    PRESENTATION_OPTIONAL = _dcm("111151", "Presentation Optional: Rendering device may present")
    NOT_FOR_PRESENTATION = _dcm(
        "111152", "Not for Presentation: Rendering device expected not to present")
    IMPRESSION_DESCRIPTION = _dcm("111033", "Impression Description")
    ALGORITHM_NAME = _dcm("111001", "Algorithm Name")
    ALGORITHM_VERSION = _dcm("111003", "Algorithm Version")
    ALGORITHM_PARAMETERS = _dcm("111002", "Algorithm Parameters")
    PROBABILITY_OF_CANCER = _dcm("111047", "Probability of cancer")
    PROBABILITY_OF_BENIGN = _code("BCC0001", PRIVATE_SCHEME, "Probability of benign finding")
    CALIBRATED_PROBABILITY_OF_CANCER = _code("BCC0002", PRIVATE_SCHEME,
                                             "Calibrated probability of cancer")
    CALIBRATED_PROBABILITY_OF_BENIGN = _code("BCC0003", PRIVATE_SCHEME,
                                             "Calibrated probability of benign finding")
    PERCENT = _code("%", "UCUM", "Percent")
    MILLIMETER = _code("mm", "UCUM", "millimeter")
    LATERALITY = _code("272741003", "SCT", "Laterality")
    BREAST = {"R": _code("73056007", "SCT", "Right breast"),
              "L": _code("80248007", "SCT", "Left breast")}
    VIEW = {"CC": _code("399162004", "SCT", "cranio-caudal"),
            "MLO": _code("399368009", "SCT", "medio-lateral oblique")}
    SINGLE_IMAGE_FINDING = _dcm("111059", "Single Image Finding")
    BREAST_DENSITY = _code("129793001", "SCT", "Mammography breast density")
    SELECTED_REGION = _dcm("111099", "Selected region")
    SELECTED_REGION_DESCRIPTION = _dcm("111058", "Selected Region Description")
    CENTER = _dcm("111010", "Center")
    OUTLINE = _dcm("111041", "Outline")
    SUMMARY_OF_DETECTIONS = _dcm("111064", "Summary of Detections")
    SUMMARY_OF_ANALYSES = _dcm("111065", "Summary of Analyses")
    SUCCEEDED = _dcm("111222", "Succeeded")
    FAILED = _dcm("111224", "Failed")
    NOT_ATTEMPTED = _dcm("111225", "Not Attempted")
    SUCCESSFUL_DETECTIONS = _dcm("111063", "Successful Detections")
    FAILED_DETECTIONS = _dcm("111025", "Failed Detections")
    SUCCESSFUL_ANALYSES = _dcm("111062", "Successful Analyses")
    DETECTION_PERFORMED = _dcm("111022", "Detection Performed")
    ANALYSIS_PERFORMED = _dcm("111004", "Analysis Performed")
    INDIVIDUAL_ANALYSIS = _dcm("111233", "Individual Impression/Recommendation Analysis")


PROBABILITY_CODES = {("malignant", False): Codes.PROBABILITY_OF_CANCER,
                     ("benign", False): Codes.PROBABILITY_OF_BENIGN,
                     ("malignant", True): Codes.CALIBRATED_PROBABILITY_OF_CANCER,
                     ("benign", True): Codes.CALIBRATED_PROBABILITY_OF_BENIGN}


# --------------------------------------------------------------------------- inputs
@dataclass
class Algorithm:
    """TID 4019 Algorithm Identification: name, version, parameters."""
    name: str
    version: str
    parameters: tuple = ()


@dataclass
class ModelResult:
    """One exam classifier's probabilities, in percent (Decimal), by (side, target);
    ``calibrated`` the same after a calibration (or None)."""
    label: str
    algorithm: Algorithm
    percent: dict
    calibrated: dict = None


@dataclass
class ImageResult:
    """One source image: its record (:mod:`.sources`), its crop window (top, bottom, left,
    right) in source pixels and, with heatmaps, the maximum of its malignant heatmap
    (``peak``: (row, column) in source pixels; ``peak_value``: the heatmap value there)."""
    name: str
    record: dict
    window: tuple = None
    peak: tuple = None
    peak_value: float = None


@dataclass
class Document:
    """The identity of the SR written: UIDs, numbers and when its content was made."""
    sop_instance_uid: str
    series_instance_uid: str
    series_description: str
    instance_number: int = 1
    content_date: str = None  # DA; None: now
    content_time: str = None  # TM
    extra: dict = field(default_factory=dict)


DEVICE = {"manufacturer": "breast_cancer_classifier project",
          "manufacturer_model_name": "breast_cancer_classifier",
          "software_versions": __version__}


# --------------------------------------------------------------------------- content items
def _rel(item, relationship):
    item.RelationshipType = relationship
    return item


def _children(item, children):
    """``item`` as a plain Dataset with ``children`` as its Content Sequence (plain Datasets:
    highdicom's items admit neither unnamed IMAGE items nor by-reference ones as children)."""
    item = Dataset(item)
    children = [c for c in children if c is not None]
    if children:
        item.ContentSequence = [Dataset(c) for c in children]
    return item


def _text(name, value, relationship):
    return hd.sr.TextContentItem(name=name, value=str(value)[:1024],
                                 relationship_type=relationship)


def _code_item(name, value, relationship):
    return hd.sr.CodeContentItem(name=name, value=value, relationship_type=relationship)


def _num(name, value, unit, relationship):
    return hd.sr.NumContentItem(name=name, value=float(value), unit=unit,
                                relationship_type=relationship)


def _container(name, relationship=None, template_id=None):
    """A CONTAINER whose items are separate statements (Continuity of Content SEPARATE)."""
    return hd.sr.ContainerContentItem(name=name, relationship_type=relationship,
                                      template_id=template_id, is_content_continuous=False)


def _image(record, relationship):
    """An IMAGE content item without a concept name (TID 4020 row 1)."""
    reference = Dataset()
    reference.ReferencedSOPClassUID = record["SOPClassUID"]
    reference.ReferencedSOPInstanceUID = record["SOPInstanceUID"]
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = "IMAGE"
    item.ReferencedSOPSequence = [reference]
    return item


def _by_reference(relationship, identifier):
    """A by-reference relationship to the content item at ``identifier`` (PS3.3 C.17.3.2.5)."""
    item = Dataset()
    item.RelationshipType = relationship
    item.ReferencedContentItemIdentifier = [int(i) for i in identifier]
    return item


def _algorithm(algorithm, relationship):
    """TID 4019 rows 1-3."""
    items = [_text(Codes.ALGORITHM_NAME, algorithm.name, relationship),
             _text(Codes.ALGORITHM_VERSION, algorithm.version, relationship)]
    items += [_text(Codes.ALGORITHM_PARAMETERS, p, relationship) for p in algorithm.parameters]
    return items


# --------------------------------------------------------------------------- TID 4020
def _pixel_spacing(record):
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = record.get(keyword)
        if isinstance(value, list) and len(value) == 2 and all(value):
            return [Decimal(v) for v in value]
    return None


def _library_entry(record, study):
    """TID 4020 CAD Image Library Entry: rows 1-3, 5-12 where the source has the values."""
    acq = "HAS ACQ CONTEXT"
    items = []
    if record.get("side") in Codes.BREAST:  # row 2
        items.append(_code_item(Codes.IMAGE_LATERALITY, Codes.BREAST[record["side"]], acq))
    if record.get("view") in Codes.VIEW:  # row 3
        items.append(_code_item(Codes.IMAGE_VIEW, Codes.VIEW[record["view"]], acq))
    orientation = record.get("PatientOrientation")
    if isinstance(orientation, list) and len(orientation) == 2 and all(orientation):
        items += [_text(Codes.PATIENT_ORIENTATION_ROW, orientation[0], acq),  # row 5
                  _text(Codes.PATIENT_ORIENTATION_COLUMN, orientation[1], acq)]  # row 6
    dated = [(Codes.STUDY_DATE, study.get("StudyDate"), hd.sr.DateContentItem),  # row 7
             (Codes.STUDY_TIME, study.get("StudyTime"), hd.sr.TimeContentItem),  # row 8
             (Codes.CONTENT_DATE, record.get("ContentDate"), hd.sr.DateContentItem),  # row 9
             (Codes.CONTENT_TIME, record.get("ContentTime"), hd.sr.TimeContentItem)]  # row 10
    for name, value, kind in dated:
        if value:
            items.append(kind(name=name, value=value, relationship_type=acq))
    spacing = _pixel_spacing(record)
    if spacing is not None:  # rows 11-12: (row spacing, column spacing) in mm
        items += [_num(Codes.HORIZONTAL_PIXEL_SPACING, spacing[1], Codes.MILLIMETER, acq),
                  _num(Codes.VERTICAL_PIXEL_SPACING, spacing[0], Codes.MILLIMETER, acq)]
    return _children(_image(record, "CONTAINS"), items)


# --------------------------------------------------------------------------- TID 4006
def _point(row, column):
    """(column, row) of a pixel's centre."""
    return np.array([[column + 0.5, row + 0.5]], dtype=np.float64)


def _window_outline(window):
    top, bottom, left, right = window
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom], [left, top]],
                    dtype=np.float64)


def _heatmap_finding(image, library_id, algorithm):
    """TID 4006 for the maximum of an image's malignant heatmap."""
    props = "HAS PROPERTIES"
    center = hd.sr.ScoordContentItem(name=Codes.CENTER, graphic_type="POINT",
                                     graphic_data=_point(*image.peak), relationship_type=props)
    _children(center, [_by_reference("SELECTED FROM", library_id)])  # TID 4021 rows 1-2
    return _children(_code_item(Codes.SINGLE_IMAGE_FINDING, Codes.BREAST_DENSITY, "CONTAINS"), [
        _code_item(Codes.RENDERING_INTENT, Codes.PRESENTATION_OPTIONAL, "HAS CONCEPT MOD"),
        *_algorithm(algorithm, props),
        _num(Codes.PROBABILITY_OF_CANCER, Decimal(repr(float(image.peak_value))) * 100,
             Codes.PERCENT, props),
        center])


def _crop_window_finding(image, library_id, algorithm):
    """TID 4006 for the crop window an image-only classifier saw (not for presentation)."""
    props = "HAS PROPERTIES"
    outline = hd.sr.ScoordContentItem(name=Codes.OUTLINE, graphic_type="POLYLINE",
                                      graphic_data=_window_outline(image.window),
                                      relationship_type=props)
    _children(outline, [_by_reference("SELECTED FROM", library_id)])
    return _children(_code_item(Codes.SINGLE_IMAGE_FINDING, Codes.SELECTED_REGION, "CONTAINS"), [
        _code_item(Codes.RENDERING_INTENT, Codes.NOT_FOR_PRESENTATION, "HAS CONCEPT MOD"),
        *_algorithm(algorithm, props),
        _text(Codes.SELECTED_REGION_DESCRIPTION,
              "crop window given to the exam classifier (stage 1 of the pipeline)", props),
        outline])


# --------------------------------------------------------------------------- TID 4003 / 4002
def _probability_items(model):
    """TID 4002 rows 12-13: one NUM per breast and target, with its laterality."""
    items = []
    for calibrated, values in ((False, model.percent), (True, model.calibrated)):
        for target in TARGETS:
            for side in SIDES:
                value = (values or {}).get((side, target))
                if value is None:
                    continue
                num = _num(PROBABILITY_CODES[(target, calibrated)], value, Codes.PERCENT,
                           "CONTAINS")
                items.append(_children(num, [_code_item(Codes.LATERALITY, Codes.BREAST[side],
                                                        "HAS CONCEPT MOD")]))
    return items


def _breast_summary(model):
    parts = []
    for side, breast in (("R", "right"), ("L", "left")):
        values = [f"{target} {model.percent[(side, target)]} %" for target in TARGETS
                  if (side, target) in model.percent]
        if model.calibrated:
            values += [f"calibrated {target} {model.calibrated[(side, target)]} %"
                       for target in TARGETS if (side, target) in model.calibrated]
        parts.append(f"{breast} breast: {', '.join(values)}")
    return f"{model.label} model: " + "; ".join(parts)


def _impression(model, findings):
    """TID 4003 with its body (TID 4002 rows 5, 11, 12-13) and findings (row 5)."""
    return _children(_container(Codes.INDIVIDUAL_IMPRESSION, "INFERRED FROM"), [
        _code_item(Codes.RENDERING_INTENT, Codes.PRESENTATION_REQUIRED,  # TID 4003 row 2
                   "HAS CONCEPT MOD"),
        _text(Codes.IMPRESSION_DESCRIPTION, _breast_summary(model), "CONTAINS"),  # 4002 r5
        *_algorithm(model.algorithm, "CONTAINS"),  # TID 4002 row 11
        *_probability_items(model),  # TID 4002 rows 12-13
        *findings])  # TID 4003 row 5


def _overall_body(text, algorithms):
    """TID 4001 row 2: the overall Impression/Recommendation Body (TID 4002 rows 5, 11)."""
    items = [_text(Codes.IMPRESSION_DESCRIPTION, text, "HAS PROPERTIES")]
    for algorithm in algorithms:
        items += _algorithm(algorithm, "HAS PROPERTIES")
    return items


# --------------------------------------------------------------------------- TID 4015-4018
def _performed(concept, value, algorithm, library_ids):
    """TID 4017 / 4018: what was done, by which algorithm, on which images (by reference)."""
    return _children(_code_item(concept, value, "CONTAINS"), [
        *_algorithm(algorithm, "HAS PROPERTIES"),
        *[_by_reference("HAS PROPERTIES", i) for i in library_ids]])


def _summary(concept, status, container, performed):
    """TID 4000 rows 6-9: a summary code and, unless not attempted, its TID 4015/4016."""
    item = _code_item(concept, status, "CONTAINS")
    if container is None:
        return item
    return _children(item, [_children(_container(container, "INFERRED FROM"), performed)])


# --------------------------------------------------------------------------- the document
def _root(study, images, processing, detections, analyses):
    """TID 4000: ``processing``: (summary code, children); ``detections``/``analyses``:
    (status code, container code or None, performed items)."""
    root = _container(Codes.MAMMOGRAPHY_CAD_REPORT, template_id="4000")  # row 1
    summary_code, summary_children = processing
    return _children(root, [
        _code_item(Codes.LANGUAGE, Codes.ENGLISH_US, "HAS CONCEPT MOD"),  # row 2, TID 1204
        _children(_container(Codes.IMAGE_LIBRARY, "CONTAINS"),  # row 3
                  [_library_entry(i.record, study) for i in images]),  # row 4
        _children(_code_item(Codes.CAD_PROCESSING_SUMMARY, summary_code, "CONTAINS"),
                  summary_children),  # row 5, TID 4001
        _summary(Codes.SUMMARY_OF_DETECTIONS, *detections),  # rows 6-7
        _summary(Codes.SUMMARY_OF_ANALYSES, *analyses)])  # rows 8-9


def library_ids(images):
    """Content item identifiers of the Image Library entries: root 1, library its 2nd child."""
    return {image.name: (1, 2, k) for k, image in enumerate(images, start=1)}


def _evidence(study, images):
    """Current Requested Procedure Evidence Sequence: every source image, by series."""
    by_series = {}
    for image in images:
        instance = Dataset()
        instance.ReferencedSOPClassUID = image.record["SOPClassUID"]
        instance.ReferencedSOPInstanceUID = image.record["SOPInstanceUID"]
        by_series.setdefault(image.record["SeriesInstanceUID"], []).append(instance)
    series_items = []
    for series_uid, instances in by_series.items():
        series = Dataset()
        series.SeriesInstanceUID = series_uid
        series.ReferencedSOPSequence = instances
        series_items.append(series)
    study_item = Dataset()
    study_item.StudyInstanceUID = study["StudyInstanceUID"]
    study_item.ReferencedSeriesSequence = series_items
    return [study_item]


def study_arguments(study):
    """Keyword arguments of highdicom's SOP classes: the patient and study of ``study``."""
    return dict(
        study_instance_uid=study["StudyInstanceUID"],
        patient_id=study.get("PatientID") or "", patient_name=study.get("PatientName") or "",
        patient_birth_date=study.get("PatientBirthDate") or None,
        patient_sex=study.get("PatientSex") or None,
        accession_number=study.get("AccessionNumber") or "", study_id=study.get("StudyID") or "",
        study_date=study.get("StudyDate") or None, study_time=study.get("StudyTime") or None,
        referring_physician_name=study.get("ReferringPhysicianName") or "")


def finish_derived(ds, study, document):
    """What highdicom (from 0.23 on) takes no argument for: the character set and the other
    patient and study attributes of the study record, and the Content Date and Time."""
    if study.get("SpecificCharacterSet"):
        ds.SpecificCharacterSet = study["SpecificCharacterSet"]
    for keyword in ("IssuerOfPatientID", "PatientAge", "StudyDescription"):
        if study.get(keyword):
            setattr(ds, keyword, study[keyword])
    now = datetime.datetime.now()
    ds.ContentDate = document.content_date or now.strftime("%Y%m%d")
    ds.ContentTime = document.content_time or now.strftime("%H%M%S")
    return ds


def _document(study, images, content, document):
    """The SR: SR Document Series, General, Content (PS3.3 C.17.1-C.17.3) around ``content``;
    patient and study copied from the study record, this software as the equipment."""
    coding = hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME, name="breast_cancer_classifier local codes",
        responsible_organization="breast_cancer_classifier project")
    sr = hd.SOPClass(
        series_instance_uid=document.series_instance_uid, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=document.sop_instance_uid, sop_class_uid=MAMMOGRAPHY_CAD_SR,
        instance_number=document.instance_number, modality="SR",
        series_description=document.series_description, coding_schemes=[coding],
        **study_arguments(study), **DEVICE, **document.extra)
    finish_derived(sr, study, document)
    sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag = "COMPLETE", "UNVERIFIED", "FINAL"
    sr.CurrentRequestedProcedureEvidenceSequence = _evidence(study, images)
    sr.PerformedProcedureCodeSequence = []
    sr.ReferencedPerformedProcedureStepSequence = []
    for element in content:
        if element.keyword != "RelationshipType":
            sr.add(element)
    return sr


def cad_sr(study, images, models, detector, document, overall_impression=None,
           overall_algorithms=()):
    """The Mammography CAD SR of an exam whose two classifiers gave their probabilities.

    ``study``: the study record; ``images``: :class:`ImageResult` with window and peak, in
    Image Library order; ``models``: :class:`ModelResult` (image-only, then image+heatmaps;
    the last one's findings are the heatmap maxima); ``detector``: the patch classifier's
    :class:`Algorithm`; ``document``: :class:`Document`. ``overall_impression``: text of
    the overall body (TID 4001 row 2), with ``overall_algorithms`` behind it.
    """
    ids = library_ids(images)
    impressions = []
    for k, model in enumerate(models):
        last = k == len(models) - 1
        findings = [(_heatmap_finding(i, ids[i.name], detector) if last
                     else _crop_window_finding(i, ids[i.name], model.algorithm))
                    for i in images]
        impressions.append(_impression(model, findings))
    overall = (_overall_body(overall_impression, overall_algorithms)
               if overall_impression else [])
    every = list(ids.values())
    detections = (Codes.SUCCEEDED, Codes.SUCCESSFUL_DETECTIONS,
                  [_performed(Codes.DETECTION_PERFORMED, Codes.BREAST_DENSITY, detector, every),
                   _performed(Codes.DETECTION_PERFORMED, Codes.SELECTED_REGION,
                              models[0].algorithm, every)])
    analyses = (Codes.SUCCEEDED, Codes.SUCCESSFUL_ANALYSES,
                [_performed(Codes.ANALYSIS_PERFORMED, Codes.INDIVIDUAL_ANALYSIS,
                            m.algorithm, every) for m in models])
    content = _root(study, images, (Codes.ALL_SUCCEEDED_WITH_FINDINGS, overall + impressions),
                    detections, analyses)
    return _document(study, images, content, document)


def failure_sr(study_record, source_records, reason, *, document=None, algorithms=None):
    """A Mammography CAD SR in the study saying that the analysis failed, and why.

    For a study that never reached the models (``bcc serve`` sends it): CAD Processing and
    Findings Summary "No algorithms succeeded; without findings" with the reason in its
    Impression Description (TID 4001 row 2, TID 4002 row 5), detections failed on every
    image (TID 4015 "Failed Detections"), analyses not attempted. ``study_record`` and
    ``source_records`` are the records of :mod:`.sources` (at least one image; records
    without ``side``/``view`` get them from ImageLaterality/ViewPosition where these say,
    else their Image Library entry has no laterality or view). ``document``:
    :class:`Document` (new random UIDs when None); ``algorithms``: :class:`Algorithm` list
    (default: this software and its version).
    """
    from pydicom.uid import generate_uid

    from ..dicom import mammogram_view, breast_side

    if not source_records:
        raise ValueError("failure_sr needs at least one source image record (the Image "
                         "Library of a Mammography CAD SR is mandatory)")
    images = []
    for k, record in enumerate(source_records):
        record = dict(record)
        if not record.get("side") or not record.get("view"):
            header = Dataset()
            for keyword in ("ImageLaterality", "Laterality", "ViewPosition"):
                if record.get(keyword):
                    setattr(header, keyword, record[keyword])
            view, side_from_text = mammogram_view(header)
            record["view"] = record.get("view") or view
            record["side"] = record.get("side") or breast_side(header, side_from_text)[0]
        missing = [key for key in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID")
                   if not record.get(key)]
        if missing:
            raise ValueError(f"source record {k}: no {', '.join(missing)}")
        images.append(ImageResult(name=str(k), record=record))
    algorithms = algorithms or [Algorithm("breast_cancer_classifier", __version__)]
    document = document or Document(generate_uid(prefix=None), generate_uid(prefix=None),
                                    "CAD SR: NYU breast cancer classifier: analysis failed")
    every = list(library_ids(images).values())
    reason_text = f"Analysis failed: {reason}"
    detections = (Codes.FAILED, Codes.FAILED_DETECTIONS,
                  [_performed(Codes.DETECTION_PERFORMED, Codes.BREAST_DENSITY, a, every)
                   for a in algorithms])
    analyses = (Codes.NOT_ATTEMPTED, None, [])
    content = _root(study_record, images,
                    (Codes.NONE_SUCCEEDED, _overall_body(reason_text, algorithms)),
                    detections, analyses)
    return _document(study_record, images, content, document)
