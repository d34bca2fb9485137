"""Overlay pictures and their Secondary Capture (tools/dicom_results/overlay.py, and the
overlay of tools/visualize.py they share with bcc visualize)."""

import numpy as np
import pydicom
import pytest

pytest.importorskip("highdicom", reason="the clinical extra (highdicom) is not installed")

from breast_cancer_classifier.tools import visualize  # noqa: E402
from breast_cancer_classifier.tools.dicom_results import overlay, sr  # noqa: E402
from dicom_files import dciodvfy  # noqa: E402

YELLOW, RED = np.array(overlay.YELLOW), np.array([255, 80, 80])


def test_overlay_rgb_composites_the_heatmap_over_the_gray_image():
    image = np.array([[0, 1000, 2000, 4000]], dtype=np.uint16)
    gray = (0.0, 4000.0)
    plain = visualize.overlay_rgb(image, np.zeros(image.shape), gray=gray)
    np.testing.assert_array_equal(plain[0, :, 0], [0, 64, 128, 255])
    assert (plain == plain[..., :1]).all()  # gray: R = G = B
    full = visualize.overlay_rgb(image, np.ones(image.shape), gray=gray)
    color = np.array(visualize.COLORMAPS["malignant"](1.0)[:3])
    alpha = visualize.ALPHA_MAX
    expected = np.rint(((np.array([0, 0.25, 0.5, 1.0])[:, None]) * (1 - alpha)
                        + color * alpha) * 255)
    np.testing.assert_array_equal(full[0], expected)
    chunked = visualize.overlay_rgb(np.tile(image, (5, 1)), np.full((5, 4), 0.5), gray=gray,
                                    chunk_rows=2)
    whole = visualize.overlay_rgb(np.tile(image, (5, 1)), np.full((5, 4), 0.5), gray=gray)
    np.testing.assert_array_equal(chunked, whole)


def _near(pixels, color, tolerance=40):
    return (np.abs(pixels.astype(int) - color).max(axis=-1) < tolerance).sum()


def _crop(shape=(900, 700), chest_wall="left", seed=0):
    rng = np.random.default_rng(seed)
    crop = rng.integers(1000, 60000, size=shape).astype(np.uint16)
    half = shape[1] // 2
    crop[:, half:] = crop[:, half:] // 8 if chest_wall == "left" else crop[:, half:]
    crop[:, :half] = crop[:, :half] // 8 if chest_wall == "right" else crop[:, :half]
    return crop


def test_overlay_pixels_place_the_crop_and_burn_the_text():
    crop, heatmap = _crop(), np.full((900, 700), 0.3, dtype=np.float32)
    window, shape = (100, 1000, 0, 700), (1100, 1500)  # chest wall at the left edge
    with_demo = overlay.overlay_pixels(crop, heatmap, window, shape, ["line"], demo=True)
    without = overlay.overlay_pixels(crop, heatmap, window, shape, ["line"], demo=False)
    assert with_demo.shape == (1100, 1500, 3) and with_demo.dtype == np.uint8
    expected = np.zeros_like(with_demo)
    expected[100:1000, 0:700] = visualize.overlay_rgb(crop, heatmap)
    rows, columns = np.nonzero((with_demo != expected).any(axis=-1))
    assert rows.max() < 300 and columns.min() > 750  # text on the side away from the wall
    assert _near(with_demo, YELLOW) > 100 and _near(without, YELLOW) > 100
    assert _near(with_demo, RED) > 100 and _near(without, RED) == 0
    flipped = overlay.overlay_pixels(crop[:, ::-1], heatmap, (100, 1000, 800, 1500), shape)
    _, columns = np.nonzero(flipped[:300, :800].any(axis=-1))
    assert columns.min() < 50  # chest wall at the right edge: the text goes left
    with pytest.raises(ValueError, match="do not fill the window"):
        overlay.overlay_pixels(crop, heatmap, (0, 10, 0, 10), shape)


def test_secondary_capture_points_to_its_source(tmp_path):
    study = {"PatientID": "P1", "PatientName": "Doe^Jane", "StudyInstanceUID": "1.2.3",
             "StudyDate": "20200102", "PatientAge": "059Y"}
    record = {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.2", "SOPInstanceUID": "1.2.3.4.5",
              "side": "L", "view": "MLO", "PatientOrientation": ["A", "FR"]}
    pixels = overlay.overlay_pixels(_crop((300, 260)), np.zeros((300, 260)),
                                    (0, 300, 0, 260), (320, 280))
    document = sr.Document("2.25.7", "2.25.8", "overlay", 1)
    for orientation, expected in ((["A", "FR"], ["A", "FR"]), (None, None)):
        record["PatientOrientation"] = orientation
        ds = overlay.secondary_capture(study, record, pixels, document, 9105, "test")
        path = tmp_path / "sc.dcm"
        ds.save_as(path, enforce_file_format=True)
        errors, warnings = dciodvfy(path)
        assert errors == [] and all("DICOMDIR" in w for w in warnings), warnings
        ds = pydicom.dcmread(path)
        assert (list(ds.PatientOrientation) if ds.PatientOrientation else None) == expected
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.BurnedInAnnotation == "YES"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == "1.2.3.4.5"
    assert (ds.StudyInstanceUID, ds.PatientID, ds.PatientAge, ds.Laterality) == (
        "1.2.3", "P1", "059Y", "L")
    assert (ds.SeriesNumber, ds.Rows, ds.Columns) == (9105, 320, 280)
    np.testing.assert_array_equal(ds.pixel_array, pixels)
