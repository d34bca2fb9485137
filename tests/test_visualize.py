"""Heatmap overlay pictures: files, sizes, hanging layout, alignment and failures."""

import csv
import pickle
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breast_cancer_classifier.core import exam_list
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.tools import visualize
from breast_cancer_classifier.tools.evaluate import EvaluationInputError
from breast_cancer_classifier.core.failures import failures_csv_path
from breast_cancer_classifier.core.views import VIEWS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "src" / "utilities" / "visualize.py"
SHAPES = {"CC": (64, 40), "MLO": (72, 36)}  # tiny crops: (H, W) per angle


def png_array(data):
    """PNG bytes (or path) -> (H, W, channels) uint8."""
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    return np.asarray(Image.open(BytesIO(data)).convert("RGB"))


def expected_pixels(n_rows, n_columns, n_blocks, n_lines, with_colorbar=True):
    width, height = visualize.figure_size(n_rows, n_columns, n_blocks, n_lines, with_colorbar)
    return round(height * visualize.DPI), round(width * visualize.DPI)


def random_image(rng, shape):
    image = rng.integers(1000, 60000, size=shape).astype(np.uint16)
    image[:, -shape[1] // 4:] = 0  # some background
    return image


@pytest.fixture
def exam_dir(tmp_path):
    """Two exams of random crops and heatmaps written with the io functions."""
    rng = np.random.default_rng(0)
    exams = []
    for e in range(2):
        exam = {"horizontal_flip": "NO",
                "cancer_label": {"left_benign": 0, "right_benign": 1,
                                 "left_malignant": 0, "right_malignant": e}}
        for view in VIEWS:
            name = f"{e}_{view.replace('-', '_')}"
            shape = SHAPES[view.split("-")[1]]
            formats.write_png(tmp_path / "cropped" / f"{name}.png", random_image(rng, shape))
            for path in formats.heatmap_paths(tmp_path / "heatmaps", name):
                formats.write_hdf5(path, rng.random(shape).astype(np.float32))
            exam[view] = [name]
        exams.append(exam)
    exam_list.save_exam_list(exams, tmp_path / "data.pkl")
    formats.write_predictions_csv(tmp_path / "predictions.csv",
                             [[0.1, 0.2, 0.3, 0.4], None])
    return tmp_path


def panels_of(images, heatmaps, flip="NO"):
    return {view: visualize.prepare_panel(images[view], heatmaps[view], flip, title=view)
            for view in VIEWS}


# --------------------------------------------------------------------------- exams
def test_exam_pictures_exist_with_expected_size(exam_dir):
    out = exam_dir / "visualizations"
    status = visualize.visualize_exams(exam_dir / "data.pkl", exam_dir / "cropped", out,
                                       exam_dir / "heatmaps", [exam_dir / "predictions.csv"])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["exam_0.png", "exam_1.png"]
    exam = exam_list.load_exam_list(exam_dir / "data.pkl")[0]
    lines = visualize.exam_title_lines(0, exam, [("predictions", np.zeros(4))])
    assert len(lines) == 3  # header, one predictions CSV, labels
    for name in ("exam_0.png", "exam_1.png"):
        array = png_array(out / name)
        assert array.shape[:2] == expected_pixels(2, 2, 2, len(lines))
        assert array.std() > 10  # not a blank picture


def test_note_adds_a_warning_line(exam_dir, single_dir):
    note = "DEMO WEIGHTS (untrained): these numbers and heatmaps are NOT predictions"
    out = exam_dir / "noted"
    assert visualize.visualize_exams(exam_dir / "data.pkl", exam_dir / "cropped", out,
                                     exam_dir / "heatmaps", [exam_dir / "predictions.csv"],
                                     note=note) == 0
    array = png_array(out / "exam_0.png")
    assert array.shape[:2] == expected_pixels(2, 2, 2, 3 + 1)  # one more title line
    title = array[:array.shape[0] // 8]
    red = (title[..., 0] > 200) & (title[..., 1] < 120) & (title[..., 2] < 120)
    assert red.sum() > 100  # the note is drawn in the warning colour
    paths = visualize.single_image_paths(single_dir)
    output = single_dir / "noted.png"
    visualize.visualize_single_image(paths["cropped"], paths["metadata"], output,
                                     paths["malignant"], paths["benign"], note=note)
    assert png_array(output).shape[:2] == expected_pixels(1, 1, 2, 2)


def test_title_lines_show_predictions_failures_and_labels(exam_dir):
    exam = exam_list.load_exam_list(exam_dir / "data.pkl")[1]
    lines = visualize.exam_title_lines(1, exam, [("image", np.array([.1, .2, .3, .4])),
                                                 ("heat", np.full(4, np.nan))])
    assert lines[1] == ("image:  right: benign 0.2000, malignant 0.4000   "
                        "left: benign 0.1000, malignant 0.3000")
    assert lines[2] == "heat:  no prediction (failed exam)"
    assert lines[3].endswith("right: benign 1, malignant 1   left: benign 0, malignant 0")


def test_views_hang_right_on_the_left_cc_on_top():
    rng = np.random.default_rng(1)
    images = {v: random_image(rng, SHAPES[v.split("-")[1]]) for v in VIEWS}
    heatmaps = {v: {k: np.zeros(images[v].shape, np.float32) for k in visualize.HEATMAP_KINDS}
                for v in VIEWS}
    fig, axes = visualize.draw_figure(panels_of(images, heatmaps), visualize.HANGING,
                                      visualize.HEATMAP_KINDS, ["title"])
    for kind in visualize.HEATMAP_KINDS:
        box = {v: axes[(kind, v)].get_position() for v in VIEWS}
        assert box["R-CC"].x0 < box["L-CC"].x0 and box["R-MLO"].x0 < box["L-MLO"].x0
        assert box["R-CC"].y0 > box["R-MLO"].y0 and box["L-CC"].y0 > box["L-MLO"].y0
    # the malignant block is left of the benign block
    assert axes[("malignant", "L-CC")].get_position().x1 < \
        axes[("benign", "R-CC")].get_position().x0


@pytest.mark.parametrize("flip", ["NO", "YES"])
def test_picture_differs_only_where_the_heatmap_differs(flip):
    rng = np.random.default_rng(2)
    images = {v: random_image(rng, SHAPES[v.split("-")[1]]) for v in VIEWS}
    heatmaps = {v: {k: np.full(images[v].shape, 0.1, np.float32)
                    for k in visualize.HEATMAP_KINDS} for v in VIEWS}
    changed = {v: dict(h) for v, h in heatmaps.items()}
    hot = changed["L-CC"]["malignant"].copy()
    hot[8:24, 4:16] = 0.95  # a hot square in the top-left of the stored L-CC image
    changed["L-CC"]["malignant"] = hot

    fig_a, _ = visualize.draw_figure(panels_of(images, heatmaps, flip), visualize.HANGING,
                                     visualize.HEATMAP_KINDS, ["t"])
    fig_b, axes = visualize.draw_figure(panels_of(images, changed, flip), visualize.HANGING,
                                        visualize.HEATMAP_KINDS, ["t"])
    a, b = png_array(visualize.png_bytes(fig_a)), png_array(visualize.png_bytes(fig_b))
    assert a.shape == b.shape
    rows, columns = np.nonzero((a != b).any(axis=2))
    assert rows.size > 0

    # Where the square should be, in pixels: data coordinates of the displayed image
    # (mirrored for "YES") through the cell's transform; PNG rows run top-down.
    ax = axes[("malignant", "L-CC")]
    width = images["L-CC"].shape[1]
    x0, x1 = (4, 16) if flip == "NO" else (width - 16, width - 4)
    corners = ax.transData.transform([(x0 - 0.5, 8 - 0.5), (x1 - 0.5, 24 - 0.5)])
    height = a.shape[0]
    left, right = sorted(corners[:, 0])
    top, bottom = sorted(height - corners[:, 1])
    slack = 2  # antialiasing at the square's edges
    assert left - slack <= columns.min() and columns.max() <= right + slack
    assert top - slack <= rows.min() and rows.max() <= bottom + slack
    # and the square itself changed throughout
    inside = np.s_[int(top) + 3:int(bottom) - 3, int(left) + 3:int(right) - 3]
    assert (a[inside] != b[inside]).any(axis=2).mean() > 0.9


def test_yes_exams_are_mirrored_for_display():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4) + 1
    heatmap = np.arange(12, dtype=np.float32).reshape(3, 4) / 12
    no = visualize.prepare_panel(image, {"malignant": heatmap}, "NO")
    yes = visualize.prepare_panel(image, {"malignant": heatmap}, "YES")
    np.testing.assert_array_equal(no["image"], image)
    np.testing.assert_array_equal(yes["image"], np.fliplr(image))
    np.testing.assert_array_equal(yes["heatmaps"]["malignant"], np.fliplr(heatmap))


def test_large_images_are_downsampled_with_their_heatmaps():
    image = np.ones((2000, 1200), np.uint16)
    panel = visualize.prepare_panel(image, {"benign": np.zeros((2000, 1200))}, "NO", max_rows=500)
    assert panel["image"].shape == panel["heatmaps"]["benign"].shape == (500, 300)


def test_overlay_opacity_grows_with_the_heatmap():
    rgba = visualize.overlay_rgba(np.array([[0.0, 0.25, 1.0, 3.0]]), "malignant")
    alpha = rgba[0, :, 3]
    assert alpha[0] == 0 and alpha[1] < alpha[2] == alpha[3] == visualize.ALPHA_MAX


def test_plain_pictures_without_heatmaps(exam_dir):
    out = exam_dir / "plain"
    assert visualize.visualize_exams(exam_dir / "data.pkl", exam_dir / "cropped", out) == 0
    assert png_array(out / "exam_0.png").shape[:2] == expected_pixels(2, 2, 1, 2, False)


def failure_rows(out):
    with open(failures_csv_path(out), newline="") as f:
        return list(csv.DictReader(f))


def test_a_broken_exam_is_reported_and_the_others_drawn(exam_dir):
    formats.heatmap_paths(exam_dir / "heatmaps", "1_R_MLO")[1].unlink()
    out = exam_dir / "out"
    status = visualize.visualize_exams(exam_dir / "data.pkl", exam_dir / "cropped", out,
                                       exam_dir / "heatmaps")
    assert status == 3  # some exams failed, the rest is complete
    assert [p.name for p in out.iterdir()] == ["exam_0.png"]
    (failure,) = failure_rows(out)
    assert failure["item"].startswith("exam 1 (1_L_CC, ")
    assert "heatmap_benign/1_R_MLO.hdf5: HDF5 file not found" in failure["reason"]


def test_heatmap_of_another_shape_is_a_failure(exam_dir):
    formats.write_hdf5(formats.heatmap_paths(exam_dir / "heatmaps", "0_L_CC")[0], np.zeros((5, 5)))
    out = exam_dir / "out"
    assert visualize.visualize_exams(exam_dir / "data.pkl", exam_dir / "cropped", out,
                                     exam_dir / "heatmaps") == 3
    (failure,) = failure_rows(out)
    assert "heatmap is (5, 5) but its cropped image" in failure["reason"]
    assert "is (64, 40)" in failure["reason"]


def test_several_images_per_view_give_several_pictures(exam_dir):
    exams = exam_list.load_exam_list(exam_dir / "data.pkl")
    exams[0]["L-CC"].append(exams[1]["L-CC"][0])
    exam_list.save_exam_list(exams[:1], exam_dir / "one.pkl")
    out = exam_dir / "out"
    visualize.visualize_exams(exam_dir / "one.pkl", exam_dir / "cropped", out,
                              exam_dir / "heatmaps")
    assert sorted(p.name for p in out.iterdir()) == ["exam_0.png", "exam_0_2.png"]


def test_predictions_rows_must_match_the_exam_list(exam_dir):
    formats.write_predictions_csv(exam_dir / "three.csv", [[0.1] * 4] * 3)
    with pytest.raises(EvaluationInputError, match=r"3 prediction row\(s\), but exam list"):
        visualize.visualize_exams(exam_dir / "data.pkl", exam_dir / "cropped", exam_dir / "out",
                                  prediction_paths=[exam_dir / "three.csv"])
    assert not (exam_dir / "out").exists()


# --------------------------------------------------------------------------- single image
@pytest.fixture
def single_dir(tmp_path):
    rng = np.random.default_rng(4)
    shape = SHAPES["CC"]
    formats.write_png(tmp_path / "cropped.png", random_image(rng, shape))
    formats.write_hdf5(tmp_path / "malignant_heatmap.hdf5", rng.random(shape))
    formats.write_hdf5(tmp_path / "benign_heatmap.hdf5", rng.random(shape))
    meta = {"short_file_path": None, "horizontal_flip": "NO", "full_view": "R-CC",
            "side": "R", "view": "CC", "best_center": (30, 20)}
    (tmp_path / "cropped_metadata.pkl").write_bytes(pickle.dumps(meta, protocol=4))
    (tmp_path / "predictions.txt").write_text(
        'Stage 4a: Run Classifier (Image)\n{"benign": 0.0402, "malignant": 0.0080}\n')
    return tmp_path


def test_single_image_picture(single_dir):
    paths = visualize.single_image_paths(single_dir)
    output = single_dir / "visualization.png"
    visualize.visualize_single_image(paths["cropped"], paths["metadata"], output,
                                     paths["malignant"], paths["benign"],
                                     [single_dir / "predictions.txt"])
    assert png_array(output).shape[:2] == expected_pixels(1, 1, 2, 2)
    with pytest.raises(visualize.PipelineError, match="--overwrite"):
        visualize.visualize_single_image(paths["cropped"], paths["metadata"], output)


def test_single_predictions_lines(single_dir):
    assert visualize.read_single_predictions(single_dir / "predictions.txt") == [
        ("predictions", {"benign": 0.0402, "malignant": 0.0080})]
    two = single_dir / "predictions.jsonl"
    two.write_text('Stage 4a\n{"benign": 0.1, "malignant": 0.2}\n'
                   'Stage 4b\n{"benign": 0.3, "malignant": 0.4}\n')
    assert visualize.read_single_predictions(two) == [  # run_single.sh's two lines
        ("image-only model", {"benign": 0.1, "malignant": 0.2}),
        ("image+heatmaps model", {"benign": 0.3, "malignant": 0.4})]
    three = single_dir / "three.txt"
    three.write_text('{"benign": 0.1, "malignant": 0.2}\n' * 3)
    assert [name for name, _ in visualize.read_single_predictions(three)] == [
        "three #1", "three #2", "three #3"]
    (single_dir / "none.txt").write_text("Stage 1\n")
    with pytest.raises(EvaluationInputError, match="no line of the form"):
        visualize.read_single_predictions(single_dir / "none.txt")


# --------------------------------------------------------------------------- command line
def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_cli_exams_and_single(exam_dir, single_dir):
    out = exam_dir / "visualizations"
    done = run_script("--exam-list-path", exam_dir / "data.pkl", "--cropped-image-path",
                      exam_dir / "cropped", "--heatmaps-path", exam_dir / "heatmaps",
                      "--predictions-path", exam_dir / "predictions.csv", "--output-dir", out)
    assert done.returncode == 0, done.stderr
    assert (out / "exam_1.png").is_file()
    done = run_script("--single-output-dir", single_dir)
    assert done.returncode == 0, done.stderr
    assert (single_dir / "visualization.png").is_file()


def test_cli_refuses_unclear_requests(exam_dir):
    assert run_script("--output-dir", exam_dir / "o").returncode == 2  # no mode
    formats.write_predictions_csv(exam_dir / "three.csv", [[0.1] * 4] * 3)
    done = run_script("--exam-list-path", exam_dir / "data.pkl", "--cropped-image-path",
                      exam_dir / "cropped", "--predictions-path", exam_dir / "three.csv",
                      "--output-dir", exam_dir / "o")
    assert done.returncode == 2 and "3 prediction row(s)" in done.stderr
