"""Calibration of the predicted probabilities on labelled data of one's own.

The classifiers' probabilities are low because their training data were imbalanced. A
calibration maps them to probabilities that match the rate of cancer on a labelled set.

- One map for malignant and one for benign, each fitted on both breasts pooled (left column,
  then right column), as ``evaluate`` scores them.
- ``platt``: a logistic regression on ``logit(p)`` (``p`` clipped to ``[EPS, 1 - EPS]``),
  ``sigmoid(a * logit(p) + b)``; scikit-learn's ``LogisticRegression`` with ``C=PLATT_C``
  (practically unregularised). ``isotonic``: scikit-learn's ``IsotonicRegression`` (clipped
  to [0, 1] and beyond the fitted range), applied as linear interpolation between its
  thresholds, which is what its ``predict`` does.
- Held-out figures: ``StratifiedGroupKFold`` (the two breasts of an exam stay in one fold),
  a map fitted on the other folds scores each fold. The Brier score and the expected
  calibration error (``N_BINS`` equal-width bins: the case-weighted mean of
  ``|observed rate - mean probability|``) are reported before (raw) and after (held-out
  calibrated). The map saved is then fitted on all the cases.
- The saved JSON records the method, the fitted parameters, and what it was fitted on: the
  predictions CSV (path and SHA-256), the labels, and the model when it can be told (the
  CSV's name in a run folder, ``run_settings.json`` beside it for the weights, or
  ``--model``). Applying it to another model's predictions is refused.
"""

import json
import math
from io import BytesIO
from pathlib import Path

import numpy as np

from ..core import formats
from ..core.errors import EvaluationInputError, SettingsError
from ..core.hashing import file_sha256
from ..core.runtime import log
from ..core.views import LABELS
from . import evaluate

METHODS = ("platt", "isotonic")
TARGETS = ("malignant", "benign")
# The model behind a predictions CSV: with or without heatmap inputs (run.sh and bcc run's
# names), and, where known, run_model.py's --model-mode (bcc run and run.sh: view_split).
MODELS = ("image", "imageheatmaps")
MODEL_MODES = ("view_split", "image")
CSV_MODELS = {"image_predictions.csv": "image", "imageheatmaps_predictions.csv": "imageheatmaps"}
FORMAT, VERSION = "bcc-calibration", 1
N_BINS, FOLDS, SEED = 10, 5, 0
EPS, PLATT_C = 1e-6, 1e6
CALIBRATION_JSON, SUMMARY_MD = "calibration.json", "summary.md"


def model_name(use_heatmaps):
    """The :data:`MODELS` name of a stage-4 run."""
    return "imageheatmaps" if use_heatmaps else "image"


# --------------------------------------------------------------------------- maps
def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_map(method, y_true, y_score):
    """The parameters (JSON-ready) of a ``method`` map fitted on scores and 0/1 labels."""
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=PLATT_C).fit(_logit(y_score)[:, None], y_true)
        return {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(np.asarray(y_score, dtype=np.float64), y_true)
        return {"x": [float(v) for v in model.X_thresholds_],
                "y": [float(v) for v in model.y_thresholds_]}
    raise SettingsError(f"unknown calibration method {method!r}; use one of {METHODS}")


def apply_map(method, params, scores):
    """Calibrated probabilities of ``scores`` (NaN stays NaN)."""
    scores = np.asarray(scores, dtype=np.float64)
    if method == "platt":
        return 1 / (1 + np.exp(-(params["a"] * _logit(scores) + params["b"])))
    if method == "isotonic":
        out = np.interp(scores, params["x"], params["y"])
        return np.where(np.isnan(scores), np.nan, out)
    raise SettingsError(f"unknown calibration method {method!r}; use one of {METHODS}")


# --------------------------------------------------------------------------- figures
def brier(y_true, p):
    return float(np.mean((np.asarray(p) - y_true) ** 2))


def reliability_bins(y_true, p, n_bins=N_BINS):
    """(count, mean probability, observed rate) per equal-width bin of [0, 1]."""
    index = np.minimum((np.asarray(p) * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=n_bins) / count
        rate = np.bincount(index, weights=y_true, minlength=n_bins) / count
    return count, mean_p, rate


def ece(y_true, p, n_bins=N_BINS):
    """Expected calibration error over ``n_bins`` equal-width bins."""
    count, mean_p, rate = reliability_bins(y_true, p, n_bins)
    used = count > 0
    return float(np.sum(count[used] * np.abs(rate[used] - mean_p[used])) / count.sum())


def held_out(method, y_true, y_score, groups, folds=FOLDS, seed=SEED):
    """Each case calibrated by a map fitted on the other folds (exams kept whole)."""
    from sklearn.model_selection import StratifiedGroupKFold

    positives = int(y_true.sum())
    if min(positives, y_true.size - positives) < folds:
        raise EvaluationInputError(
            f"{positives} positive and {y_true.size - positives} negative case(s): "
            f"{folds}-fold cross-validation needs at least {folds} of each")
    out = np.empty(y_true.size)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(y_score, y_true, groups):
        if np.unique(y_true[train]).size < 2:
            raise EvaluationInputError("a cross-validation fold's training part holds one "
                                       "class only; use fewer --folds or more data")
        out[test] = apply_map(method, fit_map(method, y_true[train], y_score[train]),
                              y_score[test])
    return out


def reliability_png(y_true, before, after, title, after_name="calibrated (held out)"):
    """A reliability diagram: observed rate against mean probability per bin, before/after
    (``after`` None: the raw probabilities only)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6.5), dpi=100, layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="perfect")
    edges = np.linspace(0, 1, N_BINS + 1)
    for name, p, style in (("raw", before, "o-"), (after_name, after, "s-"))[:2 - (after is None)]:
        count, mean_p, rate = reliability_bins(y_true, p)
        used = count > 0
        ax.plot(mean_p[used], rate[used], style, label=f"{name}, ECE {ece(y_true, p):.3f}, "
                f"Brier {brier(y_true, p):.3f}")
        hist.stairs(count, edges, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="Observed rate", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="Predicted probability", ylabel="Cases", yscale="symlog")
    hist.legend(fontsize=8)
    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------- fitting
def calibrate(predictions, labels, method="platt", folds=FOLDS, seed=SEED):
    """Fit both maps on (N, 4) predictions and labels; rows with an empty prediction are
    left out. Returns ``(targets, held_out_arrays)``: the JSON entries per target and, for
    the figures, ``{target: (y_true, raw, calibrated)}``."""
    if method not in METHODS:
        raise SettingsError(f"unknown calibration method {method!r}; use one of {METHODS}")
    kept = ~np.isnan(predictions).any(axis=1)
    if not kept.any():
        raise EvaluationInputError("every prediction row is empty; nothing to calibrate")
    predictions, labels = predictions[kept], labels[kept]
    groups = np.r_[np.arange(len(predictions)), np.arange(len(predictions))]
    entries, arrays = {}, {}
    for target in TARGETS:
        columns = [LABELS.index(c) for c in evaluate.TARGETS[target]]
        if np.isnan(labels[:, columns]).any():
            entries[target] = None  # the labels lack this target: the columns stay raw
            continue
        y_true, y_score = evaluate.target_arrays(predictions, labels, target)
        after = held_out(method, y_true, y_score, groups, folds, seed)
        entries[target] = {
            "params": fit_map(method, y_true, y_score),
            "n": int(y_true.size), "n_positive": int(y_true.sum()),
            "held_out": {"brier_before": brier(y_true, y_score),
                         "brier_after": brier(y_true, after),
                         "ece_before": ece(y_true, y_score), "ece_after": ece(y_true, after)}}
        arrays[target] = (y_true, y_score, after)
    if all(v is None for v in entries.values()):
        raise EvaluationInputError("the labels hold neither the malignant nor the benign "
                                   "columns; nothing to calibrate")
    return entries, arrays


def model_of(predictions_path, model=None, model_mode=None):
    """What can be told of the model behind a predictions CSV: ``{"model", "model_mode",
    "weights", "weights_sha256", "source"}`` (None where unknown). ``model`` (``--model``)
    must agree with what the file's name says; a ``bcc run`` folder's ``run_settings.json``
    gives the weights (and the view_split mode of every bcc run)."""
    path = Path(predictions_path)
    named = CSV_MODELS.get(path.name)
    if model is not None and model not in MODELS:
        raise SettingsError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    if model and named and model != named:
        raise SettingsError(f"{path}: the file name says the {named} model's predictions, "
                            f"but --model {model} was given")
    if model_mode is not None and model_mode not in MODEL_MODES:
        raise SettingsError(f"--model-mode must be one of {', '.join(MODEL_MODES)}")
    found = {"model": model or named, "model_mode": model_mode,
             "weights": None, "weights_sha256": None,
             "source": "--model" if model else "file name" if named else None}
    settings_path = path.parent / "run_settings.json"
    role = found["model"]
    if named and settings_path.is_file():  # a bcc run folder records its weights
        try:
            settings = json.loads(settings_path.read_text())
            found.update(weights=settings["weights"][role],
                         weights_sha256=settings["weights_sha256"][role],
                         source=str(settings_path))
            if model_mode not in (None, "view_split"):
                raise SettingsError(f"{path}: made by bcc run (view_split), but --model-mode "
                                    f"{model_mode} was given")
            found["model_mode"] = "view_split"
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("calibrate: %s does not say which weights made %s (%s)",
                        settings_path, path.name, err)
    return found


def calibrate_files(predictions_path, labels_path, output_dir, method="platt", folds=FOLDS,
                    seed=SEED, model=None, model_mode=None, overwrite=False):
    """Fit from files; write ``calibration.json``, ``summary.md`` and one
    ``reliability_<target>.png`` per target into ``output_dir``. Returns the JSON dict."""
    labels = evaluate.read_labels(labels_path)
    predictions = evaluate.load_predictions(predictions_path, expected_rows=len(labels),
                                            source=f"labels file {labels_path}")
    fitted_on = {"predictions": str(predictions_path),
                 "predictions_sha256": file_sha256(predictions_path),
                 "labels": str(labels_path), "labels_sha256": file_sha256(labels_path),
                 "exams": int(len(predictions)),
                 "exams_left_out": int(np.isnan(predictions).any(axis=1).sum()),
                 **model_of(predictions_path, model, model_mode)}
    targets, arrays = calibrate(predictions, labels, method, folds, seed)
    result = {"format": FORMAT, "version": VERSION, "method": method,
              "platt_eps": EPS if method == "platt" else None,
              "cross_validation": {"folds": folds, "seed": seed,
                                   "splitter": "StratifiedGroupKFold (exams whole)"},
              "ece_bins": N_BINS, "fitted_on": fitted_on, "targets": targets}
    if fitted_on["model"] is None:
        log.warning("calibrate: cannot tell which model made %s; pass --model so that the "
                    "calibration can be checked (and used by bcc run)", predictions_path)
    pngs = {t: reliability_png(*arrays[t], f"{t.capitalize()}: {method} calibration "
                               f"({fitted_on['model'] or 'model unknown'})") for t in arrays}
    with formats.staged_output_dir(output_dir, overwrite=overwrite) as stage:
        (stage / CALIBRATION_JSON).write_text(json.dumps(result, indent=2) + "\n")
        (stage / SUMMARY_MD).write_text(summary_markdown(result))
        for target, png in pngs.items():
            (stage / f"reliability_{target}.png").write_bytes(png)
    return result


def summary_markdown(result):
    lines = [f"# Calibration ({result['method']}) of {result['fitted_on']['predictions']}", "",
             f"Model: {result['fitted_on']['model'] or 'unknown'}. Held out: "
             f"{result['cross_validation']['folds']}-fold cross-validation, exams whole, seed "
             f"{result['cross_validation']['seed']}. ECE: {result['ece_bins']} equal-width bins.",
             "", "| Target | Breasts (+) | Brier before | Brier after | ECE before | ECE after |",
             "|---|---|---|---|---|---|"]
    for target, entry in result["targets"].items():
        if entry is None:
            lines.append(f"| {target} | labels absent: not calibrated | | | | |")
            continue
        h = entry["held_out"]
        lines.append(f"| {target} | {entry['n']} ({entry['n_positive']}) | "
                     f"{h['brier_before']:.4f} | {h['brier_after']:.4f} | "
                     f"{h['ece_before']:.4f} | {h['ece_after']:.4f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- applying
def load_calibration(path):
    """A calibration JSON written by :func:`calibrate_files`, checked (SettingsError if not)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SettingsError(f"{path}: cannot read the calibration file ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SettingsError(f"{path}: not a calibration file (written by bcc calibrate)")
    if data.get("version") != VERSION or data.get("method") not in METHODS:
        raise SettingsError(f"{path}: unsupported calibration version {data.get('version')!r} "
                            f"or method {data.get('method')!r}")
    try:
        for entry in data["targets"].values():
            if entry is not None:
                apply_map(data["method"], entry["params"], np.array([0.5]))
        data["fitted_on"]["model"]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SettingsError(f"{path}: malformed calibration file ({err!r})") from err
    data["path"] = str(path)
    return data


def transform(calibration, predictions):
    """(N, 4) calibrated probabilities; a target the calibration lacks stays NaN."""
    predictions = np.asarray(predictions, dtype=np.float64)
    out = np.full(predictions.shape, np.nan)
    for target in TARGETS:
        entry = calibration["targets"].get(target)
        if entry is None:
            continue
        for column in evaluate.TARGETS[target]:
            c = LABELS.index(column)
            out[:, c] = apply_map(calibration["method"], entry["params"], predictions[:, c])
    return out


def check_model(calibration, model, model_mode=None, weights_path=None, require_model=False):
    """Refuse (SettingsError) a calibration fitted on another model's predictions: another
    of :data:`MODELS`, another ``model_mode`` (when both are known), other weights (when the
    calibration records their SHA-256)."""
    fitted = calibration["fitted_on"]
    where = calibration.get("path", "the calibration")
    if fitted.get("model") is None:
        if require_model:
            raise SettingsError(f"{where}: does not record which model's predictions it was "
                                "fitted on; refit it with bcc calibrate --model")
        log.warning("%s: does not record its model; it cannot be checked against %s",
                    where, model)
        return
    if fitted["model"] != model:
        raise SettingsError(f"{where}: fitted on the {fitted['model']} model's predictions, "
                            f"not on the {model} model's")
    if None not in (fitted.get("model_mode"), model_mode) and fitted["model_mode"] != model_mode:
        raise SettingsError(f"{where}: fitted on the {fitted['model_mode']} mode's "
                            f"predictions, not on the {model_mode} mode's")
    # a missing weight file is reported by the stage that loads it
    if fitted.get("weights_sha256") and weights_path is not None and Path(weights_path).is_file():
        digest = file_sha256(weights_path)
        if digest != fitted["weights_sha256"]:
            raise SettingsError(
                f"{where}: fitted on the predictions of weights {fitted.get('weights')} "
                f"(sha256 {fitted['weights_sha256'][:12]}...), but {weights_path} is "
                f"{digest[:12]}...: another model")


def calibrations_for_run(paths, weight_paths):
    """``bcc run --calibration`` files by model, each checked against the run's
    ``weight_paths`` (role -> path); a model given twice is refused."""
    by_model = {}
    for path in paths:
        calibration = load_calibration(path)
        model = calibration["fitted_on"]["model"]
        check_model(calibration, model, require_model=True)
        if model not in CSV_MODELS.values():
            raise SettingsError(f"{path}: fitted on the {model} model's predictions; bcc run "
                                f"writes those of {' and '.join(CSV_MODELS.values())}")
        if model not in weight_paths:
            raise SettingsError(f"{path}: fitted on the {model} model's predictions, which "
                                "this run does not make (see --families)")
        check_model(calibration, model, "view_split", weight_paths[model])
        if model in by_model:
            raise SettingsError(f"--calibration: two files for the {model} model")
        by_model[model] = calibration
    return by_model


def add_calibrated_columns(csv_path, calibration):
    """Rewrite a predictions CSV with the ``*_calibrated`` columns after the raw ones.

    The raw cells are kept as they were written; the calibrated ones are computed from
    them (the 4-decimal values) and written with 4 decimals; an empty row stays empty.
    """
    import csv

    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != LABELS:
        raise SettingsError(f"{csv_path}: expected a raw predictions CSV "
                            f"({','.join(LABELS)})")
    raw = formats.read_predictions_csv(csv_path)
    calibrated = transform(calibration, raw)
    out = [row + ["" if math.isnan(v) else "%.4f" % v for v in values]
           for row, values in zip(rows[1:], calibrated)]
    formats.write_csv(csv_path, LABELS + formats.CALIBRATED_LABELS, out)
    log.info("calibration: added calibrated columns to %s (%s, %s)", csv_path,
             calibration["method"], calibration.get("path"))
