"""The one standardization rule (core.standardize), in float64 (stage 3) and float32 (stage 4)."""

import numpy as np

from breast_cancer_classifier.core.standardize import STD_FLOOR, standardize_in_place


def test_mean_zero_unit_std_in_the_arrays_own_dtype():
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        array = rng.normal(3.0, 7.0, size=(50, 40)).astype(dtype)
        expected = (array - array.mean()) / (array - array.mean()).std()
        out = standardize_in_place(array)
        assert out is array and out.dtype == dtype
        assert np.array_equal(out, expected.astype(dtype))


def test_a_constant_array_is_divided_by_the_floor_not_zero():
    array = np.full((4, 4), 5.0)
    assert STD_FLOOR == 1e-5
    assert np.array_equal(standardize_in_place(array), np.zeros((4, 4)))
