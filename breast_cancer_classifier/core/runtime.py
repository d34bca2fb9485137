"""Device choice, numeric precision, progress bars, logging and process pools.

``resolve_device`` is the only place a device is chosen (STYLE.md). Progress bars go to
stderr; stdout is reserved for results (the single-image JSON line).
"""

import contextlib
import ctypes
import logging
import multiprocessing
import os
import sys

from tqdm import tqdm

log = logging.getLogger("breast_cancer_classifier")


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at the time of each message."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(verbose=False):
    """Messages on stderr as ``name: message``; idempotent."""
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


def progress_disabled():
    """Progress bars are off when BCC_NO_PROGRESS=1 (batch jobs, CI logs)."""
    return os.environ.get("BCC_NO_PROGRESS", "") not in ("", "0")


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on stderr."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("disable", progress_disabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def resolve_device(device_type="cpu", gpu_number=0):
    """Return the torch device for ``--device-type``/``--gpu-number``.

    ``gpu`` uses CUDA (or Apple MPS) when present and otherwise says so on stderr and uses
    the CPU. Full fp32 everywhere: TF32 is switched off for matmul and cuDNN (SPEC 7.4).
    """
    import torch

    use_full_fp32()
    if device_type == "cpu":
        return torch.device("cpu")
    if device_type != "gpu":
        raise ValueError(f"device type must be 'gpu' or 'cpu', got {device_type!r}")
    if torch.cuda.is_available():
        if gpu_number >= torch.cuda.device_count():
            log.warning("GPU %d requested but only %d GPU(s) present; using GPU 0",
                        gpu_number, torch.cuda.device_count())
            gpu_number = 0
        return torch.device(f"cuda:{gpu_number}")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    _warn_no_gpu()
    return torch.device("cpu")


def _warn_no_gpu():
    log.warning("device type 'gpu' requested but no GPU is available: running on the CPU")


PRECISIONS = ("fp32", "bf16", "tf32")  # --precision: fp32 is the default and the parity path


def check_precision(precision, device):
    """Raise :class:`SettingsError` for an unknown precision, or tf32 off a CUDA device."""
    import torch

    from .errors import SettingsError

    if precision not in PRECISIONS:
        raise SettingsError(f"unknown precision {precision!r}; choose one of "
                            f"{', '.join(PRECISIONS)}")
    device_kind = torch.device(device).type
    if precision == "tf32" and device_kind != "cuda":
        raise SettingsError(f"--precision tf32 needs an NVIDIA GPU, but this run is on "
                            f"{device_kind}; use fp32 (exact) or bf16")


def precision_context(precision, device):
    """A context manager that runs forward passes on ``device`` at ``precision``.

    ``fp32``: full fp32, the default (SPEC 7.4). ``bf16``: ``torch.autocast`` to bfloat16
    (fast on GPUs and on CPUs with native bf16, e.g. AVX512-BF16 or AMX; slower than fp32
    elsewhere). ``tf32``: TF32 matmul and convolutions, NVIDIA GPUs only. Settings that
    :func:`check_precision` refuses raise its :class:`SettingsError`.
    """
    import torch

    check_precision(precision, device)
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if precision == "tf32":
        return _tf32_allowed()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _tf32_allowed():
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        use_full_fp32()


# The GPU driver libraries PyTorch needs to reach a GPU (NVIDIA CUDA, AMD ROCm) on Linux.
_GPU_DRIVER_LIBRARIES = ("libcuda.so.1", "libamdhip64.so")


def runs_on_cpu(device_type):
    """True when ``--device-type`` certainly means the CPU, decided without importing torch.

    ``cpu`` does; so does ``gpu`` on Linux when no GPU driver library can be loaded (PyTorch
    could not use a GPU either; the fallback message is printed here). Otherwise, False:
    only :func:`resolve_device` can tell. Lets stage 3 on the CPU run without PyTorch.
    """
    if device_type == "cpu":
        return True
    if device_type != "gpu" or not sys.platform.startswith("linux"):
        return False
    for library in _GPU_DRIVER_LIBRARIES:
        try:
            ctypes.CDLL(library)
            return False
        except OSError:
            continue
    _warn_no_gpu()
    return True


def use_full_fp32():
    """Disable TF32 so GPU results match the CPU within the parity tolerances (SPEC 7.4)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def parallel_map(function, items, num_processes, desc=None):
    """``[function(item) for item in items]`` over a process pool, in order, with a progress bar."""
    items = list(items)
    num_processes = max(1, min(int(num_processes), len(items) or 1))
    bar = progress(total=len(items), desc=desc, unit="image")
    results = []
    if num_processes == 1:
        for item in items:
            results.append(function(item))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
        with context.Pool(num_processes) as pool:
            for result in pool.imap(function, items):
                results.append(result)
                bar.update()
    bar.close()
    return results
