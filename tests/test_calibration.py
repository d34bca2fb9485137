"""Calibration: held-out ECE on scores with known probabilities, the JSON round trip, the
calibrated columns, and the refusal of another model's calibration."""

import importlib.util
import json

import numpy as np
import pytest

from breast_cancer_classifier import bcc
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.errors import SettingsError
from breast_cancer_classifier.core.hashing import file_sha256
from breast_cancer_classifier.tools import calibration, evaluate
from conftest import REPO

RUN_MODEL = REPO / "src" / "modeling" / "run_model.py"


def synthetic(n_exams=600, seed=0):
    """Scores far too low, as the model's: true probability p, score sigmoid(logit(p)/2 - 2);
    labels drawn from p. Returns (predictions, labels, true probabilities), (N, 4) each."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.02, 0.6, (n_exams, 4))
    scores = 1 / (1 + np.exp(-(0.5 * np.log(true / (1 - true)) - 2.0)))
    labels = (rng.random((n_exams, 4)) < true).astype(float)
    return np.round(scores, 4), labels, true


def write_inputs(folder, predictions, labels, name="imageheatmaps_predictions.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    formats.write_predictions_csv(folder / name, predictions)
    formats.write_csv(folder / "labels.csv", formats.LABELS,
                      [[str(int(v)) for v in row] for row in labels])
    return folder / name, folder / "labels.csv"


def test_ece_and_brier_by_hand():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.08, 0.55, 0.52, 0.95])
    # Bins: [0, .1): p .05, .08 -> rate 1/2, mean .065; [.5, .6): .55, .52 -> 1/2, .535;
    # [.9, 1]: .95 -> 1, .95. ECE = (2 * .435 + 2 * .035 + 1 * .05) / 5.
    assert calibration.ece(y, p) == pytest.approx((2 * 0.435 + 2 * 0.035 + 0.05) / 5)
    assert calibration.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    assert calibration.ece(np.array([1]), np.array([1.0])) == 0.0  # p = 1 is in the top bin


@pytest.mark.parametrize("method", calibration.METHODS)
def test_held_out_ece_drops_below_a_third(method):
    predictions, labels, true = synthetic()
    targets, arrays = calibration.calibrate(predictions, labels, method)
    for target in calibration.TARGETS:
        held = targets[target]["held_out"]
        assert held["ece_before"] > 0.15  # the raw scores are far off
        assert held["ece_after"] < held["ece_before"] / 3
        assert held["brier_after"] < held["brier_before"]
        y_true, raw, after = arrays[target]
        assert held["ece_after"] == calibration.ece(y_true, after)
        # The final map recovers the true probabilities of fresh cases roughly.
        fresh_scores, _, fresh_true = synthetic(200, seed=9)
        columns = [formats.LABELS.index(c) for c in evaluate.TARGETS[target]]
        got = calibration.apply_map(method, targets[target]["params"],
                                    fresh_scores[:, columns].ravel())
        assert np.mean(np.abs(got - fresh_true[:, columns].ravel())) < 0.06


@pytest.mark.parametrize("method", calibration.METHODS)
def test_json_round_trips_to_the_fitted_scikit_learn_map(tmp_path, method):
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    predictions, labels, _ = synthetic(300)
    csv_path, labels_path = write_inputs(tmp_path, predictions, labels)
    written = calibration.calibrate_files(csv_path, labels_path, tmp_path / "cal", method)
    loaded = calibration.load_calibration(tmp_path / "cal" / calibration.CALIBRATION_JSON)
    assert loaded["targets"] == written["targets"]
    fresh = np.r_[np.linspace(0, 1, 101), 1e-9, 0.3333333]
    y, s = evaluate.target_arrays(predictions, labels, "malignant")
    if method == "isotonic":
        expected = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y)
        expected = expected.predict(fresh)
    else:
        def logit(p):
            p = np.clip(p, 1e-6, 1 - 1e-6)
            return np.log(p / (1 - p))

        model = LogisticRegression(C=calibration.PLATT_C).fit(logit(s)[:, None], y)
        expected = model.predict_proba(logit(fresh)[:, None])[:, 1]
    got = calibration.transform(loaded, np.tile(fresh[:, None], (1, 4)))
    np.testing.assert_allclose(got[:, 2], expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got[:, 2], got[:, 3])  # one map for both breasts
    record = loaded["fitted_on"]
    assert record["predictions_sha256"] == file_sha256(csv_path)
    assert (record["model"], record["source"]) == ("imageheatmaps", "file name")
    for target in calibration.TARGETS:
        assert (tmp_path / "cal" / f"reliability_{target}.png").read_bytes()[:4] == b"\x89PNG"


def test_calibrated_columns_leave_the_raw_ones_byte_identical(tmp_path):
    predictions, labels, _ = synthetic(300)
    csv_path, labels_path = write_inputs(tmp_path, predictions, labels)
    calibration.calibrate_files(csv_path, labels_path, tmp_path / "cal", "platt")
    loaded = calibration.load_calibration(tmp_path / "cal" / calibration.CALIBRATION_JSON)
    target = tmp_path / "run" / "imageheatmaps_predictions.csv"
    target.parent.mkdir()
    formats.write_predictions_csv(target, [[0.0012, 0.5, 0.0401, 0.9999], None,
                                           [0.25, 0.125, 0.0, 1.0]])
    before = target.read_text().splitlines()
    calibration.add_calibrated_columns(target, loaded)
    after = target.read_text().splitlines()
    assert after[0] == ",".join(formats.LABELS + formats.CALIBRATED_LABELS)
    assert [",".join(line.split(",")[:4]) for line in after] == before
    assert after[2] == ",,,,,,,"  # a failed exam stays empty
    raw = evaluate.load_predictions(target)
    np.testing.assert_array_equal(raw, formats.read_predictions_csv(target))
    expected = calibration.transform(loaded, raw)
    got = evaluate.load_predictions(target, calibrated=True)
    np.testing.assert_allclose(got[[0, 2]], expected[[0, 2]], rtol=0, atol=5e-5)
    assert got[0, 2] > raw[0, 2] * 2  # the low scores are lifted


def test_another_models_calibration_is_refused(tmp_path, capsys):
    weights = tmp_path / "weights_a.p"
    weights.write_bytes(b"weights a")
    other = tmp_path / "weights_b.p"
    other.write_bytes(b"weights b")
    predictions, labels, _ = synthetic(100)
    csv_path, labels_path = write_inputs(tmp_path / "run", predictions, labels,
                                         name="image_predictions.csv")
    (tmp_path / "run" / "run_settings.json").write_text(json.dumps(
        {"weights": {"image": str(weights)},
         "weights_sha256": {"image": file_sha256(weights)}}))
    calibration.calibrate_files(csv_path, labels_path, tmp_path / "cal", "platt")
    path = tmp_path / "cal" / calibration.CALIBRATION_JSON
    loaded = calibration.load_calibration(path)
    assert loaded["fitted_on"]["weights_sha256"] == file_sha256(weights)
    assert loaded["fitted_on"]["model_mode"] == "view_split"
    calibration.check_model(loaded, "image", "view_split", weights)  # its own model: fine
    with pytest.raises(SettingsError, match="not on the imageheatmaps model's"):
        calibration.check_model(loaded, "imageheatmaps", "view_split", weights)
    with pytest.raises(SettingsError, match="not on the image mode's"):
        calibration.check_model(loaded, "image", "image", weights)
    with pytest.raises(SettingsError, match="another model"):
        calibration.calibrations_for_run([path], {"image": other, "imageheatmaps": other})
    with pytest.raises(SettingsError, match="two files for the image model"):
        calibration.calibrations_for_run([path, path], {"image": weights})
    with pytest.raises(SettingsError, match="--model imageheatmaps was given"):
        calibration.model_of(csv_path, model="imageheatmaps")
    # bcc run and run_model.py refuse before they load anything: exit 2, nothing written.
    status, _, err = run_bcc(["run", "--exam-list", "x.pkl", "--data-folder", str(tmp_path),
                              "--output-dir", str(tmp_path / "bcc_run"), "--image-model-path",
                              str(other), "--calibration", str(path)], capsys)
    assert status == 2 and "another model" in err
    assert not (tmp_path / "bcc_run").exists()
    out = tmp_path / "out.csv"
    spec = importlib.util.spec_from_file_location("run_model_script", RUN_MODEL)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exit_status:
        script.main(["--model-path", str(weights), "--data-path", "x.pkl", "--image-path",
                     str(tmp_path), "--output-path", str(out), "--use-heatmaps",
                     "--heatmaps-path", str(tmp_path), "--calibration", str(path)])
    assert exit_status.value.code == 2
    assert "fitted on the image model's predictions, not on the imageheatmaps" in \
        capsys.readouterr().err
    assert not out.exists()


def run_bcc(args, capsys):
    with pytest.raises(SystemExit) as exit_status:
        bcc.main(args)
    out, err = capsys.readouterr()
    return exit_status.value.code, out, err


def test_cli_writes_the_files_and_refuses_to_overwrite(tmp_path, capsys):
    predictions, labels, _ = synthetic(200)
    csv_path, labels_path = write_inputs(tmp_path, predictions, labels, name="preds.csv")
    args = ["calibrate", "--predictions", str(csv_path), "--labels", str(labels_path),
            "--output-dir", str(tmp_path / "cal"), "--method", "isotonic", "--model", "image"]
    status, out, err = run_bcc(args, capsys)
    assert status == 0, err
    assert "| malignant | 400 (" in out
    assert sorted(p.name for p in (tmp_path / "cal").iterdir()) == [
        "calibration.json", "reliability_benign.png", "reliability_malignant.png",
        "summary.md"]
    saved = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert (saved["method"], saved["fitted_on"]["model"]) == ("isotonic", "image")
    status, out, err = run_bcc(args, capsys)
    assert status == 2 and "--overwrite" in err
