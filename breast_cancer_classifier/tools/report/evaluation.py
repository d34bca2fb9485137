"""The results against labels, per model, from the tools that compute them.

- :func:`evaluate.evaluate` (AUCs with bootstrap CIs) and :func:`evaluate.curve_figures`
  (ROC and PR curves) on the labelled exams;
- :func:`calibration.reliability_png` for malignant and benign (the raw probabilities, and
  the ``*_calibrated`` columns when the run was made with ``--calibration``);
- :func:`operating_points.operating_points` at ``OPERATING`` (thresholds met on the
  breast-level malignant scores, scored at breast and exam level).
"""

from dataclasses import dataclass, field

import numpy as np

from ...core.errors import EvaluationInputError, PipelineError
from .. import calibration, evaluate, operating_points

OPERATING = {"target_sensitivity": (0.9, 0.8), "target_specificity": (0.9, 0.8),
             "choose_at": "breast"}
RELIABILITY_OF = ("malignant", "benign")


@dataclass
class ModelResults:
    model: str
    result: dict = None  # evaluate's dict (None: nothing to evaluate, see note)
    figures: dict = field(default_factory=dict)  # file name -> PNG bytes
    operating: dict = None
    notes: list = field(default_factory=list)
    exam_index: np.ndarray = None  # the exams evaluate's rows are, in order


def evaluate_models(run, labels, n_bootstrap=evaluate.N_BOOTSTRAP, seed=evaluate.SEED,
                    confidence=evaluate.CONFIDENCE, map_tasks=map):
    """``{model: ModelResults}`` for the exams that have labels; ``map_tasks``: a ``map``
    that runs one model per call (a process pool's, say)."""
    labelled = np.flatnonzero(~np.isnan(labels).all(axis=1))
    tasks = [(model, run.predictions[model][labelled], labels[labelled],
              run.calibrated.get(model), labelled, n_bootstrap, seed, confidence)
             for model in run.predictions]
    return dict(zip(run.predictions, map_tasks(model_results, tasks)))


def model_results(task):
    """:class:`ModelResults` of one model; ``task``: the arguments of :func:`_model_results`."""
    return _model_results(*task)


def _model_results(model, predictions, labels, calibrated, labelled, n_bootstrap, seed,
                   confidence):
    out = ModelResults(model, exam_index=labelled)
    try:
        out.result = evaluate.evaluate(predictions, labels, n_bootstrap, seed, confidence)
    except PipelineError as err:
        out.notes.append(str(err))
        return out
    kept = np.setdiff1d(np.arange(len(predictions)), out.result["excluded_rows"])
    if out.result["excluded_rows"]:
        out.notes.append(f"{len(out.result['excluded_rows'])} labelled exam(s) have no "
                         f"prediction (failed) and are left out: exams "
                         f"{', '.join(str(labelled[i]) for i in out.result['excluded_rows'][:20])}")
    p, y = predictions[kept], labels[kept]
    roc, pr = evaluate.curve_figures(p, y, out.result, title=f"{model} model")
    out.figures = {f"roc_{model}.png": roc, f"pr_{model}.png": pr}
    for target in RELIABILITY_OF:
        if out.result["targets"][target].get("roc_auc", {}).get("value") is None:
            continue
        y_true, raw = evaluate.target_arrays(p, y, target)
        after = (None if calibrated is None else
                 evaluate.target_arrays(calibrated[labelled][kept], y, target)[1])
        out.figures[f"reliability_{model}_{target}.png"] = calibration.reliability_png(
            y_true, raw, after, f"{target.capitalize()}, {model} model: reliability",
            after_name="calibrated (--calibration)")
    try:
        out.operating = operating_points.operating_points(
            p, y, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, **OPERATING)
    except EvaluationInputError as err:
        out.notes.append(f"operating points: {err}")
    return out
