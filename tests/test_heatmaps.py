"""Stage 3's shared pieces (core.stages.heatmaps, SPEC 6): stride lists, the patch grid,
image preparation, the patch stream and its batches across images and exams.

Unit tests use a small stand-in model whose outputs are simple patch statistics; the
parity of whole exam lists with the reference is in test_stage_scripts.py.
"""

import random

import numpy as np
import pytest

from breast_cancer_classifier.core.patch_runtime import TorchRuntime
from breast_cancer_classifier.core.stages import heatmaps

from patch_helpers import StatsModel, naive_heatmaps, random_image


def job(name, image, rows, columns, view="L-CC", horizontal_flip="NO"):
    return heatmaps.HeatmapJob(name, image, heatmaps.PatchGrid(rows, columns), view,
                               horizontal_flip)


def collect(done):
    """An on_done that keeps ``name -> (malignant, benign)`` in completion order."""
    return lambda job, malignant, benign: done.update({job.name: (malignant, benign)})


# --------------------------------------------------------------------------- strides
def test_exact_tiling_draws_nothing():
    rng = random.Random(0)
    state = rng.getstate()
    assert heatmaps.stride_list(256, rng) == []
    assert heatmaps.stride_list(326, rng) == [70]
    assert heatmaps.stride_list(256 + 70 * 5, rng) == [70] * 5
    assert rng.getstate() == state


@pytest.mark.parametrize("length", range(257, 1500, 13))
def test_strides_cover_the_axis(length):
    strides = heatmaps.stride_list(length, random.Random(length))
    n = (length - 256) // 70 + 1
    left = (length - 256) % 70
    assert sum(strides) == length - 256  # the last patch ends at the border
    assert len(strides) == (n if left else n - 1)
    average = 70 - (70 - left) // n if left else 70
    assert set(strides) <= {average, average - 1}


def test_first_draws_of_seed_0_are_pinned():
    # real_cc's first two images (2592 x 1263, then 2424 x 1162) with seed 0: rows, then
    # columns, image after image. These strides reproduce the reference's heatmaps.
    rng = random.Random(0)
    rows, columns = heatmaps.draw_strides((2592, 1263), rng)
    assert rows[:12] == [69, 69, 68, 69, 69, 69, 69, 69, 68, 68, 69, 69] and len(rows) == 34
    assert columns == [68, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 68]
    rows, columns = heatmaps.draw_strides((2424, 1162), rng)
    assert [i for i, s in enumerate(rows) if s == 69] == [3, 23]
    assert columns == [70, 69, 70, 70, 70, 69, 70, 69, 70, 70, 69, 70, 70]


def test_draws_are_random_sample_of_one_seeded_stream():
    # 2592 rows: n = 34 strides, left = 26, overlap = 44, average 70 - 44 // 34 = 69, and
    # the 44 % 34 = 10 positions given by random.sample(range(34), 10) get 68 (SPEC 6 step 2).
    positions = random.Random(0).sample(range(34), 10)
    rows = heatmaps.stride_list(2592, random.Random(0))
    assert [i for i, s in enumerate(rows) if s == 68] == sorted(positions)
    assert rows.count(69) == 24


# --------------------------------------------------------------------------- one image
def test_patch_order_is_column_major():
    grid = heatmaps.PatchGrid([70, 74], [74])
    positions = [grid.position(i) for i in range(grid.num_patches)]
    assert positions == [(0, 0), (70, 0), (144, 0), (0, 74), (70, 74), (144, 74)]


def test_standardize():
    image = random_image((300, 280), 3).astype(np.float32)
    out = heatmaps.standardize(image)
    assert out.dtype == np.float64 and out.shape == image.shape
    assert abs(out.mean()) < 1e-12 and abs(out.std() - 1) < 1e-12
    flat = heatmaps.standardize(np.full((300, 280), 7, np.float32))
    assert not flat.any()  # std 0: divided by the 1e-5 floor


def test_prepare_image_faces_right():
    raw = random_image((300, 280), 4)
    prepared = heatmaps.prepare_image(raw, "R-CC", "NO")
    np.testing.assert_array_equal(prepared, heatmaps.standardize(np.fliplr(raw)))
    np.testing.assert_array_equal(heatmaps.prepare_image(raw, "L-CC", "NO"),
                                  heatmaps.standardize(raw))


@pytest.mark.parametrize("batch_size", [1, 7, 100])
def test_streamed_heatmaps_equal_the_direct_computation(batch_size):
    model = StatsModel()
    expected, items = [], []
    for seed, shape in enumerate([(510, 345), (420, 510)]):
        image = heatmaps.standardize(random_image(shape, seed))
        rows, columns = heatmaps.draw_strides(shape, random.Random(seed))
        items.append(job(f"i{seed}", image, rows, columns))
        expected.append(naive_heatmaps(model, image, rows, columns))
    done = {}
    heatmaps.run_patch_stream(TorchRuntime(model, "cpu"), items, batch_size,
                              on_done=collect(done))
    assert list(done) == ["i0", "i1"]  # batches span images; each completes once
    for item, (malignant, benign) in zip(items, expected):
        actual = done[item.name]
        assert actual[0].dtype == np.float32
        np.testing.assert_allclose(actual[0], malignant, rtol=0, atol=1e-6)
        np.testing.assert_allclose(actual[1], benign, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch_size", [3, 100])
def test_constant_patches_are_classified_once_per_value(batch_size):
    # Background (zero) on the right half of one image and on all of another: each constant
    # value goes through the model once, and the maps equal the patch-by-patch computation.
    model = StatsModel()
    seen = []

    def counting(batch):
        seen.extend(float(p[0, 0, 0]) if (p == p[0, 0, 0]).all() else None for p in batch)
        return TorchRuntime(model, "cpu")(batch)

    half = random_image((400, 700), 5).astype(np.float64)
    half[:, 350:] = 0
    items, expected, done = [], [], {}
    for name, image in (("half", half), ("flat", np.full((300, 600), -1.5))):
        rows, columns = heatmaps.draw_strides(image.shape, random.Random(0))
        items.append(job(name, image, rows, columns))
        expected.append(naive_heatmaps(model, image, rows, columns))
    heatmaps.run_patch_stream(counting, items, batch_size, collect(done))
    constants = [v for v in seen if v is not None]
    assert sorted(constants) == [-1.5, 0.0]  # one forward per constant value
    assert len(seen) < sum(item.grid.num_patches for item in items) - 10
    for item, maps in zip(items, expected):
        for actual, wanted in zip(done[item.name], maps):
            np.testing.assert_allclose(actual, wanted, rtol=0, atol=1e-6)


def test_too_small_image_is_rejected():
    with pytest.raises(heatmaps.InputImageError, match=r"image is \(255, 300\); 256x256"):
        heatmaps.check_patchable((255, 300), "x.png")


def test_a_job_is_prepared_and_checked_from_its_plan_entry():
    from breast_cancer_classifier.core.plan import ImagePlan

    raw = random_image((300, 280), 4)
    plan = ImagePlan("x", "R-CC", raw.shape, (44,), (24,))
    made = heatmaps.heatmap_job(raw, plan, "NO", "x.png")
    np.testing.assert_array_equal(made.image, heatmaps.prepare_image(raw, "R-CC", "NO"))
    assert made.grid.num_patches == 4 and made.stored((made.image,))[0].base is made.image
    with pytest.raises(heatmaps.InputImageError, match=r"x\.png: image is \(255, 300\)"):
        heatmaps.heatmap_job(random_image((255, 300), 1), ImagePlan("x", "L-CC", (255, 300)),
                             "NO", "x.png")


# --------------------------------------------------------------------------- batches
SEAM_SHAPES = [(510, 345), (420, 510), (300, 290)]  # 15, 20 and 4 patches


def seam_jobs():
    """Three images: two of one exam, then one of another."""
    jobs = []
    for seed, shape in enumerate(SEAM_SHAPES):
        rows, columns = heatmaps.draw_strides(shape, random.Random(seed))
        jobs.append(job(f"i{seed}", heatmaps.standardize(random_image(shape, seed)), rows,
                        columns))
    return jobs


def test_patch_batches_cut_across_images_and_exams_in_patch_order():
    jobs = seam_jobs()
    assert [j.grid.num_patches for j in jobs] == [15, 20, 4]
    batches = list(heatmaps.patch_batches(iter(jobs), 8))
    spans = [[(j.name, first, count) for j, first, count in b.spans] for b in batches]
    assert spans == [[("i0", 0, 8)], [("i0", 8, 7), ("i1", 0, 1)], [("i1", 1, 8)],
                     [("i1", 9, 8)], [("i1", 17, 3), ("i2", 0, 4)]]
    assert [len(b.patches) for b in batches] == [8, 8, 8, 8, 7]
    second = batches[1]
    assert second.patches.dtype == np.float32 and second.patches.shape == (8, 256, 256, 3)
    np.testing.assert_array_equal(second.patches[7, :, :, 2], jobs[1].patch(0).astype(np.float32))
    np.testing.assert_array_equal(second.patches[0, :, :, 0], jobs[0].patch(8).astype(np.float32))


@pytest.mark.parametrize("batch_size", [7, 16])
def test_batches_across_images_and_exams_give_the_maps_of_one_image_at_a_time(batch_size):
    # Per-patch outputs do not depend on the batch (the stand-in model, or the CPU kernels
    # from about ten patches up: patch_runtime.forward_pieces), so the maps are the same bits.
    classify = TorchRuntime(StatsModel(), "cpu")
    alone = {j.name: heatmaps.image_heatmaps(classify, j, 100) for j in seam_jobs()}
    chained = {}
    heatmaps.run_patch_stream(classify, seam_jobs(), batch_size, collect(chained))
    assert list(chained) == ["i0", "i1", "i2"]
    for name, maps in alone.items():
        for actual, wanted in zip(chained[name], maps):
            np.testing.assert_array_equal(actual, wanted)


def test_sums_refuse_patches_out_of_order():
    first = seam_jobs()[0]
    sums = heatmaps.HeatmapSums()
    batch = heatmaps.PatchBatch(np.zeros((2, 256, 256, 3), np.float32), [(first, 3, 2)])
    with pytest.raises(RuntimeError, match="i0: patch 3 added out of order"):
        sums.add(batch, np.zeros((2, 2), np.float32))
