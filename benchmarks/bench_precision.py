"""Speed and deviation of the opt-in precisions (``--precision``) against fp32, on the parity kit.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_precision.py [--device-type cpu|gpu] [--patches 100]

Stage 3: the first ``--patches`` patches of real_cc/1_L_CC (the kit's ``patch.p``), PyTorch
eager at each precision; "max diff" is the largest absolute difference of a malignant or
benign probability from fp32. Stage 4: the single-image classifier (the kit's
``imageheatmaps_mode.p``) on real_cc/1_L_CC with the kit's heatmaps, 10 augmented epochs,
seed 0; "max diff" is the largest difference of the two printed probabilities from fp32.
tf32 rows appear on NVIDIA GPUs only. Not collected by pytest.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PARITY = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared")) / "parity"
IMAGE = "1_L_CC"


def stage3(device, precision, count):
    """(seconds, (count, 2) probabilities) for the first ``count`` patches of IMAGE."""
    import numpy as np

    from breast_cancer_classifier.core import patch_runtime
    from breast_cancer_classifier.core.plan import single_image_plan
    from breast_cancer_classifier.core.stages import heatmaps
    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier
    from breast_cancer_classifier.core.exam_list import load_metadata

    case = PARITY / "real_cc"
    top, bottom, left, right = load_metadata(
        case / "expected" / "single" / IMAGE / "cropped_metadata.pkl")["window_location"]
    raw = formats.read_mammogram_png(case / "images" / f"{IMAGE}.png")[top:bottom, left:right]
    job = heatmaps.heatmap_job(raw, single_image_plan(0, IMAGE, "L-CC", raw.shape), "NO", IMAGE)
    batch = np.stack([job.patch(i) for i in range(count)]).astype(np.float32)
    batch = np.ascontiguousarray(np.repeat(batch[..., None], 3, axis=3))
    model = load_patch_classifier(PARITY / "weights" / "patch.p", device)
    patch_runtime.classify_patches(model, batch[:2], device, precision=precision)  # warm-up
    start = time.perf_counter()
    probabilities = patch_runtime.classify_patches(model, batch, device, precision=precision)
    return time.perf_counter() - start, probabilities[:, :2]


def stage4(device_type, precision):
    """(seconds, {"benign", "malignant"}) of the single-image classifier on IMAGE."""
    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.stage_scripts import run_model_single
    from breast_cancer_classifier.core.stages.classify import ClassifierSettings
    from breast_cancer_classifier.core.exam_list import load_metadata

    case = PARITY / "real_cc"
    single = case / "expected" / "single" / IMAGE
    top, bottom, left, right = load_metadata(single / "cropped_metadata.pkl")["window_location"]
    cropped = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_precision_{IMAGE}.png"
    formats.write_png(cropped, formats.read_mammogram_png(case / "images" / f"{IMAGE}.png")
                 [top:bottom, left:right])
    settings = ClassifierSettings(model_mode="image", use_heatmaps=True, use_augmentation=True,
                                  num_epochs=10, seed=0, precision=precision)
    start = time.perf_counter()
    result = run_model_single(PARITY / "weights" / "imageheatmaps_mode.p", "L-CC", cropped,
                              single / "cropped_metadata.pkl", settings,
                              (single / "malignant_heatmap.hdf5", single / "benign_heatmap.hdf5"),
                              device_type=device_type)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-type", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--patches", type=int, default=100)
    args = parser.parse_args()
    import numpy as np
    import torch

    from breast_cancer_classifier.core.runtime import resolve_device

    device = resolve_device(args.device_type)
    precisions = ["fp32", "bf16"] + (["tf32"] if device.type == "cuda" else [])
    print(f"device {device}, torch threads {torch.get_num_threads()}, parity kit real_cc/{IMAGE}")
    print("| stage | precision | seconds | speed vs fp32 | max diff vs fp32 |")
    print("| --- | --- | --- | --- | --- |")
    base = {}
    for precision in precisions:
        seconds, probabilities = stage3(device, precision, args.patches)
        base.setdefault("3", (seconds, probabilities))
        diff = float(np.abs(probabilities - base["3"][1]).max())
        print(f"| 3 ({args.patches} patches) | {precision} | {seconds:.1f} "
              f"| {base['3'][0] / seconds:.2f}x | {diff:.1e} |", flush=True)
    for precision in precisions:
        seconds, result = stage4(args.device_type, precision)
        base.setdefault("4", (seconds, result))
        diff = max(abs(result[k] - base["4"][1][k]) for k in result)
        print(f"| 4 (single image, 10 epochs) | {precision} | {seconds:.1f} "
              f"| {base['4'][0] / seconds:.2f}x | {diff:.1e} |  {json.dumps(result)}",
              flush=True)


if __name__ == "__main__":
    main()
