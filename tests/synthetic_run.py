"""A synthetic finished ``bcc run`` folder, written with the project's own writers, for the
report's tests and benchmarks/bench_report.py.

No model runs: crops are small random textures, heatmaps random maps that are brighter in
positive breasts, and the predictions follow the labels with noise (the imageheatmaps model
more closely than the image model). Everything else is what ``bcc run`` writes, through the
same functions: ``formats.write_png``/``write_hdf5``/``write_predictions_csv``/``write_csv``,
``save_exam_list``, ``core.qa`` rows measured on the crops, ``RunRecord.write_settings`` and
the manifest's JSON lines, ``run_layout.write_exam_result``. The weights are tiny files listed
in a demo marker (``tools.demo_marker``), so the report shows its demo banner.

Beside the run: ``labels.csv``, ``exam_list.pkl.report.csv`` (a ``bcc dicom`` report with
the acquisition columns) and ``attributes.csv``; :class:`SyntheticRun` holds the truth.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from breast_cancer_classifier.core import formats, qa
from breast_cancer_classifier.core.exam_list import save_exam_list
from breast_cancer_classifier.core.hashing import file_sha256, git_blob_sha1
from breast_cancer_classifier.core.run_layout import RunLayout, write_exam_result
from breast_cancer_classifier.core.run_record import RunRecord, library_versions
from breast_cancer_classifier.core.views import LABELS, VIEWS, is_right
from breast_cancer_classifier.tools.demo_marker import _write_marker
from breast_cancer_classifier.tools.dicom import REPORT_COLUMNS
from breast_cancer_classifier.tools.make_exam_list import default_report_path

WEIGHT_FILES = {"patch": "sample_patch_model.p", "image": "sample_image_model.p",
                "imageheatmaps": "sample_imageheatmaps_model.p"}
MANUFACTURERS = ("Hologic", "GE", "Siemens")
DICOM_COLUMNS = ("manufacturer", "manufacturer_model", "kvp", "exposure_mas",
                 "compression_force_n", "body_part_thickness_mm", "lossy_compression")


@dataclass
class SyntheticRun:
    root: Path
    labels: np.ndarray  # (N, 4) 0/1
    predictions: dict  # model -> (N, 4), NaN rows for failed exams
    manufacturer: list  # per exam
    site: list  # the --attributes column, per exam
    labels_path: Path
    attributes_path: Path
    dicom_report_path: Path
    failed: list  # exam indices with no prediction


def _crop(rng, shape, right):
    """A breast-like uint16 crop: textured half ellipse at the chest wall, 0 outside."""
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols]
    depth = (cols - 1 - xx) if right else xx
    inside = ((yy - rows / 2) / (rows / 2)) ** 2 + (depth / (cols * 0.95)) ** 2 < 1
    texture = rng.integers(12000, 40000, size=shape)
    image = np.where(inside, texture, 0).astype(np.uint16)
    image[rows // 2, 0 if not right else cols - 1] = 65535  # full-scale, as rescaled data
    return image


def write_synthetic_run(folder, n_exams=40, seed=0, crop_shape=(420, 300), missing_view=(3,),
                        pictures_for=None):
    """Write the run into ``folder/run`` and its inputs beside it; returns a SyntheticRun.

    ``missing_view``: exams without their R-MLO image (stage 4 then fails them: empty
    prediction rows, failures.csv). ``pictures_for``: exams whose crops and heatmaps are
    written (default all).
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    layout = RunLayout(folder / "run")
    exam_list_path = folder / "exam_list.pkl"
    labels = np.zeros((n_exams, 4))
    labels[np.arange(n_exams), rng.integers(0, 4, n_exams)] = rng.random(n_exams) < 0.6
    labels[rng.random((n_exams, 4)) < 0.08] = 1
    exams, qa_rows = [], []
    drawn = set(range(n_exams) if pictures_for is None else pictures_for)
    for e in range(n_exams):
        exam = {"horizontal_flip": "NO"}
        for key in ("window_location", "best_center", "distance_from_starting_side"):
            exam[key] = {}
        for view in VIEWS:
            if e in missing_view and view == "R-MLO":
                exam[view] = []
                for key in ("window_location", "best_center", "distance_from_starting_side"):
                    exam[key][view] = []
                qa_rows.append(qa.image_row("", e, view, extra=["missing_view"],
                                            note=f"exam {e} has no {view} image"))
                continue
            name = f"e{e}_{view.replace('-', '_')}"
            exam[view] = [name]
            shape = (crop_shape[0] + int(rng.integers(0, 20)), crop_shape[1])
            exam["window_location"][view] = [(0, shape[0], 0, shape[1])]
            exam["best_center"][view] = [(shape[0] // 2, shape[1] // 2)]
            exam["distance_from_starting_side"][view] = [0]
            crop = _crop(rng, shape, is_right(view))
            if e % 7 == 5:  # a dim exam: the intensity check fires
                crop = (crop // 4).astype(np.uint16)
            qa_rows.append(qa.image_row(name, e, view, qa.measure(crop, view, 0)))
            if e in drawn:
                formats.write_png(layout.cropped_dir / f"{name}.png", crop)
                side = "right" if is_right(view) else "left"
                for kind, path in zip(("malignant", "benign"),
                                      formats.heatmap_paths(layout.heatmaps_dir, name)):
                    level = 0.6 if labels[e, LABELS.index(f"{side}_{kind}")] else 0.15
                    formats.write_hdf5(path, np.clip(rng.normal(level, 0.1, shape), 0, 1)
                                       .astype(np.float32))
        exams.append(exam)
    save_exam_list([{"horizontal_flip": x["horizontal_flip"], **{v: x[v] for v in VIEWS}}
                    for x in exams], exam_list_path)
    save_exam_list(exams, layout.data_pkl)
    save_exam_list(exams, layout.cropped_list)
    qa.write_rows(layout.qa, qa_rows)

    failed = sorted(set(missing_view) & set(range(n_exams)))
    predictions = {}
    for model, noise in (("image", 1.4), ("imageheatmaps", 0.8)):
        logits = 2.0 * labels - 1.5 + rng.normal(0, noise, labels.shape)
        values = np.round(1 / (1 + np.exp(-logits)), 4)
        values[failed] = np.nan
        predictions[model] = values
        formats.write_predictions_csv(layout.csvs[model], [
            None if np.isnan(row).any() else row.astype(np.float32) for row in values])
    for e in range(n_exams):
        write_exam_result(layout, SimpleNamespace(
            index=e, predictions={m: None if e in failed else predictions[m][e]
                                  for m in predictions},
            failures=[("classify", f"exam {e}", "no R-MLO image")] if e in failed else []))
    if failed:
        formats.write_csv(layout.failures, ("stage", "item", "reason"),
                          [("classify", f"exam {e}", "no R-MLO image") for e in failed])
    _write_record(layout, folder, exam_list_path, n_exams, rng)
    manufacturer = [MANUFACTURERS[e % len(MANUFACTURERS)] for e in range(n_exams)]
    site = ["north" if e % 2 else "south" for e in range(n_exams)]
    return SyntheticRun(
        root=layout.root, labels=labels, predictions=predictions, manufacturer=manufacturer,
        site=site, labels_path=_write_labels(folder, labels),
        attributes_path=_write_attributes(folder, site),
        dicom_report_path=_write_dicom_report(exam_list_path, exams, manufacturer, rng),
        failed=failed)


def _write_record(layout, folder, exam_list_path, n_exams, rng):
    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name in WEIGHT_FILES.values():
        (models / name).write_bytes(f"not a model: {name}\n".encode())
    _write_marker(models, {n: git_blob_sha1(models / n) for n in WEIGHT_FILES.values()}, 0)
    weights = {role: str(models / name) for role, name in WEIGHT_FILES.items()}
    RunRecord(layout.root).write_settings({
        "weights": weights, "weights_sha256": {r: file_sha256(p) for r, p in weights.items()},
        "exam_list_sha256": "0" * 64, "seed": 0, "num_epochs": 1, "use_augmentation": True,
        "precision": "fp32", "runtime": "torch", "device": "cpu", "batch_size": 1,
        "heatmap_batch_size": 100, "versions": library_versions(),
        "command": ["bcc", "run", "--exam-list", str(exam_list_path), "--output-dir",
                    str(layout.root)]})
    start = 1.8e9
    lines = [{"unit": "pass1", "status": "done", "failures": [], "images": 4 * n_exams,
              "outputs": {}, "seconds": 1.5, "worker": "synthetic:1"}]
    for e in range(n_exams):
        start += float(rng.uniform(0.5, 2.0))
        lines.append({"exam": e, "status": "done", "outputs": {}, "seconds": 1.0,
                      "finished": round(start, 3), "worker": "synthetic:1"})
    with open(RunRecord(layout.root).manifest_path, "w") as f:
        f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)


def _write_labels(folder, labels):
    path = folder / "labels.csv"
    formats.write_csv(path, LABELS, [[str(int(v)) for v in row] for row in labels])
    return path


def _write_attributes(folder, site):
    path = folder / "attributes.csv"
    formats.write_csv(path, ("exam_index", "site"), [[str(e), s] for e, s in enumerate(site)])
    return path


def _write_dicom_report(exam_list_path, exams, manufacturer, rng):
    """``bcc dicom``'s report beside the exam list, with the acquisition columns per image."""
    path = default_report_path(exam_list_path)
    columns = REPORT_COLUMNS + tuple(c for c in DICOM_COLUMNS if c not in REPORT_COLUMNS)
    rows = []
    for e, exam in enumerate(exams):
        kvp = 26 + (e % 9)
        for view in VIEWS:
            for name in exam[view]:
                values = {"path": f"dicom/{name}.dcm", "status": "kept", "exam": str(e),
                          "view": view, "output_png": f"{name}.png",
                          "manufacturer": manufacturer[e],
                          "manufacturer_model": f"{manufacturer[e]} M{e % 2}",
                          "kvp": str(kvp + (view.endswith("MLO"))),
                          "exposure_mas": f"{rng.uniform(40, 200):.1f}",
                          "compression_force_n": f"{rng.uniform(60, 140):.0f}",
                          "body_part_thickness_mm": f"{rng.uniform(30, 80):.0f}",
                          "lossy_compression": "00"}
                rows.append([values.get(c, "") for c in columns])
    stranger = {"path": "dicom/other.dcm", "status": "kept", "output_png": "stranger.png"}
    rows.append([stranger.get(c, "") for c in columns])  # an image of no exam of the run
    formats.write_csv(path, columns, rows)
    return path
