"""Breast-level evaluation of predictions against labels, as the NYU metarepository scores.

Targets. ``malignant`` and ``benign`` pool the two breasts of every exam (the left column,
then the right column), as in Wu et al. 2019 and the NYU mammography metarepository; each
of the four ``LABELS`` is also scored on its own (one breast per exam).

Metrics (scikit-learn for the reported values):

- ``roc_auc``: ``sklearn.metrics.roc_auc_score``.
- ``pr_auc``: the metarepository's PR AUC, the trapezoidal area under the precision-recall
  curve, ``auc(recall, precision)`` of ``precision_recall_curve``.
- ``average_precision``: ``sklearn.metrics.average_precision_score``.

Confidence intervals: percentile bootstrap, ``N_BOOTSTRAP`` resamples of EXAMS with
replacement (the two breasts of an exam stay together, since they share a patient), drawn
from ``numpy.random.default_rng(seed)``. A resample in which a target has one class only has
no AUC: it is skipped for that target and counted (``bootstrap_skipped``). Inside the
bootstrap the metrics come from :class:`ResampledMetrics`, which computes the same
definitions as scikit-learn for a block of resamples at once, from each resample's count
of every exam (``tests/test_evaluate.py`` checks they agree).

Exams whose prediction row is empty (a failed exam, SPEC 3 and the failure policy) are
counted, listed and left out, with a warning; never silently.

Operating points (thresholds of the malignant score at breast and exam level) come from
:mod:`operating_points` and are added to the report only when asked for.
"""

import csv
import json
import math
from io import BytesIO
from pathlib import Path

import numpy as np

from ..core import formats
from ..core.errors import EvaluationInputError, PipelineError
from ..core.exam_list import PICKLE_SUFFIXES, load_exam_list
from ..core.runtime import log
from ..core.views import LABELS
from . import operating_points

N_BOOTSTRAP = 2000
CONFIDENCE = 0.95
SEED = 0
_BLOCK_CELLS = 4_000_000  # resamples scored at once: a (resamples x exams) count matrix
METRICS = ("roc_auc", "pr_auc", "average_precision")
METRIC_NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "average_precision": "Average precision"}
# Target name -> label columns pooled into it (left before right, as the metarepository).
TARGETS = {
    "malignant": ("left_malignant", "right_malignant"),
    "benign": ("left_benign", "right_benign"),
    **{label: (label,) for label in LABELS},
}
CURVES_OF = ("malignant", "benign")  # targets drawn in the curve figures, with their sides
SUMMARY_JSON, SUMMARY_MD = "summary.json", "summary.md"
ROC_PNG, PR_PNG = "roc_curves.png", "pr_curves.png"


# --------------------------------------------------------------------------- reading
def load_predictions(path, expected_rows=None, source="the labels", calibrated=False):
    """Predictions CSV (SPEC 3) as an (N, 4) float64 array in ``LABELS`` order, NaN rows empty.

    ``expected_rows``: the number of exams the rows must line up with; ``source`` names
    where that number comes from, for the message. ``calibrated``: read the calibrated
    columns (``--calibration``) instead of the raw ones.
    """
    try:
        predictions = formats.read_predictions_csv(path, calibrated=calibrated)
    except (PipelineError, ValueError) as err:
        raise EvaluationInputError(f"{path}: cannot read predictions: {err}") from err
    if expected_rows is not None and len(predictions) != expected_rows:
        raise EvaluationInputError(
            f"{path}: {len(predictions)} prediction row(s), but {source} has {expected_rows} "
            "exam(s); rows must be in exam-list order, one per exam (a failed exam keeps an "
            "empty row)")
    return predictions


def read_labels(path):
    """Labels as an (N, 4) float64 array in ``LABELS`` order: 0, 1, or NaN for a column absent.

    ``path`` is a CSV with some or all of the four label columns (other columns are ignored)
    or an exam list (pickle or ``.json``) whose exams carry ``cancer_label``, a dict
    ``{"left_malignant": 0/1, "right_malignant": 0/1, ...}`` (the metarepository convention;
    the benign keys are optional, but must be given for all exams or none).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _labels_from_csv(path)
    if suffix in PICKLE_SUFFIXES or suffix == ".json":
        return _labels_from_exam_list(path)
    raise EvaluationInputError(f"{path}: unknown labels format; use a .csv with the columns "
                      f"{','.join(LABELS)} or an exam list (.pkl or .json) with 'cancer_label'")


def _label_value(value, where):
    """0 or 1 from a CSV cell or pickle value; anything else is an error naming ``where``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if number not in (0.0, 1.0):
        raise EvaluationInputError(f"{where}: labels must be 0 or 1, found {value!r}")
    return number


def _labels_from_csv(path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # spreadsheet BOMs
            reader = csv.DictReader(f)
            columns = [c for c in LABELS if c in (reader.fieldnames or ())]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise EvaluationInputError(f"{path}: cannot read labels CSV ({err})") from err
    if not columns:
        raise EvaluationInputError(f"{path}: no label column found; expected a header with "
                          f"{','.join(LABELS)} (found {','.join(reader.fieldnames or [])})")
    labels = np.full((len(rows), len(LABELS)), np.nan)
    for r, row in enumerate(rows):
        for column in columns:
            labels[r, LABELS.index(column)] = _label_value(
                row[column], f"{path}: data row {r + 1}, column {column}")
    return labels


def _labels_from_exam_list(path):
    exams = load_exam_list(path)
    labels = np.full((len(exams), len(LABELS)), np.nan)
    for index, exam in enumerate(exams):
        cancer_label = exam.get("cancer_label")
        if not isinstance(cancer_label, dict):
            raise EvaluationInputError(f"{path}: exam {index} has no 'cancer_label' dict "
                              f"(found {cancer_label!r}); add labels or use a labels CSV")
        for column, label in enumerate(LABELS):
            if label in cancer_label:
                labels[index, column] = _label_value(
                    cancer_label[label], f"{path}: exam {index}, cancer_label[{label!r}]")
    given = ~np.isnan(labels)
    partial = given.any(axis=0) & ~given.all(axis=0)
    if partial.any():
        label = LABELS[int(np.flatnonzero(partial)[0])]
        missing = np.flatnonzero(~given[:, LABELS.index(label)])
        raise EvaluationInputError(f"{path}: cancer_label[{label!r}] is missing in exam(s) "
                          f"{', '.join(map(str, missing[:10]))}; give it for all exams or none")
    if not given.any():
        raise EvaluationInputError(
            f"{path}: no exam's cancer_label holds any of {', '.join(LABELS)}")
    return labels


# --------------------------------------------------------------------------- metrics
def target_arrays(predictions, labels, target):
    """(y_true int, y_score float) of a target: its label columns stacked, left then right."""
    columns = [LABELS.index(c) for c in TARGETS[target]]
    y_true = np.concatenate([labels[:, c] for c in columns]).astype(np.int64)
    y_score = np.concatenate([predictions[:, c] for c in columns])
    return y_true, y_score


def sklearn_metrics(y_true, y_score):
    """The three metrics via scikit-learn; ``None`` when ``y_true`` has one class only."""
    from sklearn import metrics

    if np.unique(y_true).size < 2:
        return None
    precision, recall, _ = metrics.precision_recall_curve(y_true, y_score)
    return {"roc_auc": float(metrics.roc_auc_score(y_true, y_score)),
            "pr_auc": float(metrics.auc(recall, precision)),
            "average_precision": float(metrics.average_precision_score(y_true, y_score))}


def fast_metrics(y_true, y_score):
    """The three metrics of :func:`sklearn_metrics`, same definitions, a few times faster.

    :class:`ResampledMetrics` with every case counted once. Returns ``None`` when
    ``y_true`` has one class only.
    """
    size = np.asarray(y_true).size
    found = ResampledMetrics(y_true, y_score, np.arange(size), size)(np.ones((1, size)))
    if np.isnan(found["roc_auc"][0]):
        return None
    return {metric: float(found[metric][0]) for metric in METRICS}


class ResampledMetrics:
    """The three metrics of :func:`sklearn_metrics` for many resamples of units at once.

    ``y_true``, ``y_score``: (M,) cases; ``unit``: (M,) the resampled unit (exam, 0..U-1)
    of each case. Called with ``weights`` (K, U), how many times resample k drew each unit
    (resample k is the cases repeated by their unit's count), it returns ``{metric: (K,)}``,
    NaN where a resample holds one class only.

    With the distinct scores in descending order, and TP, FP the positives and negatives
    counted at or above a score: ROC AUC is the trapezoidal area from (0, 0), i.e. the
    share of positive-negative pairs ranked right, ties counted half, ``sum tp * (N - FP +
    fp / 2) / (P * N)``; PR AUC is ``auc(recall, precision)``, trapezoids from (recall 0,
    precision 1); average precision the step sum ``sum(dR * P)``. Only scores a positive
    case holds add to these sums, so the counts are taken there: one sparse product of
    ``weights`` with each unit's cases per such score.
    """

    def __init__(self, y_true, y_score, unit, n_units):
        from scipy import sparse

        order = np.argsort(-np.asarray(y_score, dtype=np.float64), kind="mergesort")
        scores = np.asarray(y_score, dtype=np.float64)[order]
        positive, unit = np.asarray(y_true)[order] == 1, np.asarray(unit)[order]
        group = np.r_[0, np.cumsum(np.diff(scores) != 0)]  # distinct score of each case
        held = np.unique(group[positive])  # scores a positive case holds, descending
        # Each case's block: the first held score at or below its own (n_held: below all).
        block = np.searchsorted(held, group)
        tied = block < held.size
        tied[tied] = held[block[tied]] == group[tied]
        negative = ~positive & (block < held.size)
        columns = np.r_[block[negative], held.size + block[~positive & tied],
                        2 * held.size + block[positive]]
        rows = np.r_[unit[negative], unit[~positive & tied], unit[positive]]
        self.n_held = held.size
        # (3 * n_held, U): negatives in each block, negatives tied with each held score,
        # positives at each held score; per unit.
        self.counts = sparse.csr_matrix((np.ones(rows.size, np.float32), (columns, rows)),
                                        shape=(3 * held.size, n_units))
        self.negatives = np.bincount(unit[~positive], minlength=n_units).astype(np.float64)

    def __call__(self, weights, metrics=METRICS):
        k = len(weights)
        # (3, n_held, K): each row of counts times each resample
        found = np.asarray(self.counts @ weights.T).reshape(3, self.n_held, k)
        fp, tp = found[1], found[2]
        fps = np.cumsum(found[0], axis=0)
        p_total = tp.sum(axis=0, dtype=np.float64)
        n_total = (weights @ self.negatives.astype(weights.dtype)).astype(np.float64)
        values = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            if "roc_auc" in metrics:  # whole numbers, summed in float64: exact
                right = (n_total * p_total - np.einsum("gk,gk->k", tp, fps, dtype=np.float64)
                         + np.einsum("gk,gk->k", tp, fp, dtype=np.float64) / 2)
                values["roc_auc"] = right / (p_total * n_total)
            if {"pr_auc", "average_precision"} & set(metrics):
                tp, fp, fps = (a.astype(np.float64) for a in (tp, fp, fps))
                tps = np.cumsum(tp, axis=0)
                before_t, before_f = tps - tp, fps - fp
                precision = np.where(tps + fps > 0, tps / (tps + fps), 1.0)
                previous = np.where(before_t + before_f > 0,
                                    before_t / (before_t + before_f), 1.0)
                d_recall = tp / p_total
                values["pr_auc"] = np.sum(d_recall * (previous + precision) / 2, axis=0)
                values["average_precision"] = np.sum(d_recall * precision, axis=0)
        defined = (p_total > 0) & (n_total > 0)
        return {metric: np.where(defined, values[metric], np.nan) for metric in metrics}


def bootstrap_intervals(predictions, labels, targets, n_bootstrap=N_BOOTSTRAP, seed=SEED,
                        confidence=CONFIDENCE, metrics=METRICS):
    """Percentile bootstrap intervals over exams for every target and metric.

    ``predictions``, ``labels``: (N, 4), complete rows only. All resamples come from one
    ``numpy.random.default_rng(seed)``, each ``integers(0, N, N)``, drawn in order; every
    target uses the same resampled exams. ``metrics``: those of :data:`METRICS` to
    compute. Returns ``{target: {"skipped": k, metric: (low, high) or None}}``.
    """
    return bootstrap_intervals_of_models({None: predictions}, labels, targets, n_bootstrap,
                                         seed, confidence, metrics)[None]


def bootstrap_intervals_of_models(predictions, labels, targets, n_bootstrap=N_BOOTSTRAP,
                                  seed=SEED, confidence=CONFIDENCE, metrics=METRICS):
    """:func:`bootstrap_intervals` of several models' predictions of the same exams, on
    the same resamples: ``{model: (N, 4)}`` -> ``{model: {target: ...}}``.

    Resamples are drawn and scored in blocks (:class:`ResampledMetrics`); a block of K
    resamples is one ``integers(0, N, (K, N))``, the same numbers as K calls in a row.
    """
    rng = np.random.default_rng(seed)
    n_exams = len(labels)
    scorers = {(m, t): ResampledMetrics(*target_arrays(p, labels, t),
                                        np.tile(np.arange(n_exams), len(TARGETS[t])), n_exams)
               for m, p in predictions.items() for t in targets}
    values = {key: {metric: [] for metric in metrics} for key in scorers}
    block = max(1, _BLOCK_CELLS // max(1, n_exams))
    # Counts of cases stay whole numbers below 2^24, exact in float32 (twice as fast)
    counts_dtype = np.float32 if 2 * n_exams < 2 ** 24 else np.float64
    for start in range(0, n_bootstrap, block):
        size = min(block, n_bootstrap - start)
        # int32 draws: the same numbers as int64 ones (N < 2^31), half the memory
        draws = rng.integers(0, n_exams, (size, n_exams), dtype=np.int32)
        draws *= size
        draws += np.arange(size, dtype=np.int32)[:, None]
        # (K, N) counts, stored exam-major (the sparse products read them in that order)
        weights = np.bincount(draws.ravel(), minlength=n_exams * size).reshape(n_exams, size)
        weights = weights.astype(counts_dtype).T
        for key, scorer in scorers.items():
            for metric, found in scorer(weights, metrics).items():
                values[key][metric].append(found)
    tail = 100 * (1 - confidence) / 2
    intervals = {m: {} for m in predictions}
    for (model, target), found in values.items():
        draws = {m: np.concatenate(found[m] or [np.empty(0)]) for m in metrics}
        entry = intervals[model][target] = {"skipped": int(np.isnan(draws[metrics[0]]).sum())}
        for metric in metrics:
            kept = draws[metric][~np.isnan(draws[metric])]
            entry[metric] = (tuple(float(v) for v in np.percentile(kept, [tail, 100 - tail]))
                             if kept.size else None)
    return intervals


def evaluate(predictions, labels, n_bootstrap=N_BOOTSTRAP, seed=SEED, confidence=CONFIDENCE):
    """Score (N, 4) predictions against (N, 4) labels (rows aligned, exam-list order).

    Rows with any empty (NaN) prediction are left out and listed. Targets whose label
    columns are absent (NaN columns) are reported as not evaluated. Returns a JSON-ready
    dict (see ``summary.json`` in ``docs/visualize_evaluate.md``).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if predictions.shape != labels.shape:
        raise EvaluationInputError(f"predictions are {predictions.shape}, labels {labels.shape}; "
                          "expected one row per exam in both")
    excluded = np.flatnonzero(np.isnan(predictions).any(axis=1))
    kept = np.setdiff1d(np.arange(len(predictions)), excluded)
    if kept.size == 0:
        raise PipelineError(f"all {len(predictions)} prediction rows are empty; "
                            "nothing to evaluate")
    predictions, labels = predictions[kept], labels[kept]
    available = ~np.isnan(labels).any(axis=0)
    targets = [t for t, cols in TARGETS.items() if all(available[LABELS.index(c)] for c in cols)]
    intervals = bootstrap_intervals(predictions, labels, targets, n_bootstrap, seed, confidence)
    result = {
        "n_exams": int(len(kept) + len(excluded)),
        "n_exams_evaluated": int(len(kept)),
        "excluded_rows": [int(i) for i in excluded],
        "bootstrap": {"resamples": n_bootstrap, "seed": seed, "confidence": confidence,
                      "method": "percentile", "unit": "exam"},
        "targets": {},
    }
    for target in TARGETS:
        result["targets"][target] = _target_entry(
            target, predictions, labels, available, intervals.get(target))
    return result


def _target_entry(target, predictions, labels, available, intervals):
    """The ``summary.json`` entry of one target (``intervals`` None: not evaluated)."""
    columns = TARGETS[target]
    entry = {"columns": list(columns)}
    if intervals is None:
        entry["note"] = "not evaluated: the labels lack " + ", ".join(
            c for c in columns if not available[LABELS.index(c)])
        return entry
    y_true, y_score = target_arrays(predictions, labels, target)
    entry.update(n=int(y_true.size), n_positive=int(y_true.sum()),
                 n_negative=int(y_true.size - y_true.sum()),
                 bootstrap_skipped=intervals["skipped"])
    values = sklearn_metrics(y_true, y_score)
    if values is None:
        entry["note"] = "not defined: the labels hold one class only"
    for metric in METRICS:
        ci = intervals[metric] if values is not None else None
        entry[metric] = {"value": None if values is None else values[metric],
                         "ci_low": None if ci is None else ci[0],
                         "ci_high": None if ci is None else ci[1]}
    return entry


# --------------------------------------------------------------------------- reports
def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def summary_markdown(result, title="Evaluation"):
    """A Markdown report of an :func:`evaluate` result."""
    boot = result["bootstrap"]
    level = int(round(100 * boot["confidence"]))
    lines = [f"# {title}", "",
             f"Exams: {result['n_exams']}; evaluated: {result['n_exams_evaluated']}; "
             f"left out (empty prediction rows): {len(result['excluded_rows'])}"
             + (f" (rows {', '.join(map(str, result['excluded_rows'][:20]))}"
                + (", ..." if len(result["excluded_rows"]) > 20 else "") + ")"
                if result["excluded_rows"] else ""),
             "",
             f"{level}% confidence intervals: percentile bootstrap, {boot['resamples']} "
             f"resamples of exams, seed {boot['seed']}; resamples with one class only are "
             "skipped (count in the last column). Malignant and benign pool both breasts.",
             "",
             "| Target | Breasts (+/-) | ROC AUC | PR AUC | Average precision | Skipped |",
             "|---|---|---|---|---|---|"]
    for target, entry in result["targets"].items():
        if "n" not in entry:
            lines.append(f"| {target} | - | {entry['note']} | | | |")
            continue
        cells = []
        for metric in METRICS:
            m = entry[metric]
            cells.append(_fmt(m["value"]) if m["ci_low"] is None else
                         f"{_fmt(m['value'])} [{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]")
        lines.append(f"| {target} | {entry['n']} ({entry['n_positive']}/"
                     f"{entry['n_negative']}) | {' | '.join(cells)} | "
                     f"{entry['bootstrap_skipped']} |")
    text = "\n".join(lines) + "\n"
    if "operating_points" in result:
        text += operating_points.markdown(result["operating_points"])
    return text


def curve_figures(predictions, labels, result, title=""):
    """ROC and PR figures: malignant and benign panels, pooled curve plus each side.

    ``predictions``/``labels``: the complete rows that were evaluated. Returns
    ``(roc_png_bytes, pr_png_bytes)``.
    """
    from matplotlib.figure import Figure

    figures = {}
    for kind in ("roc", "pr"):
        fig = Figure(figsize=(10, 5), dpi=100, layout="constrained")
        for ax, target in zip(fig.subplots(1, 2), CURVES_OF):
            _draw_curves(ax, kind, target, predictions, labels, result)
        fig.suptitle(f"{title}{' - ' if title else ''}"
                     f"{'ROC' if kind == 'roc' else 'Precision-recall'} curves "
                     f"({result['n_exams_evaluated']} exams)")
        buffer = BytesIO()
        fig.savefig(buffer, format="png")
        figures[kind] = buffer.getvalue()
    return figures["roc"], figures["pr"]


def _draw_curves(ax, kind, target, predictions, labels, result):
    """One panel: the pooled curve of ``target`` (thick) and each side's (thin)."""
    from sklearn import metrics

    metric = "roc_auc" if kind == "roc" else "pr_auc"
    ax.set_title(target.capitalize())
    ax.set(xlim=(0, 1), ylim=(0, 1.02), aspect="equal")
    ax.grid(alpha=0.3)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
        ax.set(xlabel="False positive rate (1 - specificity)",
               ylabel="True positive rate (sensitivity)")
    else:
        ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)")
    entry = result["targets"][target]
    if entry.get(metric, {}).get("value") is None:
        ax.text(0.5, 0.5, entry.get("note", "not evaluated"), ha="center", va="center",
                wrap=True)
        return
    if kind == "pr":  # a classifier without skill: precision = prevalence
        ax.axhline(entry["n_positive"] / entry["n"], color="0.7", linestyle=":", linewidth=1)
    for name, width, style in ((target, 2.2, "-"), (f"left_{target}", 1.0, "--"),
                               (f"right_{target}", 1.0, "-.")):
        m = result["targets"][name][metric]
        if m["value"] is None:
            continue
        y_true, y_score = target_arrays(predictions, labels, name)
        label = ("both breasts" if name == target else name.split("_")[0]) \
            + f", {METRIC_NAMES[metric]} {_fmt(m['value'])}"
        if m["ci_low"] is not None:
            label += f" [{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]"
        if kind == "roc":
            x, y, _ = metrics.roc_curve(y_true, y_score)
        else:
            y, x, _ = metrics.precision_recall_curve(y_true, y_score)
        ax.plot(x, y, linewidth=width, linestyle=style, label=label)
    ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)


# --------------------------------------------------------------------------- files
def evaluate_files(predictions_path, labels_path, output_dir, n_bootstrap=N_BOOTSTRAP,
                   seed=SEED, confidence=CONFIDENCE, overwrite=False, operating=None,
                   calibrated=False):
    """Evaluate a predictions CSV against a labels file; write the report into ``output_dir``.

    Writes ``summary.json``, ``summary.md``, ``roc_curves.png`` and ``pr_curves.png``
    (the folder is built aside and swapped in whole). ``operating``: keyword arguments of
    :func:`operating_points.operating_points` (targets, thresholds, ``choose_at``); when
    given, ``summary.json`` gains ``operating_points`` and ``summary.md`` its table.
    ``calibrated``: score the calibrated columns. Returns the result dict.
    """
    labels = read_labels(labels_path)
    predictions = load_predictions(predictions_path, expected_rows=len(labels),
                                   source=f"labels file {labels_path}", calibrated=calibrated)
    result = evaluate(predictions, labels, n_bootstrap, seed, confidence)
    if operating:
        kept = np.setdiff1d(np.arange(len(predictions)), result["excluded_rows"])
        result["operating_points"] = operating_points.operating_points(
            predictions[kept], labels[kept], n_bootstrap=n_bootstrap, seed=seed,
            confidence=confidence, **operating)
    if result["excluded_rows"]:
        log.warning("evaluate: %d of %d exam(s) have empty prediction rows (failed exams) "
                    "and are left out: rows %s", len(result["excluded_rows"]),
                    result["n_exams"], ", ".join(map(str, result["excluded_rows"][:20])))
    result = {"predictions_path": str(predictions_path), "labels_path": str(labels_path),
              **({"columns": "calibrated"} if calibrated else {}), **result}
    kept = np.setdiff1d(np.arange(len(predictions)), result["excluded_rows"])
    title = Path(predictions_path).stem
    roc_png, pr_png = curve_figures(predictions[kept], labels[kept], result, title)
    with formats.staged_output_dir(output_dir, overwrite=overwrite) as stage:
        (stage / SUMMARY_JSON).write_text(json.dumps(result, indent=2) + "\n")
        (stage / SUMMARY_MD).write_text(summary_markdown(result, f"Evaluation of {title}"))
        (stage / ROC_PNG).write_bytes(roc_png)
        (stage / PR_PNG).write_bytes(pr_png)
    return result
