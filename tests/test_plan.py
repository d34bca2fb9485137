"""The random-number plan (core.plan): the SPEC streams, drawn up front, saved exactly."""

import random

import numpy as np

from breast_cancer_classifier.core.plan import (crop_shape, load_plan, make_plan, plan_arrays,
                                                save_plan)
from breast_cancer_classifier.core.stages.augmentation import draw_exam
from breast_cancer_classifier.core.stages.heatmaps import draw_strides
from breast_cancer_classifier.core.views import VIEWS


def exam(flip, boxes):
    """An exam after stage 2: ``boxes`` maps a view to crop boxes (top, bottom, left, right)."""
    names = {view: [f"{view}_{i}_{id(boxes)}" for i in range(len(boxes.get(view, [])))]
             for view in VIEWS}
    return {"horizontal_flip": flip, **names,
            "window_location": {view: list(boxes.get(view, [])) for view in VIEWS},
            "best_center": {view: [(100, 100)] * len(boxes.get(view, [])) for view in VIEWS}}


EXAMS = [
    exam("NO", {"L-CC": [(0, 700, 0, 500)], "R-CC": [(5, 705, 3, 503)],
                "L-MLO": [(0, 800, 0, 400), (0, 300, 0, 900)], "R-MLO": [(0, 900, 0, 600)]}),
    exam("YES", {"L-CC": [(0, 200, 0, 900)], "R-CC": [(0, 256, 0, 256)],  # 200 < 256: no draw
                 "L-MLO": [(0, 666, 0, 477)], "R-MLO": []}),
    exam("NO", {"L-CC": [(10, 1010, 0, 726)], "R-CC": [(0, 1016, 0, 746)],
                "L-MLO": [(0, 1100, 0, 700)], "R-MLO": [(0, 1200, 0, 650)]}),
]


def test_strides_are_the_stage_3_stream_in_spec_order():
    plan = make_plan(EXAMS, seed=0)
    rng = random.Random(0)  # what stage 3 draws, image after image
    for exam_entry, exam_plan in zip(EXAMS, plan):
        for image in exam_plan.images:
            index = exam_entry[image.view].index(image.name)
            shape = crop_shape(exam_entry, image.view, index)
            assert image.shape == shape
            if min(shape) < 256:
                assert not image.patchable
                continue
            rows, columns = draw_strides(shape, rng)
            assert (image.row_strides, image.column_strides) == (tuple(rows), tuple(columns))
    assert [i.name for i in plan[0].images] == [n for v in VIEWS for n in EXAMS[0][v]]


def test_draws_are_the_stage_4_stream_and_do_not_depend_on_shapes():
    plan = make_plan(EXAMS, seed=3, num_epochs=4)
    rng = np.random.RandomState(3)
    for exam_entry, exam_plan in zip(EXAMS, plan):
        expected = draw_exam(rng, {v: len(exam_entry[v]) for v in VIEWS}, 4, True)
        for got, want in zip(exam_plan.draws, expected):
            for view in VIEWS:
                assert got[view].image_index == want[view].image_index
                assert np.array_equal(got[view].mult, want[view].mult)
                assert np.array_equal(got[view].size, want[view].size)
    other_shapes = [dict(e, window_location={v: [(0, 999, 0, 999)] * len(e[v]) for v in VIEWS})
                    for e in EXAMS]
    again = make_plan(other_shapes, seed=3, num_epochs=4)
    assert all(np.array_equal(a[v].size, b[v].size)
               for x, y in zip(plan, again) for a, b in zip(x.draws, y.draws) for v in VIEWS)


def test_a_plan_entry_depends_only_on_the_exams_before_it():
    whole = make_plan(EXAMS, seed=0, num_epochs=2)
    prefix = make_plan(EXAMS[:2], seed=0, num_epochs=2)
    assert plan_arrays(prefix)["draw_size"].tolist() == \
        plan_arrays(whole)["draw_size"][:len(plan_arrays(prefix)["draw_size"])].tolist()


def test_saved_plan_round_trips_exactly(tmp_path):
    plan = make_plan(EXAMS, seed=7, num_epochs=3, use_augmentation=True)
    save_plan(plan, tmp_path / "plan.npz")
    loaded = load_plan(tmp_path / "plan.npz")
    assert loaded.same_settings(plan) and len(loaded) == len(plan)
    saved, fresh = plan_arrays(loaded), plan_arrays(plan)
    assert all(np.array_equal(saved[key], fresh[key]) for key in fresh)
    for a, b in zip(loaded, plan):
        assert a.images == b.images
        assert [{v: (d[v].image_index, d[v].mult.tobytes(), d[v].size.tobytes()) for v in VIEWS}
                for d in a.draws] == \
            [{v: (d[v].image_index, d[v].mult.tobytes(), d[v].size.tobytes()) for v in VIEWS}
             for d in b.draws]


def test_without_augmentation_only_size_noise_is_drawn():
    plan = make_plan(EXAMS[:1], seed=0, num_epochs=2, use_augmentation=False)
    rng = np.random.RandomState(0)
    for draws in plan[0].draws:
        for view in VIEWS:
            assert draws[view].image_index == 0 and not draws[view].mult.any()
            assert np.array_equal(draws[view].size, rng.uniform(-1, 1, size=4))
