"""``bcc single`` (core.single): run_single.sh in one process, checked against the kit."""

import json

import numpy as np
import pytest

from breast_cancer_classifier.bcc import main as bcc_main
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.errors import OutputExistsError
from breast_cancer_classifier.core.exam_list import load_metadata
from breast_cancer_classifier.core.single import SINGLE_FILES, SingleSettings, run_single

from conftest import PARITY, parity_case

PARITY_TOL = 1e-4  # single-image probabilities (as tests/test_classify.py)
MAP_TOL = 1e-5


def kit_single_settings(**overrides):
    weights = PARITY / "weights"
    if not weights.is_dir():
        pytest.skip(f"parity weights not found at {weights} (set BCC_SHARED)")
    values = dict(patch_model_path=str(weights / "patch.p"),
                  image_model_path=str(weights / "image_mode.p"),
                  imageheatmaps_model_path=str(weights / "imageheatmaps_mode.p"),
                  device_type="cpu", runtime="torch")
    values.update(overrides)
    return SingleSettings(**values)


def test_parity_right_view_with_the_unmirrored_heatmaps_quirk(tmp_path, capsys):
    case = parity_case("synth_a")
    name, view = "a1_R_CC", "R-CC"  # a right view: the quirk of SPEC 9 shows
    out = tmp_path / "single"
    predictions = run_single(case / "images" / f"{name}.png", view, out, kit_single_settings())
    expected_dir = case / "expected" / "single" / name
    mine, theirs = (load_metadata(p / "cropped_metadata.pkl") for p in (out, expected_dir))
    for key in ("window_location", "rightmost_points", "bottommost_points",
                "distance_from_starting_side", "best_center", "full_view", "view"):
        assert mine[key] == theirs[key], key
    for kind in ("malignant", "benign"):
        got = formats.read_hdf5(out / f"{kind}_heatmap.hdf5")
        want = formats.read_hdf5(expected_dir / f"{kind}_heatmap.hdf5")
        assert float(np.abs(got.astype(np.float64) - want).max()) <= MAP_TOL
    expected = next(e for e in json.loads(
        (case / "expected" / "single_predictions.json").read_text()) if e["name"] == name)
    for model in ("image", "imageheatmaps"):
        for key in ("benign", "malignant"):
            assert abs(predictions[model][key] - expected[model][key]) <= PARITY_TOL
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [predictions["image"],
                                                      predictions["imageheatmaps"]]
    assert (out / "predictions.jsonl").read_text().splitlines() == lines
    assert sorted(p.name for p in out.iterdir()) == sorted(SINGLE_FILES)
    with pytest.raises(OutputExistsError):
        run_single(case / "images" / f"{name}.png", view, out, kit_single_settings())


def test_bcc_single_bad_view_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bcc_main(["single", str(tmp_path / "x.png"), "CC", "--output-dir", str(tmp_path),
                  "--device-type", "cpu"])
    assert stop.value.code == 2
    assert "L-CC" in capsys.readouterr().err
