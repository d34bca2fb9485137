"""ONNX Runtime settings for the patch classifier: speed, and deviation from PyTorch eager.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_ort_fidelity.py [--per-image 25] [--threads 2]
        [--options torch onnxruntime folded:all ...] [--maps real_cc synth_c]

The sample: ``--per-image`` non-constant patches drawn at random (seed 0) from the stage-3
grid of each image of the parity kit's ``real_cc`` and ``synth_c`` cases (cropped with the
kit's ``window_location``, strides from one ``random.Random(0)`` stream, standardized as
stage 3 does), classified with the kit's ``weights/patch.p``. The first option is the
reference (``torch``: PyTorch eager, channels-last batches, bit-identical to the original).

Options: ``torch``; ``onnxruntime``, the graph and session ``patch_runtime.OnnxRuntime``
uses (``--runtime onnxruntime``); and ``GRAPH:LEVEL[-PASS...]`` where GRAPH is ``folded``
(the exporter folds each BatchNorm that follows a convolution into its weights, the export
before 2026-12-02) or ``kept`` (BatchNorms kept apart), LEVEL an ONNX Runtime graph
optimization level (``disable``, ``basic``, ``extended``, ``all``; ``all`` adds NCHWc
blocked convolutions) and each ``-PASS`` an optimizer left out (``NchwcTransformer``,
``ConvBNFusion``). Each option runs in a fresh process, batches of 100 patches as stage 3
(pieces of 25 for PyTorch, 5 for ONNX Runtime). "max dev" is the largest absolute
difference of a malignant or benign probability (softmax columns 0 and 1, which feed the
heatmaps) from the reference's; a heatmap value is an average of these, so a map's
deviation is at most the largest patch's. ``--maps`` also runs every option except the
reference over whole kit cases and prints each one's worst map deviation from the kit's
expected maps (minutes per case and option: ``synth_c`` has 5,339 patches).
On a machine shared with other work, compare the CPU seconds rather than the wall time.
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PARITY = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared")) / "parity"
CASES = ("real_cc", "synth_c")
DEFAULT_OPTIONS = ["torch", "onnxruntime", "folded:all", "folded:extended", "folded:basic",
                   "folded:disable", "folded:all-NchwcTransformer", "kept:all",
                   "kept:disable"]
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
          "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
BATCH = 100  # patches per call, as stage 3's default batch size


def kit_images(case_name):
    """(name, raw cropped image, view, horizontal_flip) of a kit case, in stage-3 order."""
    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.exam_list import iter_images, load_exam_list

    case = PARITY / case_name
    exam_list = load_exam_list(case / "expected" / "data.pkl")
    for exam_index, view, list_index, name in iter_images(exam_list):
        exam = exam_list[exam_index]
        top, bottom, left, right = exam["window_location"][view][list_index]
        raw = formats.read_mammogram_png(case / "images" / f"{name}.png")[top:bottom, left:right]
        yield name, raw, view, exam["horizontal_flip"]


def sample_patches(per_image, seed=0):
    """(N, 256, 256) float32: ``per_image`` non-constant stage-3 patches of every kit image."""
    import numpy as np

    from breast_cancer_classifier.core.stages import heatmaps

    rng = np.random.default_rng(seed)
    patches = []
    for case_name in CASES:
        strides = random.Random(0)  # one stream per case, as stage 3 draws it
        for name, raw, view, horizontal_flip in kit_images(case_name):
            rows, columns = heatmaps.draw_strides(raw.shape, strides)
            item = heatmaps.HeatmapJob(name, heatmaps.prepare_image(raw, view, horizontal_flip),
                                       heatmaps.PatchGrid(rows, columns), view, horizontal_flip)
            varied = [i for i in range(item.grid.num_patches)
                      if heatmaps._constant_value(item.patch(i)[:, :, None]) is None]
            for index in sorted(rng.choice(varied, min(per_image, len(varied)), replace=False)):
                patches.append(item.patch(index).astype(np.float32))
    return np.stack(patches)


# --------------------------------------------------------------------------- workers
def export_worker(args):
    """Write both graphs (BatchNorm folded and kept) into ``args.scratch``."""
    import torch

    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier
    from breast_cancer_classifier.core.patch_runtime import export_patch_graph

    model = load_patch_classifier(args.model_path, torch.device("cpu"))
    for graph, fold in (("folded", True), ("kept", False)):
        export_patch_graph(model, Path(args.scratch) / f"{graph}.onnx", fold_batchnorm=fold)


def make_runtime(option, scratch, model_path, threads):
    """A patch runtime (N, 256, 256, 3) -> (N, 4) for one option."""
    from breast_cancer_classifier.core import patch_runtime

    if option == "torch":
        import torch

        from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier

        torch.set_num_threads(threads)
        device = torch.device("cpu")
        return patch_runtime.TorchRuntime(load_patch_classifier(model_path, device), device)
    if option == "onnxruntime":
        return patch_runtime.OnnxRuntime(Path(scratch) / "kept.onnx", threads)
    import numpy as np
    import onnxruntime as ort

    graph, _, rest = option.partition(":")
    level, *left_out = rest.split("-")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    session = ort.InferenceSession(str(Path(scratch) / f"{graph}.onnx"), options,
                                   providers=["CPUExecutionProvider"],
                                   disabled_optimizers=left_out)

    def run(batch):
        return np.concatenate([
            session.run(None, {"patches": np.ascontiguousarray(batch[start:stop])})[0]
            for start, stop in patch_runtime.forward_pieces(len(batch),
                                                            patch_runtime.ONNX_MAX_FORWARD)])
    return run


def option_worker(args):
    """Classify the sample with ``args.option``; save the probabilities, print one JSON line."""
    import numpy as np

    classify = make_runtime(args.option, args.scratch, args.model_path, args.threads)
    gray = np.load(Path(args.scratch) / "sample.npy")
    batches = [np.repeat(gray[start:start + BATCH, :, :, None], 3, axis=3)
               for start in range(0, len(gray), BATCH)]
    classify(batches[0][:5])  # warm-up: first-run allocations, thread start
    start, cpu_start = time.perf_counter(), os.times()
    probabilities = np.concatenate([classify(batch) for batch in batches])
    seconds = time.perf_counter() - start
    cpu_end = os.times()
    np.save(Path(args.scratch) / f"{_file_name(args.option)}.npy", probabilities)
    result = {"option": args.option, "patches": len(gray), "seconds": seconds,
              "cpu_seconds": cpu_end.user - cpu_start.user + cpu_end.system - cpu_start.system}
    if args.maps:
        result["maps"] = [kit_map_deviation(classify, case, args.scratch) for case in args.maps]
    print(json.dumps(result))


def kit_map_deviation(classify, case_name, scratch):
    """(case, worst map deviation from the kit's expected maps, its map, seconds)."""
    import numpy as np

    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.exam_list import iter_images, load_exam_list
    from breast_cancer_classifier.core.stage_scripts import produce_heatmaps

    cropped = Path(tempfile.mkdtemp(dir=scratch))
    for name, raw, _, _ in kit_images(case_name):
        formats.write_png(cropped / f"{name}.png", raw)
    case = PARITY / case_name
    exam_list = load_exam_list(case / "expected" / "data.pkl")
    output = cropped / "heatmaps"
    start = time.perf_counter()
    produce_heatmaps(exam_list, cropped, output, classify, batch_size=BATCH, seed=0)
    seconds = time.perf_counter() - start
    worst = (0.0, None)
    for _, _, _, name in iter_images(exam_list):
        for kind in ("malignant", "benign"):
            ours = formats.read_hdf5(output / f"heatmap_{kind}" / f"{name}.hdf5")
            expected = formats.read_hdf5(case / "expected" / "heatmaps" / f"heatmap_{kind}"
                                         / f"{name}.hdf5")
            worst = max(worst, (float(np.abs(ours.astype(np.float64) - expected).max()),
                                f"{name} {kind}"))
    return [case_name, worst[0], worst[1], seconds]


def _file_name(option):
    return option.replace(":", "_")


# --------------------------------------------------------------------------- report
def machine():
    """CPU model, cores, load and library versions: the table depends on all of them."""
    from importlib.metadata import version

    model, isa = platform.processor() or platform.machine(), ""
    try:  # the kernels both runtimes pick depend on the instruction sets
        info = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in info
                     if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in info if line.startswith("flags"))
        isa = " (" + " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile")
                              if f in flags) + ")"
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{model}{isa}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"torch {version('torch')}, onnxruntime {version('onnxruntime')}; load {load}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-image", type=int, default=25,
                        help="patches per kit image (8 images; default 25)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-path", default=str(PARITY / "weights" / "patch.p"))
    parser.add_argument("--options", nargs="+", default=DEFAULT_OPTIONS,
                        help="the first is the reference (default: torch)")
    parser.add_argument("--maps", nargs="*", default=[], choices=["real_cc", "synth_a", "synth_c"],
                        help="also compare whole kit cases' maps (slow)")
    parser.add_argument("--worker", choices=["export", "option"], help=argparse.SUPPRESS)
    parser.add_argument("--option", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "export":
        return export_worker(args)
    if args.worker == "option":
        return option_worker(args)

    import numpy as np

    print(f"machine: {machine()}")
    env = dict(os.environ, BCC_NO_PROGRESS="1")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        gray = sample_patches(args.per_image)
        np.save(Path(scratch) / "sample.npy", gray)
        common = ["--model-path", args.model_path, "--scratch", scratch]
        subprocess.run([sys.executable, __file__, "--worker", "export"] + common, check=True,
                       env=env, capture_output=True, text=True)
        for index, option in enumerate(args.options):
            maps = ["--maps", *args.maps] if args.maps and index > 0 else []
            done = subprocess.run([sys.executable, __file__, "--worker", "option", "--option",
                                   option, "--threads", str(args.threads)] + common + maps,
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{option} failed:\n{done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["probabilities"] = np.load(Path(scratch) / f"{_file_name(option)}.npy")
            rows.append(row)
            print(f"  ran {option}", file=sys.stderr, flush=True)

    reference = rows[0]["probabilities"][:, :2].astype(np.float64)
    print(f"{len(gray)} patches ({args.per_image} non-constant per image of "
          f"{' and '.join(CASES)}), batches of {BATCH}, {args.threads} threads, "
          f"reference {rows[0]['option']}; load at the end {machine().rpartition('load ')[2]}")
    print("| option | patches/s | CPU s per patch | max dev | mean dev | patches over 3e-6 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        deviation = np.abs(row["probabilities"][:, :2] - reference).max(axis=1)
        print(f"| {row['option']} | {row['patches'] / row['seconds']:.1f} "
              f"| {row['cpu_seconds'] / row['patches']:.3f} | {deviation.max():.2g} "
              f"| {deviation.mean():.2g} | {int((deviation > 3e-6).sum())} |")
    if args.maps:
        print("\n| option | case | worst map deviation from the kit | map | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for row in rows[1:]:
            for case, worst, where, seconds in row["maps"]:
                print(f"| {row['option']} | {case} | {worst:.2g} | {where} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
