"""DICOM in: a folder of screening mammograms becomes 16-bit PNGs and an exam list (SPEC 10).

:func:`dicom_to_exam_list` works in three passes:

1. Headers. Every file under the folder is read with ``stop_before_pixels`` and kept as a
   candidate only if it is a 2-D mammogram (Modality (0008,0060) ``MG``), FOR PRESENTATION
   or without a PresentationIntentType (0008,0068), of a CC or MLO view of the left or right
   breast. Anything else is skipped with a reason (:func:`skip_reason`).
2. Pixels. Candidates are decoded (in parallel) and converted with the pixel rule of
   :func:`mammogram_pixels`; each is written as a 16-bit PNG in its stored orientation.
3. Exams. One exam per StudyInstanceUID (0020,000D); every image of a view goes into that
   view's list. ``horizontal_flip`` is decided from where the breast's pixel mass lies
   (:mod:`breast_cancer_classifier.tools.make_exam_list`).

A report CSV has one row per input file: kept, skipped (not a screening mammogram, with the
reason) or failed (a screening mammogram by its header whose pixels could not be decoded, or
a DICOM file whose header cannot be read); its last columns are acquisition attributes
(:data:`ACQUISITION_COLUMNS`) for subgroup analyses.

Every exam carries the ``dicom`` key: the source images' UIDs and the study attributes that
DICOM results derived from them copy (:mod:`breast_cancer_classifier.tools.dicom_results.sources`).
Names of dataset attributes are the DICOM keywords; docstrings give their tags (PS3.6).
"""

import hashlib
import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi

from ..core import formats
from ..core.errors import InputImageError, OutputExistsError, SettingsError
from .make_exam_list import (FAILED, KEPT, SKIPPED, add_note, assemble_exams, breast_facing,
                       check_outputs, default_report_path, finish, natural_key, orientation)
from ..core.runtime import parallel_map
from .dicom_results.sources import (exam_record, image_record, pseudonymize_image,
                                    pseudonymize_study, study_record)
from .pseudonyms import Pseudonyms

PNG_FULL_SCALE = 65535  # 16-bit PNG; SPEC 10: v -> round(v * 65535 / (2^BitsStored - 1))
FOR_PRESENTATION, FOR_PROCESSING = "FOR PRESENTATION", "FOR PROCESSING"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

# ViewCodeSequence (0054,0220) codes of PS3.16 CID 4014 "View for Mammography":
# SNOMED RT (coding schemes SRT/SNM3) and their SNOMED CT (SCT) successors.
VIEW_CODES = {"R-10242": "CC", "399162004": "CC", "R-10226": "MLO", "399368009": "MLO"}
VIEW_MEANINGS = {"craniocaudal": "CC", "mediolateraloblique": "MLO"}
# ViewModifierCodeSequence (0054,0222) entries of CID 4015 that mark a diagnostic work-up
# image rather than a screening view: SRT codes and code meanings.
WORKUP_MODIFIER_CODES = {"R-102D6": "magnification", "R-102D7": "spot compression"}
WORKUP_MODIFIER_MEANINGS = ("magnification", "spot compression")
# ViewPosition (0018,5101) words: the ACR MQCM views of CID 4014/4015, and "ID" (implant
# displaced), the one modifier a screening CC/MLO may carry.
VIEW_WORDS = {"CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "FB", "SIO", "ISO", "CV", "AT",
              "TAN", "RL", "RM"}
SCREENING_VIEW_MODIFIERS = {"ID"}

# Header elements that identify a patient or a study; with --pseudonymize their values are
# kept out of every output (the report's reasons included).
IDENTIFYING = ("PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID",
               "StudyDate", "StudyTime", "AccessionNumber", "SeriesInstanceUID",
               "SOPInstanceUID")
# Report columns of acquisition attributes (empty when the header has none): column ->
# keyword (tag): Manufacturer (0008,0070), ManufacturerModelName (0008,1090), KVP (0018,0060),
# Exposure in mAs (0018,1152), CompressionForce in N (0018,11A2), BodyPartThickness in mm
# (0018,11A0), LossyImageCompression (0028,2110).
ACQUISITION_COLUMNS = {"manufacturer": "Manufacturer",
                       "manufacturer_model": "ManufacturerModelName", "kvp": "KVP",
                       "exposure_mas": "Exposure",
                       "compression_force_n": "CompressionForce",
                       "body_part_thickness_mm": "BodyPartThickness",
                       "lossy_compression": "LossyImageCompression"}
REPORT_COLUMNS = ("path", "status", "reason", "exam", "exam_id", "study", "patient", "side",
                  "view", "bits", "photometric", "transfer_syntax", "orientation",
                  "output_png") + tuple(ACQUISITION_COLUMNS)


# --------------------------------------------------------------------------- view and side
def parse_view_position(value):
    """Read ViewPosition (0018,5101) text: ``(side or None, view or None)``.

    Tolerates free forms: ``"CC"``, ``"MLO"``, ``"RIGHT CC"``, ``"L MLO"``, ``"RCC"``,
    ``"L-MLO"``, ``"CC ID"``. ``view`` is ``"CC"``/``"MLO"`` for a plain screening view,
    the remaining words (``"ML"``, ``"XCCL"``, ``"CC SPOT"``) for anything else, and None
    when the text holds no view words.
    """
    side, words = None, []
    for word in re.findall(r"[A-Z]+", str(value or "").upper()):
        if word in ("L", "LEFT", "R", "RIGHT"):
            side = word[0]
            continue
        if word not in VIEW_WORDS and word[0] in "LR" and word[1:] in VIEW_WORDS:
            side, word = word[0], word[1:]
        words.append(word)
    if not words:
        return side, None
    if words[0] in ("CC", "MLO") and set(words[1:]) <= SCREENING_VIEW_MODIFIERS:
        return side, words[0]
    return side, " ".join(words)


def _normalized_meaning(text):
    return re.sub(r"[^a-z]", "", str(text or "").lower())


def view_from_code_sequence(ds):
    """The view coded in ViewCodeSequence (0054,0220): ``"CC"``, ``"MLO"``, another view's
    code meaning (or code value), or None when the sequence is absent or empty."""
    for item in ds.get("ViewCodeSequence") or []:
        code = str(item.get("CodeValue") or "").strip()
        meaning = str(item.get("CodeMeaning") or "").strip()
        if code in VIEW_CODES:
            return VIEW_CODES[code]
        if _normalized_meaning(meaning) in VIEW_MEANINGS:
            return VIEW_MEANINGS[_normalized_meaning(meaning)]
        if code or meaning:
            return meaning or code
    return None


def workup_modifier(ds):
    """'magnification' or 'spot compression' when ViewModifierCodeSequence (0054,0222), found
    at the top level or inside ViewCodeSequence (0054,0220) items, marks a work-up view."""
    items = list(ds.get("ViewModifierCodeSequence") or [])
    for view_item in ds.get("ViewCodeSequence") or []:
        items += list(view_item.get("ViewModifierCodeSequence") or [])
    for item in items:
        code = str(item.get("CodeValue") or "").strip()
        meaning = str(item.get("CodeMeaning") or "").strip().lower()
        if code in WORKUP_MODIFIER_CODES:
            return WORKUP_MODIFIER_CODES[code]
        for name in WORKUP_MODIFIER_MEANINGS:
            if name in meaning:
                return name
    return None


def mammogram_view(ds):
    """``(view, side from ViewPosition)``: the view from ViewPosition (0018,5101), else from
    ViewCodeSequence (0054,0220); see :func:`parse_view_position`."""
    side, view = parse_view_position(ds.get("ViewPosition"))
    if view is None:
        view = view_from_code_sequence(ds)
    return view, side


def breast_side(ds, side_from_view_position=None):
    """``(value, source)``: ImageLaterality (0020,0062), else the series' Laterality
    (0020,0060), else a side word in ViewPosition; ``(None, None)`` when none says."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword) or "").strip().upper()
        if value:
            return value, keyword
    if side_from_view_position:
        return side_from_view_position, "ViewPosition"
    return None, None


def _int_or_none(ds, keyword):
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def skip_reason(ds):
    """Why a header (read without pixels) is not a screening mammogram, or '' to keep it.

    Checks, in order: an image at all (Rows (0028,0010), Columns (0028,0011),
    PhotometricInterpretation (0028,0004)); Modality (0008,0060) ``MG``;
    PresentationIntentType (0008,0068) FOR PRESENTATION or absent; one frame
    (NumberOfFrames (0028,0008)); MONOCHROME1/2 with SamplesPerPixel (0028,0002) 1;
    BitsAllocated (0028,0100) 8 or 16, BitsStored (0028,0101) 1-16, unsigned
    (PixelRepresentation (0028,0103) 0); a CC or MLO view without a work-up modifier; side L
    or R; a StudyInstanceUID (0020,000D).
    """
    if "Rows" not in ds or "Columns" not in ds or "PhotometricInterpretation" not in ds:
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or sop or "no SOPClassUID"
        return f"not an image ({kind})"
    modality = str(ds.get("Modality") or "").strip()
    if modality != "MG":
        return f"Modality {modality or '(empty)'}, not MG (mammography)"
    intent = str(ds.get("PresentationIntentType") or "").strip().upper()
    if intent == FOR_PROCESSING:
        return "FOR PROCESSING image (raw detector data); only FOR PRESENTATION images are used"
    if intent and intent != FOR_PRESENTATION:
        return f"PresentationIntentType {intent!r}; only FOR PRESENTATION images are used"
    frames = _int_or_none(ds, "NumberOfFrames") or 1
    if frames > 1:
        return f"multi-frame image ({frames} frames, e.g. tomosynthesis); only 2-D images are used"
    reason = _pixel_format_problem(ds)
    if reason:
        return reason
    view, side_from_text = mammogram_view(ds)
    if view is None:
        return "no view: ViewPosition and ViewCodeSequence are empty"
    if view not in ("CC", "MLO"):
        return f"view {view!r} is not CC or MLO"
    modifier = workup_modifier(ds)
    if modifier:
        return f"{modifier} view (a diagnostic work-up image, not a screening view)"
    side, source = breast_side(ds, side_from_text)
    if side is None:
        return "no laterality: ImageLaterality, Laterality and ViewPosition name no side"
    if side not in ("L", "R"):
        return f"{source} is {side!r}; expected L or R"
    if not str(ds.get("StudyInstanceUID") or "").strip():
        return "no StudyInstanceUID: cannot tell which exam the image belongs to"
    return ""


def _pixel_format_problem(ds):
    photometric = str(ds.get("PhotometricInterpretation") or "").strip()
    samples = _int_or_none(ds, "SamplesPerPixel") or 1
    if photometric not in MONOCHROME or samples != 1:
        return (f"PhotometricInterpretation {photometric!r} with SamplesPerPixel {samples}; "
                "expected a MONOCHROME1 or MONOCHROME2 grayscale image")
    allocated, stored = _int_or_none(ds, "BitsAllocated"), _int_or_none(ds, "BitsStored")
    if allocated not in (8, 16) or stored is None or not 1 <= stored <= allocated:
        return (f"BitsAllocated {allocated} / BitsStored {stored} not supported "
                "(expected 8 or 16 bits allocated, 1-16 stored)")
    if _int_or_none(ds, "PixelRepresentation") == 1:
        return "signed pixel data (PixelRepresentation 1) is not supported"
    return ""


# --------------------------------------------------------------------------- pixel rule
def modality_values(stored, ds):
    """Apply the Modality LUT when it is not the identity (PS3.3 C.11.1).

    ``stored``: (H, W) stored values. Returns ``(values, full_scale)``: with a
    ModalityLUTSequence (0028,3000), the LUT's output (pydicom's ``apply_modality_lut``) and
    ``2^bits - 1`` of the LUT's LUTDescriptor; with RescaleSlope (0028,1053) /
    RescaleIntercept (0028,1052) other than 1 / 0, float64 ``v * slope + intercept``;
    otherwise ``stored`` itself. Without a LUT ``full_scale`` is ``2^BitsStored - 1``.
    """
    full_scale = 2 ** int(ds.BitsStored) - 1
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return apply_modality_lut(stored, ds), 2 ** bits - 1
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    slope = 1.0 if slope in (None, "") else float(slope)
    intercept = 0.0 if intercept in (None, "") else float(intercept)
    if slope == 1.0 and intercept == 0.0:
        return stored, full_scale
    return stored.astype(np.float64) * slope + intercept, full_scale


def apply_window(values, center, width, function, full_scale):
    """VOI windowing (PS3.3 C.11.2.1.2) of ``values`` onto ``[0, full_scale]``, float64.

    ``function`` is VOILUTFunction (0028,1056): LINEAR (default), LINEAR_EXACT or SIGMOID.
    """
    x = np.asarray(values, dtype=np.float64)
    function = (function or "LINEAR").strip().upper()
    if function == "LINEAR":
        if width < 1:
            raise ValueError(f"WindowWidth {width} must be >= 1 for LINEAR windowing")
        c, w = center - 0.5, width - 1.0
        if w == 0:
            return np.where(x > c, float(full_scale), 0.0)
        return np.clip(((x - c) / w + 0.5) * full_scale, 0.0, full_scale)
    if width <= 0:
        raise ValueError(f"WindowWidth {width} must be > 0 for {function} windowing")
    if function == "LINEAR_EXACT":
        return np.clip(((x - center) / width + 0.5) * full_scale, 0.0, full_scale)
    if function == "SIGMOID":
        return full_scale / (1.0 + np.exp(-4.0 * (x - center) / width))
    raise ValueError(f"VOILUTFunction {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")


def voi_values(values, ds, full_scale):
    """Apply the first VOI LUT (0028,3010) or window (0028,1050)/(0028,1051) of the file.

    Returns ``(values, full_scale, note)``; the note says when the file has neither.
    """
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        integers = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values
        return apply_voi(integers, ds, index=0), 2 ** bits - 1, ""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center in (None, "") or width in (None, ""):
        return values, full_scale, "no VOI LUT or window in the file: none applied"
    first = (lambda v: float(v[0]) if isinstance(v, (list, MultiValue)) else float(v))
    return (apply_window(values, first(center), first(width), ds.get("VOILUTFunction"),
                         full_scale), full_scale, "")


def mammogram_pixels(stored, ds, apply_voi_lut=False):
    """The pixel rule of SPEC 10: stored values to the (H, W) uint16 image written as PNG.

    1. Modality LUT when not the identity (:func:`modality_values`);
    2. only with ``apply_voi_lut``: the file's first VOI LUT or window (:func:`voi_values`);
    3. values outside ``[0, full_scale]`` are clipped (counted in the notes);
    4. MONOCHROME1 (0028,0004) is inverted, ``full_scale - v`` (``2^BitsStored - 1 - v``),
       so that dense tissue is bright;
    5. rescaled to 16 bits, ``round(v * 65535 / full_scale)``.
    The stored orientation is kept (no flip). Returns ``(image, notes)``; ``ds`` is not
    changed.
    """
    if stored.ndim != 2:
        raise ValueError(f"expected one 2-D frame, decoded an array of shape {stored.shape}")
    values, full_scale = modality_values(stored, ds)
    notes = []
    if apply_voi_lut:
        values, full_scale, note = voi_values(values, ds, full_scale)
        notes.append(note)
    values = np.asarray(values, dtype=np.float64)
    outside = int(np.count_nonzero((values < 0) | (values > full_scale)))
    if outside:
        notes.append(f"{outside} value(s) outside 0..{full_scale} clipped")
        values = np.clip(values, 0, full_scale)
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        values = full_scale - values
    # v * 65535 is exact in float64 and 2^b - 1 is odd, so no value sits on a .5 tie.
    image = np.rint(values * float(PNG_FULL_SCALE) / full_scale).astype(np.uint16)
    return image, [n for n in notes if n]


# --------------------------------------------------------------------------- pass 1: headers
def _transfer_syntax(ds):
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return getattr(uid, "name", "") or str(uid or "")


def _scan_file(task):
    """Read one header: ``(report row, candidate or None)``. Never raises."""
    path, root = task
    row = {"path": Path(path).relative_to(root).as_posix(), "status": SKIPPED, "reason": ""}
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        row["reason"] = "not a DICOM file (no 'DICM' prefix after the 128-byte preamble)"
        return row, None
    except Exception as err:  # a damaged file fails inside pydicom in many ways
        row.update(status=FAILED, reason=f"unreadable DICOM header ({type(err).__name__}: {err})")
        return row, None
    try:
        view, side_from_text = mammogram_view(ds)
        row["_identifiers"] = {k: str(ds.get(k) or "") for k in IDENTIFYING}
        row.update(study=str(ds.get("StudyInstanceUID") or ""),
                   patient=str(ds.get("PatientID") or ""), bits=ds.get("BitsStored"),
                   photometric=str(ds.get("PhotometricInterpretation") or ""),
                   transfer_syntax=_transfer_syntax(ds), view=view,
                   side=breast_side(ds, side_from_text)[0])
        row.update({column: str(ds.get(keyword) or "")
                    for column, keyword in ACQUISITION_COLUMNS.items()})
        reason = skip_reason(ds)
        if reason:
            row["reason"] = reason
            return row, None
        candidate = {"file": path, "study": row["study"], "patient": row["patient"],
                     "date": str(ds.get("StudyDate") or ""),
                     "sop": str(ds.get("SOPInstanceUID") or ""),
                     "order": (_sort_number(ds, "SeriesNumber"),
                               _sort_number(ds, "InstanceNumber"), natural_key(row["path"])),
                     "study_record": study_record(ds),
                     "image_record": image_record(ds, Path(path).resolve(), row["path"],
                                                  row["side"], view)}
    except Exception as err:  # malformed values surface only when an element is decoded
        row.update(status=FAILED, reason=f"malformed DICOM header ({type(err).__name__}: {err})")
        return row, None
    return row, candidate


def _sort_number(ds, keyword):
    value = _int_or_none(ds, keyword)
    return math.inf if value is None else value


def _skip_duplicate_instances(candidates):
    """Keep the first file of each SOPInstanceUID (0008,0018); skip copies with a reason."""
    first, kept = {}, []
    for row, candidate in candidates:
        sop = candidate["sop"]
        if sop and sop in first:
            row["reason"] = f"duplicate of {first[sop]} (same SOPInstanceUID)"
            continue
        first[sop] = row["path"]
        kept.append((row, candidate))
    return kept


# --------------------------------------------------------------------------- pass 2: pixels
def _convert_file(task):
    """Decode one file and write its PNG: ``(facing, notes, error)``. Never raises."""
    path, png_path, apply_voi_lut = task
    try:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
    except Exception as err:  # decoders and truncated data fail in many ways
        return None, [], (f"pixel data cannot be decoded ({_transfer_syntax_of(path)}): "
                          f"{type(err).__name__}: {err}")
    try:
        image, notes = mammogram_pixels(stored, ds, apply_voi_lut)
        formats.write_png(png_path, image)
    except (ValueError, TypeError, KeyError, AttributeError, InputImageError, OSError) as err:
        return None, [], f"cannot convert pixel data: {type(err).__name__}: {err}"
    return breast_facing(image), notes, ""


def _transfer_syntax_of(path):
    try:
        return _transfer_syntax(pydicom.dcmread(path, stop_before_pixels=True)) or "unknown"
    except Exception:  # only used to word an error message
        return "transfer syntax unknown"


def _convert_candidates(candidates, stage, apply_voi_lut, num_processes):
    """Decode every candidate into ``stage`` under a temporary name; update report rows.

    Returns the converted images (dicts with ``row``, ``candidate``, ``png``, the temporary
    PNG path, and ``orientation``); failed candidates get status ``failed`` and the reason.
    """
    tasks = [(c["file"], str(Path(stage) / f".decoded-{i}.png"), apply_voi_lut)
             for i, (_, c) in enumerate(candidates)]
    results = parallel_map(_convert_file, tasks, num_processes, desc="pixels")
    images = []
    for (row, candidate), task, (facing, notes, error) in zip(candidates, tasks, results):
        if error:
            row.update(status=FAILED, reason=error)
            continue
        row.update(status=KEPT, orientation=orientation(facing, row["side"]))
        for note in notes:
            add_note(row, note)
        images.append({"row": row, "candidate": candidate, "png": task[1],
                       "orientation": row["orientation"]})
    return images


# --------------------------------------------------------------------------- pass 3: exams
def _safe_name(text, fallback):
    text = re.sub(r"[^A-Za-z0-9.-]+", "-", str(text or "")).strip("-.")[:64]
    return text or fallback


def _exam_ids(candidates, pseudonyms=None):
    """{StudyInstanceUID: exam id}: ``<PatientID>_<StudyDate>``, readable and stable.

    When two studies would get the same id, each gets ``-<8 hex digits of a hash of its
    StudyInstanceUID>`` appended. Ids hold no further ``_``, so PNG names
    ``<exam id>_<L|R>_<CC|MLO>`` stay parseable by ``make_exam_list``. With ``pseudonyms``
    (:class:`~.pseudonyms.Pseudonyms`) the id is the keyed hash of patient ID and study UID.
    """
    if pseudonyms is not None:
        return {c["study"]: pseudonyms.exam(c["patient"], c["study"]) for c in candidates}
    base = {}
    for c in candidates:
        base[c["study"]] = f"{_safe_name(c['patient'], 'patient')}_{_safe_name(c['date'], 'nodate')}"
    counts = Counter(base.values())
    shared = {b for b, n in counts.items() if n > 1}
    return {study: (f"{b}-{hashlib.sha1(study.encode()).hexdigest()[:8]}" if b in shared else b)
            for study, b in base.items()}


def _name_images(images, pseudonyms=None):
    """Give each converted image its exam id and short file path; returns them in list order.

    ``images``: dicts with ``row`` and ``candidate``. Exams are sorted by id; images of one
    view by SeriesNumber, InstanceNumber, then path. A view with several images numbers
    them ``_1``, ``_2``, ... in that order.
    """
    exam_ids = _exam_ids([i["candidate"] for i in images], pseudonyms)
    for image in images:
        image["exam_id"] = exam_ids[image["candidate"]["study"]]
        image["side"], image["view"] = image["row"]["side"], image["row"]["view"]
    images.sort(key=lambda i: (natural_key(i["exam_id"]), i["candidate"]["order"]))
    groups = {}
    for image in images:
        groups.setdefault((image["exam_id"], image["side"], image["view"]), []).append(image)
    for (exam_id, side, view), members in groups.items():
        for k, image in enumerate(members, start=1):
            suffix = f"_{k}" if len(members) > 1 else ""
            image["short_file_path"] = f"{exam_id}_{side}_{view}{suffix}"
            image["row"].update(exam_id=exam_id, output_png=f"{image['short_file_path']}.png")
    return images


# --------------------------------------------------------------------------- DICOM records
def _dicom_records(images, pseudonyms=None):
    """``{exam id: {"dicom": record}}``: each exam's study and source-image records
    (pseudonymous with ``pseudonyms``), the study's taken from its first image."""
    by_exam = {}
    for image in images:
        candidate = image["candidate"]
        record = candidate["image_record"]
        if pseudonyms is not None:
            record = pseudonymize_image(record, pseudonyms, pseudonyms.file(record["file"]))
        study, records = by_exam.setdefault(image["exam_id"], (candidate["study_record"], {}))
        records[image["short_file_path"]] = record
    return {exam_id: {"dicom": exam_record(
                pseudonymize_study(study, pseudonyms) if pseudonyms is not None else study,
                records)}
            for exam_id, (study, records) in by_exam.items()}


# --------------------------------------------------------------------------- pseudonyms
def _pseudonymize_rows(rows, images, pseudonyms, dicom_dir):
    """Replace every identifier in the report rows by its pseudonym, record the mapping,
    and return the exams' extra keys: ``{exam id: {"patient_id": pseudonym}}``.

    ``path`` becomes the keyed name of the file; ``patient`` and ``study`` the patient's and
    the exam's; the file's path and identifying header values are removed from ``reason``
    (decoder messages may quote them).
    """
    names = {row["path"]: pseudonyms.file(row["path"]) for row in rows}
    for row in rows:
        real, found = row["path"], row.pop("_identifiers", {})
        patient, study = row.get("patient") or "", row.get("study") or ""
        row["patient"] = pseudonyms.patient(patient) if patient else ""
        row["study"] = pseudonyms.exam(patient, study) if study else ""
        pseudonyms.record(file=names[real], source_path=real, exam_id=row.get("exam_id"),
                          patient_id=row["patient"], PatientID=patient, StudyInstanceUID=study,
                          StudyDate=found.get("StudyDate"), output_png=row.get("output_png"))
        reason = str(row.get("reason") or "")
        if reason.startswith("duplicate of "):  # names another input file
            other = reason[len("duplicate of "):].split(" (same SOPInstanceUID)")[0]
            reason = reason.replace(other, names.get(other, "another file"))
        hidden = [str(Path(dicom_dir) / real), real] + [v for v in found.values() if v]
        for text in sorted(hidden, key=len, reverse=True):
            reason = reason.replace(text, "[removed]")
        row["reason"], row["path"] = reason, names[real]
    return {image["exam_id"]: {"patient_id": pseudonyms.patient(image["candidate"]["patient"])}
            for image in images}


def _check_key_place(key_path, output_data_dir):
    """The key and its mapping table must stay outside the outputs."""
    key, folder = Path(key_path).resolve(), Path(output_data_dir).resolve()
    if key == folder or folder in key.parents:
        raise SettingsError(f"{key_path}: the --pseudonymize key (and the table beside it) "
                            f"must not lie inside the output folder {output_data_dir}")


# --------------------------------------------------------------------------- entry point
def dicom_to_exam_list(dicom_dir, output_data_dir, exam_list_path, *, num_processes=1,
                       report_path=None, apply_voi_lut=False, overwrite=False,
                       pseudonymize=None):
    """Convert the screening mammograms under ``dicom_dir`` into PNGs and an exam list.

    Writes ``<output_data_dir>/<short_file_path>.png`` (16-bit), the exam list (pickle, or
    JSON for ``.json``) and the report CSV (default ``<exam list>.report.csv``). Existing
    outputs are refused unless ``overwrite``; the output folder is built aside and swapped
    in whole. Returns a :class:`~breast_cancer_classifier.tools.make_exam_list.ExamListResult` whose
    exit code is 0, or 3 when some mammograms failed; raises
    :class:`~breast_cancer_classifier.core.errors.PipelineError` (after writing the report) when
    no image could be kept.

    ``pseudonymize``: a key file (created when absent). PNG names, exam list and report then
    carry keyed names instead of patient ID, study date and paths, each exam a pseudonymous
    ``patient_id``; the table back to the identifiers goes beside the key only.
    """
    dicom_dir = Path(dicom_dir)
    output_data_dir = Path(output_data_dir)
    report_path = Path(report_path) if report_path else default_report_path(exam_list_path)
    if not dicom_dir.is_dir():
        raise InputImageError(f"{dicom_dir}: DICOM folder not found")
    check_outputs([exam_list_path, report_path], overwrite)
    pseudonyms = None
    if pseudonymize:
        _check_key_place(pseudonymize, output_data_dir)
        pseudonyms = Pseudonyms(pseudonymize)
    if output_data_dir.exists() and not overwrite:
        raise OutputExistsError(f"{output_data_dir}: output folder already exists; remove it "
                                "or pass --overwrite to replace it")
    files = sorted((p for p in dicom_dir.rglob("*") if p.is_file()),
                   key=lambda p: natural_key(p.relative_to(dicom_dir).as_posix()))
    scanned = parallel_map(_scan_file, [(str(p), str(dicom_dir)) for p in files],
                           num_processes, desc="headers")
    rows = [row for row, _ in scanned]
    candidates = _skip_duplicate_instances([(r, c) for r, c in scanned if c is not None])
    with formats.staged_output_dir(output_data_dir, overwrite) as stage:
        images = _name_images(_convert_candidates(candidates, stage, apply_voi_lut,
                                                  num_processes), pseudonyms)
        for image in images:
            os.replace(image["png"], stage / image["row"]["output_png"])
        extra_keys = _dicom_records(images, pseudonyms)
        if pseudonyms is not None:
            for exam_id, keys in _pseudonymize_rows(rows, images, pseudonyms,
                                                    dicom_dir).items():
                extra_keys[exam_id].update(keys)
            pseudonyms.write_mapping()
        else:
            for row in rows:
                row.pop("_identifiers", None)
        exam_list = assemble_exams(images, extra_keys=extra_keys) if images else []
        if not exam_list:  # writes the report, then raises: the staged folder is dropped
            finish("dicom_to_exam_list", rows, exam_list, exam_list_path, report_path,
                   REPORT_COLUMNS)
    return finish("dicom_to_exam_list", rows, exam_list, exam_list_path, report_path,
                  REPORT_COLUMNS)
