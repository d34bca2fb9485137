"""The single-image path (core.single): ``bcc single`` (run_single.sh in one process) checked
against the kit, and the single-image heatmap quirk of SPEC 9."""

import json
import random

import numpy as np
import pytest

from breast_cancer_classifier.bcc import main as bcc_main
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.errors import OutputExistsError
from breast_cancer_classifier.core.exam_list import load_metadata
from breast_cancer_classifier.core.patch_runtime import TorchRuntime
from breast_cancer_classifier.core.single import (SINGLE_FILES, SingleSettings, run_single,
                                                  single_image_heatmaps)
from breast_cancer_classifier.core.stages import heatmaps

from conftest import PARITY, parity_case
from patch_helpers import StatsModel, naive_heatmaps, random_image

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


def test_single_image_quirk_and_proper_mirroring(tmp_path):
    raw = random_image((420, 510), 9)
    path = tmp_path / "cropped.png"
    formats.write_png(path, raw)
    metadata = {"horizontal_flip": "NO", "full_view": "R-CC", "side": "R", "view": "CC"}
    model = StatsModel()
    rows, columns = heatmaps.draw_strides(raw.shape, random.Random(0))
    classify = TorchRuntime(model, "cpu")
    quirk = single_image_heatmaps(classify, raw, metadata, path, batch_size=7)
    expected = naive_heatmaps(model, heatmaps.standardize(raw), rows, columns)
    np.testing.assert_allclose(quirk[0], expected[0], rtol=0, atol=1e-6)  # not mirrored
    proper = single_image_heatmaps(classify, raw, metadata, path, batch_size=7,
                                   proper_mirroring=True)
    expected = naive_heatmaps(model, heatmaps.standardize(np.fliplr(raw)), rows, columns)
    np.testing.assert_allclose(proper[1], np.fliplr(expected[1]), rtol=0, atol=1e-6)
