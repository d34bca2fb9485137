"""Pseudonymous names for the DICOM converter (``--pseudonymize KEYFILE``).

Names come from HMAC-SHA-256 keyed with a secret kept in KEYFILE (created, mode 0600, when
absent): the same key gives the same names run after run, another key other names, and
without the key nobody can tell which patient or study a name stands for, nor test a guess.
The table that maps names back to patient ID, study UID, study date and input file is
written only beside the key (``<KEYFILE>.mapping.csv``, mode 0600), never into the outputs.
"""

import contextlib
import csv
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

from ..core.errors import SettingsError
from ..core.runtime import log

MIN_KEY_BYTES = 16
NAME_HEX_DIGITS = 16  # 64 bits: collisions are out of reach for any archive
MAPPING_COLUMNS = ("file", "source_path", "exam_id", "patient_id", "PatientID",
                   "StudyInstanceUID", "StudyDate", "output_png")


def mapping_path(key_path):
    key_path = Path(key_path)
    return key_path.with_name(key_path.name + ".mapping.csv")


def load_or_create_key(path):
    """The secret in ``path``; a new random one (64 hex digits, mode 0600) when absent."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        log.warning("pseudonymize: created the key %s; keep it secret and keep it: the same "
                    "key gives the same names, and the table beside it maps them back", path)
    if not path.is_file():
        raise SettingsError(f"{path}: --pseudonymize needs a key file, found something else")
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise SettingsError(f"{path}: key of {len(key)} byte(s); a key needs at least "
                            f"{MIN_KEY_BYTES} (delete the file to have a new one made)")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("pseudonymize: %s can be read by other users; chmod 600 it", path)
    return key


class Pseudonyms:
    """Keyed names, and the mapping rows gathered while a folder is converted."""

    def __init__(self, key_path):
        self.key_path = Path(key_path)
        self.key = load_or_create_key(key_path)
        self.rows = []

    def _name(self, prefix, *parts):
        message = "\0".join((prefix,) + tuple(str(p) for p in parts)).encode()
        return prefix[0] + hmac.new(self.key, message, hashlib.sha256).hexdigest()[
            :NAME_HEX_DIGITS]

    def patient(self, patient_id):
        return self._name("patient", patient_id)

    def exam(self, patient_id, study_uid):
        return self._name("xam", patient_id, study_uid)

    def file(self, relative_path):
        return self._name("file", relative_path)

    def uid(self, real_uid):
        """A pseudonymous DICOM UID for ``real_uid``: ``2.25.<128-bit integer of the HMAC>``
        (PS3.5 B.2), the same for every use of the UID under this key."""
        digest = hmac.new(self.key, b"uid\0" + str(real_uid).encode(), hashlib.sha256).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def record(self, **row):
        self.rows.append({c: str(row.get(c) or "") for c in MAPPING_COLUMNS})

    def write_mapping(self):
        """Add this run's rows to the table beside the key (atomically, mode 0600)."""
        path = mapping_path(self.key_path)
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = [{c: r.get(c, "") for c in MAPPING_COLUMNS} for r in csv.DictReader(f)]
        seen = {tuple(r.values()) for r in rows}
        rows += [r for r in self.rows if tuple(r.values()) not in seen]
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="") as f:  # mkstemp files are 0600
                writer = csv.DictWriter(f, MAPPING_COLUMNS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        log.info("pseudonymize: names mapped back to identifiers in %s", path)
        return path
