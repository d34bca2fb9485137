"""Every file format of the pipeline, read and written in one place (SPEC section 3).

Writers never leave a half-written file behind: they write a temporary file in the target
folder and move it into place with ``os.replace``, which is atomic on one file system.
Whole output folders are staged the same way (:func:`staged_output_dir`).
"""

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import h5py
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputImageError, OutputExistsError
from .views import LABELS

# PIL modes of single-channel PNGs we accept, and the dtype they hold.
_GRAY_MODES = {"L": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16}


# --------------------------------------------------------------------------- atomic writes
def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual permissions.
_FILE_MODE = 0o666 & ~_current_umask()
_DIR_MODE = 0o777 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def check_output_file(path, overwrite):
    """Refuse to replace an existing output file unless ``overwrite`` is set."""
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(
            f"{path}: output file already exists; remove it or pass --overwrite to replace it")


@contextlib.contextmanager
def staged_output_dir(target_dir, overwrite=False):
    """Build an output folder in a staging folder and swap it in only when complete.

    Yields the staging folder. On success the old ``target_dir`` (if ``overwrite``) is
    removed and the staging folder renamed onto it, so a folder never mixes the files of
    two runs. On failure the staging folder is removed and ``target_dir`` is untouched.
    """
    target_dir = Path(target_dir)
    if target_dir.exists() and not overwrite:
        raise OutputExistsError(
            f"{target_dir}: output folder already exists; remove it or pass --overwrite "
            "to replace it")
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", suffix=".partial",
                                  dir=target_dir.parent))
    os.chmod(stage, _DIR_MODE)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if target_dir.exists():
        old = target_dir.with_name(f".{target_dir.name}.old.{os.getpid()}")
        os.replace(target_dir, old)
        os.replace(stage, target_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, target_dir)


# --------------------------------------------------------------------------- PNG
def read_mammogram_png(path):
    """Read a single-channel PNG as stored: (H, W) uint16 for 16-bit files, uint8 for 8-bit.

    Colour, palette, alpha or unreadable files raise :class:`InputImageError` naming the
    file and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in _GRAY_MODES:
                raise InputImageError(
                    f"{path}: expected a single-channel grayscale PNG (8 or 16 bit), found "
                    f"PIL mode {mode!r} ({len(img.getbands())} band(s): "
                    f"{''.join(img.getbands())}); convert it to grayscale first")
            array = np.asarray(img)
    except InputImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputImageError(f"{path}: cannot read image ({err})") from err
    return np.ascontiguousarray(array, dtype=_GRAY_MODES[mode])


def write_png(path, array):
    """Write a 2-D uint16 (or uint8) array as a grayscale PNG of the same bit depth, atomically."""
    array = np.asarray(array)
    if array.ndim != 2 or array.dtype not in (np.uint16, np.uint8):
        raise ValueError(f"{path}: write_png needs a 2-D uint8/uint16 array, got "
                         f"{array.dtype} {array.shape}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array),
                               [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise InputImageError(f"{path}: PNG encoding failed")
    write_bytes_atomic(path, encoded.tobytes())


# --------------------------------------------------------------------------- HDF5
def read_hdf5(path):
    """Read an HDF5 image/heatmap: dataset ``image`` stored transposed; returns (H, W)."""
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: HDF5 file not found")
    try:
        with h5py.File(path, "r") as f:
            if "image" not in f:
                raise InputImageError(
                    f"{path}: no dataset named 'image' (found: {sorted(f.keys())})")
            data = f["image"][()]
    except InputImageError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise InputImageError(f"{path}: cannot read HDF5 file ({err})") from err
    if data.ndim != 2:
        raise InputImageError(f"{path}: expected a 2-D 'image' dataset, found shape {data.shape}")
    return _transposed(data)


# Depths OpenCV transposes (several times faster than a strided numpy copy).
_CV2_DEPTHS = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32,
                                     np.float32, np.float64)}


def _transposed(data):
    """``data.T`` as a C-contiguous array (the datasets are stored transposed)."""
    if data.dtype in _CV2_DEPTHS and data.size:
        return cv2.transpose(np.ascontiguousarray(data))
    return np.ascontiguousarray(data.T)


def write_hdf5(path, array):
    """Write a 2-D (H, W) array as dataset ``image`` holding ``array.T``, lzf, atomically.

    The file is made in memory (the same bytes as written to disk directly) so that its
    SHA-256, returned, is that of the bytes written rather than of a second read.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("image", data=np.asarray(array).T, compression="lzf")
    data = buffer.getvalue()
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


# A pipeline image file's format, by its suffix (SPEC 3): one reader per format.
_IMAGE_READERS = {".png": read_mammogram_png, ".hdf5": read_hdf5, ".h5": read_hdf5}


def read_image_file(path):
    """Read a mammogram or cropped image by its suffix: ``.png``, or ``.hdf5``/``.h5``."""
    reader = _IMAGE_READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise InputImageError(f"{path}: expected a .png (or .hdf5) image file")
    return reader(path)


def read_image(path_stem, use_hdf5=False):
    """Read a pipeline image given its path without extension (``.png`` or ``.hdf5``)."""
    return read_image_file(f"{path_stem}.{'hdf5' if use_hdf5 else 'png'}")


def image_path(folder, short_file_path, use_hdf5=False):
    return Path(folder) / f"{short_file_path}.{'hdf5' if use_hdf5 else 'png'}"


def heatmap_paths(heatmaps_dir, short_file_path):
    """(malignant, benign) heatmap file paths of an image, SPEC section 3."""
    heatmaps_dir = Path(heatmaps_dir)
    return (heatmaps_dir / "heatmap_malignant" / f"{short_file_path}.hdf5",
            heatmaps_dir / "heatmap_benign" / f"{short_file_path}.hdf5")


# --------------------------------------------------------------------------- JSON lines
def single_prediction_line(prediction):
    """The single-image result line (SPEC 8): ``json.dumps`` of the two floats."""
    return json.dumps({"benign": prediction["benign"], "malignant": prediction["malignant"]})


def read_single_prediction_lines(path):
    """Every ``{"benign": p, "malignant": p}`` JSON line of a file, in order.

    Other lines (stage banners, say) are skipped. Raises :class:`InputImageError` when the
    file cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputImageError(f"{path}: cannot read predictions ({err})") from err
    found = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and {"benign", "malignant"} <= value.keys():
            found.append(value)
    return found


# --------------------------------------------------------------------------- CSV
def write_csv(path, header, rows):
    """Write a CSV atomically; ``rows`` are sequences of already formatted strings."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


# Columns a predictions CSV gains with --calibration, after the four raw ones.
CALIBRATED_LABELS = tuple(f"{label}_calibrated" for label in LABELS)


def write_predictions_csv(path, predictions):
    """Write the predictions CSV of SPEC section 3.

    ``predictions`` holds one entry per exam, in exam-list order: four probabilities in
    ``LABELS`` order, or ``None`` for a failed exam (written as a row of empty values so
    rows stay aligned with the exam list).
    """
    rows = [["", "", "", ""] if p is None else ["%.4f" % v for v in p] for p in predictions]
    write_csv(path, LABELS, rows)


def read_predictions_csv(path, calibrated=False):
    """Read a predictions CSV into an (N, 4) float array (NaN for empty rows).

    A CSV written with ``--calibration`` has the four ``CALIBRATED_LABELS`` columns after
    the raw ones; ``calibrated`` selects them (else the raw columns are read).
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as err:
        raise InputImageError(f"{path}: cannot read predictions CSV ({err})") from err
    header = tuple(rows[0]) if rows else ()
    if header not in (LABELS, LABELS + CALIBRATED_LABELS):
        raise InputImageError(f"{path}: expected header {','.join(LABELS)}, "
                              f"found {','.join(rows[0]) if rows else 'an empty file'}")
    if calibrated and header == LABELS:
        raise InputImageError(f"{path}: has no calibrated columns (written without "
                              "--calibration)")
    first = len(LABELS) if calibrated else 0
    values = np.full((len(rows) - 1, len(LABELS)), np.nan)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise InputImageError(f"{path}: line {i + 2}: expected {len(header)} values, "
                                  f"found {len(row)}")
        try:
            values[i] = [float(v) if v.strip() != "" else np.nan
                         for v in row[first:first + len(LABELS)]]
        except ValueError as err:
            raise InputImageError(f"{path}: line {i + 2}: {err}") from None
    return values
