"""Exam lists for users who already have PNGs, and the pieces every exam-list builder shares.

``make_exam_list`` builds an exam list (SPEC section 3) from a folder of 16-bit PNGs, either
from a CSV manifest or from file names ``<exam>_<L|R>_<CC|MLO>.png``. It checks every image
(present, a readable single-channel PNG, a known side and view, listed once), decides each
exam's ``horizontal_flip`` and writes a report with one row per input file. The DICOM
converter (:mod:`breast_cancer_classifier.tools.dicom`) uses the same orientation rule, exam
assembly and report writer.

Orientation. With ``horizontal_flip == "NO"`` left views have the chest wall at the left
edge (the breast points right) and right views have it at the right edge (SPEC section 2).
The chest wall is where the breast's pixel mass lies, so an image "faces as expected" when
the larger half of its pixel sum lies on the chest-wall side that ``"NO"`` assumes. An exam
gets ``"YES"`` only when every one of its images is mirrored; mirrored images inside an
otherwise normal exam are reported.
"""

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import formats
from ..core.errors import ExamListError, InputImageError, PipelineError
from ..core.exam_list import save_exam_list, validate_exam_list
from ..core.failures import EXIT_OK, EXIT_PARTIAL, FailureReport
from ..core.runtime import log, parallel_map
from ..core.views import LABELS, VIEWS

KEPT, SKIPPED, FAILED = "kept", "skipped", "failed"
EXPECTED, MIRRORED, UNKNOWN = "expected", "mirrored", "unknown"

MANIFEST_REQUIRED = ("exam_id", "file", "side", "view")
MANIFEST_OPTIONAL = ("horizontal_flip",) + LABELS
REPORT_COLUMNS = ("path", "status", "reason", "exam", "exam_id", "side", "view", "bits",
                  "orientation", "short_file_path")
# <exam>_<L|R>_<CC|MLO>[_<n>].png, as in the reference's sample data (0_L_CC.png).
FILE_NAME_PATTERN = re.compile(r"^(?P<exam>.+)_(?P<side>[LR])_(?P<angle>CC|MLO)(?:_(?P<n>\d+))?$",
                               re.IGNORECASE)
_SIDES = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}


# --------------------------------------------------------------------------- orientation
def breast_facing(image):
    """Which way the breast points in a (H, W) image: ``"right"``, ``"left"`` or ``"unknown"``.

    The breast's pixel mass lies at the chest wall: if the left half of the columns holds
    more of the pixel sum than the right half, the chest wall is at the left edge and the
    breast points right. The middle column of an odd width counts for neither half; equal
    halves (a blank image, say) give ``"unknown"``.
    """
    image = np.asarray(image)
    column_mass = image.sum(axis=0, dtype=np.float64)
    half = image.shape[1] // 2
    left, right = column_mass[:half].sum(), column_mass[image.shape[1] - half:].sum()
    if left > right:
        return "right"
    if right > left:
        return "left"
    return "unknown"


def orientation(facing, side):
    """``"expected"`` when an image of ``side`` ('L'/'R') faces as ``horizontal_flip "NO"``
    assumes (left views point right, right views point left), ``"mirrored"`` when it faces
    the other way, ``"unknown"`` when ``facing`` is unknown."""
    if facing not in ("left", "right"):
        return UNKNOWN
    expected = "right" if side == "L" else "left"
    return EXPECTED if facing == expected else MIRRORED


def exam_horizontal_flip(orientations):
    """``"YES"`` only when every image of an exam is mirrored, otherwise ``"NO"``."""
    orientations = list(orientations)
    return "YES" if orientations and all(o == MIRRORED for o in orientations) else "NO"


def facing_note(row, horizontal_flip):
    """A report note for an image that faces against its exam's ``horizontal_flip``, or ''."""
    wrong = MIRRORED if horizontal_flip == "NO" else EXPECTED
    if row.get("orientation") != wrong:
        return ""
    return (f"breast faces the other way from the rest of the exam (exam horizontal_flip "
            f"{horizontal_flip}); check this image")


# --------------------------------------------------------------------------- exam assembly
@dataclass
class ExamListResult:
    """What a builder produced: the exam list, one report row per input file, an exit code."""
    exam_list: list
    rows: list
    exit_code: int


def natural_key(text):
    """Sort key that orders '2' before '10'."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", str(text)) if part]


def assemble_exams(images, horizontal_flips=None, extra_keys=None):
    """Group kept images into exams, in the order their ``exam_id`` first appears.

    ``images``: dicts with ``exam_id``, ``side``, ``view`` (``CC``/``MLO``),
    ``short_file_path``, ``orientation`` and the report ``row`` (a dict, updated in place
    with ``exam`` and notes), already in the order images should be listed within a view.
    ``horizontal_flips``: {exam_id: "YES"/"NO"} for exams whose flag is given; the others
    are decided from the images' orientation. ``extra_keys``: {exam_id: {key: value}} added
    to the exam (``cancer_label``). Returns the exam list (SPEC section 3).
    """
    horizontal_flips = horizontal_flips or {}
    extra_keys = extra_keys or {}
    by_exam = {}
    for image in images:
        by_exam.setdefault(image["exam_id"], []).append(image)
    exam_list = []
    for index, (exam_id, members) in enumerate(by_exam.items()):
        flip = horizontal_flips.get(exam_id) or exam_horizontal_flip(
            m["orientation"] for m in members)
        exam = {"horizontal_flip": flip}
        for view in VIEWS:
            exam[view] = [m["short_file_path"] for m in members
                          if f"{m['side']}-{m['view']}" == view]
        exam.update(extra_keys.get(exam_id, {}))
        for m in members:
            m["row"]["exam"] = index
            note = facing_note(m["row"], flip)
            if note:
                log.warning("exam %d (%s): %s: %s", index, exam_id, m["row"]["path"], note)
            add_note(m["row"], note)
        missing = [view for view in VIEWS if not exam[view]]
        if missing:
            log.warning("exam %d (%s) has no %s image; the four-view model needs all four "
                        "views", index, exam_id, ", ".join(missing))
        exam_list.append(exam)
    validate_exam_list(exam_list, "new exam list")
    return exam_list


def add_note(row, note):
    if note:
        row["reason"] = f"{row['reason']}; {note}" if row.get("reason") else note


def check_outputs(paths, overwrite):
    """Refuse (before any work) to replace existing output files unless ``overwrite``."""
    for path in paths:
        formats.check_output_file(path, overwrite)


def default_report_path(exam_list_path):
    """The report's default place: beside the exam list, ``<exam list>.report.csv``."""
    exam_list_path = Path(exam_list_path)
    return exam_list_path.with_name(exam_list_path.name + ".report.csv")


def write_report(path, columns, rows):
    formats.write_csv(path, columns, [["" if row.get(c) is None else str(row.get(c)) for c in columns]
                                 for row in rows])


def finish(stage, rows, exam_list, exam_list_path, report_path, columns):
    """Save the exam list and report, log a summary, and return the :class:`ExamListResult`.

    Exit code: 0 when nothing failed, 3 when some files failed (skips are not failures),
    1 when no image was kept (the exam list is then not written).
    """
    failures = FailureReport(stage)
    for row in rows:
        if row["status"] == FAILED:
            failures.add(row["path"], row["reason"])
    write_report(report_path, columns, rows)
    failures.write(exam_list_path)
    counts = {s: sum(r["status"] == s for r in rows) for s in (KEPT, SKIPPED, FAILED)}
    if not exam_list:
        raise PipelineError(f"no usable image among {len(rows)} input file(s) "
                            f"({counts[SKIPPED]} skipped, {counts[FAILED]} failed); "
                            f"see the report {report_path}")
    save_exam_list(exam_list, exam_list_path)
    log.info("%s: %d file(s): %d image(s) kept in %d exam(s), %d skipped, %d failed; "
             "exam list %s, report %s", stage, len(rows), counts[KEPT], len(exam_list),
             counts[SKIPPED], counts[FAILED], exam_list_path, report_path)
    code = EXIT_PARTIAL if counts[FAILED] else EXIT_OK
    return ExamListResult(exam_list, rows, code)


# --------------------------------------------------------------------------- make_exam_list
def make_exam_list(input_data_dir, exam_list_path, *, manifest_path=None, report_path=None,
                   horizontal_flip="auto", num_processes=1, overwrite=False):
    """Build an exam list for the PNGs in ``input_data_dir``; returns an :class:`ExamListResult`.

    With ``manifest_path``: a CSV with columns ``exam_id, file, side, view`` (required) and
    ``horizontal_flip`` and the labels ``left_benign, right_benign, left_malignant,
    right_malignant`` (optional). One row per image; ``file`` is relative to
    ``input_data_dir``, with or without ``.png``; ``side`` is L/R (or LEFT/RIGHT), ``view``
    CC/MLO. Exams are listed in the order they first appear. Without a manifest every file
    under ``input_data_dir`` is an input, and PNGs named ``<exam>_<L|R>_<CC|MLO>.png``
    (optionally ``_<n>`` for a further image of a view) are used; exams are sorted by name.

    ``horizontal_flip``: ``"auto"`` decides each exam from its images (module docstring);
    ``"YES"``/``"NO"`` sets it for every exam whose manifest row gives none. Labels, when
    present, go into a ``cancer_label`` dict per exam (the NYU metarepository's key), with
    integer 0/1 values. The report (default ``<exam list>.report.csv``) has one row per
    input: path, status (kept/skipped/failed), reason, exam index and id, side, view, PNG bit
    depth, orientation, short file path. Existing outputs are refused unless ``overwrite``.
    """
    input_data_dir = Path(input_data_dir)
    report_path = Path(report_path) if report_path else default_report_path(exam_list_path)
    if horizontal_flip not in ("auto", "YES", "NO"):
        raise ValueError(f"horizontal_flip must be 'auto', 'YES' or 'NO', got {horizontal_flip!r}")
    check_outputs([exam_list_path, report_path], overwrite)
    if not input_data_dir.is_dir():
        raise InputImageError(f"{input_data_dir}: image folder not found")
    if manifest_path:
        entries, exam_values = _entries_from_manifest(manifest_path, input_data_dir)
    else:
        entries, exam_values = _entries_from_file_names(input_data_dir), {}
    _mark_duplicates(entries)
    flips, extra = _exam_flags(entries, exam_values, horizontal_flip)
    todo = [e for e in entries if e["row"]["status"] == KEPT]
    checks = parallel_map(_check_png, [str(input_data_dir / e["file"]) for e in todo],
                          num_processes, desc="images")
    for entry, (bits, facing, error) in zip(todo, checks):
        row = entry["row"]
        if error:
            row.update(status=FAILED, reason=error)
            continue
        row["bits"] = bits
        row["orientation"] = orientation(facing, entry["side"])
        if bits != 16:
            add_note(row, f"{bits}-bit PNG; the models were trained on 16-bit images")
    images = [dict(e, orientation=e["row"]["orientation"]) for e in entries
              if e["row"]["status"] == KEPT]
    exam_list = assemble_exams(images, flips, extra) if images else []
    return finish("make_exam_list", [e["row"] for e in entries], exam_list, exam_list_path,
                  report_path, REPORT_COLUMNS)


def _new_entry(path, exam_id="", side="", angle="", short_file_path=""):
    row = {"path": path, "status": KEPT, "reason": "", "exam_id": exam_id, "side": side,
           "view": angle, "short_file_path": short_file_path}
    return {"file": f"{short_file_path}.png", "exam_id": exam_id, "side": side, "view": angle,
            "short_file_path": short_file_path, "row": row}


def _skip(entry, reason):
    entry["row"].update(status=SKIPPED, reason=reason)
    return entry


def _entries_from_file_names(input_data_dir):
    entries = []
    files = sorted((p for p in input_data_dir.rglob("*") if p.is_file()),
                   key=lambda p: natural_key(p.relative_to(input_data_dir).as_posix()))
    for path in files:
        rel = path.relative_to(input_data_dir).as_posix()
        if path.suffix.lower() != ".png":
            entries.append(_skip(_new_entry(rel), "not a .png file"))
            continue
        match = FILE_NAME_PATTERN.match(path.stem)
        if not match:
            entries.append(_skip(_new_entry(rel), "file name does not match "
                                 "<exam>_<L|R>_<CC|MLO>.png (or ..._<n>.png)"))
            continue
        folder = path.parent.relative_to(input_data_dir).as_posix()
        exam_id = match["exam"] if folder == "." else f"{folder}/{match['exam']}"
        short = rel[:-len(path.suffix)]
        entry = _new_entry(rel, exam_id, match["side"].upper(), match["angle"].upper(), short)
        entry["order"] = (int(match["n"] or 0),)
        entries.append(entry)
    # Exams in natural order of their id; within a view, by the _<n> suffix, then name.
    entries.sort(key=lambda e: (natural_key(e["exam_id"]), e.get("order", (0,)),
                                natural_key(e["row"]["path"])))
    return entries


def _read_manifest(manifest_path):
    manifest_path = Path(manifest_path)
    try:
        with open(manifest_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            rows = [{h: (v or "").strip() for h, v in zip(header, raw.values())}
                    for raw in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ExamListError(f"{manifest_path}: cannot read manifest CSV ({err})") from err
    missing = [c for c in MANIFEST_REQUIRED if c not in header]
    unknown = [c for c in header if c not in MANIFEST_REQUIRED + MANIFEST_OPTIONAL]
    if missing or unknown:
        raise ExamListError(
            f"{manifest_path}: manifest columns must be {', '.join(MANIFEST_REQUIRED)} and "
            f"optionally {', '.join(MANIFEST_OPTIONAL)}; "
            + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"))
    return header, rows


def _entries_from_manifest(manifest_path, input_data_dir):
    """One entry per manifest row, and per exam the manifest's flag and label values."""
    header, rows = _read_manifest(manifest_path)
    entries, exam_values = [], {}
    for line, record in enumerate(rows, start=2):
        exam_id, file_name = record["exam_id"], record["file"]
        where = f"manifest line {line}"
        entry = _new_entry(file_name or f"({where})", exam_id)
        entries.append(entry)
        side = _SIDES.get(record["side"].upper())
        angle = record["view"].upper()
        if not exam_id or not file_name:
            _skip(entry, f"{where}: exam_id and file must not be empty")
            continue
        if side is None or angle not in ("CC", "MLO"):
            _skip(entry, f"{where}: side must be L or R and view CC or MLO, found "
                         f"{record['side']!r} and {record['view']!r}")
            continue
        short = _short_file_path(file_name, input_data_dir)
        if short is None:
            _skip(entry, f"{where}: file {file_name!r} is not inside {input_data_dir}")
            continue
        entry.update(file=f"{short}.png", side=side, view=angle, short_file_path=short)
        entry["row"].update(side=side, view=angle, short_file_path=short)
        values = exam_values.setdefault(exam_id, {})
        for column in MANIFEST_OPTIONAL:
            if column in header and record[column]:
                values.setdefault(column, {}).setdefault(record[column], line)
    return entries, exam_values


def _short_file_path(file_name, input_data_dir):
    """``file`` relative to the image folder, without ``.png``; None if it points outside."""
    path = Path(file_name)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(input_data_dir.resolve())
        except ValueError:
            return None
    if ".." in path.parts:
        return None
    text = path.as_posix()
    return text[:-4] if text.lower().endswith(".png") else text


def _mark_duplicates(entries):
    seen = {}
    for entry in entries:
        if entry["row"]["status"] != KEPT:
            continue
        key = entry["short_file_path"]
        if key in seen:
            _skip(entry, f"{key}.png is already listed ({seen[key]}); each image may appear once")
        else:
            seen[key] = f"exam {entry['exam_id']} {entry['side']}-{entry['view']}"


def _exam_flags(entries, exam_values, default_flip):
    """Per exam: the given ``horizontal_flip`` (or None) and the ``cancer_label`` dict.

    An exam whose rows disagree on a value, or that lacks a value of a label column the
    manifest has, is skipped as a whole (its rows say why).
    """
    label_columns = {c for values in exam_values.values() for c in values if c in LABELS}
    flips, extra = {}, {}
    for exam_id, values in exam_values.items():
        problem = _exam_value_problem(values, label_columns)
        if problem:
            for entry in entries:
                if entry["exam_id"] == exam_id and entry["row"]["status"] == KEPT:
                    _skip(entry, f"exam {exam_id}: {problem}")
            continue
        given = next(iter(values.get("horizontal_flip", {})), None)
        flips[exam_id] = given.upper() if given else None
        if label_columns:
            extra[exam_id] = {"cancer_label": {c: int(float(next(iter(values[c]))))
                                               for c in LABELS if c in label_columns}}
    if default_flip != "auto":
        for entry in entries:
            if not flips.get(entry["exam_id"]):
                flips[entry["exam_id"]] = default_flip
    return flips, extra


def _exam_value_problem(values, label_columns):
    for column, found in values.items():
        if len(found) > 1:
            lines = ", ".join(f"{v!r} (line {n})" for v, n in found.items())
            return f"rows disagree on {column}: {lines}"
    flag = next(iter(values.get("horizontal_flip", {})), "")
    if flag and flag.upper() not in ("YES", "NO"):
        return f"horizontal_flip must be YES or NO, found {flag!r}"
    for column in sorted(label_columns, key=LABELS.index):
        value = next(iter(values.get(column, {})), None)
        if value is None:
            return f"no value for label {column}"
        if value not in ("0", "1", "0.0", "1.0"):
            return f"label {column} must be 0 or 1, found {value!r}"
    return ""


def _check_png(path):
    """(bit depth, facing, error) of one PNG; error is '' when it is usable."""
    try:
        image = formats.read_mammogram_png(path)
    except InputImageError as err:
        return None, None, str(err)
    return image.dtype.itemsize * 8, breast_facing(image), ""
