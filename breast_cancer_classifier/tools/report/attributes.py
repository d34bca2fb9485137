"""Per-exam attributes for the subgroup results: one text value per exam and attribute.

Sources, all used when present:

- ``view_set``, always, from the run's exam list: the views present and the number of
  images, e.g. ``4 views, 4 images`` or ``3 views (no R-MLO), 3 images``;
- ``qa``, from the run's ``qa.csv``: ``flagged`` when a check fired on any of the exam's
  rows (``docs/qa.md``), else ``no flag``;
- the DICOM report of ``bcc dicom`` (``--dicom-report``, or ``<exam list>.report.csv``
  beside the exam list named in the run's recorded command): per image ``manufacturer``,
  ``manufacturer_model``, ``kvp``, ``exposure_mas``, ``compression_force_n``,
  ``body_part_thickness_mm``, ``lossy_compression``. Its kept rows are matched to the run's
  images by PNG name (``output_png``, the short file path). A categorical value is the
  exam's images' common value, or ``mixed``; a numeric one is the mean over its images;
- ``--attributes CSV``: an ``exam_index`` column (0-based, exam-list order) and any others;
  a column whose values are all numbers is numeric.

Numeric attributes with more than ``MIN_DISTINCT`` distinct values are binned into the
cohort's quartiles (``Q1 [lo, hi)`` ... ``Q4 [lo, hi]``, from ``numpy.quantile`` of the
exams' values; equal edges merge bins); others keep each value. An empty value is
``unknown``. Rows for exams the run does not have are listed in a warning.
"""

import csv
import math
from pathlib import Path

import numpy as np

from ...core.errors import RunFolderError
from ...core.runtime import log
from ...core.views import LABELS, VIEWS
from ..dicom import ACQUISITION_COLUMNS
from ..make_exam_list import default_report_path

EXAM_INDEX = "exam_index"
VIEW_SET = "view_set"
QA = "qa"
FLAGGED, NO_FLAG = "flagged", "no flag"
DICOM_CATEGORICAL = ("manufacturer", "manufacturer_model", "lossy_compression")
# bcc dicom's acquisition columns (tools/dicom.ACQUISITION_COLUMNS): the rest are numbers.
DICOM_NUMERIC = tuple(c for c in ACQUISITION_COLUMNS if c not in DICOM_CATEGORICAL)
MIXED, UNKNOWN = "mixed", "unknown"
QUANTILES = (0.25, 0.5, 0.75)
MIN_DISTINCT = 5  # numeric columns with at most this many values keep each value
KEPT = "kept"  # a DICOM report row whose image went into the exam list
# Columns of exams.csv that an attribute may not take
RESERVED = ("exam", "images", "qa_flags", "failed", "picture", "labels") + LABELS


def listed(items, limit=20):
    """'1, 2, 3, ... (and 7 more)' for warnings."""
    items = list(items)
    text = ", ".join(map(str, items[:limit]))
    return text + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def parse_exam_index(text, path, line):
    try:
        return int(str(text).strip())
    except ValueError:
        raise RunFolderError(f"{path}: line {line}: exam_index must be a 0-based exam number, "
                             f"found {text!r}") from None


def view_set(exam):
    """``4 views, 4 images`` / ``3 views (no R-MLO), 3 images`` of one exam."""
    missing = [view for view in VIEWS if not exam[view]]
    images = sum(len(exam[view]) for view in VIEWS)
    views = f"{len(VIEWS) - len(missing)} views" + (f" (no {', '.join(missing)})"
                                                     if missing else "")
    return f"{views}, {images} image{'s' * (images != 1)}"


def exam_attributes(run, attributes_path=None, dicom_report_path=None):
    """``(attributes, sources, warnings)``: ``{name: [value per exam]}`` (text), where each
    came from, and what did not fit the run."""
    attributes = {VIEW_SET: [view_set(exam) for exam in run.exams]}
    sources, warnings = {VIEW_SET: "the run's exam list"}, []
    if run.qa_rows is not None:
        flagged = {int(row["exam"]) for row in run.qa_rows if row.get("flags")}
        attributes[QA] = [FLAGGED if e in flagged else NO_FLAG for e in range(run.count)]
        sources[QA] = "the run's qa.csv"
    report = Path(dicom_report_path) if dicom_report_path else find_dicom_report(run.settings)
    if dicom_report_path and not report.is_file():
        raise RunFolderError(f"{report}: DICOM report not found")
    if report is not None:
        found, unknown = dicom_attributes(report, run.exams)
        for name, values in found.items():
            attributes[name], sources[name] = values, str(report)
        if unknown:
            warnings.append(f"{report}: {len(unknown)} kept image(s) are in no exam of the run, "
                            f"left out: {listed(unknown)}")
    if attributes_path is not None:
        found, unknown = csv_attributes(attributes_path, run.count)
        for name, values in found.items():
            if name in attributes:
                log.info("report: %s from %s replaces the one from %s", name, attributes_path,
                         sources[name])
            attributes[name], sources[name] = values, str(attributes_path)
        if unknown:
            warnings.append(f"{attributes_path}: rows for {len(unknown)} exam(s) the run does "
                            f"not have (it has {run.count}), left out: {listed(unknown)}")
    return attributes, sources, warnings


def find_dicom_report(settings):
    """``<exam list>.report.csv`` beside the exam list of the run's command, if it exists."""
    command = list((settings or {}).get("command") or [])
    for i, word in enumerate(command):
        value = (command[i + 1] if word == "--exam-list" and i + 1 < len(command) else
                 word.partition("=")[2] if word.startswith("--exam-list=") else None)
        if value:
            path = default_report_path(value)
            if path.is_file():
                log.info("report: attributes from the DICOM report %s", path)
                return path
    return None


# --------------------------------------------------------------------------- DICOM report
def dicom_attributes(path, exams):
    """``({name: [value per exam]}, unknown PNG names)`` from a DICOM report CSV."""
    rows = _read_csv(path)
    columns = [c for c in DICOM_CATEGORICAL + DICOM_NUMERIC if c in (rows[0] if rows else {})]
    if not columns:
        log.info("report: %s has none of the acquisition columns (%s)", path,
                 ", ".join(DICOM_CATEGORICAL + DICOM_NUMERIC))
        return {}, []
    exam_of = {name: e for e, exam in enumerate(exams) for v in VIEWS for name in exam[v]}
    per_exam = [{c: [] for c in columns} for _ in exams]
    unknown = []
    for row in rows:
        if row.get("status") != KEPT or not row.get("output_png"):
            continue
        name = row["output_png"][:-4] if row["output_png"].endswith(".png") else row["output_png"]
        if name not in exam_of:
            unknown.append(name)
            continue
        for column in columns:
            if (row.get(column) or "").strip():
                per_exam[exam_of[name]][column].append(row[column].strip())
    found = {}
    for column in columns:
        values = [exam[column] for exam in per_exam]
        if column in DICOM_NUMERIC:
            means = [_mean(v, path, column) for v in values]
            found[column] = bin_numeric(means)
        else:
            found[column] = [UNKNOWN if not v else v[0] if len(set(v)) == 1 else MIXED
                             for v in values]
    return found, unknown


def _mean(values, path, column):
    try:
        return float(np.mean([float(v) for v in values])) if values else math.nan
    except ValueError:
        raise RunFolderError(f"{path}: column {column} holds a value that is not a number "
                             f"({values})") from None


# --------------------------------------------------------------------------- CSV
def csv_attributes(path, count):
    """``({name: [value per exam]}, unknown exam indices)`` from an ``--attributes`` CSV."""
    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path}: attributes file not found")
    rows = _read_csv(path)
    if not rows or EXAM_INDEX not in rows[0]:
        raise RunFolderError(f"{path}: needs an {EXAM_INDEX} column (0-based, in exam-list "
                             "order) and one column per attribute")
    columns = [c for c in rows[0] if c != EXAM_INDEX and c not in RESERVED]
    ignored = [c for c in rows[0] if c in RESERVED]
    if ignored:
        log.warning("report: %s: columns %s are not attributes (labels go in --labels), "
                    "ignored", path, ", ".join(ignored))
    values = {c: [""] * count for c in columns}
    seen, unknown = set(), []
    for line, row in enumerate(rows, start=2):
        index = parse_exam_index(row[EXAM_INDEX], path, line)
        if index in seen:
            raise RunFolderError(f"{path}: exam_index {index} appears twice")
        seen.add(index)
        if not 0 <= index < count:
            unknown.append(index)
            continue
        for column in columns:
            values[column][index] = (row[column] or "").strip()
    return {c: _typed(v) for c, v in values.items()}, unknown


def _typed(values):
    """Numeric columns binned, others as given; empty values ``unknown``."""
    try:
        numbers = [float(v) if v else math.nan for v in values]
    except ValueError:
        return [v or UNKNOWN for v in values]
    if all(math.isnan(n) for n in numbers):
        return [UNKNOWN] * len(values)
    return bin_numeric(numbers)


def bin_numeric(numbers):
    """Text values of numbers: the quartile bin, or the value itself when few distinct."""
    numbers = np.asarray(numbers, dtype=float)
    known = numbers[~np.isnan(numbers)]
    if np.unique(known).size <= MIN_DISTINCT:
        return [UNKNOWN if math.isnan(n) else f"{n:g}" for n in numbers]
    edges = np.unique(np.quantile(known, (0.0,) + QUANTILES + (1.0,)))
    labels = [f"Q{i + 1} [{lo:.4g}, {hi:.4g}{']' if i == len(edges) - 2 else ')'}"
              for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    bins = np.clip(np.searchsorted(edges[1:-1], numbers, side="right"), 0, len(labels) - 1)
    return [UNKNOWN if math.isnan(n) else labels[b] for n, b in zip(numbers, bins)]


def _read_csv(path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RunFolderError(f"{path}: cannot read the CSV ({err})") from err
