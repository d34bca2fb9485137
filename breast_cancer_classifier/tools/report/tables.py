"""The exam table: one row per exam, as ``exams.csv`` and as ``data/exams.js`` for the page.

Columns: the exam (0-based, exam-list order), its images, the four probabilities of each
model as the run's CSVs hold them (4 decimals; empty for a failed exam), the calibrated
ones when the run has them, the labels, the QA flags of its images (``qa.csv``), what
failed, and each attribute's value. ``data/exams.js`` holds the same rows (probabilities as
numbers, ``null`` when empty) and whether each exam's pictures were drawn.
"""

import json
import math

import numpy as np

from ...core import formats, qa
from ...core.views import LABELS, VIEWS
from .pictures import THUMB_ROWS, THUMBS_DIR

DATA_JS = "data/exams.js"
EXAM_PAGES = "exams"
SHORT = {"left_benign": "L benign", "right_benign": "R benign",
         "left_malignant": "L malignant", "right_malignant": "R malignant"}


def exam_flags(run):
    """``[sorted QA flag names]`` per exam (in :data:`core.qa.CHECK_NAMES` order)."""
    found = [set() for _ in range(run.count)]
    for row in run.qa_rows or []:
        exam = int(row["exam"])
        if 0 <= exam < run.count and row.get("flags"):
            found[exam].update(row["flags"].split(";"))
    order = {name: i for i, name in enumerate(qa.CHECK_NAMES)}
    return [sorted(f, key=lambda name: (order.get(name, len(order)), name)) for f in found]


def exam_failed(run):
    """Per exam: the stages that failed (``;``-joined), ``no prediction`` when a model's row
    is empty without a recorded failure, else empty."""
    empty = np.zeros(run.count, bool)
    for values in run.predictions.values():
        empty |= np.isnan(values).any(axis=1)
    out = [""] * run.count
    for index in np.flatnonzero(empty):
        stages = dict.fromkeys(f[0] for f in run.exam_failures(int(index)))
        out[index] = ";".join(stages) or "no prediction"
    return out


def label_text(row):
    """``R malignant, L benign`` of one labels row; ``none`` when all 0, empty when unknown."""
    if row is None or np.isnan(row).all():
        return ""
    positive = [SHORT[label] for label, v in zip(LABELS, row) if v == 1]
    return ", ".join(positive) or "none"


def columns(run, labels, attributes):
    """The table's columns: dicts with ``key``, ``label``, ``type`` (and ``title``)."""
    out = [{"key": "exam", "label": "exam", "type": "exam"},
           {"key": "picture", "label": "four views", "type": "thumb",
            "title": "malignant heatmap over each view"}]
    for model in run.predictions:
        for label in LABELS:
            out.append({"key": f"{model}_{label}", "label": SHORT[label], "type": "num",
                        "group": f"{model} model"})
    for model in run.calibrated:
        for label in LABELS:
            out.append({"key": f"{model}_{label}_calibrated", "label": SHORT[label],
                        "type": "num", "group": f"{model} model, calibrated"})
    if labels is not None:
        out.append({"key": "labels", "label": "labels", "type": "text",
                    "title": "positive breasts"})
    out += [{"key": "qa_flags", "label": "QA flags", "type": "flags"},
            {"key": "failed", "label": "failed", "type": "failed"}]
    out += [{"key": f"attr_{name}", "label": name, "type": "text"} for name in attributes]
    return out


def _value(v):
    return None if math.isnan(v) else round(float(v), 4)


def rows(run, labels, attributes, flags, failed, pictures):
    """One list per exam, in :func:`columns` order. ``pictures``: exam -> 1 drawn, 0 not
    drawn, -1 failed."""
    out = []
    for i in range(run.count):
        row = [i, pictures.get(i, 0)]
        for values in list(run.predictions.values()) + list(run.calibrated.values()):
            row += [_value(v) for v in values[i]]
        if labels is not None:
            row.append(label_text(labels[i]))
        row += [";".join(flags[i]), failed[i]]
        row += [values[i] for values in attributes.values()]
        out.append(row)
    return out


def write_data_js(path, table_columns, table_rows, flags, qa_help):
    """``window.BCC_EXAMS = {...}``: what the page's script draws the table from."""
    present = sorted({f for exam in flags for f in exam},
                     key=lambda n: qa.CHECK_NAMES.index(n) if n in qa.CHECK_NAMES else 99)
    data = {"columns": table_columns, "rows": table_rows, "flags": present,
            "pages": f"{EXAM_PAGES}/", "thumbs": f"{THUMBS_DIR}/", "qaHelp": qa_help,
            "thumbHeight": 2 * THUMB_ROWS + 4}
    path.parent.mkdir(parents=True, exist_ok=True)
    # "</" cannot end the script early: the file is a script, but keep it safe inline too
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    path.write_text(f"window.BCC_EXAMS = {text};\n")


def write_exams_csv(path, run, labels, attributes, flags, failed, pictures):
    header = ["exam", "images"]
    for model in run.predictions:
        header += [f"{model}_{label}" for label in LABELS]
    for model in run.calibrated:
        header += [f"{model}_{label}_calibrated" for label in LABELS]
    if labels is not None:
        header += list(LABELS)
    header += ["qa_flags", "failed", *attributes, "picture"]
    body = []
    for i, exam in enumerate(run.exams):
        row = [str(i), ";".join(name for view in VIEWS for name in exam[view])]
        for values in list(run.predictions.values()) + list(run.calibrated.values()):
            row += ["" if math.isnan(v) else "%.4f" % v for v in values[i]]
        if labels is not None:
            row += ["" if math.isnan(v) else str(int(v)) for v in labels[i]]
        row += [";".join(flags[i]), failed[i], *(v[i] for v in attributes.values()),
                {1: "drawn", 0: "not drawn", -1: "failed"}[pictures.get(i, 0)]]
        body.append(row)
    formats.write_csv(path, header, body)
