"""glibc's allocator settings for each stage's memory pattern, in one place.

Stages 3 and 4 free very different memory: stage 3 frees hundreds of MB of DenseNet
activations per batch, stage 4 allocates and frees tensors of tens of MB per layer. Each
gets the setting that suits it (see each function). They are process-wide and change no
number; without glibc (macOS, musl) every function here does nothing.
"""

import functools
import sys

from .runtime import log

# glibc mallopt parameters (malloc.h) and glibc's own default of M_MMAP_MAX.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
GLIBC_DEFAULT_MMAP_MAX = 65536
PATCH_MMAP_THRESHOLD = 1 << 20  # stage 3: blocks from 1 MiB up get their own mmap
GLIBC_MAX_MMAP_THRESHOLD = 32 << 20  # the largest M_MMAP_THRESHOLD glibc accepts (64-bit)
COMPILED_TRIM_THRESHOLD = 64 << 20  # stage 3, compiled: keep up to 64 MiB of freed memory
CLASSIFIER_TRIM_THRESHOLD = 1 << 30  # stage 4: keep up to 1 GB of freed memory


@functools.lru_cache(maxsize=None)
def _glibc():
    """The C library if it is glibc on Linux, else None. Looked up once: finding the
    library can start a subprocess (``ctypes.util.find_library``)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both exist in glibc only
    except (OSError, AttributeError) as err:  # not glibc (e.g. musl): keep its defaults
        log.debug("cannot tune the allocator (%s)", err)
        return None
    return libc


def _mallopt(*settings):
    libc = _glibc()
    for parameter, value in settings if libc is not None else ():
        libc.mallopt(parameter, value)


def heap_for_patches():
    """Stage 3: every block of 1 MiB or more gets its own mmap and goes back when freed.

    By default glibc raises its mmap threshold as large blocks are freed (up to 32 MiB) and
    keeps the freed activations in its heap, where they fragment: peak RSS for a real CC
    image grew from about 1.2 GB to 1.7 GB. ``M_MMAP_MAX`` is set back to glibc's default
    because stage 4 (:func:`heap_for_classifiers`) may have turned mmap off in this process.
    """
    _mallopt((M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX), (M_MMAP_THRESHOLD, PATCH_MMAP_THRESHOLD))


def heap_for_compiled_patches():
    """Stage 3 with the compiled runtime: blocks under 32 MiB come from the heap and stay.

    The compiled forward pass (:mod:`.compiled_densenet`) keeps its large work buffers and
    allocates the same sequence of convolution outputs (each under 32 MiB in pieces of
    ``COMPILED_MAX_FORWARD`` patches) for every piece, so freed blocks are reused as they
    are, without the page faults of fresh ``mmap`` pages: with :func:`heap_for_patches`
    those faults took about a quarter of a piece of 16 (2-core VM, 2026-12-03).
    Larger blocks (a batch of patches) still get their own mmap and go back when freed.
    The runtime sets :func:`heap_for_patches` back after each batch, so that the images
    and map sums of stage 3, allocated between batches, do not fragment this heap.
    """
    _mallopt((M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX), (M_MMAP_THRESHOLD, GLIBC_MAX_MMAP_THRESHOLD),
             (M_TRIM_THRESHOLD, COMPILED_TRIM_THRESHOLD))


def heap_for_classifiers():
    """Stage 4: keep freed memory for reuse instead of returning it to the system.

    glibc serves each of a full-size forward pass's large tensors from fresh ``mmap`` pages
    and unmaps them when freed, so every pass pays about 200,000 page faults, a third of
    its CPU time. Serving them from the heap and keeping freed memory (up to 1 GB above the
    peak) removes that cost.
    """
    _mallopt((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, CLASSIFIER_TRIM_THRESHOLD))


def release_free_memory():
    """Give the heap's free memory back to the system (glibc's ``malloc_trim(0)``)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
