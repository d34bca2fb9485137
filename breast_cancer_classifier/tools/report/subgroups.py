"""ROC AUC with a bootstrap CI for each value of each attribute, both models, both labels.

As ``bcc evaluate`` scores a whole cohort (:mod:`tools.evaluate`), each subgroup on its own:
the AUC is scikit-learn's ``roc_auc_score`` on the subgroup's breasts (both breasts of each
exam pooled, left column then right), computed by :func:`evaluate.fast_metrics` (the same
definition, without scikit-learn's per-call overhead); the 95% interval is :func:`evaluate.bootstrap_intervals` on the
subgroup's exams (exams resampled, ``default_rng(seed)`` per subgroup, evaluate's seed).
An exam counts in a (model, label) row when that model's prediction row is complete and the
label's two columns are known. ``exams`` counts those exams, ``positives`` their positive
breasts. A subgroup with one class only has no AUC (empty); one with fewer than
``MIN_PER_CLASS`` positive or negative breasts has an AUC, flagged as too small to judge; a
subgroup whose interval lies wholly below the overall AUC (``attribute`` ``all``) is marked.
"""

import math

import numpy as np

from ...core import formats
from ...core.views import LABELS
from .. import evaluate
from .attributes import MIXED, UNKNOWN

COLUMNS = ("model", "label", "attribute", "value", "exams", "positives", "auc", "ci_low",
           "ci_high")
SUBGROUP_LABELS = ("benign", "malignant")  # evaluate's pooled targets
OVERALL = "all"
MIN_PER_CLASS = 5


def value_order(values):
    """Distinct values, sorted, with ``unknown`` and ``mixed`` last."""
    return sorted(set(values), key=lambda v: (v in (UNKNOWN, MIXED), v))


def subgroup_results(predictions, labels, attributes, n_bootstrap=evaluate.N_BOOTSTRAP,
                     seed=evaluate.SEED, confidence=evaluate.CONFIDENCE, map_tasks=map):
    """Rows (dicts with :data:`COLUMNS` and ``note``, ``below``) for every model, label,
    attribute and value, by model; the overall rows (attribute and value ``all``) first.

    ``predictions``: ``{model: (N, 4)}``; ``labels``: (N, 4) with NaN where unknown;
    ``attributes``: ``{name: [text value per exam]}``. ``map_tasks``: a ``map`` that runs
    one attribute per call (a process pool's, say).
    """
    count = len(labels)
    tasks = [(predictions, labels, OVERALL, [OVERALL] * count, n_bootstrap, seed, confidence)]
    tasks += [(predictions, labels, name, values, n_bootstrap, seed, confidence)
              for name, values in attributes.items()]
    rows = [row for found in map_tasks(attribute_rows, tasks) for row in found]
    rows.sort(key=lambda r: list(predictions).index(r["model"]))  # stable: model, then group
    mark(rows)
    return rows


def attribute_rows(task):
    """The rows of one attribute (every value, model and label), not yet marked.

    ``task``: ``(predictions, labels, name, values, n_bootstrap, seed, confidence)``.
    """
    predictions, labels, name, values, n_bootstrap, seed, confidence = task
    complete = {m: ~np.isnan(p).any(axis=1) for m, p in predictions.items()}
    values = np.asarray(values, dtype=object)
    rows = []
    for value in value_order(values):
        members = values == value
        found = _group_rows(name, value, predictions, labels,
                            {m: members & c for m, c in complete.items()}, n_bootstrap, seed,
                            confidence)
        rows += sorted(found, key=lambda r: (list(predictions).index(r["model"]),
                                             SUBGROUP_LABELS.index(r["label"])))
    return rows


def _group_rows(attribute, value, predictions, labels, members, n_bootstrap, seed,
                confidence):
    """The rows of one subgroup, every model and label. Exams scored by several (model,
    label) pairs are resampled once for all of them (the draws depend on the exams only)."""
    by_exams = {}
    for model in predictions:
        for label in SUBGROUP_LABELS:
            columns = [LABELS.index(c) for c in evaluate.TARGETS[label]]
            scored = members[model] & ~np.isnan(labels[:, columns]).any(axis=1)
            by_exams.setdefault(scored.tobytes(), (scored, []))[1].append((model, label))
    rows = []
    for scored, pairs in by_exams.values():
        y = labels[scored]
        values = {(m, t): evaluate.fast_metrics(*evaluate.target_arrays(
            predictions[m][scored], y, t)) for m, t in pairs}
        models = {m: predictions[m][scored] for m, t in pairs if values[(m, t)] is not None}
        targets = sorted({t for m, t in pairs if values[(m, t)] is not None})
        intervals = (evaluate.bootstrap_intervals_of_models(
            models, y, targets, n_bootstrap, seed, confidence, metrics=("roc_auc",))
            if models and n_bootstrap else {})
        for model, target in pairs:
            y_true, _ = evaluate.target_arrays(predictions[model][scored], y, target)
            auc = values[(model, target)]
            ci = ((intervals.get(model) or {}).get(target) or {}).get("roc_auc") \
                if auc is not None else None
            rows.append({"model": model, "label": target, "attribute": attribute,
                         "value": value, "exams": int(scored.sum()),
                         "positives": int(y_true.sum()),
                         "negatives": int(y_true.size - y_true.sum()),
                         "auc": None if auc is None else auc["roc_auc"],
                         "ci_low": None if ci is None else ci[0],
                         "ci_high": None if ci is None else ci[1]})
    return rows


def mark(rows):
    """Add ``note`` (what limits the row) and ``below`` (CI wholly below the overall AUC)."""
    overall = {(r["model"], r["label"]): r["auc"] for r in rows if r["attribute"] == OVERALL}
    for row in rows:
        reference = overall.get((row["model"], row["label"]))
        small = min(row["positives"], row["negatives"]) < MIN_PER_CLASS
        row["below"] = bool(row["attribute"] != OVERALL and not small
                            and row["ci_high"] is not None and reference is not None
                            and row["ci_high"] < reference)
        row["note"] = _note(row, small)


def _note(row, small):
    if row["exams"] == 0:
        return "no exam with predictions and labels"
    if row["positives"] == 0:
        return "too small for an AUC: no positive breast"
    if row["negatives"] == 0:
        return "too small for an AUC: no negative breast"
    if small:
        return (f"too small to judge: {row['positives']} positive, {row['negatives']} "
                f"negative breast(s) (under {MIN_PER_CLASS} of a class)")
    return "CI below the overall AUC" if row["below"] else ""


def _cell(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.6f}"


def write_subgroups_csv(path, rows):
    """``subgroups.csv``: :data:`COLUMNS`, AUC and CI with 6 decimals, empty when absent."""
    formats.write_csv(path, COLUMNS, [
        [r["model"], r["label"], r["attribute"], r["value"], str(r["exams"]),
         str(r["positives"]), _cell(r["auc"]), _cell(r["ci_low"]), _cell(r["ci_high"])]
        for r in rows])
