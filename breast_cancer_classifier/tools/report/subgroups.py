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
                     seed=evaluate.SEED, confidence=evaluate.CONFIDENCE):
    """Rows (dicts with :data:`COLUMNS` and ``note``, ``below``) for every model, label,
    attribute and value; the overall rows first (attribute and value ``all``).

    ``predictions``: ``{model: (N, 4)}``; ``labels``: (N, 4) with NaN where unknown;
    ``attributes``: ``{name: [text value per exam]}``.
    """
    count = len(labels)
    groups = [(OVERALL, OVERALL, np.ones(count, bool))]
    for name, values in attributes.items():
        values = np.asarray(values, dtype=object)
        groups += [(name, value, values == value) for value in value_order(values)]
    rows = []
    for model, model_predictions in predictions.items():
        complete = ~np.isnan(model_predictions).any(axis=1)
        for attribute, value, members in groups:
            rows += _group_rows(model, attribute, value, model_predictions, labels,
                                complete & members, n_bootstrap, seed, confidence)
    _mark_below(rows)
    return rows


def _group_rows(model, attribute, value, predictions, labels, members, n_bootstrap, seed,
                confidence):
    """The rows of one subgroup, both labels; one bootstrap per set of exams scored."""
    by_exams = {}
    for label in SUBGROUP_LABELS:
        columns = [LABELS.index(c) for c in evaluate.TARGETS[label]]
        scored = members & ~np.isnan(labels[:, columns]).any(axis=1)
        by_exams.setdefault(scored.tobytes(), (scored, []))[1].append(label)
    rows = []
    for scored, targets in by_exams.values():
        p, y = predictions[scored], labels[scored]
        values = {t: evaluate.fast_metrics(*evaluate.target_arrays(p, y, t)) for t in targets}
        with_auc = [t for t in targets if values[t] is not None]
        intervals = (evaluate.bootstrap_intervals(p, y, with_auc, n_bootstrap, seed, confidence)
                     if with_auc and n_bootstrap else {})
        for target in targets:
            y_true, _ = evaluate.target_arrays(p, y, target)
            ci = (intervals.get(target) or {}).get("roc_auc")
            rows.append({"model": model, "label": target, "attribute": attribute,
                         "value": value, "exams": int(scored.sum()),
                         "positives": int(y_true.sum()),
                         "negatives": int(y_true.size - y_true.sum()),
                         "auc": None if values[target] is None else values[target]["roc_auc"],
                         "ci_low": None if ci is None else ci[0],
                         "ci_high": None if ci is None else ci[1]})
    order = {label: i for i, label in enumerate(SUBGROUP_LABELS)}
    return sorted(rows, key=lambda r: order[r["label"]])


def _mark_below(rows):
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
