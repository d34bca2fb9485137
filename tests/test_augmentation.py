"""Stage-4 window sampling (SPEC 7.2): the random stream, the geometry, cut, resize, standardize."""

import cv2
import numpy as np
import pytest

from breast_cancer_classifier.core.stages.augmentation import (Window, WindowDraw, cut_window,
                                                                draw_exam, draw_single_image,
                                                                draw_window, model_window,
                                                                resize_window, standardize_image,
                                                                window_batch, window_location)
from breast_cancer_classifier.core.views import INPUT_SIZE, VIEWS

ONE_EACH = {view: 1 for view in VIEWS}


def _draw(mult, size, index=0):
    return WindowDraw(index, np.array(mult, dtype=np.float64), np.array(size, dtype=np.float64))


# --------------------------------------------------------------------------- the stream
def test_first_draws_with_augmentation_are_pinned():
    """RandomState(0), augmenting, one image per view except R-CC (2) and R-MLO (3)."""
    rng = np.random.RandomState(0)
    counts = {"L-CC": 1, "R-CC": 2, "L-MLO": 1, "R-MLO": 3}
    first = draw_exam(rng, counts, num_epochs=1, augment=True)[0]
    # L-CC: one image, so randint(0, 1) consumes nothing: mult, then size noise.
    np.testing.assert_array_equal(first["L-CC"].mult, [0.0976270078546495, 0.43037873274483895])
    np.testing.assert_array_equal(first["L-CC"].size, [0.20552675214328775, 0.08976636599379373,
                                                       -0.15269040132219058, 0.29178822613331223])
    # R-CC: two images, so the index draw consumes state before the uniforms.
    assert first["R-CC"].image_index == 0
    np.testing.assert_array_equal(first["R-CC"].mult, [-0.40493078691105544, -0.8865740453651136])
    np.testing.assert_array_equal(first["L-MLO"].mult, [-0.21443040779834055, 0.6721575270747551])
    np.testing.assert_array_equal(first["R-MLO"].mult, [0.957236684465528, 0.5983171284334472])
    np.testing.assert_array_equal(first["R-MLO"].size, [-0.07704127549413631, 0.5610583525729109,
                                                        -0.7634511482621336, 0.27984204265504764])


def test_without_augmentation_only_size_noise_is_drawn():
    rng = np.random.RandomState(0)
    first = draw_exam(rng, ONE_EACH, num_epochs=1, augment=False)[0]
    for view in VIEWS:
        assert first[view].image_index == 0
        np.testing.assert_array_equal(first[view].mult, [0.0, 0.0])
    expected = np.random.RandomState(0).uniform(-1, 1, size=16).reshape(4, 4)
    np.testing.assert_array_equal([first[view].size for view in VIEWS], expected)
    np.testing.assert_array_equal(first["L-CC"].size, [0.0976270078546495, 0.43037873274483895,
                                                       0.20552675214328775, 0.08976636599379373])


def test_stream_order_is_repetition_then_views():
    rng = np.random.RandomState(3)
    draws = draw_exam(rng, ONE_EACH, num_epochs=2, augment=True)
    flat = np.random.RandomState(3).uniform(-1, 1, size=2 * 4 * 6).reshape(2, 4, 6)
    for rep in range(2):
        for v, view in enumerate(VIEWS):
            np.testing.assert_array_equal(draws[rep][view].mult, flat[rep, v, :2])
            np.testing.assert_array_equal(draws[rep][view].size, flat[rep, v, 2:])


def test_view_without_images_draws_like_a_one_image_view():
    a = draw_exam(np.random.RandomState(0), {**ONE_EACH, "R-MLO": 0}, 2, True)
    b = draw_exam(np.random.RandomState(0), ONE_EACH, 2, True)
    for rep_a, rep_b in zip(a, b):
        for view in VIEWS:
            np.testing.assert_array_equal(rep_a[view].size, rep_b[view].size)


def test_image_index_uses_numpy_randint():
    rng, check = np.random.RandomState(7), np.random.RandomState(7)
    draw = draw_window(rng, 3, augment=True)
    assert draw.image_index == check.randint(low=0, high=3)
    np.testing.assert_array_equal(draw.mult, check.uniform(-1, 1, size=2))


def test_single_image_draws_have_no_index_draw():
    draws = draw_single_image(np.random.RandomState(0), num_epochs=2, augment=True)
    flat = np.random.RandomState(0).uniform(-1, 1, size=12).reshape(2, 6)
    for draw, row in zip(draws, flat):
        np.testing.assert_array_equal(np.concatenate([draw.mult, draw.size]), row)


# --------------------------------------------------------------------------- geometry
def test_window_without_augmentation_is_centred():
    draw = _draw([0, 0], [0.9, -0.9, 0.9, -0.9])  # size noise has no room without augmentation
    assert window_location((3000, 2200), "CC", (1500, 1100), draw, augment=False) == \
        Window(0, 0, 0, 162, 2839, 129, 2071)


def test_window_is_shifted_inside_the_image():
    draw = _draw([0, 0], [0, 0, 0, 0])
    assert window_location((3000, 2200), "CC", (100, 2150), draw, augment=False) == \
        Window(0, 0, 0, 0, 2677, 258, 2200)


def test_small_cc_is_padded_top_bottom_and_right():
    # pad rows 2677 - 1081 + 400 = 1996 (998 + 998), columns 1942 - 648 + 200 = 1494.
    # left == 0 turns the column noise positive; shift (30, 60); cap 60 → (60, 60, 44, 44).
    draw = _draw([0.3, -0.6], [0.5, -0.25, -1.0, 0.75])
    assert window_location((1081, 648), "CC", (539, -445), draw, augment=True) == \
        Window(998, 998, 1494, 260, 2892, 16, 2035)


def test_small_mlo_is_padded_at_the_bottom_only():
    draw = _draw([-0.5, -0.5], [0, 0, 0, 0])
    assert window_location((1452, 638), "MLO", (-87, -288), draw, augment=True) == \
        Window(0, 1722, 1310, 50, 3024, 50, 1798)


def test_window_at_the_bottom_moves_up_and_size_noise_is_capped():
    # bottom == H turns the row noise negative (room: top = 523); cap = H - bottom = 50.
    draw = _draw([0.5, 0.0], [-1.0, 1.0, 0.5, -0.5])
    assert window_location((3200, 2200), "CC", (2900, 1100), draw, augment=True) == \
        Window(0, 0, 0, 423, 3200, 147, 2053)


def test_shift_rounds_half_to_even():
    # 100 * 0.125 = 12.5 → 12 (numpy rounding), not 13.
    draw = _draw([0.125, -0.125], [0, 0, 0, 0])
    window = window_location((4000, 3000), "CC", (2000, 1500), draw, augment=True)
    centred = window_location((4000, 3000), "CC", (2000, 1500), _draw([0, 0], [0, 0, 0, 0]),
                              augment=True)
    assert (window.top - centred.top, window.left - centred.left) == (12, -12)


# --------------------------------------------------------------------------- pixels
def test_cut_window_equals_cutting_the_padded_array():
    rng = np.random.RandomState(1)
    joint = rng.rand(50, 30, 3).astype(np.float32)
    padded = np.pad(joint, ((5, 7), (0, 11), (0, 0)))
    for borders in [(2, 60, 3, 40), (5, 55, 0, 30), (0, 62, 10, 41), (10, 20, 4, 9)]:
        window = Window(5, 7, 11, *borders)
        top, bottom, left, right = borders
        np.testing.assert_array_equal(cut_window(joint, window), padded[top:bottom, left:right])


def test_resize_keeps_a_single_channel_axis():
    h_in, w_in = INPUT_SIZE["MLO"]
    cut = np.ones((h_in - 30, w_in + 20, 1), dtype=np.float32)
    out = resize_window(cut, "MLO")
    assert out.shape == (h_in, w_in, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_standardize_touches_only_the_image_channel():
    rng = np.random.RandomState(2)
    window = rng.rand(40, 30, 3).astype(np.float32) * 1000
    out = standardize_image(window)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert abs(float(out[..., 0].mean())) < 1e-5
    assert abs(float(out[..., 0].std()) - 1.0) < 1e-5
    np.testing.assert_array_equal(out[..., 1:], window[..., 1:])


def test_standardize_constant_image_does_not_divide_by_zero():
    out = standardize_image(np.full((8, 8, 1), 7.0, dtype=np.float32))
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("angle", ["CC", "MLO"])
def test_model_window_has_the_model_input_size(angle):
    joint = np.random.RandomState(0).rand(900, 700, 3).astype(np.float32)
    draw = draw_window(np.random.RandomState(0), 1, augment=True)
    out = model_window(joint, angle, (450, 350), draw, augment=True)
    assert out.shape == INPUT_SIZE[angle] + (3,) and out.dtype == np.float32


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("shape", [(700, 520), INPUT_SIZE["MLO"]])  # resized, and copied as is
def test_resize_into_a_given_array_equals_a_fresh_resize(channels, shape):
    cut = np.random.RandomState(3).rand(*shape, channels).astype(np.float32)
    out = np.full(INPUT_SIZE["MLO"] + (channels,), np.nan, dtype=np.float32)
    written = resize_window(cut, "MLO", out)
    assert written is out
    if shape == INPUT_SIZE["MLO"]:
        np.testing.assert_array_equal(out, cut)
    else:
        fresh = cv2.resize(cut, INPUT_SIZE["MLO"][::-1],
                           interpolation=cv2.INTER_CUBIC).reshape(out.shape)
        np.testing.assert_array_equal(out, fresh)


def test_standardize_in_place_equals_the_copy():
    window = np.random.RandomState(4).rand(60, 40, 3).astype(np.float32) * 500
    copied = standardize_image(window)
    assert copied is not window
    same = window.copy()
    assert standardize_image(same, in_place=True) is same
    np.testing.assert_array_equal(same, copied)


def test_window_batch_equals_stacked_windows_of_the_chosen_images():
    rng = np.random.RandomState(6)
    joints = [rng.rand(900, 700, 3).astype(np.float32), rng.rand(800, 650, 3).astype(np.float32)]
    centers = [(450, 350), (400, 300)]
    draws = [draw_window(rng, 2, augment=True) for _ in range(4)]
    batch = window_batch(joints, centers, "CC", draws, augment=True)
    expected = np.stack([model_window(joints[d.image_index], "CC", centers[d.image_index], d,
                                      augment=True) for d in draws])
    assert {d.image_index for d in draws} == {0, 1}  # both images are used
    assert batch.flags.c_contiguous
    np.testing.assert_array_equal(batch, expected)


def test_image_channel_of_a_3_channel_resize_is_not_a_1_channel_resize():
    """OpenCV's bicubic resize takes other arithmetic paths for 3 channels than for 1, so the
    image channel of stage 4b's windows may differ in the last bits from stage 4a's windows.
    The engine therefore cuts and resizes each classifier family's windows from its own
    channels (one read, a cut per family), which keeps stage 4a's numbers those of run.sh."""
    rng = np.random.default_rng(0)
    joint = np.empty((2900, 2100, 3), dtype=np.float32)
    joint[..., 0] = rng.integers(0, 65536, size=joint.shape[:2])
    joint[..., 1:] = rng.random(joint.shape[:2] + (2,))
    three = resize_window(joint, "CC")[..., 0]
    one = resize_window(np.ascontiguousarray(joint[..., :1]), "CC")[..., 0]
    assert np.allclose(three, one, rtol=0, atol=0.1)  # the same interpolation...
    assert not np.array_equal(three, one)  # ...but not the same bits
