"""The one standardization rule of the pipeline (SPEC 6 step 1 and 7.2 step 5).

Subtract the mean, then divide by the population standard deviation of the centred array,
floored at 1e-5, all in the array's own precision: stage 3 works in float64, stage 4 in
float32, and the floor keeps a constant image from dividing by zero.
"""

STD_FLOOR = 1e-5


def standardize_in_place(array):
    """Standardize a float ``array`` in place (numpy reductions in its dtype); returns it."""
    array -= array.mean()
    array /= max(array.std(), STD_FLOOR)
    return array
