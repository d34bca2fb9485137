"""Fetch the original release's files (weights, sample exams), each verified before use.

``official_files.tsv`` (package data beside this module) lists the files of the
original repository at one pinned commit with their git blob SHA-1
(``sha1(b"blob <size>\\0" + content)``, what ``git hash-object FILE`` prints). Each file is
streamed from ``<base>/<commit>/<path>`` (GitHub's raw address by default) into a temporary
file beside its destination, verified, and only then moved into place: a file that does not
match is deleted and reported, never used. Files already present and verified are skipped.

Only the standard library is used (``urllib``); the base address can be changed with
``--base-url`` or the ``BCC_DOWNLOAD_BASE_URL`` environment variable (tests serve files
from 127.0.0.1).
"""

import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DownloadError
from ..core.formats import atomic_path
from ..core.hashing import git_blob_sha1
from ..core.home import models_dir as default_models_dir, official_sample_dir
from ..core.runtime import log, progress
from .demo_marker import demo_weight_files, forget_demo_weights

OFFICIAL_FILES_PATH = Path(__file__).with_name("official_files.tsv")
DEFAULT_BASE_URL = "https://github.com/nyukat/breast_cancer_classifier/raw"
BASE_URL_ENV = "BCC_DOWNLOAD_BASE_URL"
WEIGHTS_PREFIX, SAMPLE_PREFIX = "models/", "sample_data/"
_CHUNK = 1 << 20
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
# Failures that mean "the server cannot be reached" rather than "this file is wrong".
_NETWORK_ERRORS = (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                   http.client.HTTPException)


@dataclass(frozen=True)
class OfficialFile:
    """One file of the original release: its path there and its git blob SHA-1."""
    path: str
    blob_sha1: str

    @property
    def name(self):
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class OfficialRelease:
    """The original release's files (weights and sample exams) at one pinned commit."""
    commit: str
    files: tuple

    def select(self, weights=True, sample_data=False):
        """The files to fetch: the checkpoints (``models/``) and/or the sample exams."""
        return [f for f in self.files
                if (weights and f.path.startswith(WEIGHTS_PREFIX))
                or (sample_data and f.path.startswith(SAMPLE_PREFIX))]


# --------------------------------------------------------------------------- the list, hashes
def read_official_files(path=OFFICIAL_FILES_PATH):
    """Parse ``official_files.tsv``: ``# ... commit <40 hex> ...`` then ``path<TAB>sha1`` lines."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DownloadError(f"{path}: cannot read the list of official files ({err})") from err
    commit, files = None, []
    for number, line in enumerate(lines, 1):
        if line.startswith("#"):
            found = re.search(r"\bcommit ([0-9a-f]{40})\b", line)
            commit = commit or (found and found.group(1))
        elif line.strip():
            fields = line.split("\t")
            if len(fields) != 2 or not _SHA1.match(fields[1].strip()):
                raise DownloadError(f"{path}, line {number}: expected 'path<TAB>40-hex git "
                                    f"blob SHA-1', found {line!r}")
            files.append(OfficialFile(fields[0].strip(), fields[1].strip()))
    if commit is None:
        raise DownloadError(f"{path}: no '# ... commit <40 hex digits>' header line")
    return OfficialRelease(commit, tuple(files))


def is_verified(path, blob_sha1):
    """True when ``path`` exists and holds exactly the file with that blob SHA-1."""
    return Path(path).is_file() and git_blob_sha1(path) == blob_sha1


def destination(official_file, models_dir=None, sample_dir=None):
    """Where a file goes: ``models/X`` → ``models_dir/X``, ``sample_data/Y`` → ``sample_dir/Y``
    (by default the home folder's, :mod:`core.home`)."""
    if official_file.path.startswith(WEIGHTS_PREFIX):
        return Path(models_dir or default_models_dir()) / official_file.path[len(WEIGHTS_PREFIX):]
    return Path(sample_dir or official_sample_dir()) / official_file.path[len(SAMPLE_PREFIX):]


def file_url(base_url, commit, path):
    return f"{base_url.rstrip('/')}/{commit}/{urllib.parse.quote(path)}"


def resolve_base_url(base_url=None):
    return base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def verified_official_weights(models_dir, official_files_path=OFFICIAL_FILES_PATH):
    """Names of the checkpoints in ``models_dir`` that are the official files, hash-checked."""
    release = read_official_files(official_files_path)
    return {f.name for f in release.select(weights=True)
            if is_verified(destination(f, models_dir), f.blob_sha1)}


# --------------------------------------------------------------------------- fetching
def fetch_verified(url, dest, blob_sha1, timeout=60.0):
    """Stream ``url`` into a temporary file beside ``dest``; move it there only if verified.

    Raises :class:`DownloadError` on a hash mismatch (the download is deleted) or an HTTP
    error; lets ``urllib.error.URLError`` and timeouts through for the caller to report as
    an unreachable network.
    """
    dest = Path(dest)
    request = urllib.request.Request(url, headers={"User-Agent": "breast-cancer-classifier"})
    with atomic_path(dest) as tmp:  # removed again if anything below raises
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                with open(tmp, "wb") as f, progress(total=int(length) if length else None,
                                                    desc=dest.name, unit="B", unit_scale=True,
                                                    unit_divisor=1024) as bar:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{url}: the server answered HTTP {err.code} "
                                f"({err.reason})") from err
        found = git_blob_sha1(tmp)
        if found != blob_sha1:
            raise DownloadError(
                f"{url}: downloaded {Path(tmp).stat().st_size} bytes whose git blob SHA-1 is "
                f"{found}, but the official file's is {blob_sha1}; the download was deleted "
                f"and {dest} left unchanged. Try again; if it persists, the server does not "
                "serve the official file")


def download_official_files(weights=True, sample_data=False, models_dir=None, sample_dir=None,
                            base_url=None, official_files_path=OFFICIAL_FILES_PATH, timeout=60.0,
                            overwrite=False):
    """Fetch and verify the selected official files; returns ``(downloaded, skipped)`` paths.

    Present, verified files are skipped. A present file that is not the official one is
    replaced only if it is one of our demo weights (``DEMO_WEIGHTS.txt``) or ``overwrite``
    is set. Per-file failures are collected and raised together as :class:`DownloadError`;
    an unreachable network stops at once with the list of files to fetch by hand.
    """
    release = read_official_files(official_files_path)
    base_url = resolve_base_url(base_url)
    wanted = release.select(weights=weights, sample_data=sample_data)
    models_dir = models_dir or default_models_dir()
    demo = set(demo_weight_files(models_dir)) if weights else set()
    downloaded, skipped, failed = [], [], []
    for position, official in enumerate(wanted):
        dest = destination(official, models_dir, sample_dir)
        if is_verified(dest, official.blob_sha1):
            log.info("%s: present and verified, skipped", dest)
            skipped.append(dest)
            continue
        replacing_demo = official.path.startswith(WEIGHTS_PREFIX) and official.name in demo
        if dest.exists() and not (replacing_demo or overwrite):
            failed.append(f"{dest}: exists but is not the official file (git blob SHA-1 "
                          f"{git_blob_sha1(dest)}, expected {official.blob_sha1}); move it "
                          "away or pass --overwrite to replace it")
            continue
        url = file_url(base_url, release.commit, official.path)
        try:
            fetch_verified(url, dest, official.blob_sha1, timeout)
        except DownloadError as err:
            failed.append(str(err))
            continue
        except _NETWORK_ERRORS as err:
            remaining = [(file_url(base_url, release.commit, f.path), d)
                         for f in wanted[position:]
                         if not is_verified(d := destination(f, models_dir, sample_dir),
                                            f.blob_sha1)]
            raise DownloadError(_unreachable_message(url, err, remaining)) from err
        except OSError as err:  # writing the file failed (disk full, permissions)
            failed.append(f"{dest}: cannot write the download ({err})")
            continue
        if replacing_demo:
            forget_demo_weights(models_dir, [official.name])
        log.info("%s: downloaded and verified", dest)
        downloaded.append(dest)
    if failed:
        raise DownloadError(f"{len(failed)} of {len(wanted)} file(s) failed:\n  "
                            + "\n  ".join(failed))
    return downloaded, skipped


def _unreachable_message(url, err, remaining):
    host = urllib.parse.urlsplit(url).netloc
    reason = getattr(err, "reason", err)
    by_hand = "\n  ".join(f"{u}\n    -> {dest}" for u, dest in remaining)
    return (f"cannot reach {host} ({reason}): the network seems unreachable. Connect and "
            "run this command again, or download these files by hand, put them where shown "
            f"and run it again to verify them:\n  {by_hand}")


def check_official_files(weights=True, sample_data=False, models_dir=None, sample_dir=None,
                         official_files_path=OFFICIAL_FILES_PATH):
    """``(verified, missing)`` destination paths of the selected files, without downloading."""
    release = read_official_files(official_files_path)
    verified, missing = [], []
    for official in release.select(weights=weights, sample_data=sample_data):
        dest = destination(official, models_dir, sample_dir)
        (verified if is_verified(dest, official.blob_sha1) else missing).append(dest)
    return verified, missing
