"""Shared fixtures: where the parity kit lives, and small synthetic inputs."""

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The parity kit sits beside the checkout (../shared); BCC_SHARED overrides.
SHARED = Path(os.environ.get("BCC_SHARED", REPO.parent / "shared"))
PARITY = SHARED / "parity"

os.environ.setdefault("BCC_NO_PROGRESS", "1")
# Exported ONNX graphs of test runs go to a temporary folder, not the user's ~/.cache.
os.environ.setdefault("BCC_CACHE_DIR", tempfile.mkdtemp(prefix="bcc-test-cache-"))

# A session run of bcc dicom + bcc run --dicom-out, shared by test_dicom_results.py and
# test_serve_orthanc.py (a fixture defined here is made once per session).
from dicom_run_support import dicom_run  # noqa: E402,F401


def parity_case(name):
    """Path of a parity-kit case; skips the test (with the reason) when the kit is absent."""
    path = PARITY / name
    if not path.is_dir():
        pytest.skip(f"parity kit not found at {path} (set BCC_SHARED to the shared/ folder)")
    return path


@pytest.fixture
def parity_weights():
    path = PARITY / "weights"
    if not path.is_dir():
        pytest.skip(f"parity weights not found at {path} (set BCC_SHARED)")
    return path
