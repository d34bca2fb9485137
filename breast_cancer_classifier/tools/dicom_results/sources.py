"""What ``bcc dicom`` records of each source image for the DICOM results, and reading it back.

``bcc dicom`` puts one key into every exam of the exam list it writes (SPEC 3: keys the
stages do not know pass through every stage, so a run folder's ``data.pkl`` carries it)::

    "dicom": {"version": 1,
              "study": {<patient and general-study attributes a derived object copies>},
              "images": {<short file path>: {<the source image's attributes>}, ...}}

Images are keyed by their short file path, not listed per view: stage 1 drops an image that
cannot be cropped from its view without touching keys it does not know, so a per-view list
would lose its alignment. Attribute names are DICOM keywords (PS3.6); values are strings
(lists of strings for multi-valued ones, numbers for Rows and Columns), ``""`` when the file
has none. Three keys are ours: ``side`` and ``view`` (what ``bcc dicom`` decided from the
header), ``source_file`` (the file's absolute path when converted, None with
``--pseudonymize``) and ``file`` (the report's name of the file: its path below the DICOM
folder, or its keyed name with ``--pseudonymize``).

With ``--pseudonymize`` every identifier is replaced (:func:`pseudonymize_study`,
:func:`pseudonymize_image`): PatientID becomes the patient's pseudonym (the exam's
``patient_id``) and PatientName the same as a family name (``<pseudonym>^``), every UID a
keyed ``2.25.`` UID (the same for every image of a study), and dates, times, accession
number, study ID and description, names of people and the source path are left out.
"""

import pydicom
from pydicom.multival import MultiValue

from ...core.errors import ExamListError
from ...core.exam_list import exam_names, iter_images

RECORD_KEY, RECORD_VERSION = "dicom", 1

# Patient and General Study attributes (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2) that a derived
# object of the study copies.
STUDY_ATTRIBUTES = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID",
                    "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
                    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                    "AccessionNumber", "StudyDescription")
# Of the source image: its identity, and what the Image Library entries of the SR (TID 4020)
# and the overlays need.
IMAGE_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
                    "Modality", "SeriesNumber", "InstanceNumber", "Rows", "Columns",
                    "ImageLaterality", "Laterality", "ViewPosition", "PatientOrientation",
                    "ContentDate", "ContentTime", "PixelSpacing", "ImagerPixelSpacing",
                    "PositionerPrimaryAngle", "PhotometricInterpretation", "BitsStored")
CODE_SEQUENCES = ("ViewCodeSequence", "ViewModifierCodeSequence")
UID_ATTRIBUTES = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
# What survives --pseudonymize of the study record (identifiers pseudonymous).
PSEUDONYMOUS_STUDY = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientSex",
                      "StudyInstanceUID")
# Image attributes --pseudonymize leaves out (dates and times).
DATED_IMAGE_ATTRIBUTES = ("ContentDate", "ContentTime")


def _value(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value]
    return str(value)


def _codes(ds, keyword):
    """``[[code value, coding scheme, code meaning], ...]`` of a code sequence."""
    return [[str(item.get(k) or "") for k in ("CodeValue", "CodingSchemeDesignator",
                                              "CodeMeaning")]
            for item in ds.get(keyword) or []]


def study_record(ds):
    """The study attributes of a source image's header (a pydicom Dataset)."""
    return {keyword: _value(ds.get(keyword)) for keyword in STUDY_ATTRIBUTES}


def image_record(ds, source_file=None, file=None, side=None, view=None):
    """The attributes of one source image (its header, read with or without pixels)."""
    record = {keyword: _value(ds.get(keyword)) for keyword in IMAGE_ATTRIBUTES}
    for keyword in ("Rows", "Columns"):
        record[keyword] = int(ds[keyword].value) if ds.get(keyword) is not None else None
    for keyword in CODE_SEQUENCES:
        record[keyword] = _codes(ds, keyword)
    record.update(side=side, view=view, file=file,
                  source_file=None if source_file is None else str(source_file))
    return record


def exam_record(study, images):
    """The exam's ``dicom`` key: ``images`` maps short file paths to image records."""
    return {"version": RECORD_VERSION, "study": dict(study), "images": dict(images)}


# --------------------------------------------------------------------------- pseudonyms
def pseudonymize_study(study, pseudonyms):
    """The study record with only pseudonymous identifiers (module docstring)."""
    patient = pseudonyms.patient(study.get("PatientID") or "")
    out = {keyword: "" for keyword in STUDY_ATTRIBUTES}
    out.update(SpecificCharacterSet=study.get("SpecificCharacterSet") or "",
               PatientSex=study.get("PatientSex") or "", PatientID=patient,
               PatientName=f"{patient}^",
               StudyInstanceUID=pseudonyms.uid(study["StudyInstanceUID"]))
    return out


def pseudonymize_image(record, pseudonyms, file_name):
    """The image record with keyed UIDs, no dates and no path; ``file_name``: its keyed name."""
    out = dict(record)
    for keyword in UID_ATTRIBUTES:
        if out.get(keyword):
            out[keyword] = pseudonyms.uid(out[keyword])
    for keyword in DATED_IMAGE_ATTRIBUTES:
        out[keyword] = ""
    out.update(source_file=None, file=file_name)
    return out


# --------------------------------------------------------------------------- reading back
def exam_records(exam, index=0, where="exam list"):
    """``(study record, {short file path: image record})`` of an exam; ExamListError naming
    what is missing when the exam does not carry what ``bcc dicom`` records."""
    record = exam.get(RECORD_KEY)
    prefix = f"{where}: exam {index} ({exam_names(exam)})"
    if not isinstance(record, dict):
        raise ExamListError(
            f"{prefix}: no {RECORD_KEY!r} key: this exam list was not made by bcc dicom, so "
            "the DICOM identity of its images is unknown; convert the DICOM files with "
            "bcc dicom and run on the exam list it writes")
    if record.get("version") != RECORD_VERSION or not isinstance(record.get("images"), dict) \
            or not isinstance(record.get("study"), dict):
        raise ExamListError(f"{prefix}: key {RECORD_KEY!r} is not version {RECORD_VERSION} of "
                            "bcc dicom's records; convert the DICOM files again with bcc dicom")
    study, images = record["study"], record["images"]
    if not study.get("StudyInstanceUID"):
        raise ExamListError(f"{prefix}: {RECORD_KEY}['study'] has no StudyInstanceUID")
    return study, images


def check_exam_list(exam_list, where="exam list"):
    """Raise ExamListError (before any work) unless every image of every exam has its
    record, with the UIDs and size a derived object needs."""
    for index, exam in enumerate(exam_list):
        _, images = exam_records(exam, index, where)
    for index, view, _, name in iter_images(exam_list):
        record = exam_list[index][RECORD_KEY]["images"].get(name)
        if not isinstance(record, dict):
            raise ExamListError(f"{where}: exam {index}, {view} image {name}: no record in "
                                f"{RECORD_KEY}['images']; convert the DICOM files again with "
                                "bcc dicom")
        missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Rows",
                               "Columns") if not record.get(k)]
        if missing:
            raise ExamListError(f"{where}: exam {index}, {view} image {name}: its record lacks "
                                f"{', '.join(missing)}")


def source_file_problem(record):
    """Why the recorded source file can no longer be checked, or ''.

    '' when it still holds the recorded instance, or when no path was recorded
    (``--pseudonymize``).
    """
    path = record.get("source_file")
    if not path:
        return ""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["SOPInstanceUID"])
    except FileNotFoundError:
        return "the source DICOM file is gone (moved or deleted since bcc dicom converted it)"
    except Exception as err:  # a replaced or damaged file fails in many ways
        return f"the source DICOM file can no longer be read ({type(err).__name__})"
    if str(ds.get("SOPInstanceUID") or "") != record.get("SOPInstanceUID"):
        return "the source DICOM file now holds another instance (replaced since conversion)"
    return ""
