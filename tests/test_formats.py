"""Every file format: PNG as stored, HDF5 layout, atomic writes, staged folders, CSV."""

import os

import h5py
import numpy as np
import pytest
from PIL import Image

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.errors import InputImageError, OutputExistsError


def test_png16_round_trip_keeps_uint16(tmp_path):
    image = (np.arange(60 * 40, dtype=np.uint32).reshape(60, 40) * 27 % 65536).astype(np.uint16)
    formats.write_png(tmp_path / "a.png", image)
    back = formats.read_mammogram_png(tmp_path / "a.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, image)
    # A PNG written by another library (PIL) reads the same way.
    Image.fromarray(image).save(tmp_path / "b.png")
    np.testing.assert_array_equal(formats.read_mammogram_png(tmp_path / "b.png"), image)


def test_png8_accepted(tmp_path):
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(image).save(tmp_path / "g.png")
    back = formats.read_mammogram_png(tmp_path / "g.png")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("mode,found", [("RGB", "'RGB'"), ("RGBA", "'RGBA'"), ("LA", "'LA'")])
def test_colour_or_alpha_png_refused(tmp_path, mode, found):
    path = tmp_path / "c.png"
    Image.new(mode, (8, 8)).save(path)
    with pytest.raises(InputImageError, match=f"{path}.*{found}"):
        formats.read_mammogram_png(path)


def test_corrupt_and_missing_png(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(InputImageError, match="bad.png: cannot read image"):
        formats.read_mammogram_png(bad)
    with pytest.raises(InputImageError, match="nothere.png: image file not found"):
        formats.read_mammogram_png(tmp_path / "nothere.png")


def test_truncated_png(tmp_path):
    image = np.random.default_rng(0).integers(0, 65535, (200, 200)).astype(np.uint16)
    formats.write_png(tmp_path / "t.png", image)
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputImageError, match="t.png"):
        formats.read_mammogram_png(tmp_path / "t.png")


def test_hdf5_is_stored_transposed_with_lzf(tmp_path):
    heatmap = np.random.default_rng(1).random((30, 20)).astype(np.float32)
    formats.write_hdf5(tmp_path / "h.hdf5", heatmap)
    with h5py.File(tmp_path / "h.hdf5", "r") as f:
        assert f["image"].shape == (20, 30)
        assert f["image"].compression == "lzf"
        np.testing.assert_array_equal(f["image"][()], heatmap.T)
    np.testing.assert_array_equal(formats.read_hdf5(tmp_path / "h.hdf5"), heatmap)


@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<u2", "u1", "<i8", ">f4", "?", "<f2"])
def test_hdf5_of_any_dtype_reads_back_transposed(tmp_path, dtype):
    # OpenCV transposes the depths it knows; numpy the others (int64, big-endian, bool...).
    data = (np.arange(7 * 5).reshape(7, 5) % 3).astype(dtype)
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        f.create_dataset("image", data=data)
    back = formats.read_hdf5(tmp_path / "d.hdf5")
    assert back.flags.c_contiguous and back.dtype == data.dtype
    np.testing.assert_array_equal(back, data.T)


def test_hdf5_errors_name_the_file(tmp_path):
    with h5py.File(tmp_path / "x.hdf5", "w") as f:
        f.create_dataset("other", data=np.zeros((2, 2)))
    with pytest.raises(InputImageError, match="x.hdf5: no dataset named 'image'"):
        formats.read_hdf5(tmp_path / "x.hdf5")
    (tmp_path / "y.hdf5").write_bytes(b"garbage")
    with pytest.raises(InputImageError, match="y.hdf5: cannot read HDF5"):
        formats.read_hdf5(tmp_path / "y.hdf5")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with formats.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_outputs_get_normal_permissions(tmp_path):
    formats.write_bytes_atomic(tmp_path / "f", b"x")
    assert (tmp_path / "f").stat().st_mode & 0o044 == 0o044 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_staged_dir_swaps_in_only_when_complete(tmp_path):
    target = tmp_path / "out"
    with formats.staged_output_dir(target) as stage:
        (stage / "a.txt").write_text("1")
    assert sorted(os.listdir(target)) == ["a.txt"]
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with formats.staged_output_dir(target):
            pass
    with pytest.raises(RuntimeError):
        with formats.staged_output_dir(target, overwrite=True) as stage:
            (stage / "b.txt").write_text("2")
            raise RuntimeError("crash mid-run")
    assert sorted(os.listdir(target)) == ["a.txt"]  # untouched
    with formats.staged_output_dir(target, overwrite=True) as stage:
        (stage / "b.txt").write_text("2")
    assert sorted(os.listdir(target)) == ["b.txt"]  # never a mix of two runs
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_predictions_csv_format_and_empty_rows(tmp_path):
    formats.write_predictions_csv(tmp_path / "p.csv", [(0.12344, 0.5, 1.0, 0.0), None])
    assert (tmp_path / "p.csv").read_text() == (
        "left_benign,right_benign,left_malignant,right_malignant\n"
        "0.1234,0.5000,1.0000,0.0000\n,,,\n")
    back = formats.read_predictions_csv(tmp_path / "p.csv")
    assert back.shape == (2, 4) and np.isnan(back[1]).all()


def test_images_are_read_by_their_suffix(tmp_path):
    image = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000)
    formats.write_png(tmp_path / "a.png", image)
    formats.write_hdf5(tmp_path / "a.hdf5", image)
    assert np.array_equal(formats.read_image_file(tmp_path / "a.png"), image)
    assert np.array_equal(formats.read_image_file(tmp_path / "a.hdf5"), image)
    assert np.array_equal(formats.read_image(tmp_path / "a", use_hdf5=True), image)
    with pytest.raises(InputImageError, match="expected a .png"):
        formats.read_image_file(tmp_path / "a.jpg")


def test_single_prediction_lines_round_trip(tmp_path):
    values = [{"benign": 0.040191903710365295, "malignant": 0.008045293390750885},
              {"benign": 0.1, "malignant": 0.2}]
    path = tmp_path / "predictions.jsonl"
    path.write_text("Stage 4a: Run Classifier (Image)\n"
                    + "\n".join(formats.single_prediction_line(v) for v in values) + "\n[1]\n")
    assert formats.read_single_prediction_lines(path) == values
    assert formats.single_prediction_line(values[0]) == \
        '{"benign": 0.040191903710365295, "malignant": 0.008045293390750885}'
    with pytest.raises(InputImageError, match="cannot read"):
        formats.read_single_prediction_lines(tmp_path / "missing.jsonl")


def test_predictions_csv_with_calibrated_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(",".join(formats.LABELS + formats.CALIBRATED_LABELS) + "\n"
                    "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8\n,,,,,,,\n")
    np.testing.assert_array_equal(formats.read_predictions_csv(path)[0], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(formats.read_predictions_csv(path, calibrated=True)[0],
                                  [0.5, 0.6, 0.7, 0.8])
    assert np.isnan(formats.read_predictions_csv(path, calibrated=True)[1]).all()
    formats.write_predictions_csv(path, [[0.1, 0.2, 0.3, 0.4]])
    with pytest.raises(InputImageError, match="has no calibrated columns"):
        formats.read_predictions_csv(path, calibrated=True)
    path.write_text(",".join(formats.LABELS) + ",extra\n0.1,0.2,0.3,0.4,0.5\n")
    with pytest.raises(InputImageError, match="expected header"):
        formats.read_predictions_csv(path)
