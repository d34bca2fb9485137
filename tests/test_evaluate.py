"""Evaluation against labels: metrics, bootstrap, label formats, row alignment, outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics

from breast_cancer_classifier.tools import evaluate, operating_points
from breast_cancer_classifier.core import exam_list
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.tools.evaluate import EvaluationInputError
from breast_cancer_classifier.core.views import LABELS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "src" / "utilities" / "evaluate.py"

# SPEC 11: image-only predictions of the four sample exams and their labels.
SAMPLE_PREDICTIONS = np.array([[0.0580, 0.0754, 0.0091, 0.0179],
                               [0.0646, 0.9536, 0.0012, 0.7258],
                               [0.4388, 0.3526, 0.2325, 0.1061],
                               [0.3765, 0.6483, 0.0909, 0.2579]])
SAMPLE_LABELS = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]], float)


def write_labels_csv(path, labels, columns=LABELS):
    rows = [[str(int(labels[r, LABELS.index(c)])) for c in columns] for r in range(len(labels))]
    formats.write_csv(path, ("exam_id",) + tuple(columns),
                 [[f"exam{r}"] + row for r, row in enumerate(rows)])


def write_labelled_exam_list(path, labels, keys=LABELS):
    exams = []
    for r, row in enumerate(labels):
        exam = {"horizontal_flip": "NO",
                "cancer_label": {k: int(row[LABELS.index(k)]) for k in keys}}
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            exam[view] = [f"{r}_{view}"]
        exams.append(exam)
    exam_list.save_exam_list(exams, path)


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


# --------------------------------------------------------------------------- metrics
def test_hand_computed_case():
    # Pooled malignant scores [left0, left1, right0, right1] = [.1, .4, .35, .8],
    # labels [0, 0, 1, 1]. ROC: of the 4 (positive, negative) pairs only (.35, .4) is
    # misordered -> 3/4. PR points from (R 0, P 1): (.5, 1), (.5, .5), (1, 2/3), (1, .5):
    # trapezoids .5 * (1 + 1) / 2 + .5 * (.5 + 2/3) / 2 = 19/24; AP = .5 * 1 + .5 * 2/3 = 5/6.
    predictions = np.array([[0.5, 0.5, 0.1, 0.35], [0.5, 0.5, 0.4, 0.8]])
    labels = np.array([[0, 1, 0, 1], [1, 0, 0, 1]], float)
    result = evaluate.evaluate(predictions, labels, n_bootstrap=0)
    malignant = result["targets"]["malignant"]
    assert (malignant["n"], malignant["n_positive"], malignant["n_negative"]) == (4, 2, 2)
    assert malignant["roc_auc"]["value"] == pytest.approx(3 / 4)
    assert malignant["pr_auc"]["value"] == pytest.approx(19 / 24)
    assert malignant["average_precision"]["value"] == pytest.approx(5 / 6)
    assert malignant["roc_auc"]["ci_low"] is None  # no resamples, no interval


def test_sample_exams_match_the_metarepository_figures():
    # The NYU metarepository reports breast-level ROC AUC 0.867 and PR AUC 0.85 for the
    # breast-level NYU model on these four exams.
    result = evaluate.evaluate(SAMPLE_PREDICTIONS, SAMPLE_LABELS, n_bootstrap=0)
    malignant = result["targets"]["malignant"]
    assert malignant["roc_auc"]["value"] == pytest.approx(13 / 15)
    assert malignant["pr_auc"]["value"] == pytest.approx(0.85)


def test_values_are_scikit_learn_on_pooled_breasts():
    rng = np.random.default_rng(3)
    predictions = rng.random((40, 4))
    labels = (rng.random((40, 4)) < 0.3).astype(float)
    result = evaluate.evaluate(predictions, labels, n_bootstrap=0)
    for target, (left, right) in (("malignant", (2, 3)), ("benign", (0, 1))):
        y = np.r_[labels[:, left], labels[:, right]]
        s = np.r_[predictions[:, left], predictions[:, right]]
        precision, recall, _ = metrics.precision_recall_curve(y, s)
        entry = result["targets"][target]
        assert entry["roc_auc"]["value"] == metrics.roc_auc_score(y, s)
        assert entry["pr_auc"]["value"] == metrics.auc(recall, precision)
        assert entry["average_precision"]["value"] == metrics.average_precision_score(y, s)
    assert result["targets"]["left_benign"]["roc_auc"]["value"] == \
        metrics.roc_auc_score(labels[:, 0], predictions[:, 0])


@pytest.mark.parametrize("seed", range(20))
def test_fast_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.int64)
    y[:2] = [0, 1]
    scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties at 1-3 decimals
    fast = evaluate.fast_metrics(y, scores)
    slow = evaluate.sklearn_metrics(y, scores)
    for metric in evaluate.METRICS:
        np.testing.assert_allclose(fast[metric], slow[metric], rtol=0, atol=1e-12)


def test_one_class_has_no_metric():
    assert evaluate.fast_metrics(np.zeros(5, int), np.arange(5.0)) is None
    assert evaluate.sklearn_metrics(np.ones(5, int), np.arange(5.0)) is None
    labels = SAMPLE_LABELS.copy()
    labels[:, 0] = 0  # left_benign: negatives only
    entry = evaluate.evaluate(SAMPLE_PREDICTIONS, labels, n_bootstrap=50)["targets"]["left_benign"]
    assert entry["roc_auc"]["value"] is None and "one class" in entry["note"]


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_reproducible_with_its_seed():
    rng = np.random.default_rng(1)
    predictions, labels = rng.random((30, 4)), (rng.random((30, 4)) < 0.4).astype(float)
    first = evaluate.evaluate(predictions, labels, n_bootstrap=300, seed=7)
    again = evaluate.evaluate(predictions, labels, n_bootstrap=300, seed=7)
    other = evaluate.evaluate(predictions, labels, n_bootstrap=300, seed=8)
    assert first == again
    assert first["targets"]["malignant"]["roc_auc"] != other["targets"]["malignant"]["roc_auc"]
    ci = first["targets"]["malignant"]["roc_auc"]
    assert ci["ci_low"] <= ci["value"] <= ci["ci_high"]


def test_bootstrap_resamples_exams_and_counts_single_class_resamples():
    # Recompute the intervals by hand from the documented draws: default_rng(seed),
    # integers(0, N, N) per resample, exams kept whole, one-class resamples skipped.
    n_bootstrap, seed = 400, 5
    result = evaluate.evaluate(SAMPLE_PREDICTIONS, SAMPLE_LABELS, n_bootstrap, seed)
    rng = np.random.default_rng(seed)
    aucs, skipped = [], 0
    for _ in range(n_bootstrap):
        rows = rng.integers(0, 4, 4)
        y = np.r_[SAMPLE_LABELS[rows, 2], SAMPLE_LABELS[rows, 3]]
        s = np.r_[SAMPLE_PREDICTIONS[rows, 2], SAMPLE_PREDICTIONS[rows, 3]]
        if len(set(y)) < 2:
            skipped += 1
            continue
        aucs.append(metrics.roc_auc_score(y, s))
    malignant = result["targets"]["malignant"]
    assert malignant["bootstrap_skipped"] == skipped > 0
    low, high = np.percentile(aucs, [2.5, 97.5])
    assert malignant["roc_auc"]["ci_low"] == pytest.approx(low, abs=1e-12)
    assert malignant["roc_auc"]["ci_high"] == pytest.approx(high, abs=1e-12)


# --------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("n_exams", [3, 40])
def test_block_bootstrap_equals_scikit_learn_on_each_resample(n_exams):
    # The blocked bootstrap scores each resample from its exam counts; recompute every
    # resample with scikit-learn on the drawn rows (ties at one decimal) and compare.
    rng = np.random.default_rng(n_exams)
    predictions = np.round(rng.random((n_exams, 4)), 1)
    labels = (rng.random((n_exams, 4)) < 0.3).astype(float)
    targets = ["malignant", "left_benign"]
    found = evaluate.bootstrap_intervals(predictions, labels, targets, n_bootstrap=100, seed=3)
    draws = np.random.default_rng(3)
    values = {t: {m: [] for m in evaluate.METRICS} for t in targets}
    for _ in range(100):
        rows = draws.integers(0, n_exams, n_exams)
        for target in targets:
            result = evaluate.sklearn_metrics(
                *evaluate.target_arrays(predictions[rows], labels[rows], target))
            for metric in evaluate.METRICS:
                values[target][metric].append(np.nan if result is None else result[metric])
    for target in targets:
        aucs = np.array(values[target]["roc_auc"])
        assert found[target]["skipped"] == np.isnan(aucs).sum()
        for metric in evaluate.METRICS:
            kept = np.array(values[target][metric])
            kept = kept[~np.isnan(kept)]
            if not kept.size:
                assert found[target][metric] is None
                continue
            np.testing.assert_allclose(found[target][metric], np.percentile(kept, [2.5, 97.5]),
                                       rtol=0, atol=1e-12)


def test_models_share_resamples_and_metrics_can_be_chosen():
    rng = np.random.default_rng(4)
    labels = (rng.random((25, 4)) < 0.4).astype(float)
    models = {"a": rng.random((25, 4)), "b": np.round(rng.random((25, 4)), 1)}
    both = evaluate.bootstrap_intervals_of_models(models, labels, ["malignant", "benign"],
                                                  n_bootstrap=150, seed=2)
    for name, predictions in models.items():
        alone = evaluate.bootstrap_intervals(predictions, labels, ["malignant", "benign"],
                                             n_bootstrap=150, seed=2)
        assert both[name] == alone
        auc_only = evaluate.bootstrap_intervals(predictions, labels, ["malignant"],
                                                n_bootstrap=150, seed=2, metrics=("roc_auc",))
        assert auc_only["malignant"] == {"skipped": alone["malignant"]["skipped"],
                                         "roc_auc": alone["malignant"]["roc_auc"]}


def test_both_label_formats_give_the_same_result(tmp_path):
    predictions_path = tmp_path / "predictions.csv"
    formats.write_predictions_csv(predictions_path, SAMPLE_PREDICTIONS)
    write_labels_csv(tmp_path / "labels.csv", SAMPLE_LABELS)
    write_labelled_exam_list(tmp_path / "data.pkl", SAMPLE_LABELS)
    write_labelled_exam_list(tmp_path / "data.json", SAMPLE_LABELS)
    np.testing.assert_array_equal(evaluate.read_labels(tmp_path / "labels.csv"), SAMPLE_LABELS)
    results = [evaluate.evaluate_files(predictions_path, tmp_path / name, tmp_path / f"out_{i}",
                                       n_bootstrap=200)
               for i, name in enumerate(("labels.csv", "data.pkl", "data.json"))]
    assert results[0]["targets"] == results[1]["targets"] == results[2]["targets"]
    saved = json.loads((tmp_path / "out_1" / "summary.json").read_text())
    assert saved["targets"] == results[1]["targets"]


def test_metarepository_list_with_malignant_labels_only(tmp_path):
    write_labelled_exam_list(tmp_path / "data.pkl", SAMPLE_LABELS,
                             keys=("left_malignant", "right_malignant"))
    labels = evaluate.read_labels(tmp_path / "data.pkl")
    assert np.isnan(labels[:, :2]).all() and not np.isnan(labels[:, 2:]).any()
    result = evaluate.evaluate(SAMPLE_PREDICTIONS, labels, n_bootstrap=0)
    assert result["targets"]["malignant"]["roc_auc"]["value"] == pytest.approx(13 / 15)
    assert "lack left_benign, right_benign" in result["targets"]["benign"]["note"]


def test_labels_must_be_zero_or_one(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "left_benign,right_benign,left_malignant,right_malignant\n0,0,2,0\n")
    with pytest.raises(EvaluationInputError, match=r"data row 1, column left_malignant.*'2'"):
        evaluate.read_labels(tmp_path / "labels.csv")


def test_exam_list_without_cancer_label_is_refused(tmp_path):
    write_labelled_exam_list(tmp_path / "data.pkl", SAMPLE_LABELS)
    exams = exam_list.load_exam_list(tmp_path / "data.pkl")
    del exams[2]["cancer_label"]
    exam_list.save_exam_list(exams, tmp_path / "data.pkl")
    with pytest.raises(EvaluationInputError, match="exam 2 has no 'cancer_label'"):
        evaluate.read_labels(tmp_path / "data.pkl")


def test_empty_prediction_rows_are_counted_and_left_out(tmp_path):
    predictions = [list(p) for p in SAMPLE_PREDICTIONS] + [None]
    labels = np.vstack([SAMPLE_LABELS, [[1, 1, 1, 1]]])
    formats.write_predictions_csv(tmp_path / "predictions.csv", predictions)
    write_labels_csv(tmp_path / "labels.csv", labels)
    result = evaluate.evaluate_files(tmp_path / "predictions.csv", tmp_path / "labels.csv",
                                     tmp_path / "out", n_bootstrap=0)
    assert (result["n_exams"], result["n_exams_evaluated"], result["excluded_rows"]) == (5, 4, [4])
    assert result["targets"]["malignant"]["roc_auc"]["value"] == pytest.approx(13 / 15)
    assert "left out (empty prediction rows): 1 (rows 4)" in \
        (tmp_path / "out" / "summary.md").read_text()


def test_all_rows_empty_is_an_error():
    with pytest.raises(evaluate.PipelineError, match="all 2 prediction rows are empty"):
        evaluate.evaluate(np.full((2, 4), np.nan), np.zeros((2, 4)))


# --------------------------------------------------------------------------- command line
def test_cli_writes_the_report(tmp_path):
    formats.write_predictions_csv(tmp_path / "predictions.csv", SAMPLE_PREDICTIONS)
    write_labels_csv(tmp_path / "labels.csv", SAMPLE_LABELS)
    out = tmp_path / "evaluation"
    done = run_script("--predictions", tmp_path / "predictions.csv", "--labels",
                      tmp_path / "labels.csv", "--output-dir", out, "--n-bootstrap", "100")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [evaluate.SUMMARY_JSON, evaluate.SUMMARY_MD, evaluate.ROC_PNG, evaluate.PR_PNG])
    assert "| malignant | 8 (3/5) | 0.867 [" in done.stdout
    for png in (evaluate.ROC_PNG, evaluate.PR_PNG):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_script("--predictions", tmp_path / "predictions.csv", "--labels",
                       tmp_path / "labels.csv", "--output-dir", out, "--n-bootstrap", "0")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_cli_mismatched_rows_fail_clearly(tmp_path):
    formats.write_predictions_csv(tmp_path / "predictions.csv", SAMPLE_PREDICTIONS[:3])
    write_labels_csv(tmp_path / "labels.csv", SAMPLE_LABELS)
    done = run_script("--predictions", tmp_path / "predictions.csv", "--labels",
                      tmp_path / "labels.csv", "--output-dir", tmp_path / "out")
    assert done.returncode == 2
    assert "3 prediction row(s), but labels file" in done.stderr
    assert "has 4 exam(s)" in done.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- operating points
# Pooled malignant scores, left then right: [.1, .4, .2, .6, .35, .8, .05, .3], labels
# [0, 0, 0, 1, 1, 1, 0, 0]: positives .6, .35, .8; negatives .1, .4, .2, .05, .3.
# Exam scores (max of the two breasts): [.35, .8, .2, .6], exam labels [1, 1, 0, 1].
OP_PREDICTIONS = np.array([[0.5, 0.5, 0.1, 0.35], [0.5, 0.5, 0.4, 0.8],
                           [0.5, 0.5, 0.2, 0.05], [0.5, 0.5, 0.6, 0.3]])
OP_LABELS = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], float)


def test_operating_points_equal_hand_computed_values():
    result = operating_points.operating_points(
        OP_PREDICTIONS, OP_LABELS, target_sensitivity=[0.5, 1.0], target_specificity=[0.75],
        thresholds=[0.3], n_bootstrap=0)
    sens_half, sens_all, spec, fixed = result["points"]
    # Sensitivity >= .5: at .8 it is 1/3, at .6 it is 2/3 -> the largest is .6.
    assert sens_half["threshold"] == 0.6 and sens_all["threshold"] == 0.35
    # Specificity >= .75: at .35 the negatives below are .1, .2, .05, .3 (4/5); at .3, 3/5.
    assert spec["threshold"] == 0.35 and fixed["threshold"] == 0.3
    breast = sens_half["breast"]
    assert breast["confusion_matrix"] == {"tp": 2, "fp": 0, "tn": 5, "fn": 1}
    assert breast["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert breast["specificity"]["value"] == 1.0 and breast["ppv"]["value"] == 1.0
    assert breast["npv"]["value"] == pytest.approx(5 / 6)
    assert "recall_rate" not in breast
    # At .3, the breast at .4 (negative) and .3 (negative) are called: PPV 3/5.
    breast = fixed["breast"]
    assert breast["confusion_matrix"] == {"tp": 3, "fp": 2, "tn": 3, "fn": 0}
    assert breast["ppv"]["value"] == pytest.approx(3 / 5)
    assert breast["specificity"]["value"] == pytest.approx(3 / 5)
    assert breast["sensitivity"]["ci_low"] is None  # no resamples, no interval


def test_exam_level_takes_the_larger_breast_and_either_label():
    result = operating_points.operating_points(OP_PREDICTIONS, OP_LABELS,
                                               thresholds=[0.3, 0.7], n_bootstrap=0)
    low, high = (p["exam"] for p in result["points"])
    # Exam scores [.35, .8, .2, .6], labels [1, 1, 0, 1].
    assert low["confusion_matrix"] == {"tp": 3, "fp": 0, "tn": 1, "fn": 0}
    assert low["recall_rate"]["value"] == pytest.approx(3 / 4)
    assert high["confusion_matrix"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 2}
    assert high["recall_rate"]["value"] == pytest.approx(1 / 4)
    assert high["npv"]["value"] == pytest.approx(1 / 3)
    # Targets met on the exam scores instead: sensitivity >= .6 -> the largest is .6 (2/3).
    at_exam = operating_points.operating_points(OP_PREDICTIONS, OP_LABELS, [0.6],
                                                choose_at="exam", n_bootstrap=0)
    assert at_exam["points"][0]["threshold"] == 0.6
    assert at_exam["points"][0]["exam"]["sensitivity"]["value"] == pytest.approx(2 / 3)


def test_a_target_specificity_of_one_takes_the_first_score_above_every_negative():
    point = operating_points.operating_points(OP_PREDICTIONS, OP_LABELS,
                                              target_specificity=[1.0],
                                              n_bootstrap=0)["points"][0]
    assert point["threshold"] == 0.6  # the top negative is .4; the next score up is .6
    assert point["breast"]["confusion_matrix"] == {"tp": 2, "fp": 0, "tn": 5, "fn": 1}
    predictions = OP_PREDICTIONS.copy()
    predictions[2, 2] = 0.9  # a negative breast holds the top score: nothing may be called
    point = operating_points.operating_points(predictions, OP_LABELS, target_specificity=[1.0],
                                              n_bootstrap=0)["points"][0]
    assert point["threshold"] == np.nextafter(0.9, 1)
    assert point["breast"]["confusion_matrix"] == {"tp": 0, "fp": 0, "tn": 5, "fn": 3}
    assert point["breast"]["ppv"]["value"] is None  # nothing called positive


def test_operating_point_intervals_are_reproducible_and_resample_exams():
    rng = np.random.default_rng(2)
    predictions, labels = rng.random((30, 4)), (rng.random((30, 4)) < 0.3).astype(float)
    run = lambda seed: operating_points.operating_points(  # noqa: E731
        predictions, labels, [0.8], thresholds=[0.5], n_bootstrap=300, seed=seed)
    first, again, other = run(4), run(4), run(5)
    assert first == again and first != other
    # By hand: the documented draws, threshold .5 fixed, exam-level sensitivity.
    rng = np.random.default_rng(4)
    y = np.maximum(labels[:, 2], labels[:, 3])
    called = np.maximum(predictions[:, 2], predictions[:, 3]) >= 0.5
    draws = []
    for _ in range(300):
        rows = rng.integers(0, 30, 30)
        if y[rows].sum():
            draws.append((called[rows] & (y[rows] == 1)).sum() / y[rows].sum())
    sensitivity = first["points"][1]["exam"]["sensitivity"]
    assert sensitivity["ci_low"] == pytest.approx(np.percentile(draws, 2.5), abs=1e-12)
    assert sensitivity["ci_high"] == pytest.approx(np.percentile(draws, 97.5), abs=1e-12)
    assert sensitivity["bootstrap_skipped"] == 300 - len(draws)


def test_cli_operating_points_and_fixed_threshold(tmp_path):
    formats.write_predictions_csv(tmp_path / "predictions.csv", OP_PREDICTIONS)
    write_labels_csv(tmp_path / "labels.csv", OP_LABELS)
    done = run_script("--predictions", tmp_path / "predictions.csv", "--labels",
                      tmp_path / "labels.csv", "--output-dir", tmp_path / "out",
                      "--n-bootstrap", "50", "--target-sensitivity", "0.5",
                      "--threshold", "0.3")
    assert done.returncode == 0, done.stderr
    assert "| threshold 0.3 | 0.3 | exam | 3 | 0 | 1 | 0 |" in done.stdout
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    points = saved["operating_points"]["points"]
    assert [p["threshold"] for p in points] == [0.6, 0.3]
    plain = evaluate.evaluate(OP_PREDICTIONS, OP_LABELS, n_bootstrap=50)
    assert saved["targets"] == json.loads(json.dumps(plain["targets"]))  # unchanged
