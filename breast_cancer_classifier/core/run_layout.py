"""The output folder of ``bcc run``: its paths and the per-exam result files.

run.sh's files under run.sh's names, plus the plan, the run record (:mod:`run_record`) and
one small result file per exam::

    cropped_images/ (with cropped_exam_list.pkl)   data.pkl   heatmaps/heatmap_{malignant,benign}/
    <family>_predictions.csv per classifier family (image_, imageheatmaps_ by default)
    failures.csv (when anything failed)   qa.csv (the quality check of the crops, :mod:`qa`)
    plan.npz   run_settings.json   run_manifest.jsonl   exams/<index>.json
"""

import hashlib
import json
from pathlib import Path

from . import formats
from .families import BUILT_IN, families, get_family

CROPPED_DIR, CROPPED_LIST = "cropped_images", "cropped_images/cropped_exam_list.pkl"
DATA_PKL, HEATMAPS_DIR, EXAMS_DIR, PLAN_NAME = "data.pkl", "heatmaps", "exams", "plan.npz"
FAILURES_NAME = "failures.csv"
QA_NAME = "qa.csv"
VISUALIZATIONS_DIR = "visualizations"


def run_outputs():
    """Everything a run writes in its folder: what ``--overwrite`` removes (and nothing else
    there), with the CSV of every registered family."""
    return (CROPPED_DIR, DATA_PKL, HEATMAPS_DIR, EXAMS_DIR, PLAN_NAME, FAILURES_NAME, QA_NAME,
            "run_settings.json", "run_manifest.jsonl", VISUALIZATIONS_DIR,
            *(family.csv_name for family in families()))


class RunLayout:
    """Paths of one output folder; ``families`` are the run's classifier families (names)."""

    def __init__(self, output_dir, families=BUILT_IN):
        self.root = Path(output_dir)
        self.cropped_dir = self.root / CROPPED_DIR
        self.cropped_list = self.root / CROPPED_LIST
        self.data_pkl = self.root / DATA_PKL
        self.heatmaps_dir = self.root / HEATMAPS_DIR
        self.plan = self.root / PLAN_NAME
        self.failures = self.root / FAILURES_NAME
        self.qa = self.root / QA_NAME
        self.families = tuple(families)
        self.csvs = {name: self.root / get_family(name).csv_name for name in self.families}

    def exam_file(self, index):
        return self.root / EXAMS_DIR / f"{index}.json"

    def existing_outputs(self):
        return [self.root / name for name in run_outputs() if (self.root / name).exists()]


def write_exam_result(layout, result):
    """``exams/<index>.json``: each family's predictions (float32 values, exact) and the
    failures. Returns ``(path, SHA-256 of the bytes written)``."""
    data = {"exam": result.index, "failures": [list(f) for f in result.failures]}
    for name in layout.families:
        value = result.predictions.get(name)
        data[name] = None if value is None else [float(v) for v in value]
    path = layout.exam_file(result.index)
    content = (json.dumps(data) + "\n").encode()
    formats.write_bytes_atomic(path, content)
    return path, hashlib.sha256(content).hexdigest()


def read_exam_result(layout, index):
    return json.loads(layout.exam_file(index).read_text())
