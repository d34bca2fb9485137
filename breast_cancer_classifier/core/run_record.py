"""What a run leaves beside its outputs so that it can be trusted and resumed.

* ``run_settings.json``: versions, SHA-256 of every weight file, seed, epochs, precision,
  runtime, device, the exam list's digest and the command line.
* ``run_manifest.jsonl``: one JSON line per finished unit of work (pass 1, then each exam):
  status, output files with their SHA-256, seconds and the worker. Lines are appended and
  flushed to disk one at a time, so a killed run loses at most the line being written; a
  torn last line is ignored.

``--continue`` trusts an exam only if the manifest says it was done *and* every output it
lists still has the recorded digest; anything else is computed again. It refuses to
continue a run whose settings differ in anything that changes a number.
"""

import json
import os
import platform
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import SettingsError
from .hashing import file_sha256

SETTINGS_NAME = "run_settings.json"
MANIFEST_NAME = "run_manifest.jsonl"
# Settings that change the numbers: a run continued with other values would mix two runs.
BINDING_SETTINGS = ("weights_sha256", "exam_list_sha256", "seed", "num_epochs",
                    "use_augmentation", "precision", "runtime")


def exam_list_digest(exam_list):
    """SHA-256 of an exam list's content (not of its file: a re-pickled list is the same)."""
    import hashlib

    from .exam_list import _to_json_ready

    text = json.dumps(_to_json_ready(exam_list), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def library_versions():
    """Versions of what computes the numbers, read without importing anything heavy."""
    import importlib.metadata

    from .. import __version__

    versions = {"breast_cancer_classifier": __version__, "python": platform.python_version()}
    for name in ("torch", "torchvision", "numpy", "opencv-python-headless", "onnxruntime",
                 "h5py", "scipy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


class RunRecord:
    """The settings file and manifest of one output folder."""

    def __init__(self, output_dir):
        self.output_dir = Path(output_dir)
        self.settings_path = self.output_dir / SETTINGS_NAME
        self.manifest_path = self.output_dir / MANIFEST_NAME

    # ----------------------------------------------------------------------- settings
    def read_settings(self):
        try:
            return json.loads(self.settings_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise SettingsError(f"{self.settings_path}: unreadable ({err}); use --overwrite "
                                "to start the run anew") from err

    def write_settings(self, settings):
        from .formats import write_bytes_atomic

        write_bytes_atomic(self.settings_path,
                           (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())

    def check_same_settings(self, new):
        """Refuse (SettingsError, exit 2) to continue a run made with other binding settings."""
        old = self.read_settings()
        if old is None:
            raise SettingsError(f"{self.settings_path}: missing, so this folder's run cannot be "
                                "continued; use --overwrite to start anew")
        differences = [f"{key}: the run has {old.get(key)!r}, this command {new.get(key)!r}"
                       for key in BINDING_SETTINGS if old.get(key) != new.get(key)]
        if differences:
            raise SettingsError(f"{self.output_dir}: cannot continue a run with other settings "
                                f"({'; '.join(differences)}); run with the same settings, or "
                                "use --overwrite to start anew")

    # ----------------------------------------------------------------------- manifest
    def append(self, entry):
        """Append one line and flush it to disk before going on."""
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + "\n"
        with open(self.manifest_path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def entries(self):
        """Every readable line, in order (a torn last line of a killed run is skipped)."""
        try:
            lines = self.manifest_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def output_entry(self, outputs):
        """``{path relative to the folder: SHA-256}`` of finished output files.

        ``outputs``: paths (each file is read for its digest), or ``{path: digest}`` with the
        digests of the bytes as they were written (a digest of None is read from the file).
        """
        if not isinstance(outputs, Mapping):
            outputs = dict.fromkeys(outputs)
        root = self.output_dir.resolve()
        return {Path(p).resolve().relative_to(root).as_posix(): digest or file_sha256(p)
                for p, digest in outputs.items()}

    def verified(self, entry):
        """True when every output the entry lists exists with its recorded digest."""
        for relative, digest in entry.get("outputs", {}).items():
            path = self.output_dir / relative
            try:
                if file_sha256(path) != digest:
                    return False
            except OSError:
                return False
        return True

    def finished(self, unit):
        """The last entry for ``unit`` (``"pass1"`` or an exam index) whose outputs verify."""
        key = "exam" if isinstance(unit, int) else "unit"
        matches = [e for e in self.entries() if e.get(key) == unit and "outputs" in e]
        return matches[-1] if matches and self.verified(matches[-1]) else None

    def finished_exams(self):
        """``{exam index: entry}`` of the exams whose last entry's outputs verify."""
        last = {}
        for entry in self.entries():
            if isinstance(entry.get("exam"), int) and "outputs" in entry:
                last[entry["exam"]] = entry
        return {index: entry for index, entry in last.items() if self.verified(entry)}


def command_line():
    return [Path(sys.argv[0]).name] + sys.argv[1:]
