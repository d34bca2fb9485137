"""The runtimes that run the patch classifier: one small interface, several engines.

A runtime is called with an (N, 256, 256, 3) float32 batch of patches (channels last, the
layout stage 3 builds) and returns the (N, 4) float32 softmax probabilities.

* ``torch``: PyTorch eager on the model's device, fed the batch's NCHW view without a copy,
  which reproduces the reference bit for bit on the CPU (SPEC 6 step 3).
* ``compiled`` (CPU, fp32): eager's 3x3 convolutions; each 1x1 convolution with the
  BatchNorm-ReLUs around it one call of a C kernel compiled once per machine, the
  transitions' pools before their convolutions, and no concatenation
  (:mod:`.compiled_densenet`): within 1e-6 of eager's probabilities (eager's bit for bit on
  the model with its transitions reordered), faster and in less memory. Needs a C compiler
  the first time; a weight file is prepared for it once, in a child process, and cached like
  the ONNX export, so stage 3 never imports torchvision.
* ``onnxruntime`` (opt-in): the same checkpoint exported to ONNX (softmax and the channel
  permutation inside the graph) and run by ONNX Runtime's CPU provider. Fast on the CPU,
  but not exact: its convolution kernels sum in another order than PyTorch's
  (oneDNN), so a probability differs from eager by up to about 5e-6, and a heatmap from the
  reference's by up to 7.4e-6 on the parity kit (tolerance 1e-5); see
  ``benchmarks/bench_stage3.py``. The export is cached on disk, keyed by the
  checkpoint's SHA-256, so it happens once per weight file. It runs in a child process, so a
  stage-3 run with it never imports PyTorch itself: that saves about 0.7 GB of memory.

``auto`` (the default) is ``compiled`` on the CPU at fp32 where it can be built, else
``torch``: see :func:`choose_runtime`. Figures: ``docs/stage3_runtime.md``.
"""

import functools
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .allocator import heap_for_compiled_patches, heap_for_patches
from .errors import CheckpointError, PipelineError, SettingsError
from .hashing import file_sha256
from .runtime import check_precision, log, precision_context, resolve_device, runs_on_cpu

RUNTIMES = ("auto", "torch", "compiled", "onnxruntime")
PATCH_SHAPE = (256, 256, 3)
ONNX_OPSET = 17
# What export_patch_graph writes, named in the cache key: change it when the graph changes.
ONNX_GRAPH_VARIANT = "bn"  # BatchNormalization kept apart from the convolutions
# ONNX Runtime passes left out: ConvBNFusion would fold the BatchNorms back (OnnxRuntime).
ONNX_DISABLED_OPTIMIZERS = ("ConvBNFusion",)
ONNX_MAX_FORWARD = 5  # patches per session.run (memory, see OnnxRuntime.__call__)
CPU_MAX_FORWARD = 25  # patches per PyTorch forward pass on the CPU (memory, forward_pieces)
COMPILED_MAX_FORWARD = 6  # patches per forward pass of the compiled runtime (CompiledRuntime)
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # so the export child finds the package


def default_cache_dir():
    """Where exported graphs are kept: $BCC_CACHE_DIR, else ~/.cache/breast_cancer_classifier."""
    base = os.environ.get("BCC_CACHE_DIR") or Path.home() / ".cache" / "breast_cancer_classifier"
    return Path(base)



def onnxruntime_available():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class TorchRuntime:
    """PyTorch eager; ``max_forward`` bounds the patches per forward pass (activation memory)."""

    name = "torch"

    def __init__(self, model, device, max_forward=None, precision="fp32"):
        self.model, self.device, self.max_forward = model, device, max_forward
        self.precision = precision
        # Images read ahead while the model runs: worth it only when the model is not on
        # the CPU's cores (stage 3 reads an image in well under 1% of its patch time there).
        self.read_ahead = 0 if _is_cpu(device) else 1

    def __call__(self, batch):
        return classify_patches(self.model, batch, self.device, self.max_forward,
                                self.precision)


class CompiledRuntime:
    """Eager's 3x3 convolutions with compiled 1x1-convolution and BatchNorm-ReLU kernels
    (:mod:`.compiled_densenet`), CPU.

    Runs from a prepared checkpoint (:func:`.compiled_densenet.prepare`): ``for_checkpoint``
    prepares a weight file once, in a child process, and caches it by its SHA-256, so the
    stage-3 process never imports torchvision. The kernels are C functions compiled once per
    machine into :func:`default_cache_dir` (:mod:`.native_kernels`); they hold no weights, so
    they serve every checkpoint.
    """

    name = "compiled"
    read_ahead = 0  # runs on the CPU (see TorchRuntime.read_ahead)

    def __init__(self, prepared, max_forward=None):
        import torch

        from .compiled_densenet import CompiledDenseNet
        from .native_kernels import NativeKernels

        kernels = NativeKernels(default_cache_dir(), torch.get_num_threads())
        self.forward = CompiledDenseNet(prepared, kernels)
        self.max_forward = max_forward or COMPILED_MAX_FORWARD

    @classmethod
    def for_model(cls, model, max_forward=None):
        """The runtime for a model already loaded in this process."""
        from .compiled_densenet import prepare

        return cls(prepare(model), max_forward)

    @classmethod
    def for_checkpoint(cls, checkpoint_path, trust=False, cache_dir=None, max_forward=None):
        """The runtime for a weight file, prepared once (in a child process that loads it
        with every check and ``trust``) and cached by its SHA-256."""
        from .compiled_densenet import load_prepared

        if not Path(checkpoint_path).is_file():
            raise CheckpointError(f"{checkpoint_path}: weight file not found")
        path = cached_prepared_path(checkpoint_path, trust, cache_dir)
        if not path.is_file():
            log.info("preparing the patch classifier for the compiled runtime (once per "
                     "checkpoint): %s", path)
            run_child(checkpoint_path, path, trust, "compiled")
        return cls(load_prepared(path), max_forward)

    def __call__(self, batch):
        try:
            return classify_patches(self.forward, batch, "cpu", self.max_forward,
                                    heap=heap_for_compiled_patches)
        finally:
            # The rest of stage 3 (images, map sums: tens of MB each) maps its large arrays
            # apart again, so that they do not fragment the heap the pieces reuse.
            heap_for_patches()


class OnnxRuntime:
    """ONNX Runtime on the CPU, running an exported graph (see ``for_checkpoint``)."""

    name = "onnxruntime"
    read_ahead = 0  # runs on the CPU (see TorchRuntime.read_ahead)

    def __init__(self, graph_path, threads=None):
        # All graph optimizations (NCHWc blocked convolutions: 1.6-2x the speed of BASIC,
        # as exact) but BatchNorm folding: folded weights round differently from
        # PyTorch's separate BatchNorm, which raised the worst deviation per probability from
        # eager from 4.9e-6 to 8.8e-6 and a parity-kit heatmap's to 1.05e-5, for 4-11% more
        # speed (benchmarks/bench_ort_fidelity.py, 2026-12-02).
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(graph_path), options,
                                            providers=["CPUExecutionProvider"],
                                            disabled_optimizers=list(ONNX_DISABLED_OPTIMIZERS))

    @classmethod
    def for_checkpoint(cls, checkpoint_path, trust=False, model=None, cache_dir=None):
        """The runtime for a weight file, exporting its graph once if it is not cached.

        With ``model`` (the checkpoint already loaded) the export runs in this process;
        without, a child process loads the file (with the same checks and ``trust``) and
        exports it, so this process never imports PyTorch.
        """
        if not Path(checkpoint_path).is_file():
            raise CheckpointError(f"{checkpoint_path}: weight file not found")
        graph_path = cached_graph_path(checkpoint_path, trust, cache_dir)
        if not graph_path.is_file():
            log.info("exporting the patch classifier to ONNX (once per checkpoint): %s",
                     graph_path)
            if model is not None:
                from . import formats

                with formats.atomic_path(graph_path) as tmp:
                    export_patch_graph(model, tmp)
            else:
                export_in_child_process(checkpoint_path, graph_path, trust)
        return cls(graph_path)

    def __call__(self, batch):
        # Pieces bound the memory ONNX Runtime's arena grows to: on 2 cores, process peak
        # 1.9 GB with pieces of 50, 0.56 GB with 10, 0.40 GB with 5, at the same speed
        # (measured on 100 patches, 2026-11-30). The results do not depend on the piece size.
        return np.concatenate([
            self.session.run(None, {"patches": np.ascontiguousarray(batch[start:stop])})[0]
            for start, stop in forward_pieces(len(batch), ONNX_MAX_FORWARD)])


# --------------------------------------------------------------------------- PyTorch
def classify_patches(model, batch, device, max_forward=None, precision="fp32",
                     heap=heap_for_patches):
    """Softmax probabilities (N, 4) float32 for an (N, 256, 256, 3) float32 batch.

    The model gets the batch's NCHW view without a copy (channels-last memory), the layout
    that reproduces the reference bit for bit on CPU (SPEC 6 step 3). On the CPU the batch
    runs in near-equal pieces of at most ``max_forward`` patches (default
    ``CPU_MAX_FORWARD``) to bound activation memory; see ``forward_pieces``.
    ``precision`` other than fp32 (``--precision``) runs the model under
    ``runtime.precision_context``. ``heap`` sets the allocator for the pass on the CPU
    (:mod:`.allocator`).
    """
    import torch

    on_cpu = torch.device(device).type == "cpu"
    if on_cpu:
        heap()  # how freed activations are kept or given back (allocator)
    if max_forward is None:
        max_forward = CPU_MAX_FORWARD if on_cpu else len(batch)
    with torch.inference_mode(), precision_context(precision, device):
        outputs = []
        for start, stop in forward_pieces(len(batch), max_forward):
            x = torch.from_numpy(batch[start:stop]).permute(0, 3, 1, 2).to(device)
            outputs.append(torch.softmax(model(x), dim=1).float().cpu())
        return torch.cat(outputs).numpy()


def forward_pieces(n, max_forward):
    """(start, stop) of ``ceil(n / max_forward)`` consecutive pieces whose sizes differ by <= 1.

    A batch of 100 patches holds about 1.2 GB of DenseNet activations; pieces of 25 hold a
    quarter. The CPU kernels give every patch the same result whatever the batch size from
    about ten patches up (checked on the parity kit: the heatmaps stay bit-identical), and
    equal splitting never makes a piece smaller than half of ``max_forward``; a batch of at
    most ``max_forward`` patches (such as the last, short batch of an exam) runs whole.
    """
    pieces = max(1, -(-n // max(1, max_forward)))
    bounds = [n * i // pieces for i in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _is_cpu(device):
    """Whether ``device`` (a torch.device or its name) is the CPU."""
    return getattr(device, "type", str(device)) == "cpu"


def available_cores():
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def torch_version():
    """The installed PyTorch's version, read without importing it."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _cache_stem(checkpoint_path, trust, cache_dir):
    """The cache's file-name stem for a checkpoint: its SHA-256 and PyTorch's version.

    Files made from checkpoints loaded with ``--trust-checkpoint`` are kept apart, so a run
    without the flag never uses one made from a file that ``weights_only`` refuses.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = file_sha256(checkpoint_path)[:16] + ("_trusted" if trust else "")
    version = torch_version().replace("+", "_")
    return cache_dir / f"patch_classifier_{key}_torch{version}"


def cached_graph_path(checkpoint_path, trust=False, cache_dir=None):
    """Where the export of ``checkpoint_path`` is cached: keyed as :func:`_cache_stem`, the
    opset and ``ONNX_GRAPH_VARIANT``, so a graph exported another way is never reused."""
    stem = _cache_stem(checkpoint_path, trust, cache_dir)
    return stem.with_name(f"{stem.name}_opset{ONNX_OPSET}_{ONNX_GRAPH_VARIANT}.onnx")


def cached_prepared_path(checkpoint_path, trust=False, cache_dir=None):
    """Where the compiled runtime's preparation of ``checkpoint_path`` is cached: keyed as
    :func:`_cache_stem` and the prepared layout's format number."""
    from .compiled_densenet import PREPARED_FORMAT

    stem = _cache_stem(checkpoint_path, trust, cache_dir)
    return stem.with_name(f"{stem.name}_compiled{PREPARED_FORMAT}.pt")


def export_onnx(module, example_inputs, path, input_names, output_names,
                fold_batchnorm=False):
    """Write ``module`` as an ONNX graph: the one ONNX export of the project (stage 3's cached
    graph, ``bcc export``).

    TorchScript exporter, opset ``ONNX_OPSET``, a dynamic first (batch) axis on every input
    and output. The exporter folds each BatchNorm that follows a convolution into its
    weights unless told to keep the module's mode (``TrainingMode.PRESERVE``, the module put
    in eval mode here); kept apart they are computed as PyTorch computes them, closer to
    eager (see OnnxRuntime). ``fold_batchnorm=True`` gives the folded graph (benchmarks only).
    """
    import warnings

    import torch

    axes = {name: {0: "batch"} for name in list(input_names) + list(output_names)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), tuple(example_inputs), str(path),
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False,
                          training=(torch.onnx.TrainingMode.EVAL if fold_batchnorm
                                    else torch.onnx.TrainingMode.PRESERVE))


def export_patch_graph(model, path, fold_batchnorm=False):
    """Stage 3's graph of ``model`` (logits, NCHW): NHWC patches in, softmax out."""
    import torch

    class SoftmaxNHWC(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, patches):
            return torch.softmax(self.model(patches.permute(0, 3, 1, 2)), dim=1)

    export_onnx(SoftmaxNHWC().cpu(), (torch.zeros((2,) + PATCH_SHAPE),), path, ["patches"],
                ["probabilities"], fold_batchnorm)


def export_checkpoint(checkpoint_path, output_path, trust=False, what="onnx"):
    """Load a patch checkpoint (all its checks) and write, atomically, its ONNX graph
    (``what="onnx"``) or the compiled runtime's preparation (``"compiled"``)."""
    import torch

    from . import formats
    from .checkpoints.patch import load_patch_classifier
    from .compiled_densenet import prepare

    model = load_patch_classifier(checkpoint_path, "cpu", trust=trust)
    with formats.atomic_path(output_path) as tmp:
        if what == "onnx":
            export_patch_graph(model, tmp)
        else:
            torch.save(prepare(model), tmp)


EXIT_CHECKPOINT_ERROR = 2  # the export child's status for a CheckpointError
_ERROR_MARK = "patch_runtime: checkpoint error: "


def export_in_child_process(checkpoint_path, graph_path, trust=False):
    """``export_checkpoint`` to ONNX in a child Python process; its errors are raised here."""
    run_child(checkpoint_path, graph_path, trust, "onnx")


CHILD_WORK = {"onnx": ("exporting {} to ONNX", "without ONNX Runtime"),
              "compiled": ("preparing {} for the compiled runtime", "without it")}


def run_child(checkpoint_path, output_path, trust, what):
    """``export_checkpoint`` in a child Python process (which imports what loading the
    checkpoint needs, so this process does not); its errors are raised here."""
    command = [sys.executable, "-m", "breast_cancer_classifier.core.patch_runtime",
               str(checkpoint_path), str(output_path), "--what", what] + (
                   ["--trust"] if trust else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT),
                                                      env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode == EXIT_CHECKPOINT_ERROR:
        raise CheckpointError(done.stderr.rpartition(_ERROR_MARK)[2].strip())
    if done.returncode != 0:
        work, without = CHILD_WORK[what]
        raise PipelineError(f"{work.format(checkpoint_path)} failed (exit status "
                            f"{done.returncode}):\n{done.stderr.strip()[-2000:]}\nUse --runtime "
                            f"torch to run the patch classifier {without}")


def compiled_runtime_problem():
    """Why the compiled runtime cannot run here (a sentence), or None if it can.

    It can where its kernels are cached or compile (:func:`.native_kernels.load`: a C
    compiler, once per machine); deciding needs no PyTorch.
    """
    from .native_kernels import load

    try:
        load(str(default_cache_dir()))
    except (PipelineError, OSError) as err:
        return f"the compiled runtime's kernels are unavailable: {err}"
    return None


def choose_runtime(runtime, precision, on_cpu):
    """The one rule that turns ``--runtime`` into an engine: ``"torch"``, ``"compiled"`` or
    ``"onnxruntime"``.

    ``auto`` is ``compiled`` on the CPU at fp32: within 1e-6 of eager's probabilities (the
    parity kit's maps within 5e-7 of the reference's), about 2.9x eager's speed in 0.7 of
    its memory (``docs/stage3_runtime.md``). Elsewhere (a GPU,
    bf16/tf32) and where it cannot be built (:func:`compiled_runtime_problem`, said in a
    warning) ``auto`` is ``torch``, PyTorch eager. ONNX Runtime is never chosen by ``auto``:
    no setting of it gets under about 5e-6 per probability (its kernels sum in another
    order), against 3e-6 for a default. Refuses unknown names, ``compiled`` or
    ``onnxruntime`` off the CPU or below fp32, and what they need but is missing.
    """
    check_runtime_name(runtime, precision)
    if runtime == "auto":
        if not on_cpu or precision != "fp32":
            return "torch"
        problem = compiled_runtime_problem()
        if problem is None:
            return "compiled"
        _warn_once(f"stage 3 runs PyTorch eager, about a third of the speed of --runtime "
                   f"compiled: {problem}. Pass --runtime torch to choose eager explicitly")
        return "torch"
    if runtime in ("compiled", "onnxruntime") and not on_cpu:
        raise SettingsError(f"--runtime {runtime} runs on the CPU only; use --device-type "
                            "cpu, or --runtime torch on a GPU")
    if runtime == "compiled":
        problem = compiled_runtime_problem()
        if problem is not None:
            raise PipelineError(f"--runtime compiled: {problem}; use --runtime torch (PyTorch "
                                "eager: the same numbers, slower)")
    if runtime == "onnxruntime":
        check_onnxruntime_installed()
    return runtime


@functools.lru_cache(maxsize=None)
def _warn_once(message):
    log.warning("%s", message)


def make_patch_runtime(runtime, model, device, checkpoint_path, max_forward=None, trust=False,
                       precision="fp32"):
    """Build the runtime named ``runtime`` (one of RUNTIMES) for a loaded patch model.

    ``precision`` (``runtime.PRECISIONS``) applies to the torch runtime; the others are fp32.
    """
    engine = choose_runtime(runtime, precision, _is_cpu(device))
    if engine == "onnxruntime":
        return OnnxRuntime.for_checkpoint(checkpoint_path, trust, model=model)
    if engine == "compiled":
        return CompiledRuntime.for_model(model, max_forward)
    return TorchRuntime(model, device, max_forward, precision)


def check_runtime_name(runtime, precision="fp32"):
    """Refuse an unknown runtime, or ONNX Runtime or the compiled one at a precision other
    than fp32."""
    if runtime not in RUNTIMES:
        raise SettingsError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime in ("compiled", "onnxruntime") and precision != "fp32":
        raise SettingsError(f"--runtime {runtime} runs fp32 only; use --runtime torch (or "
                            f"auto) with --precision {precision}")


def check_onnxruntime_installed():
    if not onnxruntime_available():
        raise PipelineError("--runtime onnxruntime needs the onnxruntime package "
                            "(pip install onnxruntime onnx)")


def load_patch_runtime(model_path, device_type="cpu", gpu_number=0, trust_checkpoint=False,
                       runtime="auto", precision="fp32"):
    """Load the patch checkpoint and wrap it in the runtime asked for.

    ONNX Runtime on the CPU is set up without importing PyTorch in this process: its memory
    (about 0.7 GB) stays out of the run. Which engine runs is :func:`choose_runtime`'s rule.
    """
    check_runtime_name(runtime, precision)
    on_cpu = runs_on_cpu(device_type)  # says once when a requested GPU is absent
    if on_cpu and choose_runtime(runtime, precision, True) == "onnxruntime":
        classify = OnnxRuntime.for_checkpoint(model_path, trust=trust_checkpoint)
    else:
        device = resolve_device("cpu" if on_cpu else device_type, gpu_number)
        check_precision(precision, device)  # before the model is loaded
        classify = patch_runtime_on(model_path, device, runtime, precision, trust_checkpoint)
    log.debug("patch classifier run by %s at %s", classify.name, precision)
    return classify


def patch_runtime_on(model_path, device, runtime="auto", precision="fp32", trust=False):
    """The runtime :func:`choose_runtime` picks, for the weight file, on an already resolved
    ``torch.device`` (``bcc run``'s engine resolves it once for the run)."""
    engine = choose_runtime(runtime, precision, _is_cpu(device))
    if engine == "onnxruntime":  # the PyTorch model is never loaded in this process
        return OnnxRuntime.for_checkpoint(model_path, trust=trust)
    if engine == "compiled":  # prepared from the weight file: no torchvision in this process
        return CompiledRuntime.for_checkpoint(model_path, trust=trust)
    from .checkpoints.patch import load_patch_classifier

    model = load_patch_classifier(model_path, device, trust=trust)
    return make_patch_runtime(engine, model, device, model_path, trust=trust,
                              precision=precision)


def _export_main(argv=None):
    """Entry point of the export child: ``CHECKPOINT OUTPUT [--what onnx|compiled] [--trust]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="patch_runtime", description=export_checkpoint.__doc__)
    parser.add_argument("checkpoint_path")
    parser.add_argument("graph_path")
    parser.add_argument("--trust", action="store_true")
    parser.add_argument("--what", choices=sorted(CHILD_WORK), default="onnx")
    args = parser.parse_args(argv)
    try:
        export_checkpoint(args.checkpoint_path, args.graph_path, args.trust, args.what)
    except CheckpointError as err:
        print(f"{_ERROR_MARK}{err}", file=sys.stderr)
        sys.exit(EXIT_CHECKPOINT_ERROR)


if __name__ == "__main__":
    _export_main()
