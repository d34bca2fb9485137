"""The compiled runtime's native kernels, in C (``native_kernels.c``), on PyTorch tensors.

* ``norm_relu``: eval BatchNorm + ReLU in one pass, ``max(fma(x, alpha, beta), 0)`` per
  channel over a (rows, C) matrix whose rows may be strided (a channels-last feature map, or
  a channel slice of one). ``fma`` is C's ``fmaf``: one rounding, as PyTorch's CPU BatchNorm
  computes ``x * alpha + beta``.
* ``pointwise_conv``: a 1x1 convolution without bias as a matrix product, with the
  BatchNorm-ReLU before it applied while its input is read and, optionally, the one after it
  applied before its output is stored: a dense layer's first half in one pass over its input
  instead of three. Each output is a chain of fused multiply-adds in input-channel order, the
  order oneDNN's 1x1 convolution sums in, so the result is PyTorch eager's to the bit. For a
  transition it can take the 2x2 average pool (PyTorch's, to the bit) of its input first.

The C file is compiled once per machine with the system C compiler (``$CC``, else ``cc``;
``-O3``, and ``-march=native`` on x86-64: AVX-512 or AVX2 tiles where the CPU has them) into
the cache folder, keyed by a digest of the source, the flags, the compiler's version and the
CPU, and loaded with ``ctypes``: no PyTorch, Python headers or build tool involved, so
deciding whether it can be used costs nothing in a process that never imports PyTorch. A
large call splits its rows over threads started in C (``ctypes`` releases the GIL during the
call); a Python thread pool's hand-off cost more than a pass on the small feature maps of
the last blocks.
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from .errors import PipelineError

SOURCE_PATH = Path(__file__).with_name("native_kernels.c")
# Below this much work per thread a call runs on fewer threads: starting and joining a thread
# costs about as much as passing over this many floats, or this many multiply-adds (measured
# on a 2-core AVX-512 VM).
MIN_FLOATS_PER_THREAD = 1 << 19
MIN_MULTIPLY_ADDS_PER_THREAD = 1 << 22


def c_compiler():
    return os.environ.get("CC") or "cc"


def compile_flags():
    flags = ["-O3", "-fPIC", "-shared", "-pthread", "-fopenmp"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-march=native")  # AVX2 / AVX-512 fused multiply-adds where the CPU has them
    return flags


def _cpu_signature():
    """The CPU's model and instruction sets (a library built with -march=native is for them)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(keep))


def library_path(cache_dir):
    """Where the compiled kernels are cached: keyed by source, flags, compiler and CPU."""
    compiler = shutil.which(c_compiler())
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256("\0".join([SOURCE_PATH.read_text(), " ".join(compile_flags()),
                                       compiler, version, platform.machine(),
                                       _cpu_signature()]).encode())
    return Path(cache_dir) / "kernels" / f"native_kernels_{digest.hexdigest()[:16]}.so"


def build_library(path):
    """Compile ``native_kernels.c`` into ``path`` (atomically); a PipelineError says why it
    failed."""
    from .formats import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        done = subprocess.run([c_compiler(), *compile_flags(), "-o", str(tmp), str(SOURCE_PATH),
                               "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            raise PipelineError(f"compiling the stage-3 kernels with {c_compiler()} failed "
                                f"(exit status {done.returncode}): {SOURCE_PATH}\n"
                                f"{done.stderr.strip()[-1500:]}")


@functools.lru_cache(maxsize=None)
def load(cache_dir):
    """The kernels' library (``ctypes.CDLL``), compiled first if it is not cached."""
    if shutil.which(c_compiler()) is None:
        raise PipelineError(f"no C compiler: {c_compiler()!r} was not found (set $CC)")
    if not SOURCE_PATH.is_file():
        raise PipelineError(f"{SOURCE_PATH}: the stage-3 kernels' source is missing from the "
                            "installation")
    path = library_path(cache_dir)
    if not path.is_file():
        build_library(path)
    library = ctypes.CDLL(str(path))
    pointer, size, count = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    library.norm_relu.restype = ctypes.c_int
    library.norm_relu.argtypes = [pointer, size, pointer, pointer, pointer, size, size, count]
    library.pointwise_conv.restype = ctypes.c_int
    library.pointwise_conv.argtypes = [pointer, size, size, pointer, pointer, pointer, size,
                                       pointer, pointer, pointer, size, size, size, size, count]
    library.panel_width.restype = ctypes.c_int
    library.panel_width.argtypes = []
    return library


class NativeKernels:
    """The kernels on PyTorch tensors, each call over up to ``threads`` threads (started in C
    for each large call: no Python thread hand-off, no GIL held)."""

    def __init__(self, cache_dir, threads):
        self.library = load(str(cache_dir))
        self.threads = max(1, threads)
        self.panel_width = self.library.panel_width()

    def norm_relu(self, x, alpha, beta, out):
        """``out = max(fma(x, alpha, beta), 0)``. ``x``: (rows, C) float32 with unit channel
        stride; ``out``: contiguous (rows, C); ``alpha``, ``beta``: contiguous (C,)."""
        rows, channels = x.shape
        _check(x, out, (rows, channels), (alpha, beta), channels, "norm_relu")
        if not out.is_contiguous():
            raise ValueError("norm_relu: out must be contiguous")
        threads = min(self.threads, max(1, rows * channels // MIN_FLOATS_PER_THREAD))
        _status(self.library.norm_relu(x.data_ptr(), x.stride(0), alpha.data_ptr(),
                                       beta.data_ptr(), out.data_ptr(), channels, rows, threads))

    def pack_weight(self, weight):
        """A 1x1 convolution's (outputs, channels, 1, 1) weight in ``pointwise_conv``'s
        layout: (outputs / panel width, channels, panel width), contiguous."""
        outputs, channels = weight.shape[:2]
        if tuple(weight.shape[2:]) != (1, 1) or outputs % self.panel_width:
            raise ValueError(f"pointwise_conv: a 1x1 weight with a multiple of "
                             f"{self.panel_width} outputs expected, got {tuple(weight.shape)}")
        panels = weight.reshape(outputs // self.panel_width, self.panel_width, channels)
        return panels.transpose(1, 2).contiguous()

    def pointwise_conv(self, x, norm_in, packed, norm_out, out, pooled_maps=None):
        """``out = relu(norm_out(relu(norm_in(x)) @ W))``, each BatchNorm ``(alpha, beta)``
        or None (not applied). ``x``: (rows, C) float32 with unit channel stride; ``packed``:
        :meth:`pack_weight`'s W; ``out``: (rows, outputs) with unit channel stride.

        ``pooled_maps=(height, width)``: ``x``'s rows are the pixels of maps of that size
        (channels last), and the product is taken of the 2x2 averages of
        ``relu(norm_in(x))``: ``out`` has a row per pixel of the halved maps.
        """
        rows, channels = x.shape
        outputs = packed.shape[0] * packed.shape[2]
        height, width = pooled_maps or (0, 0)
        if pooled_maps and (height % 2 or width % 2 or rows % (height * width)):
            raise ValueError(f"pointwise_conv: {rows} rows are not maps of {height} x {width} "
                             "pixels, both even")
        out_rows = rows // 4 if pooled_maps else rows
        terms = [*(norm_in or ()), *(norm_out or ())]
        _check(x, out, (out_rows, outputs), [packed, *terms], None, "pointwise_conv")
        if packed.shape[1] != channels or (norm_in and norm_in[0].numel() != channels) or (
                norm_out and norm_out[0].numel() != outputs):
            raise ValueError("pointwise_conv: the weight's or a BatchNorm's channels do not "
                             "match the input's and output's")
        alpha_in, beta_in = (t.data_ptr() for t in norm_in) if norm_in else (None, None)
        alpha_out, beta_out = (t.data_ptr() for t in norm_out) if norm_out else (None, None)
        threads = min(self.threads,
                      max(1, out_rows * channels * outputs // MIN_MULTIPLY_ADDS_PER_THREAD))
        _status(self.library.pointwise_conv(
            x.data_ptr(), x.stride(0), channels, alpha_in, beta_in, packed.data_ptr(), outputs,
            alpha_out, beta_out, out.data_ptr(), out.stride(0), out_rows, height, width,
            threads))


def _check(x, out, out_shape, contiguous, channels, name):
    """The checks both kernels need before a pointer leaves Python (kept cheap: a pass calls
    the kernels about 140 times)."""
    float32 = _float32()
    good = (x.dim() == 2 and x.stride(1) == 1 and out.dim() == 2 and out.stride(1) == 1
            and out.shape == out_shape)
    for t in (x, out, *contiguous):
        good = good and t.dtype is float32 and t.is_cpu
    for t in contiguous:
        good = good and t.is_contiguous() and (channels is None or t.numel() == channels)
    if not good:
        raise ValueError(f"{name}: expected float32 CPU tensors: x (rows, C) and out "
                         f"{tuple(out_shape)} with unit channel stride, contiguous terms")


def _status(status):
    if status == -1:
        _warn_no_threads()
    elif status == -2:
        raise MemoryError("a stage-3 kernel could not allocate its work buffer")
    elif status != 0:
        raise ValueError(f"a stage-3 kernel refused its arguments (status {status})")


@functools.lru_cache(maxsize=None)
def _warn_no_threads():
    import sys

    print("warning: a stage-3 kernel could not start a thread; it runs on fewer threads "
          "(slower, same numbers)", file=sys.stderr)


def _float32():
    import torch

    return torch.float32
