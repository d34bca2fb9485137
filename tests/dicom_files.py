"""Synthetic DICOM files for the tests: mammograms (raw, JPEG 2000 or JPEG lossless), a
breast-like phantom of stored values, and a structured report to be skipped.

Every file is built with pydicom; compressed ones are compressed here (JPEG 2000 lossless
through pydicom's encoder, JPEG lossless SV1 through the small encoder below), so decoders
are checked against data they did not produce.
"""

import struct
import subprocess

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1,
                         generate_uid)

from helpers import debian_tool

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SHAPE = (40, 48)  # large enough for OpenJPEG's default 6 resolution levels


def jpeg_lossless_sv1(image, precision):
    """Encode (H, W) integers as a JPEG lossless bitstream (ITU T.81 process 14, first-order
    prediction, point transform 0), one Huffman table with a 5-bit code per category."""
    rows, cols = image.shape
    out = bytearray(b"\xff\xd8")
    out += b"\xff\xc3" + struct.pack(">HBHHB", 11, precision, rows, cols, 1) + bytes([1, 0x11, 0])
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # 17 categories (0..16), all 5-bit codes
    out += b"\xff\xc4" + struct.pack(">HB", 2 + 1 + 16 + 17, 0x00) + counts + bytes(range(17))
    out += b"\xff\xda" + struct.pack(">HB", 8, 1) + bytes([1, 0x00, 1, 0, 0])
    pixels = image.astype(np.int64)
    bits = []
    for r in range(rows):
        for c in range(cols):
            if r == 0 and c == 0:
                prediction = 1 << (precision - 1)
            elif c == 0:
                prediction = pixels[r - 1, c]
            else:
                prediction = pixels[r, c - 1]
            diff = (int(pixels[r, c]) - int(prediction)) % 65536
            diff = diff - 65536 if diff >= 32768 else diff
            category = 0 if diff == 0 else (16 if diff == -32768 else abs(diff).bit_length())
            bits.append((category, 5))  # canonical code of category k is k (all 5 bits)
            if 0 < category < 16:
                bits.append((diff if diff > 0 else diff + (1 << category) - 1, category))
    acc = n_acc = 0
    data = bytearray()
    for value, length in bits + [((1 << 7) - 1, 7)]:  # pad with 1-bits
        acc, n_acc = (acc << length) | value, n_acc + length
        while n_acc >= 8:
            n_acc -= 8
            byte = (acc >> n_acc) & 0xFF
            data += bytes([byte, 0]) if byte == 0xFF else bytes([byte])
    return bytes(out + data + b"\xff\xd9")


def phantom(bits, chest_wall="left", seed=0, shape=SHAPE):
    """Breast-like stored values: bright half-disc at the chest wall, zeros elsewhere,
    with the extremes 0 and 2^bits - 1 present."""
    rng = np.random.RandomState(seed)
    top = 2 ** bits - 1
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    from_wall = xx if chest_wall == "left" else shape[1] - 1 - xx
    inside = (yy - shape[0] // 2) ** 2 + from_wall ** 2 < (shape[0] // 2) ** 2
    image = np.where(inside, rng.randint(top // 3, top + 1, shape), 0)
    image[shape[0] // 2, 0 if chest_wall == "left" else -1] = top
    return image.astype(np.uint16)


def mammogram(path, pixels, *, bits=12, study="1.2.3.1", patient="PA", date="20200102",
              side="L", view="CC", side_tag="ImageLaterality", monochrome1=False,
              intent="FOR PRESENTATION", syntax=ExplicitVRLittleEndian, view_code=None,
              sop_class=MG_FOR_PRESENTATION, **extra):
    """Write a one-frame MG image; ``pixels`` are the values as stored."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = extra.pop("sop", generate_uid())
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyDate = "MG", patient, date
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    if intent:
        ds.PresentationIntentType = intent
    if side:
        setattr(ds, side_tag, side)
    if view is not None:
        ds.ViewPosition = view
    if view_code:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = view_code
        ds.ViewCodeSequence = [item]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if syntax == JPEG2000Lossless:
        ds.compress(JPEG2000Lossless, pixels.astype(np.uint16))
    elif syntax == JPEGLosslessSV1:
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.PixelData = encapsulate([jpeg_lossless_sv1(pixels, bits)])
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def structured_report(path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = BASIC_TEXT_SR, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.PatientID = "SR", "1.2.3.1", "PA"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


SCREENING_VIEWS = (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))


def block_phantom(chest_wall="left", seed=0, shape=(300, 300), bits=12):
    """Stored values of a breast that fills the rows and 90% of the columns from its chest
    wall, with a rounded edge: the smallest images whose crops (stage 1 erodes, then dilates,
    100 pixels) stay at least 256 pixels wide and high (stage 3's patch)."""
    rng = np.random.RandomState(seed)
    rows, columns = shape
    yy, xx = np.mgrid[:rows, :columns]
    from_wall = xx if chest_wall == "left" else columns - 1 - xx
    reach = 0.9 * columns - 0.15 * columns * ((yy - rows / 2) / (rows / 2)) ** 2
    image = np.where(from_wall < reach, rng.randint(2 ** bits // 3, 2 ** bits, shape), 0)
    return image.astype(np.uint16)


def screening_study(folder, study, patient, *, mirrored=False, shape=(300, 300), seed=0,
                    **attributes):
    """Four 12-bit views of one study (:func:`block_phantom`), the chest wall where
    ``horizontal_flip`` "NO" expects it (left views: left edge), or on the other side when
    ``mirrored``. Returns ``{(side, view): path}``."""
    paths = {}
    for k, (side, view) in enumerate(SCREENING_VIEWS):
        wall = "left" if (side == "L") != mirrored else "right"
        orientation = ["A", "R"] if wall == "left" else ["P", "L"]
        paths[(side, view)] = mammogram(
            folder / f"{side}{view}.dcm", block_phantom(wall, seed + k, shape), study=study,
            patient=patient, side=side, view=view, sop=f"{study}.{k + 1}",
            PatientOrientation=orientation, ImagerPixelSpacing=["0.1", "0.1"],
            SeriesNumber=k + 1, InstanceNumber=1, **attributes)
    return paths


# --------------------------------------------------------------------------- validators
def dciodvfy(path):
    """``(errors, warnings)``: dicom3tools' IOD checker's lines on a file."""
    tool = debian_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    return ([line for line in lines if line.startswith("Error")],
            [line for line in lines if line.startswith("Warning")])


def dsrdump_errors(path):
    """dcmtk's SR reader's errors on a file: among them, content relationships that the
    SR IOD does not allow (PS3.3 Table A.35.5-2 for Mammography CAD SR)."""
    tool = debian_tool("dsrdump", "dcmtk")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("E:", "F:"))]
    if proc.returncode != 0 and not errors:
        errors = [f"dsrdump exited {proc.returncode}: {proc.stderr.strip()}"]
    return errors
