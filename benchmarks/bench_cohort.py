"""Cohort benchmark: serial ``bcc run`` against ``bcc run --engine ray`` on one machine.

Usage (from the repository root; needs the `cluster` extra, which `make test` installs)::

    .venv/bin/python benchmarks/bench_cohort.py [--exams 32] [--num-epochs 1]
        [--shape 560 440] [--keep]

A synthetic cohort of ``--exams`` four-view phantom exams (``tools.phantoms``, images of
``--shape`` pixels, so a few patches each) goes through, each into its own folder and with
the parity kit's weights (``BCC_SHARED``, default ``../shared``) and the default runtime:

* ``serial``: ``bcc run`` with one intra-op thread (``OMP_NUM_THREADS=1``);
* ``ray x1``: ``--engine ray --workers 1 --threads-per-worker 1``;
* ``ray x2``: ``--engine ray --workers 2 --threads-per-worker 1``.

Columns: wall seconds of the command; pass-2 seconds (from the first exam's start to the
last exam's end, from the run manifest's ``finished`` and ``seconds``); exams per minute in
pass 2; mean engine seconds per exam (the manifest's ``seconds``: heatmaps and classifiers);
overhead per exam, ``(pass-2 seconds x workers - sum of exam seconds) / exams``: the time a
worker is not inside an exam (scheduling, moving rows, the manifest), which is what scales
with the cohort; and fixed start-up, ``wall - pass-2 seconds``, paid once per run (Python,
Ray, the actors' model loading, stages 1-2, the CSVs). Every run's outputs must be
byte-identical to the serial run's ("identical").

Target (the issue): Ray's overhead per exam under 5% of the per-exam time. On one machine
more workers cannot beat its cores; two one-thread workers on two cores show that work is
spread without loss.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WEIGHTS = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared")) / "parity" / "weights"
RECORD_FILES = {"run_manifest.jsonl", "run_settings.json"}
CONFIGS = (("serial", ()),
           ("ray x1", ("--engine", "ray", "--workers", "1", "--threads-per-worker", "1")),
           ("ray x2", ("--engine", "ray", "--workers", "2", "--threads-per-worker", "1")))


def write_cohort(folder, exams, shape):
    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.exam_list import save_exam_list
    from breast_cancer_classifier.core.views import VIEWS
    from breast_cancer_classifier.tools.phantoms import make_phantom, short_file_path

    images = folder / "images"
    images.mkdir(parents=True)
    exam_list = []
    for index in range(exams):
        exam = {"horizontal_flip": "NO"}
        for view in VIEWS:
            name = short_file_path(index, view)
            formats.write_png(images / f"{name}.png",
                              make_phantom(index, view, shape=tuple(shape)).image)
            exam[view] = [name]
        exam_list.append(exam)
    save_exam_list(exam_list, folder / "exam_list.pkl")
    return folder / "exam_list.pkl", images


def run(name, flags, exam_list, images, out, args):
    env = dict(os.environ, BCC_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    if name == "serial":
        env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "breast_cancer_classifier.bcc", "run",
               "--exam-list", str(exam_list), "--data-folder", str(images),
               "--output-dir", str(out), "--device-type", "cpu",
               "--num-epochs", str(args.num_epochs), "--num-processes", "2",
               "--patch-model-path", str(WEIGHTS / "patch.p"),
               "--image-model-path", str(WEIGHTS / "image_split.p"),
               "--imageheatmaps-model-path", str(WEIGHTS / "imageheatmaps_split.p"), *flags]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    entries = [json.loads(line) for line in (out / "run_manifest.jsonl").read_text().splitlines()]
    exams = [e for e in entries if isinstance(e.get("exam"), int)]
    first = min(e["finished"] - e["seconds"] for e in exams)
    pass2 = max(e["finished"] for e in exams) - first
    workers = len({e["worker"] for e in exams})
    busy = sum(e["seconds"] for e in exams)
    return {"name": name, "wall": wall, "pass2": pass2, "workers": workers,
            "per_exam": busy / len(exams), "exams": len(exams),
            "overhead": (pass2 * workers - busy) / len(exams), "out": out}


def identical(out, reference):
    files = [p for p in reference.rglob("*") if p.is_file() and p.name not in RECORD_FILES]
    same = sum((out / p.relative_to(reference)).read_bytes() == p.read_bytes() for p in files)
    return f"{same}/{len(files)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=32)
    parser.add_argument("--num-epochs", type=int, default=1)
    parser.add_argument("--shape", type=int, nargs=2, default=[560, 440],
                        help="phantom image size, rows columns (default 560 440)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_cohort_"))
    try:
        exam_list, images = write_cohort(scratch / "cohort", args.exams, args.shape)
        rows = []
        for name, flags in CONFIGS:
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append(run(name, flags, exam_list, images, scratch / name.replace(" ", "_"),
                            args))
            print(f"{name}: {rows[-1]['wall']:.1f} s", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"cohort of {args.exams} phantom exams ({args.shape[0]}x{args.shape[1]}), "
          f"{args.num_epochs} epoch(s), parity-kit weights, default runtime; {host}")
    print()
    print("| run | workers | wall s | pass-2 s | exams/min (pass 2) | engine s per exam "
          "| overhead s per exam (share) | fixed start-up s | identical outputs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['name']} | {row['workers']} | {row['wall']:.1f} | {row['pass2']:.1f} "
              f"| {row['exams'] / row['pass2'] * 60:.1f} | {row['per_exam']:.2f} "
              f"| {row['overhead']:.3f} ({row['overhead'] / row['per_exam']:.1%}) "
              f"| {row['wall'] - row['pass2']:.1f} | {identical(row['out'], rows[0]['out'])} |")
    print()
    for row in rows[1:]:
        share = row["overhead"] / row["per_exam"]
        print(f"{row['name']}: overhead {share:.1%} of the per-exam time "
              f"({'<' if share < 0.05 else '>='} 5%)")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
