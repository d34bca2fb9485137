"""Patch-classifier runtimes: the default (compiled) gives PyTorch eager's logits bit for
bit for the model with its transitions' average pool moved before their convolution, and
within 1e-6 of the model's own; ONNX Runtime agrees with eager within the heatmap
tolerance, keeps BatchNorm apart, and its exports are cached.

``test_default_runtime_synth_c_map_within_margin`` runs the default runtime over the
largest image of the parity kit's ``synth_c`` case (1,510 model patches: a few minutes on
two cores); it skips when the kit is absent.
"""

import logging
import os
import platform
import random
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from breast_cancer_classifier.core import allocator, formats, native_kernels, patch_runtime
from breast_cancer_classifier.core.compiled_densenet import batchnorm_terms
from breast_cancer_classifier.core.errors import CheckpointError, PipelineError
from breast_cancer_classifier.core.exam_list import iter_images, load_exam_list
from breast_cancer_classifier.core.patch_runtime import (CompiledRuntime, OnnxRuntime,
                                                         TorchRuntime, cached_graph_path,
                                                         cached_prepared_path,
                                                         choose_runtime,
                                                         compiled_runtime_problem,
                                                         export_patch_graph, make_patch_runtime,
                                                         onnxruntime_available)
from breast_cancer_classifier.core.plan import ImagePlan
from breast_cancer_classifier.core.stages import heatmaps
from breast_cancer_classifier.core.views import flip_for_model

from conftest import parity_case
from helpers import REPO, slow

needs_onnxruntime = pytest.mark.skipif(not onnxruntime_available(),
                                       reason="onnxruntime not installed")
# Outside CI a machine without a C compiler skips these; under CI they run (and fail there).
needs_compiler = pytest.mark.skipif(compiled_runtime_problem() is not None
                                    and not os.environ.get("CI"),
                                    reason=str(compiled_runtime_problem()))
MARGIN = 3e-6  # the default's worst map deviation from the reference (tolerance: 1e-5)
# The default's worst probability deviation from eager's (its transitions pool first).
COMPILED_FROM_EAGER = 1e-6


@pytest.fixture(scope="module")
def patch_checkpoint(tmp_path_factory):
    """A small random-weights patch checkpoint (a fixture only: its outputs mean nothing)."""
    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier
    from breast_cancer_classifier.core.patch_model import PatchClassifier

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "patch.p"
    model = PatchClassifier()
    with torch.no_grad():  # non-trivial BatchNorm statistics so outputs vary by patch
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.uniform_(-0.2, 0.2)
    torch.save(model.state_dict(), path)
    return path, load_patch_classifier(path, torch.device("cpu"))


def pooling_first(model):
    """A copy of a ``PatchClassifier`` whose transitions pool before their 1x1 convolution
    (norm, relu, pool, conv): what the compiled runtime computes, as PyTorch eager runs it."""
    import copy
    from collections import OrderedDict

    model = copy.deepcopy(model)
    for name, transition in list(model.features.named_children()):
        if name.startswith("transition"):
            setattr(model.features, name, torch.nn.Sequential(OrderedDict(
                (part, getattr(transition, part)) for part in ("norm", "relu", "pool", "conv"))))
    return model


def patches(n=6, seed=0):
    rng = np.random.default_rng(seed)
    gray = rng.standard_normal((n, 256, 256)).astype(np.float32)
    return np.repeat(gray[..., None], 3, axis=3)


def graph_ops(path):
    import onnx

    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@needs_onnxruntime
def test_onnxruntime_matches_eager_within_heatmap_tolerance(patch_checkpoint, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("BCC_CACHE_DIR", str(tmp_path))
    path, model = patch_checkpoint
    batch = patches()
    eager = TorchRuntime(model, torch.device("cpu"))(batch)
    onnx = make_patch_runtime("onnxruntime", model, torch.device("cpu"), path)
    assert isinstance(onnx, OnnxRuntime)
    result = onnx(batch)
    assert result.shape == (6, 4) and result.dtype == np.float32
    np.testing.assert_allclose(result, eager, rtol=0, atol=1e-5)
    assert np.ptp(eager[:, 0]) > 1e-4  # the check compares outputs that differ by patch
    # A second runtime for the same checkpoint reuses the cached export.
    exported = list(tmp_path.glob("*.onnx"))
    assert exported == [cached_graph_path(path, cache_dir=tmp_path)]
    mtime = exported[0].stat().st_mtime_ns
    make_patch_runtime("onnxruntime", model, torch.device("cpu"), path)
    assert exported[0].stat().st_mtime_ns == mtime


def test_runtime_choice_and_errors(patch_checkpoint):
    path, model = patch_checkpoint
    assert isinstance(make_patch_runtime("torch", model, torch.device("cpu"), path), TorchRuntime)
    with pytest.raises(PipelineError, match="unknown runtime 'tensorrt'"):
        make_patch_runtime("tensorrt", model, torch.device("cpu"), path)
    with pytest.raises(PipelineError, match="CPU only"):
        make_patch_runtime("onnxruntime", model, torch.device("cuda:0"), path)


@pytest.mark.parametrize("on_cpu, precision, engine", [
    (True, "fp32", "compiled"), (True, "bf16", "torch"), (False, "fp32", "torch"),
    (False, "bf16", "torch")])
def test_auto_is_compiled_on_the_cpu_at_fp32_else_torch(on_cpu, precision, engine, monkeypatch):
    monkeypatch.setattr(patch_runtime, "compiled_runtime_problem", lambda: None)
    assert choose_runtime("auto", precision, on_cpu) == engine


@pytest.fixture
def fresh_kernel_cache(tmp_path, monkeypatch):
    """An empty cache folder, and the loaded kernel forgotten (restored after the test)."""
    monkeypatch.setenv("BCC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(patch_runtime.log, "propagate", True)  # to caplog
    native_kernels.load.cache_clear()
    patch_runtime._warn_once.cache_clear()
    yield tmp_path
    native_kernels.load.cache_clear()


@pytest.mark.parametrize("compiler, problem", [
    ("no-such-compiler", "no C compiler: 'no-such-compiler' was not found"),
    ("false", "compiling the stage-3 kernels with false failed (exit status 1)")])
def test_without_a_working_compiler_auto_is_torch_and_compiled_is_refused(
        fresh_kernel_cache, monkeypatch, caplog, compiler, problem):
    monkeypatch.setenv("CC", compiler)
    assert problem in compiled_runtime_problem()
    with caplog.at_level(logging.WARNING, logger=patch_runtime.log.name):
        assert choose_runtime("auto", "fp32", True) == "torch"
    assert problem in caplog.text and "--runtime torch" in caplog.text  # said, not silent
    with pytest.raises(PipelineError, match=f"(?s){re.escape(problem)}.*use --runtime torch"):
        choose_runtime("compiled", "fp32", True)
    assert not list(fresh_kernel_cache.rglob("*.so"))  # nothing half-written


def test_compiled_is_cpu_and_fp32_only():
    with pytest.raises(PipelineError, match="CPU only"):
        choose_runtime("compiled", "fp32", False)
    with pytest.raises(PipelineError, match="runs fp32 only"):
        choose_runtime("compiled", "bf16", True)


@needs_compiler
def test_a_missing_kernel_source_is_named(fresh_kernel_cache, monkeypatch, tmp_path):
    # An installation without the C file (package data left out): auto says so and runs eager.
    missing = tmp_path / "site-packages" / "native_kernels.c"
    monkeypatch.setattr(native_kernels, "SOURCE_PATH", missing)
    problem = compiled_runtime_problem()
    assert f"{missing}: the stage-3 kernels' source is missing" in problem
    assert choose_runtime("auto", "fp32", True) == "torch"
    assert not list(fresh_kernel_cache.rglob("*.so"))


@needs_compiler
@pytest.mark.parametrize("change, message", [
    (lambda p: p["blocks"][0]["layers"][0][1].__setitem__(1, torch.zeros(128)),
     "1x1 convolutions without bias"),
    (lambda p: p["blocks"][1].__setitem__("transition", (p["blocks"][1]["transition"][0],
                                                         (2, 2, 0, True, True, None))),
     r"transition pool: expected F.avg_pool2d arguments \(2, 2, 0, False, True, None\)")])
def test_a_preparation_the_pass_cannot_run_is_refused(patch_checkpoint, change, message):
    from breast_cancer_classifier.core.compiled_densenet import CompiledDenseNet, prepare

    prepared = prepare(patch_checkpoint[1])
    layers = prepared["blocks"][0]["layers"]
    layers[0] = (layers[0][0], list(layers[0][1]), *layers[0][2:])  # mutable conv1 tuple
    change(prepared)
    kernels = native_kernels.NativeKernels(patch_runtime.default_cache_dir(), 1)
    with pytest.raises(ValueError, match=message):
        CompiledDenseNet(prepared, kernels)


@needs_compiler
def test_kernel_is_compiled_once_into_the_cache(fresh_kernel_cache):
    assert compiled_runtime_problem() is None
    built = list((fresh_kernel_cache / "kernels").glob("native_kernels_*.so"))
    assert built == [native_kernels.library_path(fresh_kernel_cache)]
    mtime = built[0].stat().st_mtime_ns
    native_kernels.load.cache_clear()
    assert compiled_runtime_problem() is None
    assert built[0].stat().st_mtime_ns == mtime


@needs_compiler
@pytest.mark.parametrize("threads", [1, 3])
def test_norm_relu_kernel_on_a_channel_slice(threads, monkeypatch):
    monkeypatch.setattr(native_kernels, "MIN_FLOATS_PER_THREAD", 1)  # split small calls too
    rng = torch.Generator().manual_seed(0)
    features = torch.randn(5, 40, 11, 13, generator=rng).contiguous(
        memory_format=torch.channels_last)
    rows = features[:, :24].permute(0, 2, 3, 1).view(-1, 24)  # rows of stride 40
    alpha, beta = torch.randn(24, generator=rng), torch.randn(24, generator=rng)
    out = torch.empty(5 * 11 * 13, 24)
    kernels = native_kernels.NativeKernels(patch_runtime.default_cache_dir(), threads)
    kernels.norm_relu(rows, alpha, beta, out)
    expected = torch.clamp_min((rows.double() * alpha.double() + beta.double()).float(), 0)
    assert torch.equal(out, expected) and (out == 0).any() and (out > 0).any()
    with pytest.raises(ValueError, match="unit channel stride"):
        kernels.norm_relu(rows.t(), alpha, beta, out)


def eager_norm_relu(x, terms):
    """PyTorch's eval BatchNorm (``addcmul``: one fused multiply-add on the CPU) and ReLU."""
    alpha, beta = (t.view(1, -1, 1, 1) for t in terms)
    return torch.clamp_min(torch.addcmul(beta, x, alpha), 0)


def check_pointwise_conv(kernels, threads_note=""):
    """The 1x1 convolution kernel against oneDNN's (F.conv2d) with PyTorch's BatchNorm-ReLU
    around it, on a channel slice (rows of stride 300), 715 rows (not a multiple of any
    tile) and 200 input channels (not a multiple of the kernel's channel block)."""
    rng = torch.Generator().manual_seed(1)
    features = torch.randn(5, 300, 11, 13, generator=rng).contiguous(
        memory_format=torch.channels_last)
    x = features[:, :200]
    weight = (torch.randn(128, 200, 1, 1, generator=rng) / 10).contiguous(
        memory_format=torch.channels_last)
    norm_in = (torch.rand(200, generator=rng) + 0.5, torch.randn(200, generator=rng) / 4)
    norm_out = (torch.rand(128, generator=rng) + 0.5, torch.randn(128, generator=rng) / 4)
    packed = kernels.pack_weight(weight)
    rows = x.permute(0, 2, 3, 1).view(-1, 200)
    with torch.inference_mode():
        normed = eager_norm_relu(x, norm_in)
        product = F.conv2d(normed, weight)
        cases = [(norm_in, norm_out, eager_norm_relu(product, norm_out)),
                 (norm_in, None, product), (None, None, F.conv2d(x, weight))]
        for before, after, expected in cases:
            out = torch.full((rows.shape[0], 128), float("nan"))
            kernels.pointwise_conv(rows, before, packed, after, out)
            expected = expected.permute(0, 2, 3, 1).reshape(-1, 128)
            assert torch.equal(out, expected), (threads_note, before is None, after is None)
            assert (out == 0).any() == (after is not None)  # the ReLU after, where asked
        # A transition: the 2x2 average pool of relu(norm(x)) (maps of 14 x 10), then the
        # product; 175 pooled rows.
        maps = torch.randn(5, 300, 14, 10, generator=rng).contiguous(
            memory_format=torch.channels_last)[:, :200]
        for before in (norm_in, None):
            pooled = F.avg_pool2d(maps if before is None else eager_norm_relu(maps, before), 2)
            expected = F.conv2d(pooled, weight).permute(0, 2, 3, 1).reshape(-1, 128)
            out = torch.full((5 * 7 * 5, 128), float("nan"))
            kernels.pointwise_conv(maps.permute(0, 2, 3, 1).view(-1, 200), before, packed, None,
                                   out, pooled_maps=(14, 10))
            assert torch.equal(out, expected), (threads_note, "pooled", before is None)
    return packed


@needs_compiler
@pytest.mark.parametrize("threads", [1, 3])
def test_pointwise_conv_is_onednn_s_with_batchnorm_relu_around_it(threads, monkeypatch):
    monkeypatch.setattr(native_kernels, "MIN_MULTIPLY_ADDS_PER_THREAD", 1)
    kernels = native_kernels.NativeKernels(patch_runtime.default_cache_dir(), threads)
    packed = check_pointwise_conv(kernels, threads)
    assert packed.shape == (128 // kernels.panel_width, 200, kernels.panel_width)
    with pytest.raises(ValueError, match="multiple of"):
        kernels.pack_weight(torch.zeros(kernels.panel_width + 1, 8, 1, 1))
    with pytest.raises(ValueError, match="channels do not match"):
        kernels.pointwise_conv(torch.zeros(10, 199), None, packed, None, torch.zeros(10, 128))
    with pytest.raises(ValueError, match="not maps of 5 x 2 pixels, both even"):
        kernels.pointwise_conv(torch.zeros(10, 200), None, packed, None, torch.zeros(2, 128),
                               pooled_maps=(5, 2))


@needs_compiler
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 flags")
@pytest.mark.parametrize("target, tile_width", [("haswell", 16), ("x86-64", 4)])
def test_avx2_and_plain_c_tiles_give_the_same_numbers(fresh_kernel_cache, monkeypatch, target,
                                                     tile_width):
    # The kernels built for an AVX2 host (8-float vectors) and for any x86-64 (plain C),
    # run here: each is still oneDNN's product to the bit.
    flags = [f for f in native_kernels.compile_flags() if not f.startswith("-march=")]
    monkeypatch.setattr(native_kernels, "compile_flags", lambda: [*flags, f"-march={target}"])
    kernels = native_kernels.NativeKernels(fresh_kernel_cache, 2)
    assert kernels.panel_width == tile_width
    check_pointwise_conv(kernels, target)


@needs_compiler
def test_kernels_built_without_openmp_start_their_own_threads(fresh_kernel_cache, monkeypatch):
    # Where the compiler has no OpenMP the kernels start threads themselves: same numbers.
    flags = [f for f in native_kernels.compile_flags() if f != "-fopenmp"]
    monkeypatch.setattr(native_kernels, "compile_flags", lambda: flags)
    monkeypatch.setattr(native_kernels, "MIN_MULTIPLY_ADDS_PER_THREAD", 1)
    kernels = native_kernels.NativeKernels(fresh_kernel_cache, 3)
    assert "omp_" not in subprocess.run(["nm", "-D", str(native_kernels.library_path(
        fresh_kernel_cache))], capture_output=True, text=True).stdout
    check_pointwise_conv(kernels)


@pytest.fixture(scope="module")
def compiled(patch_checkpoint, tmp_path_factory):
    """The compiled runtime as stage 3 builds it: the weight file prepared in a child
    process (cached by its SHA-256)."""
    if compiled_runtime_problem() is not None:
        pytest.skip(compiled_runtime_problem())
    cache = tmp_path_factory.mktemp("prepared")
    runtime = CompiledRuntime.for_checkpoint(patch_checkpoint[0], cache_dir=cache)
    assert [p.name for p in cache.glob("*.pt")] == [
        cached_prepared_path(patch_checkpoint[0], cache_dir=cache).name]
    # Channels-last weights (the activations' layout); the loaded model keeps its own.
    conv2_weight = runtime.forward.blocks[0]["layers"][0][3][0]
    assert conv2_weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv2_weight.is_contiguous()
    assert patch_checkpoint[1].features.denseblock1.denselayer1.conv2.weight.is_contiguous()
    runtime.cache_dir = cache  # for tests that start their own process
    return runtime


def test_batchnorm_terms_are_the_cpu_kernel_s_fused_multiply_add(patch_checkpoint):
    # Eval-mode BatchNorm on the CPU is fma(x, alpha, beta); computed in float64 (exact
    # product, one rounding of the sum, then float32), the terms give eager's values.
    norm = patch_checkpoint[1].features.denseblock2.denselayer3.norm1
    alpha, beta = batchnorm_terms(norm)
    x = torch.randn(3, norm.num_features, 5, 5, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = norm(x)
    fused = (x.double() * alpha.double()[:, None, None] + beta.double()[:, None, None]).float()
    assert torch.equal(fused, eager)


@needs_compiler
@pytest.mark.parametrize("n, piece", [(6, 16), (7, 3), (1, 16)])
def test_compiled_runtime_is_eager_with_transitions_pooling_first(patch_checkpoint, compiled,
                                                                  n, piece):
    # Bit for bit: eager on the same model with each transition's average pool taken before
    # its 1x1 convolution (the same in exact arithmetic, a quarter of the products). Within
    # COMPILED_FROM_EAGER of the model itself.
    _, model = patch_checkpoint
    batch = patches(n, seed=n)
    reordered = TorchRuntime(pooling_first(model), torch.device("cpu"), max_forward=piece)(batch)
    compiled.max_forward = piece
    result = compiled(batch)
    assert result.dtype == np.float32 and result.shape == (n, 4)
    assert np.array_equal(result, reordered)
    eager = TorchRuntime(model, torch.device("cpu"), max_forward=piece)(batch)
    assert np.abs(result - eager).max() <= COMPILED_FROM_EAGER
    assert n == 1 or not np.array_equal(reordered, eager)  # the order changes the rounding
    assert n == 1 or np.ptp(eager[:, 0]) > 1e-4  # outputs that differ by patch


PAGE_FAULTS = """
import resource, sys
import numpy as np
from breast_cancer_classifier.core import allocator, patch_runtime

runtime = patch_runtime.CompiledRuntime.for_checkpoint(sys.argv[1], cache_dir=sys.argv[2])
piece = patch_runtime.COMPILED_MAX_FORWARD
batch = np.random.default_rng(3).standard_normal((piece, 256, 256, 3)).astype(np.float32)

def page_faults(heap):  # of the second of two pieces
    patch_runtime.classify_patches(runtime.forward, batch, "cpu", piece, heap=heap)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    patch_runtime.classify_patches(runtime.forward, batch, "cpu", piece, heap=heap)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

print(page_faults(allocator.heap_for_patches), page_faults(allocator.heap_for_compiled_patches))
"""


@needs_compiler
def test_compiled_pieces_reuse_their_memory(patch_checkpoint, compiled):
    # With the compiled runtime's heap setting, a piece's activations come from memory the
    # piece before already faulted in; with stage 3's general setting (each block of 1 MiB
    # up mapped afresh) every piece faults them in again, a quarter of its time. In a fresh
    # process: free memory that earlier tests left in this one's heap would serve either.
    done = subprocess.run([sys.executable, "-c", PAGE_FAULTS, str(patch_checkpoint[0]),
                           str(compiled.cache_dir)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    mapped_afresh, kept = map(int, done.stdout.split())
    assert mapped_afresh > 5000  # 4 KiB pages: the stem's output alone is 24 MiB
    assert kept < mapped_afresh / 10, (kept, mapped_afresh)


@needs_compiler
def test_stage_3_with_the_compiled_runtime_never_imports_torchvision(patch_checkpoint, compiled,
                                                                   tmp_path):
    # A fresh process as stage 3 loads it: the weight file is prepared once in a child (which
    # imports torchvision), cached, and this process needs neither torchvision nor
    # torch._dynamo (about 165 MB); the probabilities are those of eager with the
    # transitions pooling first, bit for bit.
    path, model = patch_checkpoint
    batch = patches(9, seed=5)
    np.save(tmp_path / "batch.npy", batch)
    script = (
        "import sys, numpy as np\n"
        "from breast_cancer_classifier.core import patch_runtime\n"
        f"classify = patch_runtime.load_patch_runtime({str(path)!r}, 'cpu')\n"
        f"batch = np.load({str(tmp_path / 'batch.npy')!r})\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, classify(batch))\n"
        "print(type(classify).__name__, sorted(m for m in ('torchvision', 'torch._dynamo') "
        "if m in sys.modules))\n")
    env = dict(os.environ, BCC_CACHE_DIR=str(tmp_path / "cache"))
    for attempt in range(2):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, cwd=REPO)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split("\n")[0] == "CompiledRuntime []"
        prepared = cached_prepared_path(path, cache_dir=tmp_path / "cache")
        if attempt == 0:
            mtime = prepared.stat().st_mtime_ns
    assert prepared.stat().st_mtime_ns == mtime  # prepared once
    reordered = TorchRuntime(pooling_first(model), torch.device("cpu"),
                             max_forward=patch_runtime.COMPILED_MAX_FORWARD)(batch)
    assert np.array_equal(np.load(tmp_path / "out.npy"), reordered)


def test_preparations_are_cached_apart_by_trust_and_content(patch_checkpoint, tmp_path):
    checkpoint, _ = patch_checkpoint
    plain = cached_prepared_path(checkpoint, cache_dir=tmp_path)
    assert plain != cached_prepared_path(checkpoint, trust=True, cache_dir=tmp_path)
    assert plain.suffix == ".pt" and plain != cached_graph_path(checkpoint, cache_dir=tmp_path)
    other = tmp_path / "other.p"
    other.write_bytes(checkpoint.read_bytes() + b"\0")
    assert cached_prepared_path(other, cache_dir=tmp_path) != plain  # keyed by content


def test_a_bad_weight_file_is_named_by_the_preparing_child(tmp_path):
    bad = tmp_path / "patch.p"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=re.escape(str(bad))):
        CompiledRuntime.for_checkpoint(bad, cache_dir=tmp_path / "cache")
    assert not list(tmp_path.rglob("*.pt"))  # nothing half-written
    with pytest.raises(CheckpointError, match="weight file not found"):
        CompiledRuntime.for_checkpoint(tmp_path / "missing.p", cache_dir=tmp_path / "cache")


@needs_compiler
def test_default_load_is_compiled_on_the_cpu(patch_checkpoint, compiled):
    path, _ = patch_checkpoint
    classify = patch_runtime.load_patch_runtime(path, "cpu")
    assert isinstance(classify, CompiledRuntime) and classify.name == "compiled"
    assert classify.max_forward == patch_runtime.COMPILED_MAX_FORWARD
    assert classify.read_ahead == 0
    torch_runtime = patch_runtime.load_patch_runtime(path, "cpu", runtime="torch")
    assert isinstance(torch_runtime, TorchRuntime) and torch_runtime.precision == "fp32"


@needs_onnxruntime
def test_export_keeps_batchnorm_apart(patch_checkpoint, tmp_path):
    # Folded into the convolutions' weights, the BatchNorms round differently from eager's
    # (worst probability deviation 8.8e-6 instead of 4.9e-6 on the kit's patches).
    _, model = patch_checkpoint
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    export_patch_graph(model, tmp_path / "kept.onnx")
    export_patch_graph(model, tmp_path / "folded.onnx", fold_batchnorm=True)
    kept, folded = graph_ops(tmp_path / "kept.onnx"), graph_ops(tmp_path / "folded.onnx")
    assert kept["BatchNormalization"] == norms == 121
    assert folded["BatchNormalization"] < norms  # what the exporter does unless told not to
    assert kept["Conv"] == folded["Conv"] == 120
    assert model.training is False  # the export leaves the model in eval mode


@needs_onnxruntime
@pytest.mark.parametrize("left_out, bn_apart", [(patch_runtime.ONNX_DISABLED_OPTIMIZERS, True),
                                                ((), False)])
def test_session_leaves_batchnorm_apart(patch_checkpoint, tmp_path, monkeypatch, left_out,
                                        bn_apart):
    # ONNX Runtime's own ConvBNFusion would fold them back; the session leaves it out. Its
    # optimized graph (saved through a patched SessionOptions) computes each BatchNorm
    # apart: as an NCHWc depthwise Conv at ORT_ENABLE_ALL, or as itself at lower levels.
    import onnxruntime as ort

    _, model = patch_checkpoint
    export_patch_graph(model, tmp_path / "kept.onnx")
    optimized = tmp_path / "optimized.onnx"

    class SavingOptions(ort.SessionOptions):
        def __init__(self):
            super().__init__()
            self.optimized_model_filepath = str(optimized)

    monkeypatch.setattr(ort, "SessionOptions", SavingOptions)
    monkeypatch.setattr(patch_runtime, "ONNX_DISABLED_OPTIMIZERS", left_out)
    runtime = OnnxRuntime(tmp_path / "kept.onnx", threads=1)
    options = runtime.session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    ops = graph_ops(optimized)
    assert (ops["Conv"] + ops["BatchNormalization"] == 120 + 121) == bn_apart


def test_cache_key_names_the_graph_variant(patch_checkpoint, tmp_path, monkeypatch):
    # A graph cached by an export made another way (e.g. BatchNorm folded) is never reused.
    path, _ = patch_checkpoint
    current = cached_graph_path(path, cache_dir=tmp_path)
    assert current.name.endswith(f"_{patch_runtime.ONNX_GRAPH_VARIANT}.onnx")
    monkeypatch.setattr(patch_runtime, "ONNX_GRAPH_VARIANT", "other")
    assert cached_graph_path(path, cache_dir=tmp_path) != current


# --------------------------------------------------------------------------- parity
# The kit's largest image, and the one whose maps ONNX Runtime gets furthest from the
# reference's with its best settings (4.3e-6; 6.6e-6 with the former folded graph).
SYNTH_C_IMAGE = "c0_L_MLO"


@slow  # CI time: the default's maps are held to MARGIN on synth_a in test_stage_scripts
def test_default_runtime_synth_c_map_within_margin(parity_weights):
    # The default runtime on SYNTH_C_IMAGE, with the strides stage 3 draws for it
    # (the images before it in exam order draw theirs first): both maps within MARGIN of
    # the reference's. The whole synth_c exam runs in test_heatmaps with BCC_SLOW=1.
    case = parity_case("synth_c")
    classify = patch_runtime.load_patch_runtime(parity_weights / "patch.p", "cpu")
    exam_list = load_exam_list(case / "expected" / "data.pkl")
    rng = random.Random(0)
    for exam_index, view, list_index, name in iter_images(exam_list):
        exam = exam_list[exam_index]
        top, bottom, left, right = exam["window_location"][view][list_index]
        if name != SYNTH_C_IMAGE:
            heatmaps.draw_strides((bottom - top, right - left), rng)
            continue
        raw = formats.read_mammogram_png(case / "images" / f"{name}.png")[top:bottom, left:right]
        rows, columns = heatmaps.draw_strides(raw.shape, rng)
        image_plan = ImagePlan(name, view, raw.shape, tuple(rows), tuple(columns))
        job = heatmaps.heatmap_job(raw, image_plan, exam["horizontal_flip"], name)
        maps = heatmaps.image_heatmaps(classify, job, batch_size=100)
        for kind, heatmap in zip(("malignant", "benign"), maps):
            expected = formats.read_hdf5(case / "expected" / "heatmaps" / f"heatmap_{kind}"
                                         / f"{name}.hdf5")
            ours = flip_for_model(heatmap, view, exam["horizontal_flip"])
            assert ours.shape == expected.shape and ours.dtype == np.float32
            deviation = float(np.abs(ours.astype(np.float64) - expected).max())
            print(f"{classify.name} {name} {kind}: max abs deviation {deviation:.3g}")
            assert deviation <= MARGIN, f"{kind} map deviates by {deviation:.3g}"
        return
    pytest.fail(f"{SYNTH_C_IMAGE} is not in {case / 'expected' / 'data.pkl'}")


@pytest.mark.parametrize("n, max_forward, sizes", [
    (100, 25, [25, 25, 25, 25]), (60, 25, [20, 20, 20]), (26, 25, [13, 13]),
    (8, 25, [8]), (100, 100, [100]), (101, 50, [33, 34, 34]),
])
def test_forward_pieces(n, max_forward, sizes):
    pieces = patch_runtime.forward_pieces(n, max_forward)
    assert [b - a for a, b in pieces] == sizes
    assert pieces[0][0] == 0 and pieces[-1][1] == n


def test_trusted_exports_are_cached_apart(patch_checkpoint, tmp_path):
    checkpoint, _ = patch_checkpoint
    plain = cached_graph_path(checkpoint, cache_dir=tmp_path)
    trusted = cached_graph_path(checkpoint, trust=True, cache_dir=tmp_path)
    assert plain != trusted and plain.parent == trusted.parent == tmp_path
    other = tmp_path / "other.p"
    other.write_bytes(checkpoint.read_bytes() + b"\0")
    assert cached_graph_path(other, cache_dir=tmp_path) != plain  # keyed by content
