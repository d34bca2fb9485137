"""The one native kernel of the compiled runtime: BatchNorm (eval) + ReLU in one pass.

``out[r, c] = max(fma(x[r, c], alpha[c], beta[c]), 0)`` over a (rows, C) matrix whose rows
may be strided (a channels-last feature map, or a channel slice of one). ``fma`` is C's
``fmaf``: one rounding, as PyTorch's CPU BatchNorm kernel computes ``x * alpha + beta``.

The C source below is compiled once per machine with the system C compiler (``$CC``, else
``cc``; ``-O3``, and ``-march=native`` on x86-64) into the cache folder, keyed by a digest of
the source, the flags, the compiler's version and the CPU, and loaded with ``ctypes``: no
PyTorch, Python headers or build tool involved, so deciding whether it can be used costs
nothing in a process that never imports PyTorch. Rows are split over threads (``ctypes``
releases the GIL during the call).
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import PipelineError

SOURCE = r"""
#include <math.h>

/* out[r * channels + c] = max(fmaf(x[r * stride + c], alpha[c], beta[c]), 0), rows [begin, end) */
void norm_relu_rows(const float *x, long stride, const float *alpha, const float *beta,
                    float *out, long channels, long begin, long end)
{
    for (long r = begin; r < end; ++r) {
        const float *src = x + r * stride;
        float *dst = out + r * channels;
        for (long c = 0; c < channels; ++c) {
            float v = fmaf(src[c], alpha[c], beta[c]);
            dst[c] = v < 0.0f ? 0.0f : v; /* keeps -0 and NaN, as PyTorch's clamp_min */
        }
    }
}
"""
MIN_FLOATS_PER_THREAD = 1 << 16  # below this a call runs on one thread (thread hand-off cost)


def c_compiler():
    return os.environ.get("CC") or "cc"


def compile_flags():
    flags = ["-O3", "-fPIC", "-shared"]
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
    """Where the compiled kernel is cached: keyed by source, flags, compiler and CPU."""
    compiler = shutil.which(c_compiler())
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256("\0".join([SOURCE, " ".join(compile_flags()), compiler, version,
                                       platform.machine(), _cpu_signature()]).encode())
    return Path(cache_dir) / "kernels" / f"norm_relu_{digest.hexdigest()[:16]}.so"


def build_library(path):
    """Compile ``SOURCE`` into ``path`` (atomically); a PipelineError says why it failed."""
    from .formats import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        source = Path(folder) / "norm_relu.c"
        source.write_text(SOURCE)
        with atomic_path(path) as tmp:
            done = subprocess.run([c_compiler(), *compile_flags(), "-o", str(tmp), str(source),
                                   "-lm"], capture_output=True, text=True)
            if done.returncode != 0:
                raise PipelineError(f"compiling the stage-3 kernel with {c_compiler()} failed "
                                    f"(exit status {done.returncode}):\n"
                                    f"{done.stderr.strip()[-1500:]}")


@functools.lru_cache(maxsize=None)
def load(cache_dir):
    """The kernel's ``norm_relu_rows`` function, compiled first if it is not cached."""
    if shutil.which(c_compiler()) is None:
        raise PipelineError(f"no C compiler: {c_compiler()!r} was not found (set $CC)")
    path = library_path(cache_dir)
    if not path.is_file():
        build_library(path)
    function = ctypes.CDLL(str(path)).norm_relu_rows
    function.restype = None
    function.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long]
    return function


class NormRelu:
    """``norm_relu(x, alpha, beta, out)`` on PyTorch tensors, over ``threads`` threads."""

    def __init__(self, cache_dir, threads):
        self.function = load(str(cache_dir))
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def __call__(self, x, alpha, beta, out):
        """``x``: (rows, C) float32 with unit channel stride; ``out``: contiguous (rows, C);
        ``alpha``, ``beta``: contiguous (C,) float32; all on the CPU."""
        rows, channels = x.shape
        if not (x.stride(1) == 1 and out.is_contiguous() and tuple(out.shape) == (rows, channels)
                and alpha.is_contiguous() and beta.is_contiguous()
                and alpha.numel() == beta.numel() == channels
                and {t.dtype for t in (x, alpha, beta, out)} == {_float32()}
                and all(t.device.type == "cpu" for t in (x, alpha, beta, out))):
            raise ValueError("norm_relu: expected float32 CPU tensors, x (rows, C) with unit "
                             "channel stride, out contiguous (rows, C), alpha and beta (C,)")
        arguments = (x.data_ptr(), x.stride(0), alpha.data_ptr(), beta.data_ptr(),
                     out.data_ptr(), channels)
        parts = min(self.threads, max(1, rows * channels // MIN_FLOATS_PER_THREAD))
        if parts == 1:
            self.function(*arguments, 0, rows)
            return
        bounds = [rows * i // parts for i in range(parts + 1)]
        for future in [self.pool.submit(self.function, *arguments, begin, end)
                       for begin, end in zip(bounds[:-1], bounds[1:])]:
            future.result()


def _float32():
    import torch

    return torch.float32
