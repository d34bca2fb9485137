"""File digests: SHA-256 for the run record and export cache, git blob SHA-1 for downloads."""

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path):
    """Git's blob SHA-1 of a file: ``sha1(b"blob <size>\\0" + content)``, read in chunks."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
