"""glibc's allocator settings per stage (core.allocator), seen through a recording libc."""

import pytest

from breast_cancer_classifier.core import allocator


class RecordingLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append(("mallopt", parameter, value))

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))


@pytest.fixture
def libc(monkeypatch):
    fake = RecordingLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: fake)
    return fake


def test_each_stage_gets_its_own_setting(libc):
    allocator.heap_for_patches()
    allocator.heap_for_compiled_patches()
    allocator.heap_for_classifiers()
    allocator.release_free_memory()
    assert libc.calls == [
        ("mallopt", allocator.M_MMAP_MAX, 65536), ("mallopt", allocator.M_MMAP_THRESHOLD, 1 << 20),
        ("mallopt", allocator.M_MMAP_MAX, 65536), ("mallopt", allocator.M_MMAP_THRESHOLD, 32 << 20),
        ("mallopt", allocator.M_TRIM_THRESHOLD, 64 << 20),
        ("mallopt", allocator.M_MMAP_MAX, 0), ("mallopt", allocator.M_TRIM_THRESHOLD, 1 << 30),
        ("malloc_trim", 0)]


def test_the_real_library_is_looked_up_once():
    allocator._glibc.cache_clear()
    first = allocator._glibc()
    assert allocator._glibc() is first and allocator._glibc.cache_info().hits >= 1
