"""Whole-pipeline benchmark: run.sh (five stage scripts chained) against ``bcc run`` on the CPU.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_pipeline.py [--num-epochs 10] [--num-processes N]
        [--cases sample synth_c] [--no-memory] [--keep] [--results FILE]
    .venv/bin/python benchmarks/bench_pipeline.py --report FILE   # tables of a --results file

For each input set (``sample``: the repository's four synthetic exams in ``sample_data/``;
``synth_c``: the parity kit's one large four-view exam) the same exams and weights (the
parity kit's ``weights/patch.p``, ``image_split.p``, ``imageheatmaps_split.p``) go through

* ``run.sh`` (``DEVICE_TYPE=cpu``, the five stage scripts as separate processes), and
* ``bcc run --device-type cpu`` (one process), run as ``breast_cancer_classifier.bcc.main``
  in a child Python that first wraps the model forward passes with timers (the patch
  runtimes' ``__call__``, ``OnnxRuntime`` and ``TorchRuntime``, and
  ``core.engine``'s ``batch_probabilities``); no library code is changed,

each into its own temporary folder, with the same ``--num-epochs`` and ``--num-processes``.
Every file run.sh writes must be byte-identical at the same path in bcc's folder ("identical
outputs": identical / files run.sh wrote). A separate memory row runs ``bcc run`` on one
full-size four-view exam (default runtime) made from the kit's ``real_cc`` images, four
3328x2560 CC originals standing in as L-CC, R-CC, L-MLO and R-MLO (linked, not copied): every
stage runs on full-size images and windows, which the 2 GB target is about.

Columns: wall seconds of the command (from its start to its exit); CPU seconds (user +
system of the whole process tree, less sensitive than wall time to other work on a shared
machine); "peak RSS, largest process": the highest ``ru_maxrss`` of any process of the tree
(from ``wait4``; for run.sh the largest stage process, for bcc usually bcc itself);
"tree RSS sum": the highest sum of VmRSS over the live process tree, sampled every
``--poll`` seconds (pages shared between a parent and its forked workers count twice);
speed-up: run.sh wall / bcc wall (and the same for CPU seconds); "forward s": the time spent
inside the forward-pass calls; "outside forward": bcc wall minus that, as a share of bcc wall
(interpreter start, imports, model loading, stages 1-2, patch extraction, windows, files).

All runs set ``BCC_NO_PROGRESS=1`` and a private ``BCC_CACHE_DIR``; when the default patch
runtime on the CPU is ONNX Runtime, the patch model's graph is exported into it once before
anything is timed, so no timed run pays the export, and ``torch``/``onnxruntime``/``cv2`` are imported once beforehand so that the first timed
run does not read them from a cold disk cache. Each run happens once (no repetition): the
whole benchmark takes 15-25 minutes with 10 epochs on a 2-core machine. Not collected by
pytest. The header gives a digest of the code both pipelines run, taken at the start and
checked at the end (the working tree may be shared with someone editing it).

Target (the issue): bcc >= 1.15x run.sh at identical outputs, with at most 10% of bcc's
wall time outside forward passes; bcc's peak RSS on a full-size exam at most 2 GB on the CPU.
"""

import argparse
import functools
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
PARITY = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared")) / "parity"
WEIGHTS = PARITY / "weights"
PYTHON = sys.executable

# Input sets: exam list before cropping, folder of the PNGs.
CASES = {
    "sample": (REPO / "sample_data" / "exam_list_before_cropping.pkl",
               REPO / "sample_data" / "images", "sample_data (4 exams)"),
    "synth_c": (PARITY / "synth_c" / "exam_list.pkl", PARITY / "synth_c" / "images",
                "synth_c (1 large exam)"),
}
FULL_SIZE = "full_size"  # built in the scratch folder by full_size_case
FULL_SIZE_IMAGES = {"L-CC": "1_L_CC", "R-CC": "1_R_CC", "L-MLO": "2_L_CC", "R-MLO": "2_R_CC"}
MEMORY_TARGET_MB = 2048
# run.sh's outputs under the names bcc run gives them in its folder (run_layout.RunLayout).
RUN_SH_LAYOUT = {
    "CROPPED_IMAGE_PATH": "cropped_images",
    "CROPPED_EXAM_LIST_PATH": "cropped_images/cropped_exam_list.pkl",
    "EXAM_LIST_PATH": "data.pkl",
    "HEATMAPS_PATH": "heatmaps",
    "IMAGE_PREDICTIONS_PATH": "image_predictions.csv",
    "IMAGEHEATMAPS_PREDICTIONS_PATH": "imageheatmaps_predictions.csv",
}
OK_STATUSES = (0, 3)  # 3: some items failed, the rest is complete


# --------------------------------------------------------------------------- bcc child
def bcc_worker(timings_path, argv):
    """``bcc`` in this process with the forward passes timed; timings to ``timings_path``.

    Only the outermost timed call counts (a wrapped call inside another is not counted
    twice). Forward passes run in the main thread on the CPU (no read-ahead, no prefetch).
    """
    start = time.perf_counter()
    from breast_cancer_classifier import bcc
    from breast_cancer_classifier.core import engine, patch_runtime

    timers = {"patch": [0.0, 0], "classifier": [0.0, 0]}
    depth = [0]

    def timed(function, key):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if depth[0]:
                return function(*args, **kwargs)
            depth[0] += 1
            begin = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timers[key][0] += time.perf_counter() - begin
                timers[key][1] += 1
                depth[0] -= 1
        return wrapper

    for runtime in (patch_runtime.OnnxRuntime, patch_runtime.TorchRuntime):
        runtime.__call__ = timed(runtime.__call__, "patch")
    engine.batch_probabilities = timed(engine.batch_probabilities, "classifier")
    imported = time.perf_counter() - start
    status = 0
    try:
        bcc.main(argv)
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        Path(timings_path).write_text(json.dumps({
            "patch_seconds": timers["patch"][0], "patch_calls": timers["patch"][1],
            "classifier_seconds": timers["classifier"][0],
            "classifier_calls": timers["classifier"][1],
            "import_seconds": imported, "inside_seconds": time.perf_counter() - start}))
    sys.exit(status)


# --------------------------------------------------------------------------- measuring
def _children_map():
    """``{ppid: [pid, ...]}`` of every process (Linux /proc)."""
    children = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree_rss_mb(root):
    """Sum of VmRSS (MiB) over ``root`` and its live descendants; 0 where /proc is missing."""
    if not os.path.isdir("/proc"):
        return 0.0
    children, todo, total = _children_map(), [root], 0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


def measure(command, env, log_path, poll):
    """Run ``command``; wall and CPU seconds, peak RSS (largest process, sampled tree sum)."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        tree_peak = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            tree_peak = max(tree_peak, _tree_rss_mb(proc.pid))
            time.sleep(poll)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"rc": proc.returncode, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "largest_mb": usage.ru_maxrss * scale / 2 ** 20, "tree_mb": tree_peak,
            "log": str(log_path)}


def check_status(result, what, ok=OK_STATUSES):
    if result["rc"] not in ok:
        tail = Path(result["log"]).read_text()[-3000:]
        raise SystemExit(f"{what} failed with exit status {result['rc']}:\n{tail}")


def run_run_sh(case, folder, args, env):
    exam_list, images, _ = CASES[case]
    out = folder / "run_sh"
    out.mkdir(parents=True)
    run_env = dict(env, DATA_FOLDER=str(images), INITIAL_EXAM_LIST_PATH=str(exam_list),
                   PATCH_MODEL_PATH=str(WEIGHTS / "patch.p"),
                   IMAGE_MODEL_PATH=str(WEIGHTS / "image_split.p"),
                   IMAGEHEATMAPS_MODEL_PATH=str(WEIGHTS / "imageheatmaps_split.p"),
                   DEVICE_TYPE="cpu", NUM_EPOCHS=str(args.num_epochs),
                   NUM_PROCESSES=str(args.num_processes), PYTHON=PYTHON,
                   **{name: str(out / rel) for name, rel in RUN_SH_LAYOUT.items()})
    result = measure(["bash", str(REPO / "run.sh")], run_env, folder / "run_sh.log", args.poll)
    check_status(result, f"run.sh on {case}")
    result["out"] = out
    return result


def run_bcc(case, folder, args, env, ok=OK_STATUSES):
    exam_list, images, _ = CASES[case]
    out = folder / "bcc"
    timings = folder / "bcc_timings.json"
    argv = ["run", "--exam-list", str(exam_list), "--data-folder", str(images),
            "--output-dir", str(out), "--device-type", "cpu",
            "--num-epochs", str(args.num_epochs), "--num-processes", str(args.num_processes),
            "--patch-model-path", str(WEIGHTS / "patch.p"),
            "--image-model-path", str(WEIGHTS / "image_split.p"),
            "--imageheatmaps-model-path", str(WEIGHTS / "imageheatmaps_split.p")]
    command = [PYTHON, str(Path(__file__).resolve()), "--bcc-worker", str(timings), "--"] + argv
    result = measure(command, env, folder / "bcc.log", args.poll)
    check_status(result, f"bcc run on {case}", ok)
    result.update(json.loads(timings.read_text()))
    result["forward"] = result["patch_seconds"] + result["classifier_seconds"]
    result["runtime"] = json.loads((out / "run_settings.json").read_text())["runtime"]
    result["out"] = out
    return result


def full_size_case(folder):
    """Register ``FULL_SIZE``: one four-view exam of the kit's full-size real_cc images."""
    import pickle

    images = folder / "images"
    images.mkdir(parents=True)
    exam = {"horizontal_flip": "NO"}
    for view, source in FULL_SIZE_IMAGES.items():
        name = "full_" + view.replace("-", "_")
        (images / f"{name}.png").symlink_to(PARITY / "real_cc" / "images" / f"{source}.png")
        exam[view] = [name]
    exam_list = folder / "exam_list.pkl"
    with open(exam_list, "wb") as out:
        pickle.dump([exam], out)
    CASES[FULL_SIZE] = (exam_list, images, "real_cc images as one four-view full-size exam")


def compare_outputs(reference, other):
    """``(identical, total, problems)`` over every file under ``reference``."""
    identical, total, problems = 0, 0, []
    for path in sorted(p for p in reference.rglob("*") if p.is_file()):
        rel = path.relative_to(reference)
        total += 1
        twin = other / rel
        if not twin.is_file():
            problems.append(f"{rel}: missing in bcc's folder")
        elif not _same_bytes(path, twin):
            problems.append(f"{rel}: bytes differ")
        else:
            identical += 1
    return identical, total, problems


def _same_bytes(a, b):
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block = fa.read(1 << 20)
            if block != fb.read(1 << 20):
                return False
            if not block:
                return True


def prepare(env):
    """Export the patch graph into the private cache when the default runtime on the CPU
    is ONNX Runtime, and warm the imports (untimed). Returns a line saying what was done."""
    from breast_cancer_classifier.core.patch_runtime import (cached_graph_path, choose_runtime,
                                                             export_in_child_process)

    subprocess.run([PYTHON, "-c", "import torch, onnxruntime, cv2, h5py"], check=True, env=env)
    if choose_runtime("auto", "fp32", True) != "onnxruntime":
        return "default patch runtime on the CPU is torch: no ONNX graph to export"
    graph = cached_graph_path(WEIGHTS / "patch.p", cache_dir=env["BCC_CACHE_DIR"])
    start = time.perf_counter()
    if not graph.is_file():
        graph.parent.mkdir(parents=True, exist_ok=True)
        export_in_child_process(WEIGHTS / "patch.p", graph)
    return (f"ONNX graph exported once before timing into the private BCC_CACHE_DIR "
            f"({time.perf_counter() - start:.1f} s, not counted)")


def source_digest():
    """SHA-256 over the code both pipelines run (the package, src/, run.sh), to tell whether
    it changed while the benchmark ran (a shared working tree)."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted([*(REPO / "breast_cancer_classifier").rglob("*.py"),
                    *(REPO / "src").rglob("*.py"), REPO / "run.sh"])
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()[:12]


def machine():
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2 ** 20:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.1f} at start".format(os.getloadavg()[0])
    return f"CPU ({name}, {os.cpu_count()} cores{memory}{load}), {platform.system()}"


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--bcc-worker":
        return bcc_worker(sys.argv[2], sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-epochs", type=int, default=10,
                        help="augmented epochs of both classifiers (default 10)")
    parser.add_argument("--num-processes", type=int, default=os.cpu_count() or 1,
                        help="processes for stages 1-2, both pipelines (default: CPU count)")
    parser.add_argument("--cases", nargs="+", default=["sample", "synth_c"],
                        choices=["sample", "synth_c"], help="input sets for run.sh vs bcc")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the full-size memory row")
    parser.add_argument("--poll", type=float, default=0.1,
                        help="seconds between samples of the process tree's RSS")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--results", help="also append each finished measurement to this "
                        "JSON-lines file (kept if the run is stopped)")
    parser.add_argument("--report", metavar="RESULTS",
                        help="print the tables of a --results file, running nothing")
    args = parser.parse_args()
    if args.report:
        return report_file(args.report)

    scratch = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    env = dict(os.environ, BCC_NO_PROGRESS="1", BCC_CACHE_DIR=str(scratch / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    host = machine()
    rows, memory_rows, notes = [], [], {"export": "", "code": source_digest()}
    try:
        notes["export"] = prepare(env)
        for case in args.cases:
            folder = scratch / case
            print(f"{case}: run.sh ...", file=sys.stderr, flush=True)
            ref = run_run_sh(case, folder, args, env)
            print(f"{case}: run.sh {ref['wall']:.1f} s; bcc run ...", file=sys.stderr,
                  flush=True)
            ours = run_bcc(case, folder, args, env)
            print(f"{case}: bcc {ours['wall']:.1f} s", file=sys.stderr, flush=True)
            identical, total, problems = compare_outputs(ref["out"], ours["out"])
            rows.append((case, ref, ours, identical, total, problems))
            save_result(args, notes, host, {"kind": "pair", "row": rows[-1]})
        if not args.no_memory:
            print("full-size exam: bcc run ...", file=sys.stderr, flush=True)
            full_size_case(scratch / FULL_SIZE / "input")
            ours = run_bcc(FULL_SIZE, scratch / FULL_SIZE, args, env)
            memory_rows.append((FULL_SIZE, ours))
            save_result(args, notes, host, {"kind": "memory", "row": memory_rows[-1]})
    except BaseException:
        print("benchmark stopped early; what finished:", file=sys.stderr)
        report(host, args, notes, rows, memory_rows)
        raise
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    report(host, args, notes, rows, memory_rows)


def save_result(args, notes, host, entry):
    if args.results:
        entry.update(host=host, notes=dict(notes, end=source_digest()),
                     num_epochs=args.num_epochs, num_processes=args.num_processes)
        with open(args.results, "a") as out:
            out.write(json.dumps(entry, default=str) + "\n")


def report_file(path):
    """The tables of a ``--results`` file (the last entry of each case wins)."""
    pairs, memory, last = {}, {}, None
    for line in Path(path).read_text().splitlines():
        last = json.loads(line)
        (pairs if last["kind"] == "pair" else memory)[last["row"][0]] = last["row"]
    if last is None:
        raise SystemExit(f"{path}: no results")
    args = argparse.Namespace(num_epochs=last["num_epochs"], num_processes=last["num_processes"])
    report(last["host"], args, last["notes"], list(pairs.values()), list(memory.values()))


def report(host, args, notes, rows, memory_rows):
    """Print the tables and the targets of what was measured."""
    end = notes.get("end") or source_digest()
    code = (f"code {notes['code']}, unchanged during the run" if end == notes["code"] else
            f"WARNING: the code changed during the run ({notes['code']} -> {end})")
    runtimes = sorted({r[2]["runtime"] for r in rows} | {r[1]["runtime"] for r in memory_rows})
    runtimes = runtimes or ["none finished"]
    print(f"whole pipeline, run.sh vs bcc run, {host}; NUM_EPOCHS {args.num_epochs}, "
          f"NUM_PROCESSES {args.num_processes}, parity-kit weights, default patch runtime "
          f"(bcc used: {', '.join(runtimes)})")
    print(f"{notes['export']}; BCC_NO_PROGRESS=1; one run each; {code}")
    print()
    print("| input | pipeline | exit | wall s | CPU s | peak RSS MiB, largest process "
          "| tree RSS sum MiB | speed-up wall (CPU) | identical outputs | forward s "
          "(patch + classifiers) | outside forward s (share of wall) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for case, ref, ours, identical, total, problems in rows:
        label = CASES[case][2]
        print(f"| {label} | run.sh | {ref['rc']} | {ref['wall']:.1f} | {ref['cpu']:.1f} "
              f"| {ref['largest_mb']:.0f} | {ref['tree_mb']:.0f} | 1.00x | - | - | - |")
        outside = ours["wall"] - ours["forward"]
        print(f"| {label} | bcc run | {ours['rc']} | {ours['wall']:.1f} | {ours['cpu']:.1f} "
              f"| {ours['largest_mb']:.0f} | {ours['tree_mb']:.0f} "
              f"| {ref['wall'] / ours['wall']:.2f}x ({ref['cpu'] / ours['cpu']:.2f}x) "
              f"| {identical}/{total} | {ours['forward']:.1f} ({ours['patch_seconds']:.1f} + "
              f"{ours['classifier_seconds']:.1f}) | {outside:.1f} "
              f"({outside / ours['wall']:.1%}) |")
    if memory_rows:
        print()
        print("| memory: input | pipeline | exit | wall s | CPU s | peak RSS MiB, largest process "
              "| tree RSS sum MiB | target |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for case, ours in memory_rows:
            verdict = "met" if ours["largest_mb"] <= MEMORY_TARGET_MB else "missed"
            label = ("real_cc images as one four-view full-size exam" if case == FULL_SIZE
                     else case)
            print(f"| {label} | bcc run | {ours['rc']} | {ours['wall']:.1f} "
                  f"| {ours['cpu']:.1f} | {ours['largest_mb']:.0f} | {ours['tree_mb']:.0f} "
                  f"| <= {MEMORY_TARGET_MB} MiB: {verdict} |")
    print()
    for case, ref, ours, identical, total, problems in rows:
        outside = (ours["wall"] - ours["forward"]) / ours["wall"]
        goals = [f"speed-up {ref['wall'] / ours['wall']:.2f}x "
                 f"({'>=' if ref['wall'] / ours['wall'] >= 1.15 else '<'} 1.15x)",
                 "identical outputs" if identical == total else f"{total - identical} file(s) "
                 "differ",
                 f"{outside:.1%} outside forward passes "
                 f"({'<=' if outside <= 0.10 else '>'} 10%)",
                 f"bcc peak RSS {ours['largest_mb']:.0f} MiB "
                 f"({'<=' if ours['largest_mb'] <= MEMORY_TARGET_MB else '>'} "
                 f"{MEMORY_TARGET_MB} MiB)"]
        print(f"{case}: " + "; ".join(goals) + f"; {ours['patch_calls']} patch-runtime calls, "
              f"{ours['classifier_calls']} classifier forward calls")
        for problem in problems[:20]:
            print(f"  {problem}")
    print("wall s: the command from start to exit (one run, on a machine that may be shared: "
          "compare CPU s too); peak RSS, largest process: the highest ru_maxrss of any "
          "process in its tree; tree RSS sum: the highest sampled sum over the live tree")


if __name__ == "__main__":
    main()
