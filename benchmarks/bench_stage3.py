"""Stage 3 on the CPU: every patch-classifier runtime against a stand-in of the original and
the machine's fp32 matrix-product peak, side by side in one run.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_stage3.py            # full: the four real CC images
    .venv/bin/python benchmarks/bench_stage3.py --quick    # a few minutes: 96 real patches
        [--candidates original torch compiled ...] [--rounds 2] [--maps real_cc synth_a ...]

Candidates (``NAME[:PIECE][@THREADS]``: PIECE patches per forward pass, THREADS intra-op
threads, default all cores):

* ``original``: a stand-in for the original's stage 3, written from SPEC 6 (not the
  original's code): PyTorch eager, all patches of an exam held in memory in float64,
  batches of 100 through the model whole, every patch classified, constant ones too;
* ``torch``: ``--runtime torch`` (PyTorch eager, pieces of 25, each constant patch value
  classified once), bit-identical to the reference;
* ``compiled``: ``--runtime compiled`` (``core/compiled_densenet.py``);
* ``onnxruntime``: ``--runtime onnxruntime`` (BatchNorm kept apart, all graph optimizations
  but ConvBNFusion), in a process that never imports PyTorch, as stage 3 runs it;
  ``onnxruntime-folded``: the export with BatchNorm folded into the convolutions;
* ``jit-freeze``: ``torch.jit.trace`` + ``torch.jit.freeze`` (folds each BatchNorm after a
  convolution into it, prepacks oneDNN weights); ``jit-ofi``: then
  ``torch.jit.optimize_for_inference`` (oneDNN tensor layouts);
* ``inductor``: ``torch.compile`` of the whole model (inductor, dynamic batch, C++ built with
  floating-point contraction, so that BatchNorm's multiply-add is fused as in eager);
  ``inductor-freeze``: the same with ``torch._inductor.config.freezing`` (BatchNorm folded
  into the convolutions, weights prepacked).

Every candidate but ``original`` runs stage 3 itself (``stage_scripts.produce_heatmaps``, batches
of 100). Each runs in its own worker process, started one after the other with fresh
export/compile caches: "cold start" is from the worker's start (imports included) to its
runtime being ready, "warm start" the same for a second worker once the caches are filled.
Then, for ``--rounds`` rounds, the workers take turns on the workload (only one works at a
time), each turn preceded by the fp32 matrix-product peak (``torch.mm`` of 2048 x 2048
matrices on all cores, best of 5) measured in this process: the table gives each
candidate's best round, and its share of the best peak of the run. "% of peak" counts every
patch of the grid at the FLOPs of one forward pass (as if each were classified, as the
original does) over the wall time. "peak RSS" is the worker's VmHWM after the rounds (model,
runtime, compile and the stage-3 work: the stage-3 process of a run). The deviations are the
largest absolute difference of each candidate's maps from the parity kit's expected maps
(worst map of each case; every map in the second table).

Workloads: full, the four real CC images of the kit's ``real_cc`` (2,163 patches; its maps
are one of the deviation cases, with ``synth_a`` and ``synth_c``; the stand-in skips
``synth_c``, whose 5,462 patches would take 8.6 GB); ``--quick``, 96 non-constant patches
drawn from them (seed 0), whose deviation is per probability from the original stand-in's,
and no kit maps unless ``--maps`` names some. On a machine shared with other work compare
the CPU columns, not the wall time.
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
sys.path.insert(0, str(REPO / "benchmarks"))
PARITY = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared")) / "parity"
CASES = ("real_cc", "synth_a", "synth_c")
FULL = ["original", "torch", "compiled", "compiled:4", "compiled:16", "onnxruntime",
        "onnxruntime-folded", "jit-freeze", "inductor", "inductor-freeze"]
QUICK = ["original", "torch", "compiled", "onnxruntime"]
BATCH = 100  # patches per stage-3 batch, as the original's default
QUICK_PATCHES = 96
# The stand-in would hold synth_c's 5,462 patches at once: 8.6 GB in float64.
ORIGINAL_SKIPS = ("synth_c",)
GEMM_SIZE, GEMM_REPEATS = 2048, 5
# --isa avx2: an AVX2 host simulated on an AVX-512 one. oneDNN, MKL (the GEMM peak) and the
# compiled runtime's kernels are all held to AVX2 + FMA in every process of the run.
ISA_LIMITS = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                       "BCC_BENCH_KERNEL_MARCH": "haswell"}}
ISA_HELD = ("original", "torch", "compiled")  # the candidates those settings hold
# Lets inductor's C++ fuse a multiply and an add into one fma, as PyTorch's BatchNorm does.
INDUCTOR_OPTIONS = {"cpp.enable_floating_point_contract_flag": "fast"}


# --------------------------------------------------------------------------- the workload
def kit_exam_list(case_name):
    from breast_cancer_classifier.core.exam_list import load_exam_list

    return load_exam_list(PARITY / case_name / "expected" / "data.pkl")


def write_cropped(case_name, folder):
    """The kit case's stage-3 inputs (images cut to the expected crop windows) into ``folder``."""
    from bench_ort_fidelity import kit_images  # noqa: E402 - a sibling benchmark

    from breast_cancer_classifier.core import formats

    folder.mkdir(parents=True, exist_ok=True)
    for name, raw, _, _ in kit_images(case_name):
        formats.write_png(folder / f"{name}.png", raw)


def quick_sample(count, seed=0):
    """(count, 256, 256) float32 non-constant stage-3 patches of the real CC images."""
    import numpy as np

    from bench_ort_fidelity import kit_images

    from breast_cancer_classifier.core.stages import heatmaps

    patches, strides = [], random.Random(0)
    for name, raw, view, horizontal_flip in kit_images("real_cc"):
        rows, columns = heatmaps.draw_strides(raw.shape, strides)
        item = heatmaps.HeatmapJob(name, heatmaps.prepare_image(raw, view, horizontal_flip),
                                   heatmaps.PatchGrid(rows, columns), view, horizontal_flip)
        patches += [item.patch(i).astype(np.float32) for i in range(item.grid.num_patches)
                    if heatmaps._constant_value(item.patch(i)[:, :, None]) is None]
    chosen = np.random.default_rng(seed).choice(len(patches), count, replace=False)
    return np.stack([patches[i] for i in sorted(chosen)])


def map_deviations(case_name, maps_of):
    """{"name kind": max |ours - expected|} over the case's maps; ``maps_of(name)`` gives
    (malignant, benign) in the stored orientation."""
    import numpy as np

    from breast_cancer_classifier.core import formats
    from breast_cancer_classifier.core.exam_list import iter_images

    expected_dir = PARITY / case_name / "expected" / "heatmaps"
    deviations = {}
    for _, _, _, name in iter_images(kit_exam_list(case_name)):
        for kind, ours in zip(("malignant", "benign"), maps_of(name)):
            expected = formats.read_hdf5(expected_dir / f"heatmap_{kind}" / f"{name}.hdf5")
            deviations[f"{name} {kind}"] = float(np.abs(ours.astype(np.float64) - expected).max())
    return deviations


# --------------------------------------------------------------------------- the original
class OriginalStandIn:
    """Stage 3 as SPEC 6 describes the original (written from SPEC, not its code)."""

    def __init__(self, model_path, threads):
        import torch

        from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier

        torch.set_num_threads(threads)
        self.model = load_patch_classifier(model_path, torch.device("cpu"))

    def classify(self, patches):
        """Softmax of float64 (N, 256, 256, 3) patches, batches of 100, each whole."""
        import numpy as np
        import torch

        outputs = []
        with torch.no_grad():
            for start in range(0, len(patches), BATCH):
                batch = torch.from_numpy(patches[start:start + BATCH].astype(np.float32))
                outputs.append(torch.softmax(self.model(batch.permute(0, 3, 1, 2)), 1).numpy())
        return np.concatenate(outputs)

    def heatmaps(self, exam_list, image_dir):
        """{name: (malignant, benign)} in the stored orientation; every exam's patches in
        memory at once, float64, 3 channels."""
        import numpy as np

        from breast_cancer_classifier.core import formats
        from breast_cancer_classifier.core.stages import heatmaps
        from breast_cancer_classifier.core.views import VIEWS

        rng, maps = random.Random(0), {}
        for exam in exam_list:
            jobs = []
            for view in VIEWS:
                for name in exam[view]:
                    raw = formats.read_mammogram_png(Path(image_dir) / f"{name}.png")
                    rows, columns = heatmaps.draw_strides(raw.shape, rng)
                    image = heatmaps.prepare_image(raw, view, exam["horizontal_flip"])
                    jobs.append(heatmaps.HeatmapJob(name, image, heatmaps.PatchGrid(rows, columns),
                                                    view, exam["horizontal_flip"]))
            patches = np.stack([np.repeat(job.patch(i)[:, :, None], 3, axis=2)
                                for job in jobs for i in range(job.grid.num_patches)])
            probabilities = self.classify(patches)
            batch = heatmaps.PatchBatch(patches, [(job, 0, job.grid.num_patches) for job in jobs])
            del patches
            columns = probabilities[:, [heatmaps.MALIGNANT_COLUMN, heatmaps.BENIGN_COLUMN]]
            for job, malignant, benign in heatmaps.HeatmapSums().add(batch, columns):
                maps[job.name] = job.stored((malignant, benign))
        return maps


# --------------------------------------------------------------------------- candidates
def parse_candidate(text):
    """``NAME[:PIECE][@THREADS]`` -> (name, piece or None, threads or None)."""
    text, _, threads = text.partition("@")
    name, _, piece = text.partition(":")
    return name, int(piece) if piece else None, int(threads) if threads else None


def whole_model_runtime(name, model, piece):
    """A patch runtime for the candidates built here (jit-*, inductor*)."""
    import torch

    from breast_cancer_classifier.core import patch_runtime

    example = torch.zeros((piece, 3, 256, 256)).contiguous(memory_format=torch.channels_last)
    if name.startswith("jit"):
        with torch.no_grad():
            forward = torch.jit.freeze(torch.jit.trace(model, example).eval())
            if name == "jit-ofi":
                forward = torch.jit.optimize_for_inference(forward)
    else:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = name == "inductor-freeze"
        forward = torch.compile(model, dynamic=True, options=INDUCTOR_OPTIONS)
    with torch.no_grad():
        forward(example)  # trace / compile now: part of the cold start

    class Runtime:
        def __call__(self, batch):
            with torch.no_grad():
                return patch_runtime.classify_patches(forward, batch, "cpu", piece)
    return Runtime()


def build(candidate, model_path, cache_dir):
    """The candidate's stage-3 runtime, built as a run builds it."""
    name, piece, threads = parse_candidate(candidate)
    cores = threads or os.cpu_count()
    os.environ["BCC_CACHE_DIR"] = str(cache_dir)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir) / "torchinductor")
    if name == "original":
        return OriginalStandIn(model_path, cores)
    from breast_cancer_classifier.core import native_kernels, patch_runtime

    march = os.environ.get("BCC_BENCH_KERNEL_MARCH")
    if march:  # --isa: the kernels built for that CPU (cached apart: the flags are in the key)
        flags = [f for f in native_kernels.compile_flags() if not f.startswith("-march=")]
        native_kernels.compile_flags = lambda: [*flags, f"-march={march}"]

    if name.startswith("onnxruntime"):  # as stage 3: export in a child, no PyTorch here
        if name == "onnxruntime":
            patch_runtime.OnnxRuntime.for_checkpoint(model_path)  # exports if not cached
            graph = patch_runtime.cached_graph_path(model_path)
        else:
            graph = Path(cache_dir) / "folded.onnx"
            if not graph.is_file():
                subprocess.run([sys.executable, __file__, "--export-folded", str(graph),
                                "--model-path", str(model_path)], check=True)
        return patch_runtime.OnnxRuntime(graph, threads=cores)
    import torch

    torch.set_num_threads(cores)
    if name == "compiled":  # as stage 3: prepared once in a child, no torchvision here
        return patch_runtime.CompiledRuntime.for_checkpoint(model_path, max_forward=piece)
    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier

    model = load_patch_classifier(model_path, torch.device("cpu"))
    if name == "torch":
        return patch_runtime.make_patch_runtime(name, model, torch.device("cpu"), model_path,
                                                max_forward=piece)
    return whole_model_runtime(name, model, piece or patch_runtime.COMPILED_MAX_FORWARD)


def export_folded(graph, model_path):
    import torch

    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier
    from breast_cancer_classifier.core.patch_runtime import export_patch_graph

    export_patch_graph(load_patch_classifier(model_path, torch.device("cpu")), graph,
                       fold_batchnorm=True)


# --------------------------------------------------------------------------- worker
def memory_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds():
    times = os.times()
    return times.user + times.system


def worker(args):
    """Build one candidate, then answer commands from stdin with one JSON line each."""
    runtime = build(args.worker, args.model_path, args.cache_dir)
    reply({"ready": True})
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "run":
            reply(run_workload(runtime, rest[0], Path(rest[1])))
        elif command == "maps":
            reply(map_deviations(rest[0], load_maps(runtime, rest[0], Path(rest[1]))))
        elif command == "rss":
            reply({"peak_rss_mb": memory_mb("VmHWM")})
        elif command == "quit":
            return


def reply(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def run_workload(runtime, workload, scratch):
    """Time one pass over the workload; saves what the deviations need."""
    import numpy as np

    start, cpu = time.perf_counter(), cpu_seconds()
    result = {}
    if workload == "sample":
        gray = np.load(scratch / "sample.npy")
        if isinstance(runtime, OriginalStandIn):
            probabilities = runtime.classify(np.repeat(gray[..., None].astype(np.float64), 3, 3))
        else:
            probabilities = np.concatenate([
                runtime(np.repeat(gray[i:i + BATCH, :, :, None], 3, axis=3))
                for i in range(0, len(gray), BATCH)])
        result.update(patches=len(gray), model_patches=len(gray))
        np.save(scratch / f"probabilities_{os.getpid()}.npy", probabilities)
    else:
        result["patches"], result["model_patches"] = stage3(runtime, workload, scratch)
    result.update(seconds=time.perf_counter() - start, cpu_seconds=cpu_seconds() - cpu)
    return result


class Counting:
    """A runtime that counts the patches given to the model."""

    def __init__(self, runtime):
        self.runtime, self.model_patches = runtime, 0
        self.read_ahead = getattr(runtime, "read_ahead", 0)  # as stage 3 reads the runtime's

    def __call__(self, batch):
        self.model_patches += len(batch)
        return self.runtime(batch)


def stage3(runtime, case_name, scratch):
    """Stage 3 on a kit case into ``scratch/<case>_<pid>``: (patches of the grid, patches
    given to the model)."""
    import pickle

    from breast_cancer_classifier.core.stage_scripts import produce_heatmaps

    exam_list = kit_exam_list(case_name)
    output = scratch / f"{case_name}_{os.getpid()}"
    grid = grid_patches(case_name)
    if isinstance(runtime, OriginalStandIn):
        maps = runtime.heatmaps(exam_list, scratch / case_name)
        output.mkdir(exist_ok=True)
        (output / "maps.pkl").write_bytes(pickle.dumps(maps))
        return grid, grid
    counting = Counting(runtime)
    produce_heatmaps(exam_list, scratch / case_name, output, counting, batch_size=BATCH,
                     seed=0)
    return grid, counting.model_patches


def grid_patches(case_name):
    from bench_ort_fidelity import kit_images

    from breast_cancer_classifier.core.stages import heatmaps

    total, rng = 0, random.Random(0)
    for _, raw, _, _ in kit_images(case_name):
        rows, columns = heatmaps.draw_strides(raw.shape, rng)
        total += len(heatmaps.patch_starts(rows)) * len(heatmaps.patch_starts(columns))
    return total


def load_maps(runtime, case_name, scratch):
    """``maps_of(name)`` for the case's output in ``scratch`` (run it first if needed)."""
    import pickle

    from breast_cancer_classifier.core import formats

    output = scratch / f"{case_name}_{os.getpid()}"
    if not output.exists():
        stage3(runtime, case_name, scratch)
    if isinstance(runtime, OriginalStandIn):
        maps = pickle.loads((output / "maps.pkl").read_bytes())
        return maps.__getitem__
    return lambda name: [formats.read_hdf5(output / f"heatmap_{kind}" / f"{name}.hdf5")
                         for kind in ("malignant", "benign")]


# --------------------------------------------------------------------------- parent
class Worker:
    """A candidate's worker process; ``ready_s``: from its start to its runtime built."""

    def __init__(self, candidate, args, cache_dir):
        self.candidate = candidate
        env = dict(os.environ, BCC_NO_PROGRESS="1")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", candidate, "--model-path", args.model_path,
             "--cache-dir", str(cache_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=env)
        self.read()
        self.ready_s = time.perf_counter() - started

    def ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise SystemExit(f"{self.candidate}: worker failed (exit status "
                             f"{self.process.returncode}); its stderr is above")
        return json.loads(line)

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait()


def gemm_peak():
    """fp32 GFLOP/s of torch.mm on all cores, best of GEMM_REPEATS: (per wall second, per
    CPU second)."""
    import torch

    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    out = torch.empty(GEMM_SIZE, GEMM_SIZE)
    torch.mm(a, b, out=out)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(GEMM_REPEATS):
        start, cpu = time.perf_counter(), cpu_seconds()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, cpu_seconds() - cpu)
    flops = 2 * GEMM_SIZE ** 3
    return flops / best / 1e9, flops / max(best_cpu, 1e-3) / 1e9


def flops_per_patch(model_path):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier

    model = load_patch_classifier(model_path, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros((1, 3, 256, 256)))
    return counter.get_total_flops()


def machine():
    """CPU model, instruction sets, cores, memory and library versions."""
    from importlib.metadata import version

    model, flags = platform.processor() or platform.machine(), []
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in info
                     if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in info if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
           if f in flags]
    try:
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2 ** 20
    except (OSError, IndexError, ValueError):
        memory = float("nan")
    try:
        ort = version("onnxruntime")
    except Exception:  # noqa: BLE001 - optional
        ort = "-"
    return (f"{model} ({' '.join(isa) or 'no AVX2'}), {os.cpu_count()} cores, "
            f"{memory:.0f} GiB, {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, torch {version('torch')}, onnxruntime {ort}")


def load():
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_PATCHES} real patches, no kit maps, candidates "
                             f"{' '.join(QUICK)} (a few minutes)")
    parser.add_argument("--candidates", nargs="+", help=f"default: {' '.join(FULL)}")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each candidate (best)")
    parser.add_argument("--maps", nargs="*", choices=CASES,
                        help="kit cases whose maps are compared (default: all; --quick: none)")
    parser.add_argument("--model-path", default=str(PARITY / "weights" / "patch.p"))
    parser.add_argument("--isa", choices=sorted(ISA_LIMITS),
                        help="hold every candidate and the GEMM peak to this instruction set "
                             "(an AVX2 host simulated on an AVX-512 one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--export-folded", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_folded:
        return export_folded(args.export_folded, args.model_path)
    if args.worker:
        return worker(args)
    os.environ.update(ISA_LIMITS.get(args.isa, {}))  # before PyTorch loads, here and in workers

    import numpy as np

    candidates = args.candidates or (QUICK if args.quick else FULL)
    unheld = [c for c in candidates if parse_candidate(c)[0] not in ISA_HELD]
    if args.isa and unheld:
        parser.error(f"--isa cannot hold {' '.join(unheld)} (their own code generators); "
                     f"choose among {' '.join(ISA_HELD)}")
    cases = args.maps if args.maps is not None else ([] if args.quick else list(CASES))
    workload = "sample" if args.quick else "real_cc"
    print(f"machine: {machine()}" + (f"; held to {args.isa.upper()} (--isa)" if args.isa else ""))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}, load at start {load()}", flush=True)
    flops = flops_per_patch(args.model_path)
    rows, deviations = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for case in set(cases) | ({"real_cc"} if workload == "real_cc" else set()):
            write_cropped(case, scratch / case)
        if workload == "sample":
            np.save(scratch / "sample.npy", quick_sample(QUICK_PATCHES))
        workers = []
        try:
            for candidate in candidates:  # one at a time: the cold starts do not overlap
                cache = scratch / f"cache_{len(workers)}"
                workers.append(Worker(candidate, args, cache))
                warm = Worker(candidate, args, cache)
                warm.close()
                rows[candidate] = {"cold_s": workers[-1].ready_s, "warm_s": warm.ready_s,
                                   "runs": []}
                print(f"  {candidate}: ready (cold {workers[-1].ready_s:.0f} s, warm "
                      f"{warm.ready_s:.0f} s)", file=sys.stderr, flush=True)
            peaks = []
            for round_ in range(args.rounds):
                for w in workers:
                    peaks.append(gemm_peak())
                    result = w.ask(f"run {workload} {scratch}")
                    rows[w.candidate]["runs"].append(result)
                    print(f"  round {round_ + 1} {w.candidate}: {result['seconds']:.1f} s "
                          f"({result['cpu_seconds']:.1f} CPU s), GEMM {peaks[-1][0]:.0f} "
                          f"GFLOP/s", file=sys.stderr, flush=True)
            peaks.append(gemm_peak())
            for w in workers:
                rows[w.candidate]["peak_rss_mb"] = w.ask("rss")["peak_rss_mb"]
                for case in cases:
                    skip = w.candidate.startswith("original") and case in ORIGINAL_SKIPS
                    deviations.setdefault(case, {})[w.candidate] = (
                        None if skip else w.ask(f"maps {case} {scratch}"))
                if workload == "sample":
                    rows[w.candidate]["probabilities"] = np.load(
                        scratch / f"probabilities_{w.process.pid}.npy")
        finally:
            for w in workers:
                w.close()
    report(candidates, rows, deviations, peaks, flops, workload, cases, args)


def report(candidates, rows, deviations, peaks, flops, workload, cases, args):
    import numpy as np

    original = rows.get("original")
    peak, peak_cpu = max(p[0] for p in peaks), max(p[1] for p in peaks)
    best = {c: min(rows[c]["runs"], key=lambda r: r["seconds"]) for c in candidates}
    best_cpu = {c: min(r["cpu_seconds"] for r in rows[c]["runs"]) for c in candidates}
    what = ("the four real CC images of real_cc" if workload == "real_cc"
            else f"{QUICK_PATCHES} non-constant patches of the real CC images")
    print(f"\nworkload: {what}, {best[candidates[0]]['patches']} patches, batches of {BATCH}; "
          f"best of {args.rounds} rounds; fp32 GEMM peak of the run {peak:.0f} GFLOP/s "
          f"({peak_cpu:.0f} per CPU second); {flops / 1e9:.2f} GFLOP per patch; load at the "
          f"end {load()}. \"CPU\" columns: per CPU second of the process (less sensitive to "
          "other work on the machine)")
    columns = ["candidate", "patches/s", "x original", "% of peak", "CPU s/patch",
               "x original CPU", "% of peak CPU", "model patches", "peak RSS MB",
               "cold start s", "warm start s"]
    columns += [f"max dev {case}" for case in cases]
    if workload == "sample" and original:
        columns.append("max dev/prob vs original")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for c in candidates:
        run, row = best[c], rows[c]
        rate = run["patches"] / run["seconds"]
        ratio = (best["original"]["seconds"] / run["seconds"]) if original else float("nan")
        cpu_rate = run["patches"] / best_cpu[c]
        cpu_ratio = (best_cpu["original"] / best_cpu[c]) if original else float("nan")
        cells = [c, f"{rate:.1f}", f"{ratio:.2f}", f"{100 * rate * flops / 1e9 / peak:.0f}%",
                 f"{1 / cpu_rate:.3f}", f"{cpu_ratio:.2f}",
                 f"{100 * cpu_rate * flops / 1e9 / peak_cpu:.0f}%", str(run["model_patches"]),
                 f"{row['peak_rss_mb']:.0f}", f"{row['cold_s']:.0f}", f"{row['warm_s']:.0f}"]
        cells += [_dev(deviations[case][c] and max(deviations[case][c].values()))
                  for case in cases]
        if workload == "sample" and original:
            diff = np.abs(row["probabilities"][:, :2].astype(np.float64)
                          - rows["original"]["probabilities"][:, :2]).max()
            cells.append(f"{diff:.2g}")
        print("| " + " | ".join(cells) + " |")
    for case in cases:
        print(f"\n{case}: max |map - kit's expected map| per map")
        print("| map | " + " | ".join(candidates) + " |")
        print("|" + " --- |" * (len(candidates) + 1))
        names = next(d for d in deviations[case].values() if d)
        for name in names:
            values = (deviations[case][c] and deviations[case][c][name] for c in candidates)
            print(f"| {name} | " + " | ".join(_dev(value) for value in values) + " |")


def _dev(value):
    return "-" if value is None else f"{value:.2g}"


if __name__ == "__main__":
    main()
