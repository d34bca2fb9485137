"""Small helpers shared by the tests: running scripts and writing tiny inputs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_script(script, *args, check=None):
    """Run ``src/<script>`` with this interpreter; returns the CompletedProcess."""
    env = dict(os.environ, BCC_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "src" / script), *map(str, args)],
                          capture_output=True, text=True, env=env)
    if check is not None and proc.returncode != check:
        raise AssertionError(f"{script} exited {proc.returncode}, expected {check}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def jsonable(value):
    """Tuples → lists, numpy → Python, for comparing with the kit's JSON copies."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o))
    return json.loads(json.dumps(value, default=default))


def breast_phantom(height=600, width=400, side="L", seed=0):
    """A tiny breast-like uint16 image: a half-disc at the chest-wall edge plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    radius = min(height // 2, width) - 20
    xx_from_wall = xx if side == "L" else width - 1 - xx
    inside = (yy - height // 2) ** 2 + xx_from_wall ** 2 < radius ** 2
    image = np.where(inside, rng.integers(1000, 4000, size=(height, width)), 0)
    return image.astype(np.uint16) * 16


# Checks too slow for every `make test` (CI's 40 minutes): they run with BCC_SLOW=1.
slow = pytest.mark.skipif(os.environ.get("BCC_SLOW", "") in ("", "0"),
                          reason="minutes on two cores; set BCC_SLOW=1 to run")


def debian_tool(command, package):
    """Path of ``command`` (from Debian package ``package``). When it is absent the test is
    skipped, saying why, unless the environment variable CI is set: CI installs the package
    (.ci/run), so there the test fails instead."""
    # Servers such as Orthanc install into /usr/sbin, which a non-root PATH may lack.
    path = shutil.which(command) or shutil.which(command, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path:
        return path
    message = f"{command} not found (Debian package {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it (.ci/run)")
    pytest.skip(f"{message}; install it to run this test")
