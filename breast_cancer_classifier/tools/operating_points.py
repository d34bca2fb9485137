"""Operating points of the malignant scores: thresholds, and what they do at breast and exam level.

Levels. ``breast``: each breast is a case, scored by its malignant probability (both breasts
pooled, left column then right, as ``evaluate``). ``exam``: an exam is a case, scored by the
larger of its two breasts' malignant probabilities, and positive when either breast is.

Rule. A case is called positive when its score is at least the threshold (``score >= t``).

Thresholds. Candidates are the distinct scores at the level the thresholds are chosen at,
plus the next float above the largest (which calls nothing positive). For a target
sensitivity the threshold is the largest candidate whose sensitivity reaches the target.
Specificity grows with the threshold, so "likewise" means the mirror rule: the smallest
candidate whose specificity reaches the target (the most sensitive threshold that keeps it).
A fixed threshold (chosen on another set) is scored as given.

Confidence intervals: percentile bootstrap over exams, the threshold held fixed, with the
draws of ``evaluate.bootstrap_intervals`` (``numpy.random.default_rng(seed)``, one
``integers(0, N, N)`` per resample). A resample in which a metric is undefined (no positive
cases for sensitivity, none called positive for PPV, ...) is skipped for that metric only.
"""

import math

import numpy as np

from ..core.errors import EvaluationInputError
from ..core.views import LABELS

LEVELS = ("breast", "exam")
RATES = ("sensitivity", "specificity", "ppv", "npv", "positive_rate")
RATE_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV",
              "npv": "NPV", "positive_rate": "Recall rate"}
_MALIGNANT = (LABELS.index("left_malignant"), LABELS.index("right_malignant"))
_CHUNK_CELLS = 4_000_000  # resamples counted at once: a (resamples x exams) weight matrix


def level_arrays(predictions, labels, level):
    """(y_true int, y_score float, exam index of each case) at ``level``."""
    left, right = _MALIGNANT
    if level == "breast":
        n = len(predictions)
        return (np.r_[labels[:, left], labels[:, right]].astype(np.int64),
                np.r_[predictions[:, left], predictions[:, right]],
                np.r_[np.arange(n), np.arange(n)])
    if level == "exam":
        return (np.maximum(labels[:, left], labels[:, right]).astype(np.int64),
                np.maximum(predictions[:, left], predictions[:, right]),
                np.arange(len(predictions)))
    raise ValueError(f"unknown level {level!r}")


def _counts(y_true, y_score, threshold):
    called = y_score >= threshold
    positive = y_true == 1
    return {"tp": int(np.sum(called & positive)), "fp": int(np.sum(called & ~positive)),
            "tn": int(np.sum(~called & ~positive)), "fn": int(np.sum(~called & positive))}


def _ratio(numerator, denominator):
    return None if denominator == 0 else numerator / denominator


def rates(counts):
    """Sensitivity, specificity, PPV, NPV and the share called positive (None when undefined)."""
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
            "positive_rate": _ratio(tp + fp, tp + fp + tn + fn)}


def choose_threshold(y_true, y_score, kind, target):
    """The threshold for a target ``kind`` ('sensitivity' or 'specificity') of ``target``."""
    if not 0 <= target <= 1:
        raise EvaluationInputError(f"target {kind} must be between 0 and 1, got {target}")
    positives = y_true == 1
    if not positives.any() or positives.all():
        raise EvaluationInputError(f"cannot choose a threshold for a target {kind}: the "
                                   "labels hold one class only")
    candidates = np.r_[np.unique(y_score), np.nextafter(np.max(y_score), np.inf)]
    # Positives and negatives at or above each candidate, by binary search on sorted scores.
    pos = np.sort(y_score[positives])
    neg = np.sort(y_score[~positives])
    tp = pos.size - np.searchsorted(pos, candidates, side="left")
    fp = neg.size - np.searchsorted(neg, candidates, side="left")
    if kind == "sensitivity":
        reached = np.flatnonzero(tp / pos.size >= target)
        return float(candidates[reached[-1]])
    if kind == "specificity":
        reached = np.flatnonzero((neg.size - fp) / neg.size >= target)
        return float(candidates[reached[0]])
    raise ValueError(f"unknown target kind {kind!r}")


def _per_exam_counts(predictions, labels, threshold, level):
    """(N, 4) tp, fp, tn, fn each exam contributes at ``level``."""
    y_true, y_score, exam = level_arrays(predictions, labels, level)
    called, positive = y_score >= threshold, y_true == 1
    cells = np.stack([called & positive, called & ~positive, ~called & ~positive,
                      ~called & positive], axis=1).astype(np.float64)
    per_exam = np.zeros((len(predictions), 4))
    np.add.at(per_exam, exam, cells)
    return per_exam


def bootstrap_rates(predictions, labels, thresholds, n_bootstrap, seed, confidence):
    """Percentile intervals of every rate at every (threshold, level), exams resampled.

    Returns ``{(index, level): {rate: (low, high) or None, "skipped": {rate: k}}}``.
    """
    n = len(predictions)
    blocks = {(i, level): _per_exam_counts(predictions, labels, t, level)
              for i, t in enumerate(thresholds) for level in LEVELS}
    keys = list(blocks)
    stacked = np.concatenate([blocks[k] for k in keys], axis=1)  # N x (4 * keys)
    rng = np.random.default_rng(seed)
    sums = []
    done, chunk = 0, max(1, _CHUNK_CELLS // max(n, 1))
    while done < n_bootstrap:
        size = min(chunk, n_bootstrap - done)
        weights = np.zeros((size, n))
        for row in range(size):  # the draws in evaluate's order
            weights[row] = np.bincount(rng.integers(0, n, n), minlength=n)
        sums.append(weights @ stacked)
        done += size
    sums = np.concatenate(sums) if sums else np.zeros((0, stacked.shape[1]))
    tail = 100 * (1 - confidence) / 2
    intervals = {}
    for k, key in enumerate(keys):
        tp, fp, tn, fn = (sums[:, 4 * k + j] for j in range(4))
        values = {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
                  "ppv": (tp, tp + fp), "npv": (tn, tn + fn),
                  "positive_rate": (tp + fp, tp + fp + tn + fn)}
        entry = {"skipped": {}}
        for rate, (num, den) in values.items():
            defined = den > 0
            entry["skipped"][rate] = int(np.sum(~defined))
            draws = num[defined] / den[defined]
            entry[rate] = (tuple(float(v) for v in np.percentile(draws, [tail, 100 - tail]))
                           if draws.size else None)
        intervals[key] = entry
    return intervals


def _level_entry(predictions, labels, threshold, level, intervals):
    """One level of a point: confusion matrix, rates and (``intervals``: None) their CIs."""
    counts = _counts(*level_arrays(predictions, labels, level)[:2], threshold)
    values = rates(counts)
    if level == "breast":
        values.pop("positive_rate")  # recall is an exam-level decision
    entry = {"confusion_matrix": counts, "n": sum(counts.values())}
    for rate, value in values.items():
        ci = None if intervals is None else intervals[rate]
        # the exam-level share called positive is what screening calls the recall rate
        entry["recall_rate" if rate == "positive_rate" else rate] = {
            "value": value, "ci_low": None if ci is None else ci[0],
            "ci_high": None if ci is None else ci[1],
            "bootstrap_skipped": 0 if intervals is None else intervals["skipped"][rate]}
    return entry


def operating_points(predictions, labels, target_sensitivity=(), target_specificity=(),
                     thresholds=(), choose_at="breast", n_bootstrap=1000, seed=0,
                     confidence=0.95):
    """Operating points of (N, 4) complete predictions against (N, 4) labels.

    Returns a JSON-ready dict: the rule, and one entry per requested point with its
    threshold and, at both levels, the confusion matrix, the rates and their intervals.
    """
    if choose_at not in LEVELS:
        raise EvaluationInputError(f"choose_at must be one of {', '.join(LEVELS)}")
    if np.isnan(labels[:, list(_MALIGNANT)]).any():
        raise EvaluationInputError("operating points need the left_malignant and "
                                   "right_malignant labels of every exam")
    y_true, y_score, _ = level_arrays(predictions, labels, choose_at)
    requests = ([("sensitivity", t) for t in target_sensitivity]
                + [("specificity", t) for t in target_specificity]
                + [("threshold", t) for t in thresholds])
    chosen = [t if kind == "threshold" else choose_threshold(y_true, y_score, kind, t)
              for kind, t in requests]
    for kind, t in requests:
        if kind == "threshold" and not math.isfinite(t):
            raise EvaluationInputError(f"--threshold must be a number, got {t}")
    intervals = bootstrap_rates(predictions, labels, chosen, n_bootstrap, seed, confidence)
    points = []
    for i, ((kind, target), threshold) in enumerate(zip(requests, chosen)):
        point = {"requested": f"threshold {target:g}" if kind == "threshold"
                 else f"{kind} >= {target:g}",
                 "kind": kind, "target": float(target), "threshold": threshold,
                 "chosen_at": None if kind == "threshold" else choose_at}
        for level in LEVELS:
            point[level] = _level_entry(predictions, labels, threshold, level,
                                        intervals[(i, level)] if n_bootstrap else None)
        points.append(point)
    return {"score": "malignant probability; exam score = max of its two breasts",
            "rule": "positive when score >= threshold",
            "chosen_at": choose_at,
            "bootstrap": {"resamples": n_bootstrap, "seed": seed, "confidence": confidence,
                          "method": "percentile", "unit": "exam", "threshold": "fixed"},
            "points": points}


def _cell(metric):
    value = metric["value"]
    text = "n/a" if value is None else f"{value:.3f}"
    if metric["ci_low"] is not None and value is not None:
        text += f" [{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]"
    return text


def markdown(result):
    """The ``## Operating points`` section of summary.md."""
    boot = result["bootstrap"]
    lines = ["", "## Operating points (malignant)", "",
             f"A case is positive when its score is at least the threshold. Breast: each "
             f"breast; exam: the larger of its two breasts' scores, positive when either "
             f"breast is. Targets are met on the {result['chosen_at']}-level scores. "
             f"Intervals: {boot['resamples']} bootstrap resamples of exams, seed "
             f"{boot['seed']}, threshold fixed.", "",
             "| Point | Threshold | Level | TP | FP | TN | FN | Sensitivity | Specificity "
             "| PPV | NPV | Recall rate |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for point in result["points"]:
        for level in LEVELS:
            entry = point[level]
            m = entry["confusion_matrix"]
            recall = _cell(entry["recall_rate"]) if level == "exam" else "-"
            lines.append(f"| {point['requested']} | {point['threshold']:.6g} | {level} | "
                         f"{m['tp']} | {m['fp']} | {m['tn']} | {m['fn']} | "
                         f"{_cell(entry['sensitivity'])} | {_cell(entry['specificity'])} | "
                         f"{_cell(entry['ppv'])} | {_cell(entry['npv'])} | {recall} |")
    lines.append("")
    lines.append("There is no universally correct threshold: choose one on your own data, "
                 "then score it on another set with --threshold.")
    return "\n".join(lines) + "\n"
