"""One ``bcc run`` at a time per output folder: a lock file held for the whole run.

``run.lock`` in the output folder is locked with ``fcntl.flock`` (exclusive, non-blocking)
while the run lasts and holds ``pid <pid> on <host>`` for messages. A second run on the
folder, with or without ``--continue``, finds it locked and stops at once
(:class:`OutputExistsError`, exit 2), naming that pid. The kernel releases a flock when its
process ends, however it ends, so a lock file left by a killed run is simply locked again,
with a message naming the pid that left it. A run that ends removes the file (and the
folder, when the lock created it and nothing else was written). The file is not a run
output: ``--overwrite`` neither counts nor removes it.

Limits:

- The lock is held by the process that calls :func:`core.pipeline.run_pipeline`: with
  ``--engine ray`` the driver, the only process that writes the run record (the Ray workers
  write exam files for it and take no lock). Two drivers on one folder are refused, parts
  given with ``--exams`` and started side by side included: run the parts one after the
  other with ``--continue``, or give them to one run (``--engine ray``).
- NFS: a Linux client (2.6.12+) turns ``flock`` into a byte-range lock kept by the server,
  so runs on two machines exclude each other where the server supports locks (NFSv4, or
  NFSv3 with lockd). A mount with ``nolock`` or ``local_lock=flock|all`` keeps locks on the
  client: they then hold only between processes on one machine. The pid named may be on
  another machine, hence the host in the message. When a machine dies, the server frees
  its locks after the client's lease (NFSv4: about 90 s).
- Windows has no ``fcntl``: no lock is taken there, and a warning says so.
"""

import functools
import inspect
import os
import socket
from pathlib import Path

from .errors import OutputExistsError
from .runtime import log

RUN_LOCK_NAME = "run.lock"


class RunLock:
    """``with RunLock(folder):``, the exclusive right to write a run into ``folder``."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / RUN_LOCK_NAME
        self._fd = None
        self._created_folder = False

    def acquire(self):
        try:
            import fcntl
        except ImportError:
            log.warning("run: no fcntl on this platform: %s is not locked against a second "
                        "run; do not start two runs on it", self.folder)
            return self
        self._created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a live process (EWOULDBLOCK)
                holder = _read_holder(fd) or "pid unknown"
                os.close(fd)
                raise OutputExistsError(
                    f"{self.folder}: another run is writing this folder ({holder}; lock file "
                    f"{self.path}); wait for it to end or stop it, then run again (with "
                    "--continue to resume it)") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its holder removed the file as it ended: lock the new one
        left = _read_holder(fd)
        if left:
            log.warning("run: %s was left by %s, which no longer runs; taking it over",
                        self.path, left)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: see acquire's loop
            if self._created_folder and not any(self.folder.iterdir()):
                self.folder.rmdir()
        finally:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def locks_output_dir(run):
    """Decorator: ``run(..., output_dir, ...)`` holds :class:`RunLock` on ``output_dir``."""
    signature = inspect.signature(run)

    @functools.wraps(run)
    def locked(*args, **kwargs):
        with RunLock(signature.bind(*args, **kwargs).arguments["output_dir"]):
            return run(*args, **kwargs)

    return locked


def _read_holder(fd):
    """The holder's ``pid N on HOST`` line, or '' for an empty or unreadable file."""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
