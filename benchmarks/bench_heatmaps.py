"""Stage 3 benchmark: patches per second and peak RSS for one real CC image on the CPU.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_heatmaps.py [--image 1_L_CC] [--batch-size 100]
        [--configs torch:100 torch:25 onnxruntime] [--repeat 1]

The image is cropped from the parity kit's ``real_cc`` case with its expected
``window_location`` (the stage-3 input of the reference run), and classified with the kit's
``weights/patch.p``. Each configuration runs in a fresh process, so its peak RSS (VmHWM)
is its own; "base RSS" is that process after loading the model, before any patch. A
configuration is a runtime (``torch``: PyTorch eager, bit-identical to the reference;
``onnxruntime``: the cached ONNX export, run as stage 3 runs it on the CPU, in a process
that never imports PyTorch) and, for torch, the largest piece of a batch given to the model
at once (100 = the whole batch, as the reference does; ``patch_runtime.CPU_MAX_FORWARD`` bounds
memory). "max diff" is the largest absolute difference of either heatmap from the first
configuration's. Every configuration classifies each constant (background) patch value once.
On a machine shared with other work, compare the CPU seconds rather than the wall time.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PARITY = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared")) / "parity"


def _memory_mb(field):
    """VmHWM / VmRSS of this process in MiB (Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def _cropped_image(name):
    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.exam_list import iter_images, load_exam_list

    case = PARITY / "real_cc"
    exam_list = load_exam_list(case / "expected" / "data.pkl")
    for exam_index, view, list_index, short_path in iter_images(exam_list):
        if short_path == name:
            exam = exam_list[exam_index]
            top, bottom, left, right = exam["window_location"][view][list_index]
            raw = formats.read_mammogram_png(case / "images" / f"{name}.png")[top:bottom, left:right]
            return raw, view, exam["horizontal_flip"]
    raise SystemExit(f"{name}: not an image of {case / 'expected' / 'data.pkl'}")


def worker(args):
    """Run one configuration (``args.configs[0]``) in this process; print one JSON line.

    The heatmaps of the last run are saved to ``args.save`` as a (2, H, W) array.
    """
    import numpy as np

    from breast_cancer_classifier.core import patch_runtime
    from breast_cancer_classifier.core.plan import single_image_plan
    from breast_cancer_classifier.core.stages import heatmaps

    runtime, _, max_forward = args.configs[0].partition(":")
    raw, view, horizontal_flip = _cropped_image(args.image)
    if runtime == "onnxruntime":
        # As stage 3 runs it on the CPU: the cached export, PyTorch never imported here.
        from breast_cancer_classifier.core.patch_runtime import available_cores

        classify = patch_runtime.load_patch_runtime(args.model_path, "cpu", runtime="onnxruntime")
        threads = available_cores()
    else:
        import torch

        from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier
        from breast_cancer_classifier.core.patch_runtime import make_patch_runtime

        device = torch.device("cpu")
        model = load_patch_classifier(args.model_path, device)
        classify = make_patch_runtime(runtime, model, device, args.model_path,
                                      max_forward=int(max_forward) if max_forward else None)
        threads = torch.get_num_threads()
    base_rss = _memory_mb("VmRSS")
    times, cpu_times = [], []
    for _ in range(args.repeat):
        image_plan = single_image_plan(0, args.image, view, raw.shape)
        rows, columns = image_plan.strides
        start, cpu_start = time.perf_counter(), os.times()
        job = heatmaps.heatmap_job(raw, image_plan, horizontal_flip, args.image)
        maps = heatmaps.image_heatmaps(classify, job, args.batch_size)
        times.append(time.perf_counter() - start)
        cpu_end = os.times()
        cpu_times.append(cpu_end.user - cpu_start.user + cpu_end.system - cpu_start.system)
    if args.save:
        np.save(args.save, np.stack(maps))
    patches = len(heatmaps.patch_starts(rows)) * len(heatmaps.patch_starts(columns))
    label = runtime
    if runtime == "torch":
        label += f", {max_forward or patch_runtime.CPU_MAX_FORWARD} per forward"
    print(json.dumps({"config": label, "patches": patches,
                      "seconds": min(times), "cpu_seconds": min(cpu_times),
                      "base_rss_mb": base_rss,
                      "peak_rss_mb": _memory_mb("VmHWM"), "threads": threads,
                      "shape": list(raw.shape)}))


def main():
    from breast_cancer_classifier.core import patch_runtime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="1_L_CC", help="real_cc image (default 1_L_CC)")
    parser.add_argument("--model-path", default=str(PARITY / "weights" / "patch.p"))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--configs", nargs="+",
                        default=["torch:100", f"torch:{patch_runtime.CPU_MAX_FORWARD}", "onnxruntime"],
                        help="runtime[:max forward] per configuration; the first is the reference")
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (best)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import tempfile

    import numpy as np

    rows, maps = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for index, config in enumerate(args.configs):
            save = os.path.join(scratch, f"{index}.npy")
            command = [sys.executable, __file__, "--worker", "--image", args.image,
                       "--model-path", args.model_path, "--batch-size", str(args.batch_size),
                       "--configs", config, "--repeat", str(args.repeat), "--save", save]
            env = dict(os.environ, BCC_NO_PROGRESS="1")
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            maps.append(np.load(save))

    first = rows[0]
    print(f"stage 3 heatmaps, real_cc/{args.image} {tuple(first['shape'])}, "
          f"{first['patches']} patches, batch size {args.batch_size}, CPU "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads {first['threads']})")
    print("| configuration | seconds | patches/s | CPU s | base RSS MB | peak RSS MB "
          "| speed vs first | max diff vs first |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row, heatmap in zip(rows, maps):
        rate = row["patches"] / row["seconds"]
        diff = float(np.abs(heatmap - maps[0]).max())
        print(f"| {row['config']} | {row['seconds']:.1f} | {rate:.2f} | {row['cpu_seconds']:.1f} "
              f"| {row['base_rss_mb']:.0f} | {row['peak_rss_mb']:.0f} "
              f"| {first['seconds'] / row['seconds']:.2f}x | {diff:.1e} |")
    print("seconds: wall time of the best run (image preparation, patches, model, sums); "
          "CPU s: user + system time of that run, less sensitive to other load")


if __name__ == "__main__":
    main()
