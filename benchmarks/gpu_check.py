"""The GPU checks of the speed issue, as one prepared run for a session lent a GPU machine.

Two steps. Here, beside ../shared (the parity kit), pack the part of the kit the checks
need into the git-ignored folder ``.gpu_kit`` (about 63 MiB: more than one device call can
carry beside the working tree, so the checks go in two calls of about 32 MiB each)::

    .venv/bin/python benchmarks/gpu_check.py pack

Then on the GPU machine (its system Python has torch, h5py, OpenCV; no .venv needed), two
calls back to back, so the second finds the machine warm::

    python3 benchmarks/gpu_check.py run --checks heatmaps run_sh
        # carry: .gpu_kit/weights/patch.p .gpu_kit/real_cc
    python3 benchmarks/gpu_check.py run --checks classifiers
        # carry: .gpu_kit/weights/imageheatmaps_split.p .gpu_kit/synth_a

Each run prints its lines of the table and exits 1 if a parity check fails:

1. Heatmaps of one full-size real CC image (real_cc 1_L_CC, 560 patches) on the device:
   seconds per image after a warm-up (goal: under 0.5 s) and the largest difference from
   the original's maps (tolerance 1e-5, full fp32: TF32 stays off).
2. Stage 4 on synth_a's two exams (view_split with heatmaps, 10 augmented epochs): seconds
   per exam and the largest difference from the original's CSV (tolerance 1e-4).
3. ``run.sh`` on the four sample exams of ``sample_data/`` (demo weights made where the
   official ones are missing): seconds per stage and in all (goal: under 10 s).
``--device-type cpu`` runs the same checks on a CPU (to try the script).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KIT = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared")) / "parity"
SINGLE = "1_L_CC"
CLASSIFIER = "imageheatmaps_split.p"  # the 3-channel view_split model, as run.sh's stage 4b
HEATMAP_TOL, PREDICTION_TOL = 1e-5, 1e-4
CHECKS = ("heatmaps", "classifiers", "run_sh")


# --------------------------------------------------------------------------- pack (here)
def pack(kit, into):
    """Copy what ``run`` needs into ``into``: synth_a's images already cropped (smaller)."""
    import numpy as np

    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.exam_list import iter_images, load_exam_list

    into = Path(into)
    if into.exists():
        shutil.rmtree(into)
    single = kit / "real_cc" / "expected" / "single" / SINGLE
    synth = kit / "synth_a" / "expected"
    files = [kit / "weights" / "patch.p", kit / "weights" / CLASSIFIER,
             kit / "real_cc" / "images" / f"{SINGLE}.png", *single.iterdir(),
             synth / "data.pkl", synth / "imageheatmaps_predictions.csv",
             *(p for p in (synth / "heatmaps").rglob("*") if p.is_file())]
    for path in files:
        target = into / path.relative_to(kit)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    exam_list = load_exam_list(synth / "data.pkl")
    for exam_index, view, list_index, name in iter_images(exam_list):
        top, bottom, left, right = exam_list[exam_index]["window_location"][view][list_index]
        image = formats.read_mammogram_png(kit / "synth_a" / "images" / f"{name}.png")
        formats.write_png(into / "synth_a" / "cropped" / f"{name}.png",
                     np.ascontiguousarray(image[top:bottom, left:right]))
    size = sum(p.stat().st_size for p in into.rglob("*") if p.is_file())
    print(f"packed {into} ({size / 2**20:.1f} MiB); it is git-ignored: name it in carry")


# --------------------------------------------------------------------------- run (device)
def check_heatmaps(kit, device_type, tmp):
    """Seconds for one full-size image's heatmaps (warm) and the largest map difference."""
    import numpy as np

    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.exam_list import load_metadata
    from breast_cancer_classifier.core.patch_runtime import load_patch_runtime
    from breast_cancer_classifier.core.single import single_image_heatmaps

    single = kit / "real_cc" / "expected" / "single" / SINGLE
    metadata = load_metadata(single / "cropped_metadata.pkl")
    top, bottom, left, right = metadata["window_location"]
    image = formats.read_mammogram_png(kit / "real_cc" / "images" / f"{SINGLE}.png")
    cropped = tmp / f"{SINGLE}.png"
    formats.write_png(cropped, np.ascontiguousarray(image[top:bottom, left:right]))
    classify = load_patch_runtime(kit / "weights" / "patch.p", device_type, runtime="torch")
    raw = formats.read_mammogram_png(cropped)
    single_image_heatmaps(classify, raw, metadata, cropped)  # warm-up
    start = time.perf_counter()
    malignant, benign = single_image_heatmaps(classify, raw, metadata, cropped)
    seconds = time.perf_counter() - start
    diff = max(float(np.abs(malignant - formats.read_hdf5(single / "malignant_heatmap.hdf5")).max()),
               float(np.abs(benign - formats.read_hdf5(single / "benign_heatmap.hdf5")).max()))
    return seconds, diff


def check_classifiers(kit, device_type, tmp):
    """``(seconds per exam, largest CSV difference)`` of the image+heatmaps view_split model
    on synth_a (10 augmented epochs)."""
    import numpy as np

    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.stage_scripts import run_model
    from breast_cancer_classifier.core.stages.classify import ClassifierSettings

    expected = kit / "synth_a" / "expected"
    settings = ClassifierSettings(use_heatmaps=True, use_augmentation=True, num_epochs=10)
    output = tmp / "imageheatmaps.csv"
    start = time.perf_counter()
    run_model(kit / "weights" / CLASSIFIER, expected / "data.pkl", kit / "synth_a" / "cropped",
              output, settings, heatmaps_dir=expected / "heatmaps", device_type=device_type)
    seconds = time.perf_counter() - start
    reference = formats.read_predictions_csv(expected / "imageheatmaps_predictions.csv")
    got = formats.read_predictions_csv(output)
    return seconds / len(got), float(np.abs(got - reference).max())


def time_run_sh(device_type, tmp):
    """``[(stage banner, seconds)]`` of ``run.sh`` on ``sample_data/``, and the total."""
    subprocess.run([sys.executable, "src/utilities/make_demo_weights.py"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    out = tmp / "sample_output"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_TYPE": device_type,
           "BCC_NO_PROGRESS": "1", "CROPPED_IMAGE_PATH": str(out / "cropped_images"),
           "CROPPED_EXAM_LIST_PATH": str(out / "cropped_images" / "cropped_exam_list.pkl"),
           "EXAM_LIST_PATH": str(out / "data.pkl"), "HEATMAPS_PATH": str(out / "heatmaps"),
           "IMAGE_PREDICTIONS_PATH": str(out / "image_predictions.csv"),
           "IMAGEHEATMAPS_PREDICTIONS_PATH": str(out / "imageheatmaps_predictions.csv")}
    stages, start = [], time.perf_counter()
    with subprocess.Popen(["bash", "run.sh"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          text=True) as proc:
        for line in proc.stdout:
            if line.startswith("Stage "):
                stages.append([line.strip(), time.perf_counter()])
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run.sh exited {proc.returncode}")
    ends = [t for _, t in stages[1:]] + [start + total]
    return [(name, end - begin) for (name, begin), end in zip(stages, ends)], total


def run(kit, device_type, checks):
    import torch

    from breast_cancer_classifier.core.runtime import resolve_device

    device = resolve_device(device_type)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, "
          f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}", flush=True)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "heatmaps" in checks:
            seconds, diff = check_heatmaps(kit, device_type, tmp)
            failed |= diff > HEATMAP_TOL
            print(f"1. heatmaps, real_cc {SINGLE} (560 patches): {seconds:.3f} s/image "
                  f"(goal < 0.5), max diff {diff:.1e} (tol {HEATMAP_TOL:g})", flush=True)
        if "classifiers" in checks:
            seconds, diff = check_classifiers(kit, device_type, tmp)
            failed |= diff > PREDICTION_TOL
            print(f"2. stage 4, image+heatmaps, synth_a: {seconds:.2f} s/exam, max diff "
                  f"{diff:.1e} (tol {PREDICTION_TOL:g})", flush=True)
        if "run_sh" in checks:
            stages, total = time_run_sh(device_type, tmp)
            for stage, seconds in stages:
                print(f"3. run.sh {stage:<46} {seconds:7.2f} s")
            print(f"3. run.sh, all stages, four sample exams: {total:.2f} s (goal < 10)")
    print("PARITY FAILED" if failed else "parity held")
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pack_parser = sub.add_parser("pack", help="copy the needed part of the kit (here)")
    pack_parser.add_argument("--kit", type=Path, default=KIT)
    pack_parser.add_argument("--into", type=Path, default=REPO / ".gpu_kit")
    run_parser = sub.add_parser("run", help="run the checks (on the GPU machine)")
    run_parser.add_argument("--kit", type=Path, default=REPO / ".gpu_kit")
    run_parser.add_argument("--device-type", default="gpu", choices=["gpu", "cpu"])
    run_parser.add_argument("--checks", nargs="+", default=list(CHECKS), choices=CHECKS)
    args = parser.parse_args(argv)
    if args.command == "pack":
        return pack(args.kit, args.into)
    os.environ.setdefault("BCC_NO_PROGRESS", "1")
    return run(args.kit, args.device_type, args.checks)


if __name__ == "__main__":
    sys.exit(main())
