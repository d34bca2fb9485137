"""The one native kernel of the compiled runtime: BatchNorm (eval) + ReLU in one pass.

``out[r, c] = max(fma(x[r, c], alpha[c], beta[c]), 0)`` over a (rows, C) matrix whose rows
may be strided (a channels-last feature map, or a channel slice of one). ``fma`` is C's
``fmaf``: one rounding, as PyTorch's CPU BatchNorm kernel computes ``x * alpha + beta``.

The C source below is compiled once per machine with the system C compiler (``$CC``, else
``cc``; ``-O3``, and ``-march=native`` on x86-64) into the cache folder, keyed by a digest of
the source, the flags, the compiler's version and the CPU, and loaded with ``ctypes``: no
PyTorch, Python headers or build tool involved, so deciding whether it can be used costs
nothing in a process that never imports PyTorch. A large call splits its rows over threads
started in C (``ctypes`` releases the GIL during the call); a Python thread pool's hand-off
cost more than the pass itself on the small feature maps of the last blocks.
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import PipelineError

SOURCE = r"""
#include <math.h>
#include <pthread.h>

struct rows_task {
    const float *x; long stride; const float *alpha; const float *beta; float *out;
    long channels; long begin; long end;
};

/* out[r * channels + c] = max(fmaf(x[r * stride + c], alpha[c], beta[c]), 0), rows [begin, end) */
static void *norm_relu_task(void *argument)
{
    const struct rows_task *t = argument;
    for (long r = t->begin; r < t->end; ++r) {
        const float *src = t->x + r * t->stride;
        float *dst = t->out + r * t->channels;
        for (long c = 0; c < t->channels; ++c) {
            float v = fmaf(src[c], t->alpha[c], t->beta[c]);
            dst[c] = v < 0.0f ? 0.0f : v; /* keeps -0 and NaN, as PyTorch's clamp_min */
        }
    }
    return 0;
}

/* All rows, split over `threads` threads (this one and threads - 1 started here); returns 0,
   or -1 where a thread could not be started (its rows are then done by this thread). */
int norm_relu(const float *x, long stride, const float *alpha, const float *beta, float *out,
              long channels, long rows, int threads)
{
    enum { MAX_THREADS = 64 };
    struct rows_task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0}, status = 0;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    for (int i = 0; i < threads; ++i) {
        struct rows_task t = {x, stride, alpha, beta, out, channels,
                              rows * i / threads, rows * (i + 1) / threads};
        tasks[i] = t;
    }
    for (int i = 1; i < threads; ++i)
        started[i] = pthread_create(&ids[i], 0, norm_relu_task, &tasks[i]) == 0;
    norm_relu_task(&tasks[0]);
    for (int i = 1; i < threads; ++i) {
        if (started[i]) pthread_join(ids[i], 0);
        else { norm_relu_task(&tasks[i]); status = -1; }
    }
    return status;
}
"""
# Below this many floats per thread a call runs on fewer threads: starting and joining a thread
# costs about as much as passing over this much memory (measured on a 2-core AVX-512 VM).
MIN_FLOATS_PER_THREAD = 1 << 19


def c_compiler():
    return os.environ.get("CC") or "cc"


def compile_flags():
    flags = ["-O3", "-fPIC", "-shared", "-pthread"]
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
    """The kernel's ``norm_relu`` function, compiled first if it is not cached."""
    if shutil.which(c_compiler()) is None:
        raise PipelineError(f"no C compiler: {c_compiler()!r} was not found (set $CC)")
    path = library_path(cache_dir)
    if not path.is_file():
        build_library(path)
    function = ctypes.CDLL(str(path)).norm_relu
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_int]
    return function


class NormRelu:
    """``norm_relu(x, alpha, beta, out)`` on PyTorch tensors, over up to ``threads`` threads
    (started in C for each large call: no Python thread hand-off, no GIL held)."""

    def __init__(self, cache_dir, threads):
        self.function = load(str(cache_dir))
        self.threads = max(1, threads)

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
        threads = min(self.threads, max(1, rows * channels // MIN_FLOATS_PER_THREAD))
        if self.function(x.data_ptr(), x.stride(0), alpha.data_ptr(), beta.data_ptr(),
                         out.data_ptr(), channels, rows, threads) != 0:
            _warn_no_threads()


@functools.lru_cache(maxsize=None)
def _warn_no_threads():
    import sys

    print("warning: the stage-3 BatchNorm-ReLU kernel could not start a thread; it runs on "
          "fewer threads (slower, same numbers)", file=sys.stderr)


def _float32():
    import torch

    return torch.float32
