"""Fine-tuning data: labels, the train/validation split, and the preprocessing cache.

Labels are an (N, 4) float64 array in ``LABELS`` order (0, 1, or NaN where a column is
not given), read by the evaluation code (``tools.evaluate.read_labels``): a CSV of the four
label columns, or an exam list whose exams carry ``cancer_label``.

The cache folder holds stages 1-3 of every exam, made once by the engine's functions and
reused by every epoch and by later runs over the same exams and images::

    cropped_images/   data.pkl   heatmaps/heatmap_{malignant,benign}/   cache.json

Exams are added one by one: a later run over other exams of the same data folder computes
only the new ones. A cache made from another data folder is rebuilt, heatmaps from another
patch model or seed are remade.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ...core import formats
from ...core.errors import ExamListError, SettingsError
from ...core.exam_list import load_exam_list, save_exam_list
from ...core.failures import FailureReport
from ...core.hashing import file_sha256
from ...core.runtime import log
from ...core.stages.cropping import STAGE1_KEYS
from ...core.stages.preprocess import CENTER_STAGE, CROP_STAGE, preprocess_exam_list
from ...core.views import LABELS, VIEWS
from ..evaluate import read_labels

CACHE_INFO = "cache.json"
CACHE_VERSION = 1
MALIGNANT_COLUMNS = [LABELS.index("left_malignant"), LABELS.index("right_malignant")]
STAGE = "finetune"


# --------------------------------------------------------------------------- labels
def load_labelled_exams(exam_list_path, labels_path=None):
    """``(exam list, labels)``: the labels from ``labels_path`` (CSV or exam list) or from
    the exam list's own ``cancer_label``; both must have one row per exam."""
    exam_list = load_exam_list(exam_list_path)
    source = labels_path if labels_path is not None else exam_list_path
    labels = read_labels(source)
    if len(labels) != len(exam_list):
        raise ExamListError(f"{source}: {len(labels)} label row(s), but the exam list "
                            f"{exam_list_path} has {len(exam_list)} exam(s); the labels do not "
                            "match the exam list (one row per exam, in exam-list order)")
    missing = [LABELS[c] for c in MALIGNANT_COLUMNS if np.isnan(labels[:, c]).any()]
    if missing:
        raise ExamListError(f"{source}: no {' or '.join(missing)} labels; fine-tuning needs "
                            "the malignant labels of every exam")
    return exam_list, labels


def check_two_classes(labels, where):
    """Refuse a validation set whose malignant breasts are all one class (AUC undefined)."""
    values = labels[:, MALIGNANT_COLUMNS].ravel()
    if np.unique(values).size < 2:
        raise SettingsError(
            f"{where}: every validation breast is labelled malignant={int(values[0])}, so "
            "the malignant ROC AUC is undefined; the validation set needs both classes")


# --------------------------------------------------------------------------- split
def split_exams(exam_list, val_fraction, seed):
    """``(train indices, validation indices)``, a seeded split by patient.

    Exams that share ``patient_id`` stay on one side; exams without it are their own
    group. About ``val_fraction`` of the exams go to validation (whole groups, in a seeded
    random order, until the share is reached).
    """
    if not 0 < val_fraction < 1:
        raise SettingsError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    groups = {}
    for index, exam in enumerate(exam_list):
        key = exam.get("patient_id")
        groups.setdefault(("patient", str(key)) if key is not None else ("exam", index),
                          []).append(index)
    order = list(groups.values())
    np.random.default_rng(seed).shuffle(order)
    target = max(1, int(round(val_fraction * len(exam_list))))
    val = []
    for group in order:
        if len(val) >= target:
            break
        val.extend(group)
    val = sorted(val)
    train = [i for i in range(len(exam_list)) if i not in set(val)]
    if not train or not val:
        raise SettingsError(f"--val-fraction {val_fraction} leaves an empty side: "
                            f"{len(train)} training and {len(val)} validation exam(s) from "
                            f"{len(groups)} patient(s)")
    return train, val


# --------------------------------------------------------------------------- cache
def exam_key(exam):
    """What stages 1-2 of an exam depend on (with the data folder): its images and flip."""
    content = [exam["horizontal_flip"], [list(exam[view]) for view in VIEWS]]
    return hashlib.sha256(json.dumps(content, separators=(",", ":")).encode()).hexdigest()


# Keys the cache owns: an exam's other keys (labels, patient_id) come from the caller's list.
CACHED_KEYS = ("horizontal_flip", *VIEWS, *STAGE1_KEYS, "best_center")


class PreprocessCache:
    """The cache folder of stages 1-3 (see the module docstring).

    Exams are cached one by one (keyed by :func:`exam_key`), so later runs over other
    subsets of the same images compute only what is new. ``data.pkl`` holds every cached
    exam with its centers; ``cache.json`` the keys (in ``data.pkl`` order), the data folder,
    each exam's failures and what the heatmaps were made with.
    """

    def __init__(self, cache_dir):
        self.root = Path(cache_dir)
        self.cropped_dir = self.root / "cropped_images"
        self.heatmaps_dir = self.root / "heatmaps"
        self.data_pkl = self.root / "data.pkl"
        self.info_path = self.root / CACHE_INFO

    def _info(self, data_folder):
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            info = {}
        folder = str(Path(data_folder).resolve())
        if info.get("version") != CACHE_VERSION or info.get("data_folder") != folder:
            if info:
                log.info("finetune: %s was made from other images; rebuilding it", self.root)
            for stale in (self.cropped_dir, self.heatmaps_dir, self.data_pkl):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
            info = {"version": CACHE_VERSION, "data_folder": folder, "keys": [],
                    "failures": {}, "heatmaps": None, "heatmap_keys": []}
        return info

    def _write(self, info, cached):
        save_exam_list(cached, self.data_pkl)
        formats.write_bytes_atomic(self.info_path, (json.dumps(info, indent=1) + "\n").encode())

    def prepare(self, exam_list, data_folder, heatmaps=None, num_processes=1):
        """``(exams, failures)``: ``exam_list`` after stages 1-2 (one entry per input exam,
        its own extra keys kept) and the ``(stage, item, reason)`` failures of its exams.

        ``heatmaps``: ``None``, or ``(patch_model_path, seed, make_classify)`` where
        ``make_classify()`` loads the patch runtime (only when heatmaps must be made).
        """
        info = self._info(data_folder)
        cached = load_exam_list(self.data_pkl) if self.data_pkl.is_file() else []
        keys = [exam_key(exam) for exam in exam_list]
        new = {}
        for key, exam in zip(keys, exam_list):
            if key not in info["keys"]:
                new.setdefault(key, exam)
        if new:
            self._stages_1_2(info, cached, new, data_folder, num_processes)
        else:
            log.info("finetune: reusing stages 1-2 of %d exam(s) from %s", len(keys), self.root)
        if heatmaps is not None:
            self._heatmaps(info, cached, set(keys), *heatmaps)
        by_key = dict(zip(info["keys"], cached))
        exams = []
        for key, exam in zip(keys, exam_list):
            merged = {k: v for k, v in exam.items() if k not in CACHED_KEYS}
            merged.update({k: by_key[key][k] for k in CACHED_KEYS if k in by_key[key]})
            exams.append(merged)
        failures = [tuple(f) for key in dict.fromkeys(keys) for f in info["failures"][key]]
        return exams, failures

    def _stages_1_2(self, info, cached, new, data_folder, num_processes):
        log.info("finetune: stages 1-2 of %d exam(s) into %s", len(new), self.root)
        reports = FailureReport(CROP_STAGE), FailureReport(CENTER_STAGE)
        bare = [{k: v for k, v in exam.items() if k in CACHED_KEYS} for exam in new.values()]
        _, with_centers = preprocess_exam_list(bare, data_folder, self.cropped_dir,
                                               num_processes=num_processes, reports=reports)
        failed = [(r.stage, item, reason) for r in reports for item, reason in r.failures]
        for key, exam in zip(new, bare):
            names = {name for view in VIEWS for name in exam[view]}
            info["failures"][key] = [f for f in failed if f[1] in names]
        info["keys"].extend(new)
        cached.extend(with_centers)
        self._write(info, cached)

    def _heatmaps(self, info, cached, wanted_keys, patch_model_path, seed, make_classify):
        from ...core.stage_scripts import produce_heatmaps
        from ...core.stages.heatmaps import STAGE as HEATMAP_STAGE

        made_with = {"patch_model_sha256": file_sha256(patch_model_path), "seed": int(seed)}
        if info["heatmaps"] != made_with:
            if self.heatmaps_dir.exists():
                shutil.rmtree(self.heatmaps_dir)
            info["heatmaps"], info["heatmap_keys"] = made_with, []
        todo = [(key, exam) for key, exam in zip(info["keys"], cached)
                if key in wanted_keys and key not in info["heatmap_keys"]]
        if not todo:
            log.info("finetune: reusing heatmaps from %s", self.heatmaps_dir)
            return
        report = FailureReport(HEATMAP_STAGE)
        produce_heatmaps([exam for _, exam in todo], self.cropped_dir, self.heatmaps_dir,
                         make_classify(), seed=seed, report=report)
        for key, exam in todo:
            names = {name for view in VIEWS for name in exam[view]}
            info["failures"][key] += [(HEATMAP_STAGE, item, reason)
                                      for item, reason in report.failures if item in names]
            info["heatmap_keys"].append(key)
        self._write(info, cached)


def usable_exams(data, indices, use_heatmaps, heatmaps_dir):
    """``(kept indices, [(stage, item, reason)])``: exams with every view's images (and
    heatmaps) in the cache; the others are left out, each with its reason."""
    kept, dropped = [], []
    for index in indices:
        exam = data[index]
        reason = None
        empty = [view for view in VIEWS if not exam[view]]
        if empty:
            reason = f"no usable image for view(s) {', '.join(empty)} after stages 1-2"
        elif use_heatmaps:
            absent = [name for view in VIEWS for name in exam[view]
                      if not all(p.is_file() for p in formats.heatmap_paths(heatmaps_dir, name))]
            if absent:
                reason = f"no heatmaps for {', '.join(absent)}"
        if reason is None:
            kept.append(index)
        else:
            dropped.append((STAGE, f"exam {index}", f"left out: {reason}"))
    return kept, dropped
