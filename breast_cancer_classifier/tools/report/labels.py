"""The labels of a run's exams: ``--labels`` (the formats ``bcc evaluate`` reads), or the
``cancer_label`` of every exam in the run's ``data.pkl``.

Rows line up with the exam list (row i is exam i), or, when a labels CSV has an
``exam_index`` column (0-based, exam-list order), with the exam it names. Rows for exams the
run does not have are left out and listed in a warning; exams without a row stay unlabelled
(NaN) and are left out of the results, with a warning.
"""

import csv
from pathlib import Path

import numpy as np

from ...core.errors import EvaluationInputError, RunFolderError
from ...core.runtime import log
from ...core.views import LABELS
from ..evaluate import read_labels
from .attributes import EXAM_INDEX, listed, parse_exam_index


def run_labels(run, labels_path=None):
    """``(labels (N, 4) float or None, source, warnings)`` for ``run``'s exams."""
    if labels_path is None:
        try:
            labels = read_labels(run.layout.data_pkl)
        except EvaluationInputError as err:
            log.info("report: no labels (%s); pass --labels for the results", err)
            return None, None, []
        log.info("report: labels from the cancer_label of every exam in %s",
                 run.layout.data_pkl)
        return labels, f"cancer_label in {run.layout.data_pkl.name}", []
    labels_path = Path(labels_path)
    if not labels_path.is_file():
        raise RunFolderError(f"{labels_path}: labels file not found")
    rows = read_labels(labels_path)
    indices = _exam_indices(labels_path, len(rows))
    labels = np.full((run.count, len(LABELS)), np.nan)
    warnings = []
    unknown = [i for i in indices if not 0 <= i < run.count]
    if unknown:
        warnings.append(f"{labels_path}: labels for {len(unknown)} exam(s) the run does not "
                        f"have (it has {run.count}, 0-{run.count - 1}), left out: "
                        f"{listed(unknown)}")
    known = [(row, i) for row, i in enumerate(indices) if 0 <= i < run.count]
    for row, index in known:
        labels[index] = rows[row]
    unlabelled = np.flatnonzero(np.isnan(labels).all(axis=1))
    if unlabelled.size:
        warnings.append(f"{labels_path}: {unlabelled.size} exam(s) have no labels and are "
                        f"left out of the results: {listed(unlabelled.tolist())}")
    return labels, str(labels_path), warnings


def _exam_indices(path, count):
    """The exam each labels row is for: its ``exam_index`` cell, else its position."""
    if path.suffix.lower() != ".csv":
        return list(range(count))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if EXAM_INDEX not in (reader.fieldnames or ()):
            return list(range(count))
        indices = [parse_exam_index(row[EXAM_INDEX], path, n + 2)
                   for n, row in enumerate(reader)]
    seen = set()
    for index in indices:
        if index in seen:
            raise RunFolderError(f"{path}: exam_index {index} appears twice; give one row "
                                 "per exam")
        seen.add(index)
    return indices
