"""Files that survive a crash or a power cut: written aside, fsynced, renamed, folder fsynced.

A rename alone (``core.formats.atomic_path``) is atomic against a killed process; the fsyncs
make the file and its name reach the disk before the service says "stored" to a caller.
"""

import os
import shutil
from pathlib import Path

from ...core import formats


def fsync_dir(path):
    """Flush a folder's entries (new, renamed or removed names) to the disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path):
    """Create ``path`` (and missing parents), fsyncing each parent that gained an entry."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        fsync_dir(folder.parent)


def write_durable(path, data):
    """Write ``data`` (bytes) to ``path``: temporary file, fsync, rename, fsync the folder."""
    path = Path(path)
    make_dirs_durable(path.parent)
    with formats.atomic_path(path) as tmp, open(tmp, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    fsync_dir(path.parent)


def fsync_tree(folder):
    """fsync every file directly in ``folder``, then the folder itself."""
    for path in Path(folder).iterdir():
        if path.is_file():
            with open(path, "rb") as stream:
                os.fsync(stream.fileno())
    fsync_dir(folder)


def remove_tree(folder):
    """Remove ``folder`` if it exists, then fsync its parent."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
        fsync_dir(folder.parent)
