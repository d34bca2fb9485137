"""DICOM results of a finished ``bcc run`` folder: one Mammography CAD SR per exam, one
Secondary Capture per source image, written into a folder of their own.

What is read from the run folder: ``data.pkl`` (the exam list after stages 1-2: the
``dicom`` records of ``bcc dicom`` and each image's crop window), both predictions CSVs (the
values written there, times 100, are the SR's percentages: they equal the CSV exactly),
``run_settings.json`` (the weights' SHA-256, seed, epochs), the manifest (when each exam was
finished: the SR's Content Date and Time), ``heatmaps/heatmap_malignant/`` and
``cropped_images/``. Nothing is read from the source DICOM files: a file that moved since
conversion only gets a warning (its exam's objects come from the recorded attributes).

UIDs are derived (PS3.5 B.2, ``2.25.``) from the run's binding settings, the calibrations and
the source UIDs: writing the same run again gives the same UIDs, so a PACS replaces rather
than duplicates; another run (other weights, seed, epochs, exam list) gives other UIDs.
"""

import csv
import datetime
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np

from ... import __version__
from ...core import formats
from ...core.errors import InputImageError, OutputExistsError, PipelineError, SettingsError
from ...core.exam_list import exam_names, load_exam_list
from ...core.failures import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL
from ...core.hashing import file_sha256
from ...core.run_layout import RunLayout
from ...core.run_record import BINDING_SETTINGS, RunRecord
from ...core.runtime import log, progress
from ...core.views import LABELS, VIEWS
from .sources import check_exam_list, exam_records, source_file_problem

INDEX_NAME, FAILURES_NAME = "dicom_results.csv", "failures.csv"
INDEX_COLUMNS = ("file", "kind", "exam", "image", "study_instance_uid", "series_instance_uid",
                 "sop_instance_uid", "source_sop_instance_uid")
MODELS = (("image", "image-only"), ("imageheatmaps", "image+heatmaps"))
# (side, target) of each predictions column, in LABELS order.
LABEL_KEYS = tuple((label.split("_")[0][0].upper(), label.split("_")[1]) for label in LABELS)
STAGE = "dicom-out"
SR_SERIES_DESCRIPTION = "CAD SR: NYU breast cancer screening classifier (Wu 2019)"
SC_SERIES_DESCRIPTION = "Malignant heatmap overlay - NOT FOR DIAGNOSTIC USE"


def require_highdicom():
    """SettingsError (exit 2) naming the extra to install when highdicom is missing."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise SettingsError("DICOM results need highdicom: pip install "
                            "'breast-cancer-classifier[clinical]'") from None


def check_output_folder(output_dir, overwrite):
    """Refuse (OutputExistsError, exit 2) a folder that holds anything, unless ``overwrite``."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputExistsError(f"{output_dir}: exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        first = sorted(p.name for p in output_dir.iterdir())[0]
        raise OutputExistsError(f"{output_dir}: holds earlier results ({first}, ...); remove "
                                "it or pass --overwrite to replace it")


def check_dicom_output(exam_list_path, output_dir, overwrite=False):
    """What ``bcc run --dicom-out`` checks before any work: highdicom, the exam list's
    ``bcc dicom`` records (ExamListError naming what is missing) and the output folder."""
    require_highdicom()
    check_exam_list(load_exam_list(exam_list_path), exam_list_path)
    check_output_folder(output_dir, overwrite)


# --------------------------------------------------------------------------- run folder
def _read_csv_cells(path):
    """The CSV's header and rows, as written (strings)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as err:
        raise InputImageError(f"{path}: cannot read the predictions CSV ({err})") from err
    if not rows or tuple(rows[0][:len(LABELS)]) != LABELS:
        raise InputImageError(f"{path}: not a predictions CSV (header {','.join(LABELS)})")
    return rows[0], rows[1:]


def _percent(cells):
    """``{(side, target): Decimal percent}`` of four CSV cells in LABELS order, or None."""
    if any(c.strip() == "" for c in cells):
        return None
    return {key: Decimal(cell) * 100 for key, cell in zip(LABEL_KEYS, cells)}


def _finished_times(layout):
    """``{exam index: finished epoch seconds}`` from the run manifest."""
    times = {}
    for entry in RunRecord(layout.root).entries():
        if isinstance(entry.get("exam"), int) and entry.get("finished"):
            times[entry["exam"]] = entry["finished"]
    return times


def _demo_weights(settings):
    """Whether the run's weights were demo weights (and still are the files the run used)."""
    from ..demo_marker import demo_weight_files

    for role, path in settings.get("weights", {}).items():
        path = Path(path)
        demo = {p.resolve() for p in demo_weight_files(path.parent).values()}
        if path.resolve() in demo and file_sha256(path) == settings["weights_sha256"].get(role):
            return True
    return False


class RunFolder:
    """What the DICOM results need of a finished ``bcc run`` folder."""

    def __init__(self, run_dir, calibration_paths=()):
        self.layout = RunLayout(run_dir)
        root = self.layout.root
        for path in (self.layout.data_pkl, root / "run_settings.json",
                     *self.layout.csvs.values()):
            if not path.is_file():
                raise PipelineError(f"{root}: not a finished bcc run folder ({path.name} is "
                                    "missing); run bcc run to the end first")
        self.exams = load_exam_list(self.layout.data_pkl)
        check_exam_list(self.exams, self.layout.data_pkl)
        self.settings = json.loads((root / "run_settings.json").read_text())
        self.cells = {}
        for model, path in self.layout.csvs.items():
            _, rows = _read_csv_cells(path)
            if len(rows) != len(self.exams):
                raise InputImageError(f"{path}: {len(rows)} row(s) for {len(self.exams)} exams")
            self.cells[model] = rows
        self.calibrations = self._calibrations(calibration_paths)
        self.finished = _finished_times(self.layout)
        self.demo = _demo_weights(self.settings)
        self.key = self._key()

    def _calibrations(self, paths):
        from ..calibration import calibrations_for_run

        calibrations = calibrations_for_run(list(paths), self.settings["weights"])
        for model, calibration in calibrations.items():
            fitted = calibration["fitted_on"].get("weights_sha256")
            if fitted and fitted != self.settings["weights_sha256"][model]:
                raise SettingsError(f"{calibration['path']}: fitted on other weights than "
                                    f"those of the run in {self.layout.root}")
        return calibrations

    def _key(self):
        binding = {k: self.settings.get(k) for k in BINDING_SETTINGS}
        binding["calibrations"] = sorted(file_sha256(c["path"])
                                         for c in self.calibrations.values())
        return hashlib.sha256(json.dumps(binding, sort_keys=True).encode()).hexdigest()

    def uid(self, *parts):
        """A UID derived from the run and ``parts``: ``2.25.`` and 128 bits of their SHA-256
        (PS3.5 B.2)."""
        digest = hashlib.sha256("\0".join([self.key, *map(str, parts)]).encode()).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def algorithm(self, role):
        from .sr import Algorithm

        names = {"patch": "NYU patch classifier (DenseNet-121), malignant heatmap",
                 "image": "NYU image-only classifier (view_split)",
                 "imageheatmaps": "NYU image+heatmaps classifier (view_split)"}
        s = self.settings
        parameters = [f"breast_cancer_classifier {__version__}",
                      f"weights sha256 {s['weights_sha256'][role]}"]
        if role != "patch":
            parameters.append(f"num_epochs={s.get('num_epochs')} seed={s.get('seed')} "
                              f"precision={s.get('precision')}")
        calibration = self.calibrations.get(role)
        if calibration is not None:
            parameters.append(f"calibration {calibration['method']} sha256 "
                              f"{file_sha256(calibration['path'])}")
        return Algorithm(names[role], s["weights_sha256"][role][:12], tuple(parameters))


# --------------------------------------------------------------------------- one exam
def _peak(heatmap, window):
    """``((row, column) in source pixels, value)`` of a heatmap's maximum (first in row-major
    order on ties). Heatmaps are in their cropped image's (stored) orientation, so only the
    crop window's offset is undone."""
    row, column = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    top, _, left, _ = window
    return (int(top) + int(row), int(left) + int(column)), float(heatmap[row, column])


def _image_results(run, index, exam):
    """:class:`~.sr.ImageResult` of every image of the exam, with crop and heatmap arrays."""
    from .sr import ImageResult

    _, records = exam_records(exam, index)
    images = []
    for view in VIEWS:
        for k, name in enumerate(exam[view]):
            window = tuple(int(v) for v in exam["window_location"][view][k])
            malignant, _ = formats.heatmap_paths(run.layout.heatmaps_dir, name)
            heatmap = formats.read_hdf5(malignant)
            crop = formats.read_image(run.layout.cropped_dir / name)
            if heatmap.shape != crop.shape:
                raise InputImageError(f"{malignant}: heatmap {heatmap.shape} does not match "
                                      f"its cropped image {crop.shape}")
            peak, value = _peak(heatmap, window)
            image = ImageResult(name, records[name], window, peak, value)
            image.crop, image.heatmap = crop, heatmap
            images.append(image)
    return images


def _calibrated_percent(calibration, percent):
    """The calibrated percentages as ``add_calibrated_columns`` writes them (4 decimals)."""
    from ..calibration import transform

    raw = np.array([[float(percent[key] / 100) for key in LABEL_KEYS]])
    calibrated = transform(calibration, raw)[0]
    return {key: Decimal("%.4f" % v) * 100 for key, v in zip(LABEL_KEYS, calibrated)
            if not np.isnan(v)}


def operating_point(calibration):
    """The operating point of a calibration file: its ``operating_point.threshold`` (a
    calibrated malignant probability, 0..1), or None when it has none."""
    point = calibration.get("operating_point")
    if isinstance(point, dict) and isinstance(point.get("threshold"), (int, float)):
        return float(point["threshold"])
    return None


def _model_results(run, index):
    from .sr import ModelResult

    models = []
    for role, label in MODELS:
        percent = _percent(run.cells[role][index][:len(LABELS)])
        if percent is None:
            return None
        calibration = run.calibrations.get(role)
        calibrated = _calibrated_percent(calibration, percent) if calibration else None
        models.append(ModelResult(label, run.algorithm(role), percent, calibrated))
    return models


def _operating_text(run, models):
    """The overall impression: which breasts are at or above an operating point."""
    lines, algorithms = [], []
    for (role, _), model in zip(MODELS, models):
        calibration = run.calibrations.get(role)
        threshold = operating_point(calibration) if calibration else None
        if threshold is None or not model.calibrated:
            continue
        above = [breast for side, breast in (("R", "right"), ("L", "left"))
                 if model.calibrated.get((side, "malignant")) is not None
                 and model.calibrated[(side, "malignant")] >= Decimal(repr(threshold)) * 100]
        lines.append(f"{model.label} model, calibrated: "
                     + (f"{' and '.join(above)} breast(s) at or above" if above
                        else "no breast at or above")
                     + f" the operating point {Decimal(repr(threshold)) * 100} % "
                     f"(malignant)")
        algorithms.append(model.algorithm)
    return "; ".join(lines), algorithms


def _content_time(run, index):
    seconds = run.finished.get(index)
    when = (datetime.datetime.fromtimestamp(seconds) if seconds
            else datetime.datetime.now())
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _breast_lines(models, side):
    breast = "right" if side == "R" else "left"
    return [f"{breast} breast, malignant: " + ", ".join(
        f"{m.label} {m.percent[(side, 'malignant')].normalize():f} %" for m in models)]


def _exam_models(run, index):
    """Both classifiers' results of an exam, or PipelineError saying why there are none."""
    result_file = run.layout.exam_file(index)
    models = _model_results(run, index) if result_file.is_file() else None
    if models is None:
        failures = []
        if result_file.is_file():
            failures = [f[-1] for f in json.loads(result_file.read_text()).get("failures", [])]
        raise PipelineError("no prediction from both classifiers"
                            + (f" ({'; '.join(failures)})" if failures else ""))
    return models


def _overlays(run, study, images, models, when, exam_tag):
    """``[(file name, SC dataset, image name, source SOP Instance UID)]`` of an exam."""
    from .overlay import SC_SERIES_NUMBER, overlay_pixels, secondary_capture
    from .sr import Document

    objects = []
    for k, image in enumerate(images):
        record = image.record
        pixels = overlay_pixels(image.crop, image.heatmap, image.window,
                                (int(record["Rows"]), int(record["Columns"])),
                                _breast_lines(models, record["side"]), run.demo)
        sop = record["SOPInstanceUID"]
        document = Document(run.uid("sc", sop), run.uid("sc-series", sop),
                            SC_SERIES_DESCRIPTION, 1, *when)
        sc = secondary_capture(study, record, pixels, document, SC_SERIES_NUMBER + k,
                               f"{record['side']}-{record['view']} with the malignant heatmap "
                               "of the patch classifier overlaid by breast_cancer_classifier")
        objects.append((f"SC_exam{exam_tag}_{_safe(image.name)}.dcm", sc, image.name, sop))
    return objects


def _exam_objects(run, index, exam, width):
    """``[(file name, dataset, kind, image name, source SOP Instance UID)]`` of one exam: its
    SR, then its overlays; PipelineError when the exam has no results."""
    from .sr import Document, cad_sr

    models = _exam_models(run, index)
    study, _ = exam_records(exam, index)
    images = _image_results(run, index, exam)
    for image in images:
        problem = source_file_problem(image.record)
        if problem:
            log.warning("%s: exam %d, image %s: %s; its objects are written from the "
                        "attributes bcc dicom recorded", STAGE, index, image.name, problem)
    when = _content_time(run, index)
    study_uid = study["StudyInstanceUID"]
    text, algorithms = _operating_text(run, models)
    document = Document(run.uid("sr", study_uid, index), run.uid("sr-series", study_uid, index),
                        SR_SERIES_DESCRIPTION, 1, *when)
    sr = cad_sr(study, images, models, run.algorithm("patch"), document, text or None,
                algorithms)
    exam_tag = f"{index:0{width}d}"
    return [(f"SR_exam{exam_tag}.dcm", sr, "SR", "", "")] + [
        (name, sc, "SC", image, source)
        for name, sc, image, source in _overlays(run, study, images, models, when, exam_tag)]


# --------------------------------------------------------------------------- entry point
def write_dicom_results(run_dir, output_dir, *, calibrations=(), overwrite=False):
    """Write the DICOM results of the run in ``run_dir`` into ``output_dir``; exit status.

    One Mammography CAD SR per exam (``SR_exam<index>.dcm``) and one Secondary Capture per
    source image (``SC_exam<index>_<short file path>.dcm``), an index of them
    (``dicom_results.csv``) and, when exams failed, ``failures.csv``. ``calibrations``:
    calibration.json files of ``bcc calibrate`` (one per model). The folder is built aside
    and swapped in whole; one that holds anything is refused unless ``overwrite``.
    Returns 0, 3 (some exams failed: no SR, no overlays) or 1 (every exam failed).
    """
    require_highdicom()
    check_output_folder(output_dir, overwrite)
    run = RunFolder(run_dir, calibrations)
    width = len(str(max(len(run.exams) - 1, 0)))
    failures, index_rows = [], []
    with formats.staged_output_dir(output_dir, overwrite=True) as stage:
        for index, exam in enumerate(progress(run.exams, desc="DICOM results", unit="exam")):
            try:
                objects = _exam_objects(run, index, exam, width)
            except PipelineError as err:
                failures.append((STAGE, f"exam {index} ({exam_names(exam)})", str(err)))
                log.error("%s: FAILED exam %d: %s", STAGE, index, err)
                continue
            for name, ds, kind, image, source in objects:
                ds.save_as(stage / name, enforce_file_format=True)
                index_rows.append([name, kind, str(index), image, ds.StudyInstanceUID,
                                   ds.SeriesInstanceUID, ds.SOPInstanceUID, source])
        formats.write_csv(stage / INDEX_NAME, INDEX_COLUMNS, index_rows)
        if failures:
            formats.write_csv(stage / FAILURES_NAME, ("stage", "item", "reason"), failures)
    log.info("%s: %d object(s) for %d of %d exam(s) in %s", STAGE, len(index_rows),
             len(run.exams) - len(failures), len(run.exams), output_dir)
    if not failures:
        return EXIT_OK
    return EXIT_NOTHING_DONE if len(failures) == len(run.exams) else EXIT_PARTIAL
