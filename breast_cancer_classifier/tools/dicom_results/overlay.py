"""Secondary Capture of one source image: its malignant heatmap overlaid, text burned in.

The picture is the source image's size and stored orientation: the cropped mammogram in its
crop window (pixels outside the window, which no model saw, are black), drawn in gray with
the malignant heatmap over it in colour exactly as ``bcc visualize`` draws a view
(:func:`breast_cancer_classifier.tools.visualize.overlay_rgb`). Heatmaps are stored in the
orientation of their cropped image (SPEC 3 and 6, step 6), so both go into the window as
they are. Text is burned into the pixels on the side away from the chest wall: "NOT FOR
DIAGNOSTIC USE", "DEMO WEIGHTS" when the weights are demo weights, what the colours are,
and the breast's malignant probabilities; a colour bar shows the heatmap's 0..1 scale.

The object (Secondary Capture Image Storage, highdicom's ``SCImage``): Image Type
``DERIVED\\SECONDARY``, Burned In Annotation ``YES``, Source Image Sequence pointing to the
source instance, patient and study copied from it, in a series of its own (one series per
overlay, whose Laterality is the breast's).
"""

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from ..make_exam_list import breast_facing
from ..visualize import COLORMAPS, NOTE_COLOR, gray_range, overlay_rgb
from .sr import DEVICE, finish_derived, study_arguments

SC_SERIES_NUMBER = 9101  # and up: one series per overlay
NOT_FOR_DIAGNOSTIC_USE = "NOT FOR DIAGNOSTIC USE"
DEMO_WEIGHTS = "DEMO WEIGHTS (untrained): NOT predictions"
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_TEXT_SCALE = 0.35  # about 12-pixel capitals: the smallest readable size
WHITE, YELLOW = (255, 255, 255), (255, 230, 0)
# PS3.16 CID 7202 "Source Image Purpose of Reference".
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def _rgb(hex_color):
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))


def overlay_pixels(cropped, heatmap, window, shape, lines=(), demo=False):
    """(rows, columns, 3) uint8: the overlay picture of a source image of ``shape``.

    ``cropped`` and ``heatmap``: (h, w) arrays of the crop ``window`` (top, bottom, left,
    right) in source pixels; ``lines``: extra text lines under the warnings.
    """
    top, bottom, left, right = (int(v) for v in window)
    if cropped.shape != (bottom - top, right - left) or heatmap.shape != cropped.shape:
        raise ValueError(f"crop {cropped.shape} and heatmap {heatmap.shape} do not fill the "
                         f"window {window}")
    rows, columns = shape
    gray = gray_range(cropped)
    picture = np.zeros((rows, columns, 3), dtype=np.uint8)
    picture[top:bottom, left:right] = overlay_rgb(cropped, heatmap, "malignant", 1.0, gray)
    canvas = np.zeros((rows, columns), dtype=np.float32)
    canvas[top:bottom, left:right] = cropped
    text = [(NOT_FOR_DIAGNOSTIC_USE, YELLOW)]
    if demo:
        text.append((DEMO_WEIGHTS, _rgb(NOTE_COLOR)))
    text += [(line, WHITE) for line in lines]
    _burn_text(picture, text, chest_wall_left=breast_facing(canvas) != "left")
    return picture


def _burn_text(picture, text, chest_wall_left):
    """Write ``text`` ((line, colour) pairs) and a 0..1 colour bar in a dark box at the top
    corner away from the chest wall, scaled to fit the picture's width."""
    rows, columns = picture.shape[:2]
    widest = max(cv2.getTextSize(line, FONT, 1.0, 2)[0][0] for line, _ in text)
    scale = min(max(max(rows, columns) / 1500, MIN_TEXT_SCALE), 0.9 * columns / widest)
    thickness = max(1, round(scale * 2))
    line_height = int(round(cv2.getTextSize("Ag", FONT, scale, thickness)[0][1] * 1.8)) + 1
    margin = max(2, line_height // 3)
    width = int(widest * scale) + 2 * margin
    bar_height = line_height // 2
    height = line_height * len(text) + bar_height + 3 * margin
    x0 = columns - width - margin if chest_wall_left else margin
    x0 = max(0, x0)
    picture[margin:margin + height, x0:x0 + width] //= 4  # darken behind the text
    y = margin
    for line, color in text:
        y += line_height
        cv2.putText(picture, line, (x0 + margin, y - line_height // 4), FONT, scale, color,
                    thickness, cv2.LINE_AA)
    bar = COLORMAPS["malignant"](np.linspace(0, 1, max(width - 2 * margin, 2)))[:, :3]
    y += margin
    picture[y:y + bar_height, x0 + margin:x0 + margin + bar.shape[0]] = \
        np.rint(bar[None] * 255).astype(np.uint8)


def secondary_capture(study, record, pixels, document, series_number=SC_SERIES_NUMBER,
                      description=""):
    """The Secondary Capture dataset of ``pixels`` (RGB) derived from the source ``record``.

    ``study``/``record``: the records of :mod:`.sources`; ``document``: the
    :class:`~.sr.Document` (UIDs, instance number) of this object, alone in its series.
    """
    orientation = record.get("PatientOrientation")
    known = isinstance(orientation, list) and len(orientation) == 2 and all(orientation)
    sc = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=("A", "R"),  # replaced below
        laterality=record["side"], series_instance_uid=document.series_instance_uid,
        series_number=series_number, sop_instance_uid=document.sop_instance_uid,
        instance_number=document.instance_number, transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=document.series_description, **study_arguments(study), **DEVICE)
    finish_derived(sc, study, document)
    # The source's own value (highdicom admits single letters only; mammograms have "A\\FR"),
    # or empty (Type 2) rather than a guess.
    sc.PatientOrientation = list(orientation) if known else None
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"
    sc.SecondaryCaptureDeviceManufacturer = DEVICE["manufacturer"]
    sc.SecondaryCaptureDeviceManufacturerModelName = DEVICE["manufacturer_model_name"]
    sc.SecondaryCaptureDeviceSoftwareVersions = DEVICE["software_versions"]
    if description:
        sc.DerivationDescription = description[:1024]
    source = Dataset()
    source.ReferencedSOPClassUID = record["SOPClassUID"]
    source.ReferencedSOPInstanceUID = record["SOPInstanceUID"]
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = SOURCE_PURPOSE
    source.PurposeOfReferenceCodeSequence = [purpose]
    sc.SourceImageSequence = [source]
    return sc
