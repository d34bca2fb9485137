"""Stage 4 benchmark: seconds per exam (10 augmented epochs), the input side, the model's ceiling.

    .venv/bin/python benchmarks/bench_classifiers.py [--exams 2] [--batch-sizes 1 10]
        [--device-type cpu] [--threads N] [--skip-models]

Inputs are synthetic and full size (4000 x 2500 cropped images with heatmaps, so the windows
are cut without padding, as for real mammograms); weights are random: timings only, never
numbers. Three tables:

1. Whole stage per exam, per model variant: the straightforward path (table 2's inputs,
   batch size 1) beside ours (``classify_exams`` as ``run_model`` runs it, with the
   device's ``DeviceBatching``), and batch size 10 run whole per forward pass, as on a GPU.
2. The input side alone (read the exam's files, cut, resize and standardize 10 x 4
   windows), the straightforward way (views in turn, ``np.stack``/``fliplr`` copies, a
   strided channel copy per window) against ours, with the largest difference (must be 0).
3. The model's ceiling: one ResNet-22 column forward pass on a CC window, its convolutions'
   arithmetic (counted) per second, beside a large fp32 matrix product on the same threads,
   the practical peak of the machine. When the two are close, no fp32 runtime can make
   the model much faster on this CPU; only fewer operations or lower precision can.
Progress bars are off (BCC_NO_PROGRESS=1). Not collected by pytest.
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.standardize import STD_FLOOR  # noqa: E402
from breast_cancer_classifier.core.stages.augmentation import (cut_window, draw_exam,  # noqa: E402
                                                               window_location)
from breast_cancer_classifier.core.classifier_models import (ResNetColumn, build_image_model,  # noqa: E402
                                                             build_view_split_model)
from breast_cancer_classifier.core.allocator import heap_for_classifiers  # noqa: E402
from breast_cancer_classifier.core.stage_scripts import classify_exams  # noqa: E402
from breast_cancer_classifier.core.stages.classify import (ClassifierSettings,  # noqa: E402
                                                           DeviceBatching, batch_probabilities,
                                                           exam_batch, read_exam_inputs)
from breast_cancer_classifier.core.failures import FailureReport  # noqa: E402
from breast_cancer_classifier.core.runtime import resolve_device  # noqa: E402
from breast_cancer_classifier.core.views import (INPUT_SIZE, VIEWS, flip_for_model, view_angle)  # noqa: E402

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
            formats.write_png(folder / f"{name}.png", image if view[0] == "L" else image[:, ::-1])
            for kind in ("malignant", "benign"):
                smooth = cv2.resize(rng.rand(40, 25).astype(np.float32), SHAPE[::-1])
                formats.write_hdf5(folder / f"heatmap_{kind}" / f"{name}.hdf5", smooth)
            exam[view] = [name]
            exam["best_center"][view] = [(SHAPE[0] // 2, SHAPE[1] // 2 - 100)]
        exams.append(exam)
    return exams


def timed(function, *args):
    """``(result, wall seconds, CPU seconds of this process)`` of one call; CPU time counts
    every thread and is less disturbed than wall time by other work on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


# --------------------------------------------------------------------------- 1. whole stage
def straightforward_stage(exams, folder, model, settings, device):
    """Stage 4 as first written: inputs as in table 2's straightforward row, batch size 1."""
    for batch in straightforward_inputs(exams, folder, settings):
        batch_probabilities(model, batch, settings, device)


def whole_stage(exams, folder, device, batch_sizes):
    plan = DeviceBatching.for_device(device)
    print(f"\n1. Whole stage 4, {len(exams)} exam(s), {EPOCHS} augmented epochs; ours with "
          f"{plan}")
    print(f"{'model':<22}{'path':<34}{'batch':>6}{'wall s/exam':>13}{'cpu s/exam':>12}")
    runs = [("straightforward", 1, None), ("ours", 1, plan)]
    for batch_size in batch_sizes:
        if plan.forward_size(batch_size) != batch_size:
            runs.append(("ours, whole batches per forward", batch_size, DeviceBatching(max_forward=0)))
        if batch_size != 1:
            runs.append(("ours", batch_size, plan))
    for mode, heatmaps in MODELS:
        name = f"{mode}{' + heatmaps' if heatmaps else ''}"
        builder = build_view_split_model if mode == "view_split" else build_image_model
        model = builder(3 if heatmaps else 1).eval().to(device)
        model = model.to(memory_format=torch.channels_last)
        for path, batch_size, run_plan in runs:
            settings = ClassifierSettings(model_mode=mode, use_heatmaps=heatmaps,
                                          use_augmentation=True, num_epochs=EPOCHS,
                                          batch_size=batch_size)
            if run_plan is None:
                _, wall, cpu = timed(straightforward_stage, exams, folder, model, settings,
                                     device)
            else:
                _, wall, cpu = timed(classify_exams, exams, model, folder, folder, settings,
                                     device, FailureReport("bench"), run_plan)
            print(f"{name:<22}{path:<34}{batch_size:>6}{wall / len(exams):>13.1f}"
                  f"{cpu / len(exams):>12.1f}", flush=True)


# --------------------------------------------------------------------------- 2. input side
def straightforward_joint(stem, view, horizontal_flip, heatmap_files):
    """One view's joint array as first written: stack, then a mirrored contiguous copy."""
    channels = [formats.read_mammogram_png(f"{stem}.png").astype(np.float32)]
    for path in heatmap_files[::-1] if heatmap_files else ():  # benign, then malignant
        with h5py.File(path, "r") as f:
            channels.append(np.ascontiguousarray(f["image"][()].T).astype(np.float32))
    joint = np.stack(channels, axis=-1)
    return np.ascontiguousarray(flip_for_model(joint, view, horizontal_flip))


def straightforward_window(joint, angle, center, draw):
    """One window as first written: resize to a new array, strided copies per channel."""
    cut = cut_window(joint, window_location(joint.shape[:2], angle, center, draw, True))
    h_in, w_in = INPUT_SIZE[angle]
    resized = cv2.resize(cut, (w_in, h_in), interpolation=cv2.INTER_CUBIC)
    resized = resized.reshape(h_in, w_in, -1)
    image = np.ascontiguousarray(resized[..., 0])
    image = image - image.mean()
    image = image / max(image.std(), STD_FLOOR)
    out = np.empty(resized.shape, dtype=np.float32)
    out[..., 0] = image
    out[..., 1:] = resized[..., 1:]
    return out


def straightforward_inputs(exams, folder, settings):
    rng = np.random.RandomState(settings.seed)
    for exam in exams:
        draws = draw_exam(rng, {v: 1 for v in VIEWS}, settings.num_epochs, True)
        joints = {view: straightforward_joint(folder / exam[view][0], view,
                                              exam["horizontal_flip"],
                                              formats.heatmap_paths(folder, exam[view][0])
                                              if settings.use_heatmaps else None)
                  for view in VIEWS}
        for draw in draws:
            yield {view: np.stack([straightforward_window(
                joints[view], view_angle(view), exam["best_center"][view][0], draw[view])])
                for view in VIEWS}


def our_inputs(exams, folder, settings, map_views):
    rng = np.random.RandomState(settings.seed)
    for exam in exams:
        draws = draw_exam(rng, {v: 1 for v in VIEWS}, settings.num_epochs, True)
        inputs = read_exam_inputs(exam, folder, folder, settings, map_views)
        for draw in draws:
            yield exam_batch(inputs, exam["best_center"], [draw], True, map_views)


def consume(batches):
    for _ in batches:
        pass


def input_side(exams, folder):
    settings = ClassifierSettings(use_heatmaps=True, use_augmentation=True, num_epochs=EPOCHS)
    print(f"\n2. Input side alone, 3 channels, {len(exams)} exam(s) x {EPOCHS} x 4 windows")
    print(f"{'path':<46}{'wall s/exam':>12}{'cpu s/exam':>12}{'max diff':>10}")
    _, wall, cpu = timed(consume, straightforward_inputs(exams, folder, settings))
    print(f"{'straightforward (views in turn, copies)':<46}{wall / len(exams):>12.2f}"
          f"{cpu / len(exams):>12.2f}{'-':>10}", flush=True)
    for threads in (1, DeviceBatching().view_threads):
        with ThreadPoolExecutor(threads) as pool:
            _, wall, cpu = timed(consume, our_inputs(exams, folder, settings, pool.map))
            # Then the same batches again, each compared with the straightforward one.
            pairs = zip(our_inputs(exams, folder, settings, pool.map),
                        straightforward_inputs(exams, folder, settings))
            diff = max(float(np.abs(ours[v] - reference[v]).max())
                       for ours, reference in pairs for v in VIEWS)
        label = f"ours, {threads} view thread{'s' if threads > 1 else ''}"
        print(f"{label:<46}{wall / len(exams):>12.2f}{cpu / len(exams):>12.2f}{diff:>10.1e}",
              flush=True)


# --------------------------------------------------------------------------- 3. ceiling
def conv_flops(column, x):
    """Multiply-adds x 2 of every convolution of ``column`` on input ``x``."""
    total = 0

    def count(module, _, output):
        nonlocal total
        k_h, k_w = module.kernel_size
        total += 2 * output.numel() * module.in_channels * k_h * k_w // module.groups

    hooks = [m.register_forward_hook(count) for m in column.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        column(x)
    for hook in hooks:
        hook.remove()
    return total


def best_of(function, repeat=3):
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def ceiling(device):
    column = ResNetColumn(3).eval().to(device).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, *INPUT_SIZE["CC"], device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    flops = conv_flops(column, x)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        seconds = best_of(lambda: (column(x), sync()))
        a = torch.randn(4096, 4096, device=device)
        b = torch.randn(4096, 4096, device=device)
        gemm = best_of(lambda: (torch.mm(a, b), sync()))
    print(f"\n3. Model ceiling ({torch.get_num_threads()} threads, best of 3)")
    print(f"ResNet-22 column, one 3-channel CC window: {seconds:.3f} s, convolutions "
          f"{flops / 1e9:.1f} GFLOP -> {flops / seconds / 1e9:.0f} GFLOP/s "
          f"(all ops counted in the time)")
    print(f"fp32 matrix product 4096^3: {2 * 4096 ** 3 / gemm / 1e9:.0f} GFLOP/s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--device-type", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-models", action="store_true", help="tables 2 and 3 only")
    args = parser.parse_args(argv)
    os.environ["BCC_NO_PROGRESS"] = "1"
    heap_for_classifiers()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device_type)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exams = make_exams(folder, args.exams)
        if not args.skip_models:
            whole_stage(exams, folder, device, args.batch_sizes)
        input_side(exams, folder)
    ceiling(device)


if __name__ == "__main__":
    main()
