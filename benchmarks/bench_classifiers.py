"""Seconds per exam of the stage-4 classifiers (10 augmented epochs), batch size 1 vs batched.

    .venv/bin/python benchmarks/bench_classifiers.py [--exams 1] [--batch-sizes 1 10]
        [--device-type cpu] [--threads N]

Inputs are synthetic and full size (4000 x 2500 cropped images, so the windows are cut
without padding, as for real mammograms), weights are random: timings only, never numbers.
One row per model variant and batch size; the last row is the part of the time spent
reading, cutting, resizing and standardizing the windows (measured alone, without a model).
Not collected by pytest.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from breast_cancer_classifier import io  # noqa: E402
from breast_cancer_classifier.augmentation import draw_exam  # noqa: E402
from breast_cancer_classifier.classifier_models import (build_image_model,  # noqa: E402
                                                        build_view_split_model)
from breast_cancer_classifier.classify import (ClassifierSettings, classify_exams,  # noqa: E402
                                               exam_batch, read_exam_inputs,
                                               reuse_freed_memory)
from breast_cancer_classifier.failures import FailureReport  # noqa: E402
from breast_cancer_classifier.runtime import resolve_device  # noqa: E402
from breast_cancer_classifier.views import VIEWS  # noqa: E402

SHAPE = (4000, 2500)
EPOCHS = 10
MODELS = [("view_split", False), ("view_split", True), ("image", False), ("image", True)]


def make_exams(folder, num_exams):
    """Synthetic exams: a bright elliptic 'breast' on black, smooth random heatmaps."""
    rng = np.random.RandomState(0)
    rows, cols = np.mgrid[:SHAPE[0], :SHAPE[1]]
    breast = ((rows - SHAPE[0] / 2) / (SHAPE[0] / 2)) ** 2 + (cols / SHAPE[1]) ** 2 < 1
    exams = []
    for e in range(num_exams):
        exam = {"horizontal_flip": "NO", "best_center": {}}
        for view in VIEWS:
            name = f"e{e}_{view}"
            image = (breast * rng.randint(1000, 60000, size=SHAPE)).astype(np.uint16)
            io.write_png(folder / f"{name}.png", image if view[0] == "L" else image[:, ::-1])
            for kind in ("malignant", "benign"):
                smooth = cv2.resize(rng.rand(40, 25).astype(np.float32), SHAPE[::-1])
                io.write_hdf5(folder / f"heatmap_{kind}" / f"{name}.hdf5", smooth)
            exam[view] = [name]
            exam["best_center"][view] = [(SHAPE[0] // 2, SHAPE[1] // 2 - 100)]
        exams.append(exam)
    return exams


def timed(function, *args):
    """``(wall seconds, CPU seconds of this process)`` of one call; CPU time counts every
    thread and is less disturbed than wall time by other work on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def classify(exams, folder, model, settings, device):
    classify_exams(exams, model, folder, folder, settings, device, FailureReport("bench"))


def prepare_inputs(exams, folder, settings):
    """Only the input side of ``classify``: read, draw, cut, resize, standardize."""
    rng = np.random.RandomState(settings.seed)
    for exam in exams:
        draws = draw_exam(rng, {v: 1 for v in VIEWS}, settings.num_epochs, True)
        inputs = read_exam_inputs(exam, folder, folder, settings)
        for first in range(0, len(draws), settings.batch_size):
            exam_batch(inputs, exam["best_center"], draws[first:first + settings.batch_size],
                       True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--device-type", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--system-malloc", action="store_true",
                        help="do not call reuse_freed_memory() (to measure what it saves)")
    args = parser.parse_args(argv)
    if not args.system_malloc:
        reuse_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device_type)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exams = make_exams(folder, args.exams)
        print(f"device {device}, torch threads {torch.get_num_threads()}, {args.exams} exam(s), "
              f"{EPOCHS} augmented epochs{', system malloc' if args.system_malloc else ''}")
        print(f"{'model':<22}{'batch':>6}{'wall s/exam':>13}{'cpu s/exam':>12}")
        for mode, heatmaps in MODELS:
            name = f"{mode}{' + heatmaps' if heatmaps else ''}"
            for batch_size in args.batch_sizes:
                settings = ClassifierSettings(model_mode=mode, use_heatmaps=heatmaps,
                                              use_augmentation=True, num_epochs=EPOCHS,
                                              batch_size=batch_size)
                builder = build_view_split_model if mode == "view_split" else build_image_model
                model = builder(settings.channels).eval().to(device)
                model = model.to(memory_format=torch.channels_last)
                wall, cpu = timed(classify, exams, folder, model, settings, device)
                print(f"{name:<22}{batch_size:>6}{wall / len(exams):>13.1f}"
                      f"{cpu / len(exams):>12.1f}", flush=True)
        settings = ClassifierSettings(use_heatmaps=True, use_augmentation=True,
                                      num_epochs=EPOCHS)
        wall, cpu = timed(prepare_inputs, exams, folder, settings)
        print(f"{'(inputs only, 3 ch)':<22}{1:>6}{wall / len(exams):>13.1f}"
              f"{cpu / len(exams):>12.1f}")

if __name__ == "__main__":
    main()
