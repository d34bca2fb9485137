"""The synthetic sample data: deterministic, original file conventions, croppable as intended."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.tools import phantoms
from breast_cancer_classifier.core.errors import OutputExistsError
from breast_cancer_classifier.core.views import VIEWS
from conftest import REPO

ALL_12_TO_16 = phantoms.scale_12_to_16(np.arange(phantoms.MAX_12BIT + 1))


@pytest.fixture(scope="module")
def exam0():
    return {view: phantoms.make_phantom(0, view) for view in VIEWS}


def _patch_starts(extent):
    """Number of 256-pixel patch positions along one axis with stride 70 (SPEC 6 step 2)."""
    return (extent - 256) // 70 + 1 + (1 if (extent - 256) % 70 else 0)


def test_scale_12_to_16_rounds_like_the_reference():
    values = np.arange(phantoms.MAX_12BIT + 1)
    expected = np.round(values * 65535 / 4095).astype(np.uint16)
    np.testing.assert_array_equal(phantoms.scale_12_to_16(values), expected)
    assert ALL_12_TO_16[0] == 0 and ALL_12_TO_16[-1] == 65535


def test_same_seed_same_bytes_other_seed_other_image(exam0):
    again = phantoms.make_phantom(0, "L-MLO")
    assert again.image.tobytes() == exam0["L-MLO"].image.tobytes()
    assert phantoms.make_phantom(0, "L-MLO", seed=1).image.tobytes() != again.image.tobytes()
    assert phantoms.make_phantom(1, "L-MLO").image.tobytes() != again.image.tobytes()


@pytest.mark.parametrize("view", VIEWS)
def test_pixels_are_rescaled_12_bit_values_on_zero_background(exam0, view):
    p = exam0[view]
    assert p.image.dtype == np.uint16 and p.image.shape == phantoms.IMAGE_SHAPE
    assert np.isin(p.image, ALL_12_TO_16).all()
    assert (p.image[p.breast] > 0).all()
    assert (p.image[p.marker] > 0).all() and (p.image[p.artefacts] > 0).all()
    background = ~(p.breast | p.marker | p.artefacts)
    assert background.mean() > 0.3
    np.testing.assert_array_equal(p.image[background], 0)


@pytest.mark.parametrize("view", VIEWS)
def test_chest_wall_at_the_edge_of_the_views_side(exam0, view):
    breast = exam0[view].breast
    chest, far = (0, -1) if view.startswith("L") else (-1, 0)
    assert breast[:, chest].sum() > 0.4 * breast.shape[0]
    assert not breast[:, far].any()
    # MLO views reach the top edge (axilla); CC views do not.
    assert breast[0].any() == view.endswith("MLO")


def test_mlo_has_a_brighter_pectoral_muscle_in_the_chest_wall_corner(exam0):
    image = exam0["L-MLO"].image.astype(np.float64)
    corner = image[5:40, 5:40].mean()
    middle_rows = image[380:420, 40:200]
    assert corner > 1.1 * middle_rows[middle_rows > 0].mean()


@pytest.mark.parametrize("view", VIEWS)
def test_marker_and_artefacts_are_separate_from_the_breast(exam0, view):
    p = exam0[view]
    labels, _ = ndimage.label(p.image > 0)  # 4-connected, as stage 1 labels
    breast_labels = set(np.unique(labels[p.breast]))
    assert len(breast_labels) == 1
    assert breast_labels.isdisjoint(np.unique(labels[p.marker]))
    assert breast_labels.isdisjoint(np.unique(labels[p.artefacts]))
    # The marker holds letter-like ink (full brightness) on a dimmer block.
    assert (p.image[p.marker] == 65535).any() and (p.image[p.marker] < 65535).any()
    assert p.artefacts.sum() > 100


@pytest.mark.parametrize("view", VIEWS)
def test_stage_1_crops_the_marker_and_artefacts_away(exam0, view):
    cropping = pytest.importorskip("breast_cancer_classifier.core.stages.cropping")
    p = exam0[view]
    cropped, result = cropping.crop_mammogram_array(p.image, view, "NO")
    top, bottom, left, right = result.window_location
    window = np.zeros(p.image.shape, dtype=bool)
    window[top:bottom, left:right] = True
    assert not (window & (p.marker | p.artefacts)).any()
    assert window[p.breast].mean() > 0.99
    assert min(cropped.shape) >= 256
    assert result.distance_from_starting_side == 0


def test_sample_exams_stay_small_enough_for_a_quick_demo():
    cropping = pytest.importorskip("breast_cancer_classifier.core.stages.cropping")
    patches = 0
    for exam_index in range(phantoms.NUM_EXAMS):
        for view in VIEWS:
            cropped, _ = cropping.crop_mammogram_array(
                phantoms.make_phantom(exam_index, view).image, view, "NO")
            patches += _patch_starts(cropped.shape[0]) * _patch_starts(cropped.shape[1])
    assert 300 <= patches <= 700


def test_exam_list_has_the_original_format():
    exam_list = phantoms.sample_exam_list()
    assert exam_list[0] == {"horizontal_flip": "NO", "L-CC": ["0_L_CC"], "R-CC": ["0_R_CC"],
                            "L-MLO": ["0_L_MLO"], "R-MLO": ["0_R_MLO"]}
    assert [e["R-MLO"] for e in exam_list] == [[f"{i}_R_MLO"] for i in range(4)]


def test_write_sample_data_is_idempotent_and_refuses_foreign_files(tmp_path):
    written, unchanged = phantoms.write_sample_data(tmp_path, num_exams=1)
    assert len(written) == 5 and not unchanged
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        "0_L_CC.png", "0_L_MLO.png", "0_R_CC.png", "0_R_MLO.png"]
    with open(tmp_path / phantoms.EXAM_LIST_NAME, "rb") as f:
        assert pickle.load(f) == phantoms.sample_exam_list(1)
    np.testing.assert_array_equal(formats.read_mammogram_png(tmp_path / "images" / "0_R_CC.png"),
                                  phantoms.make_phantom(0, "R-CC").image)

    written, unchanged = phantoms.write_sample_data(tmp_path, num_exams=1)
    assert not written and len(unchanged) == 5

    target = tmp_path / "images" / "0_L_CC.png"
    formats.write_png(target, np.ones((300, 300), dtype=np.uint16))
    with pytest.raises(OutputExistsError, match="0_L_CC.png"):
        phantoms.write_sample_data(tmp_path, num_exams=1)
    written, _ = phantoms.write_sample_data(tmp_path, num_exams=1, overwrite=True)
    assert written == [target]


@pytest.mark.parametrize("name,view", [("0_L_CC", "L-CC"), ("3_R_MLO", "R-MLO")])
def test_committed_sample_data_matches_the_generator(name, view):
    path = REPO / "sample_data" / "images" / f"{name}.png"
    if not path.is_file():
        pytest.skip(f"{path} not present (generated by `make demo`)")
    exam_index = int(name[0])
    np.testing.assert_array_equal(formats.read_mammogram_png(path),
                                  phantoms.make_phantom(exam_index, view).image)


def test_make_sample_data_command(tmp_path):
    script = REPO / "src" / "utilities" / "make_sample_data.py"
    command = [sys.executable, str(script), "--output-dir", str(tmp_path), "--num-exams", "1"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "5 file(s) written" in first.stderr
    assert len(list((tmp_path / "images").glob("*.png"))) == 4
    (tmp_path / phantoms.EXAM_LIST_NAME).write_bytes(pickle.dumps([]))
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
