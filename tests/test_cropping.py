"""Stage 1 (SPEC §4): parity with the reference and each rule on small arrays."""

import hashlib
import json
import pickle

import numpy as np
import pytest
from scipy import ndimage

from breast_cancer_classifier.core.stages import cropping
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.stages.cropping import (breast_direction, breast_mask,
                                                           crop_mammogram_array, crop_window)
from breast_cancer_classifier.core.errors import InputImageError
from breast_cancer_classifier.core.exam_list import load_exam_list, load_metadata

from conftest import parity_case
from helpers import breast_phantom, jsonable, run_script

CASES = ["real_cc", "synth_a", "synth_c"]


@pytest.fixture(scope="module", params=CASES)
def stage12_run(request, tmp_path_factory):
    """Stages 1 and 2 through their scripts on one parity case."""
    case = parity_case(request.param)
    out = tmp_path_factory.mktemp(request.param)
    run_script("cropping/crop_mammogram.py", "--input-data-folder", case / "images",
               "--output-data-folder", out / "cropped", "--exam-list-path", case / "exam_list.pkl",
               "--cropped-exam-list-path", out / "cropped_exam_list.pkl", "--num-processes", 2,
               check=0)
    run_script("optimal_centers/get_optimal_centers.py", "--cropped-exam-list-path",
               out / "cropped_exam_list.pkl", "--data-prefix", out / "cropped",
               "--output-exam-list-path", out / "data.pkl", "--num-processes", 2, check=0)
    return case, out


def test_stage1_and_2_values_equal_reference(stage12_run):
    case, out = stage12_run
    # Exact equality, key by key, image by image (SPEC §4-5, issue 3).
    for ours_file, expected_file in [("cropped_exam_list.pkl", "cropped_exam_list.pkl"),
                                     ("data.pkl", "data.pkl")]:
        ours = load_exam_list(out / ours_file)
        expected = load_exam_list(case / "expected" / expected_file)
        assert jsonable(ours) == jsonable(expected)
    # The reference's readable copy agrees too, and keys keep their order.
    assert jsonable(load_exam_list(out / "data.pkl")) == json.loads(
        (case / "expected" / "data.json").read_text())


def test_cropped_pixels_equal_reference(stage12_run):
    case, out = stage12_run
    expected = json.loads((case / "expected" / "cropped_pixels.json").read_text())
    assert sorted(p.stem for p in (out / "cropped").glob("*.png")) == sorted(expected)
    for name, want in expected.items():
        pixels = formats.read_mammogram_png(out / "cropped" / f"{name}.png")
        assert list(pixels.shape) == want["shape"] and str(pixels.dtype) == want["dtype"]
        assert hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest() == want["sha256"]


def test_our_pickles_hold_plain_python_values(stage12_run):
    _, out = stage12_run
    raw = pickle.loads((out / "data.pkl").read_bytes())  # our own file: plain pickle is safe
    value = raw[0]["window_location"]["L-CC"][0]
    assert type(value) is tuple and all(type(v) is int for v in value)


@pytest.mark.parametrize("case_name", CASES)
def test_single_image_metadata_equals_reference(case_name, tmp_path):
    case = parity_case(case_name)
    for item in json.loads((case / "single.json").read_text()):
        cropped, meta = tmp_path / f"{item['image']}.png", tmp_path / f"{item['image']}.pkl"
        run_script("cropping/crop_single.py", "--mammogram-path",
                   case / "images" / f"{item['image']}.png", "--view", item["view"],
                   "--cropped-mammogram-path", cropped, "--metadata-path", meta, check=0)
        run_script("optimal_centers/get_optimal_center_single.py", "--cropped-mammogram-path",
                   cropped, "--metadata-path", meta, check=0)
        expected_dir = case / "expected" / "single" / item["image"]
        expected = json.loads((expected_dir / "cropped_metadata.json").read_text())
        ours = load_metadata(meta)
        assert list(ours) == list(expected)
        assert jsonable(ours) == expected
        assert jsonable(load_metadata(expected_dir / "cropped_metadata.pkl")) == expected


# --------------------------------------------------------------------------- rules
def test_distance_transform_masks_equal_iterated_morphology():
    rng = np.random.default_rng(3)
    for trial in range(20):
        image = (ndimage.gaussian_filter(rng.random((90, 70)), 3) > 0.5) * rng.integers(
            1, 100, (90, 70))
        image[rng.random((90, 70)) < 0.01] = 0  # pin-holes
        for iterations in (1, 3, 7):
            fast = breast_mask(image, iterations, "distance")
            slow = breast_mask(image, iterations, "iterative")
            assert (fast is None) == (slow is None)
            if fast is not None:
                np.testing.assert_array_equal(fast, slow)


def test_largest_component_tie_goes_to_lowest_label():
    image = np.zeros((20, 30), np.uint16)
    image[2:8, 2:8] = 5      # first in raster order: label 1
    image[12:18, 20:26] = 5  # same size: label 2
    big = breast_mask(image, iterations=1)
    assert big[5, 5] and not big[15, 23]


def test_bigger_component_wins_over_first_label():
    image = np.zeros((30, 30), np.uint16)
    image[1:5, 1:5] = 5
    image[10:25, 10:25] = 5
    big = breast_mask(image, iterations=1)
    assert big[15, 15] and not big[3, 3]


def test_breast_direction_both_flags():
    assert breast_direction("R-CC", "NO") == "left"
    assert breast_direction("L-CC", "NO") == "right"
    assert breast_direction("R-MLO", "YES") == "right"
    assert breast_direction("L-MLO", "YES") == "left"


def test_window_buffers_and_points_mode_right():
    big = np.zeros((200, 300), bool)
    big[60:150, 0:120] = True  # touches the left edge (chest wall); breast points right
    r = crop_window(big, "right", buffer_size=50)
    # rows buffered by 50 each side; columns only on the nipple (right) side.
    assert r.window_location == (10, 200, 0, 170)
    assert r.distance_from_starting_side == 0
    assert r.bottommost_points == (149 - 10, (0, 119))
    crop = big[10:200, 0:170]
    skip = int(crop.shape[0] / 3)
    assert r.rightmost_points == ((max(skip, 50), 139), 119)


def test_window_buffers_clip_at_border_and_mode_left():
    big = np.zeros((100, 300), bool)
    big[0:100, 200:300] = True  # full height, chest wall at the right edge
    r = crop_window(big, "left", buffer_size=50)
    assert r.window_location == (0, 100, 150, 300)  # no row buffer at the borders
    assert r.distance_from_starting_side == 0
    # mode left: xb = right - x, reversed (SPEC §4 step 11: no `- 1`).
    assert r.bottommost_points == (99, (300 - 299, 300 - 200))
    # rightmost: first column with pixels in rows[skip:], then c.shape[1] - x.
    assert r.rightmost_points == ((33, 99), 150 - 50)


def test_distance_from_starting_side_counts_the_gap():
    big = np.zeros((100, 300), bool)
    big[20:80, 30:200] = True
    assert crop_window(big, "right").distance_from_starting_side == 30
    assert crop_window(big, "left").distance_from_starting_side == 100


def test_crop_keeps_dtype_and_stored_orientation():
    image = breast_phantom(side="R")
    cropped, r = crop_mammogram_array(image, "R-CC", "NO", iterations=5)
    top, bottom, left, right = r.window_location
    assert cropped.dtype == np.uint16
    np.testing.assert_array_equal(cropped, image[top:bottom, left:right])
    assert right == image.shape[1]  # chest wall at the right edge is kept


def test_thin_artefacts_and_marker_are_removed():
    image = np.zeros((600, 400), np.uint16)
    image[150:450, :250] = breast_phantom(side="L", height=300, width=250)
    image[10:40, 300:380] = 60000          # a burned-in marker, separate from the breast
    image[590, :] = 30000                 # a thin line along the bottom
    image[:, 395] = 30000                 # and one down the right edge
    _, r = crop_mammogram_array(image, "L-CC", "NO", iterations=20)
    top, bottom, left, right = r.window_location
    # Only the breast (rows 150..450, columns 0..~230) and its buffers remain.
    assert top > 40 and bottom < 590 and right < 395


def test_blank_image_fails_clearly():
    with pytest.raises(InputImageError, match="no foreground region"):
        crop_mammogram_array(np.zeros((300, 300), np.uint16), "L-CC", "NO")


def test_exam_list_without_images_passes_through():
    out = cropping.crop_exam_list([{"horizontal_flip": "NO", "L-CC": [], "R-CC": [],
                                    "L-MLO": [], "R-MLO": [], "cancer_label": {"x": 1}}],
                                  "/nonexistent", "/nonexistent")
    assert out[0]["cancer_label"] == {"x": 1}
    assert out[0]["window_location"] == {"L-CC": [], "R-CC": [], "L-MLO": [], "R-MLO": []}
