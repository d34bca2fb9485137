"""Read a finished ``bcc run`` folder, and refuse one that is not (exit 2, naming what is missing).

A run is finished when its settings, manifest, ``data.pkl`` and both predictions CSVs are
there (the CSVs are written once every exam is done) and each CSV has one row per exam.
``qa.csv``, ``failures.csv``, ``heatmaps/`` and ``visualizations/`` are read when present.
Every name comes from :mod:`core.pipeline` and :mod:`core.run_record`.
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core import formats
from ...core.errors import EvaluationInputError, ExamListError, RunFolderError
from ...core.exam_list import load_exam_list
from ...core.run_layout import RunLayout
from ...core.run_record import RunRecord
from ...core.views import LABELS, VIEWS
from ..demo_marker import demo_weight_files
from ..evaluate import load_predictions

MODELS = ("image", "imageheatmaps")  # the two CSVs of a run, by model
VISUALIZATIONS = "visualizations"  # bcc run --visualize's folder (bcc.py, _pictures)


@dataclass
class Run:
    """What a finished run folder holds, read once."""

    root: Path
    layout: RunLayout
    settings: dict
    manifest: list
    exams: list  # data.pkl: the exam list with stage 1-2's keys
    predictions: dict  # model -> (N, 4) float, NaN rows for failed exams
    calibrated: dict  # model -> (N, 4) calibrated columns (models run with --calibration)
    qa_rows: list = None  # qa.csv's rows (dicts), None when the check did not run
    failures: list = field(default_factory=list)  # failures.csv: (stage, item, reason)
    demo: dict = field(default_factory=dict)  # role -> "demo", "not demo" or "unknown"

    @property
    def count(self):
        return len(self.exams)

    @property
    def visualizations_dir(self):
        path = self.root / VISUALIZATIONS
        return path if path.is_dir() else None

    def exam_failures(self, index):
        """(stage, item, reason) of one exam: pass 2's (exams/<i>.json) and pass 1's whose
        item names one of its images."""
        names = {name for view in VIEWS for name in self.exams[index][view]}
        found = [tuple(f) for f in self.failures
                 if any(name in f[1].replace("\\", "/") for name in names)]
        try:
            found += [tuple(f) for f in json.loads(self.layout.exam_file(index).read_text())
                      .get("failures", []) if tuple(f) not in found]
        except (OSError, ValueError):
            pass  # exams/<i>.json is the run's record; the CSV row already says failed
        return found


def required_files(layout):
    """(path, what it is) of every file a finished run must have."""
    record = RunRecord(layout.root)
    return [(record.settings_path, "the run's settings"),
            (record.manifest_path, "the run's manifest"),
            (layout.data_pkl, "stage 1-2's exam list"),
            *((path, f"the {model} model's predictions") for model, path in layout.csvs.items())]


def check_finished(layout):
    """Raise :class:`RunFolderError` naming every missing file (and why it may be missing)."""
    if not layout.root.is_dir():
        raise RunFolderError(f"{layout.root}: no such folder; give the output folder of "
                             "bcc run")
    missing = [f"{path.name} ({what})" for path, what in required_files(layout)
               if not path.is_file()]
    if not missing:
        return
    hint = ("it is not a bcc run folder" if len(missing) == len(required_files(layout))
            else "the CSVs are written once every exam is done: finish the run with "
            "bcc run --continue (same flags)")
    raise RunFolderError(f"{layout.root}: not a finished run: missing {', '.join(missing)}; "
                         f"{hint}")


def read_run(run_dir):
    """The :class:`Run` of ``run_dir``; refuses (RunFolderError, exit 2) an unfinished one."""
    layout = RunLayout(run_dir)
    check_finished(layout)
    record = RunRecord(layout.root)
    settings = record.read_settings()
    try:
        exams = load_exam_list(layout.data_pkl)
    except ExamListError as err:
        raise RunFolderError(f"{layout.data_pkl}: unreadable ({err})") from err
    predictions, calibrated = {}, {}
    for model, path in layout.csvs.items():
        predictions[model] = load_predictions(path, len(exams), f"{layout.data_pkl}")
        if _has_calibrated_columns(path):
            calibrated[model] = load_predictions(path, len(exams), f"{layout.data_pkl}",
                                                 calibrated=True)
    return Run(root=layout.root, layout=layout, settings=settings,
               manifest=record.entries(), exams=exams, predictions=predictions,
               calibrated=calibrated, qa_rows=_read_rows(layout.qa),
               failures=[tuple(r) for r in _read_rows(layout.failures, dicts=False) or []],
               demo=demo_status(settings))


def _has_calibrated_columns(path):
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    return tuple(header) == LABELS + formats.CALIBRATED_LABELS


def _read_rows(path, dicts=True):
    """A CSV's data rows (dicts, or lists without the header); None when the file is absent."""
    if not Path(path).is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f) if dicts else csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise EvaluationInputError(f"{path}: cannot read ({err})") from err
    return rows if dicts else rows[1:]


def demo_status(settings):
    """``{role: "demo" | "not demo" | "unknown"}`` of the run's weight files.

    A file counts as demo weights while its folder's ``DEMO_WEIGHTS.txt`` lists it with its
    current content (:mod:`demo_marker`); "unknown" when the file is no longer there.
    """
    status = {}
    for role, path in (settings.get("weights") or {}).items():
        path = Path(path)
        if not path.is_file():
            status[role] = "unknown"
        else:
            status[role] = "demo" if path.name in demo_weight_files(path.parent) else "not demo"
    return status


def timings(manifest):
    """What the manifest says of time: pass 1's seconds, and per exam seconds (last entry)."""
    pass1 = [e for e in manifest if e.get("unit") == "pass1" and "seconds" in e]
    exams = {}
    for entry in manifest:
        if isinstance(entry.get("exam"), int) and "seconds" in entry:
            exams[entry["exam"]] = entry
    seconds = np.array([e["seconds"] for e in exams.values()], dtype=float)
    finished = [e["finished"] for e in exams.values() if "finished" in e]
    started = [e["finished"] - e["seconds"] for e in exams.values() if "finished" in e]
    workers = {e.get("worker") for e in exams.values() if e.get("worker")}
    return {"pass1_seconds": pass1[-1]["seconds"] if pass1 else None,
            "exams_timed": int(seconds.size),
            "exam_seconds_total": float(seconds.sum()) if seconds.size else None,
            "exam_seconds_median": float(np.median(seconds)) if seconds.size else None,
            "exam_seconds_max": float(seconds.max()) if seconds.size else None,
            "pass2_wall_seconds": (max(finished) - min(started) if finished else None),
            "workers": len(workers),
            "continued": sum(1 for e in manifest if e.get("event") == "continue")}
