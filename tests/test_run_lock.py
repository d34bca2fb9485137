"""The output folder's lock (core.run_lock): a second ``bcc run`` on a folder a live process
holds exits 2 at once naming its pid; a lock left by a dead process is taken over; the lock
file is no run output."""

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breast_cancer_classifier.core.errors import OutputExistsError
from breast_cancer_classifier.core.run_layout import RunLayout
from breast_cancer_classifier.core.run_lock import RUN_LOCK_NAME, RunLock, locks_output_dir

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, BCC_NO_PROGRESS="1", PYTHONPATH=str(REPO))
HOLD = ("import sys, time\n"
        "from breast_cancer_classifier.core.run_lock import RunLock\n"
        "lock = RunLock(sys.argv[1]).acquire()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n")  # holds until the test closes stdin


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/out."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], env=ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_second_bcc_run_on_a_held_folder_exits_2_at_once(holder, tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "breast_cancer_classifier.bcc", "run", "--continue",
         "--exam-list", REPO / "sample_data" / "exam_list_before_cropping.pkl",
         "--data-folder", REPO / "sample_data" / "images", "--output-dir", out,
         "--device-type", "cpu"], env=ENV, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert second.returncode == 2, second.stderr
    assert elapsed < 10, f"the refusal took {elapsed:.1f} s"
    assert f"pid {holder.pid} on " in second.stderr and "another run" in second.stderr
    assert os.listdir(out) == [RUN_LOCK_NAME]  # nothing written by the second run


def test_the_holder_is_named_in_process_too(holder, tmp_path):
    with pytest.raises(OutputExistsError, match=f"pid {holder.pid} on .*--continue"):
        RunLock(tmp_path / "out").acquire()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    pid = dead_pid()
    (out / RUN_LOCK_NAME).write_text(f"pid {pid} on somehost\n")
    with caplog.at_level(logging.WARNING), RunLock(out) as lock:
        assert (out / RUN_LOCK_NAME).read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
        assert lock.path == out / RUN_LOCK_NAME
    assert f"left by pid {pid} on somehost" in caplog.text and "taking it over" in caplog.text
    assert sorted(os.listdir(out)) == []  # removed at the end; the folder was there before
    assert out.is_dir()


def test_the_lock_file_is_no_run_output(tmp_path):
    out = tmp_path / "out"
    with RunLock(out):
        assert (out / RUN_LOCK_NAME).is_file()
        assert RunLayout(out).existing_outputs() == []
    assert not out.exists()  # the lock made the folder and nothing else was written there


def test_the_decorated_run_holds_the_lock_and_releases_it_on_errors(tmp_path):
    seen = []

    @locks_output_dir
    def run(exam_list_path, data_folder, output_dir, settings, *, resume=False):
        seen.append((output_dir / RUN_LOCK_NAME).read_text())
        raise OutputExistsError("stop")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputExistsError, match="stop"):
        run("x", "y", settings=None, output_dir=out)
    assert seen == [f"pid {os.getpid()} on {socket.gethostname()}\n"]
    RunLock(out).acquire().release()  # free again
