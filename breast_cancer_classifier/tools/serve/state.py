"""The service's state: one SQLite database in the work folder (``state.sqlite3``).

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``meta``):

* ``studies``: one row per StudyInstanceUID. ``id`` is its short hash (``naming``);
  ``state`` one of :data:`STATES`; times (Unix seconds) of the first and last instance, of
  completeness, of the start of processing, of the results being written and of the end;
  ``attempts`` (processing runs started) and ``reason`` (why it failed).
* ``instances``: one row per received SOPInstanceUID: its file (relative to the work
  folder), SOP class, view (``L-CC`` ...), whether it goes to the analysis (``used``) and
  if not why (``reason``, the words of ``bcc dicom``).
* ``results``: one row per result object: its file, SOPInstanceUID and SOP class, whether
  it is the analysis (``result``) or a failure report (``failure``), and whether the
  destination has accepted it.

States: ``received`` (instances arriving), ``complete`` (four views, quiet: queued),
``running`` (being processed, or its results being sent), ``sent`` (every result object
accepted), ``failed`` (no analysis; a failure report is sent). ``finished`` is set once a
study's objects are all accepted and its files may go.

One writer discipline: the service holds one connection, and every statement runs under one
lock, so each transaction sees the state the previous one left. WAL journal with
``synchronous=FULL``: a committed transaction survives a power cut.
"""

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ...core.errors import SettingsError
from ...core.views import VIEWS

SCHEMA_VERSION = 1
DB_NAME = "state.sqlite3"
RECEIVED, COMPLETE, RUNNING, SENT, FAILED = "received", "complete", "running", "sent", "failed"
STATES = (RECEIVED, COMPLETE, RUNNING, SENT, FAILED)
QUEUED_STATES = (RECEIVED, COMPLETE, RUNNING)  # what --max-queue counts
TERMINAL_STATES = (SENT, FAILED)
RESULT, FAILURE = "result", "failure"

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE studies (
    id TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ({", ".join(f"'{s}'" for s in STATES)})),
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    completed_at REAL,
    started_at REAL,
    results_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE TABLE instances (
    sop_uid TEXT PRIMARY KEY,
    study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    view TEXT,
    used INTEGER NOT NULL,
    reason TEXT,
    received_at REAL NOT NULL
);
CREATE INDEX instances_by_study ON instances (study_id);
CREATE TABLE results (
    study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('{RESULT}', '{FAILURE}')),
    accepted INTEGER NOT NULL DEFAULT 0,
    accepted_at REAL,
    PRIMARY KEY (study_id, path)
);
"""


class StateDB:
    """The database, opened (and created, or checked) at ``<work_dir>/state.sqlite3``."""

    def __init__(self, work_dir, clock=time.time):
        self.path = Path(work_dir) / DB_NAME
        self.clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._init_schema()

    def close(self):
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self):
        """One write transaction under the lock: committed, or rolled back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql, params=()):
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, params)]

    def _init_schema(self):
        with self.transaction() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if "meta" not in tables:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
                return
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            found = version[0] if version else "none"
            raise SettingsError(f"{self.path}: database schema version {found}, this bcc "
                                f"serve reads version {SCHEMA_VERSION}; use the bcc that "
                                "wrote it, or a new --work-dir")

    # ------------------------------------------------------------------ reading
    def study(self, study_id):
        rows = self._query("SELECT * FROM studies WHERE id=?", (study_id,))
        return rows[0] if rows else None

    def studies(self, state=None):
        if state is None:
            return self._query("SELECT * FROM studies ORDER BY first_received")
        return self._query("SELECT * FROM studies WHERE state=? ORDER BY first_received",
                           (state,))

    def instances(self, study_id):
        return self._query("SELECT * FROM instances WHERE study_id=? ORDER BY received_at, "
                           "sop_uid", (study_id,))

    def has_instance(self, sop_uid):
        return bool(self._query("SELECT 1 FROM instances WHERE sop_uid=?", (sop_uid,)))

    def results(self, study_id, pending_only=False):
        extra = " AND accepted=0" if pending_only else ""
        return self._query(f"SELECT * FROM results WHERE study_id=?{extra} ORDER BY path",
                           (study_id,))

    def counts(self):
        """{state: number of studies}, every state present."""
        found = {r["state"]: r["n"] for r in self._query(
            "SELECT state, COUNT(*) AS n FROM studies GROUP BY state")}
        return {state: found.get(state, 0) for state in STATES}

    def queue_length(self):
        marks = ", ".join("?" * len(QUEUED_STATES))
        return self._query(f"SELECT COUNT(*) AS n FROM studies WHERE state IN ({marks})",
                           QUEUED_STATES)[0]["n"]

    def next_complete(self):
        """The complete study that became complete first, or None."""
        rows = self._query("SELECT id FROM studies WHERE state=? ORDER BY completed_at, id "
                           "LIMIT 1", (COMPLETE,))
        return rows[0]["id"] if rows else None

    def failed_without_report(self):
        """Failed studies whose failure report is not written yet."""
        return [r["id"] for r in self._query(
            "SELECT id FROM studies WHERE state=? AND results_at IS NULL AND finished_at IS "
            "NULL ORDER BY first_received", (FAILED,))]

    def studies_to_send(self):
        """Studies with registered result objects that are not finished, oldest results
        first: objects still to send, or all accepted just before a crash."""
        return [r["id"] for r in self._query(
            "SELECT id FROM studies WHERE results_at IS NOT NULL AND finished_at IS NULL "
            "ORDER BY results_at, id")]

    def finished_studies(self):
        return [r["id"] for r in self._query(
            "SELECT id FROM studies WHERE finished_at IS NOT NULL")]

    # ------------------------------------------------------------------ writing
    def add_instance(self, study_uid, study_id, instance, max_queue):
        """Record a stored instance; returns ``"added"``, ``"duplicate"``, ``"full"`` or
        ``"finished"``.

        ``instance``: dict with ``sop_uid``, ``path``, ``sop_class``, ``view``, ``used``,
        ``reason``. A new study is refused (``"full"``) when ``max_queue`` studies are
        already received, complete or running; an instance of a study already sent or
        failed is not recorded either (``"finished"``).
        """
        now = self.clock()
        with self.transaction() as db:
            study = db.execute("SELECT state FROM studies WHERE id=?", (study_id,)).fetchone()
            if study is not None and study["state"] in TERMINAL_STATES:
                return "finished"
            if study is None:
                marks = ", ".join("?" * len(QUEUED_STATES))
                queued = db.execute(f"SELECT COUNT(*) FROM studies WHERE state IN ({marks})",
                                    QUEUED_STATES).fetchone()[0]
                if queued >= max_queue:
                    return "full"
                db.execute("INSERT INTO studies (id, study_uid, state, first_received, "
                           "last_received) VALUES (?, ?, ?, ?, ?)",
                           (study_id, study_uid, RECEIVED, now, now))
            cursor = db.execute(
                "INSERT OR IGNORE INTO instances (sop_uid, study_id, path, sop_class, view, "
                "used, reason, received_at) VALUES (:sop_uid, :study_id, :path, :sop_class, "
                ":view, :used, :reason, :now)", dict(instance, study_id=study_id, now=now))
            if cursor.rowcount == 0:
                return "duplicate"
            db.execute("UPDATE studies SET last_received=? WHERE id=?", (now, study_id))
        return "added"

    def promote(self, quiet_seconds, timeout_seconds):
        """Received studies that are due: ``(complete ids, [(failed id, reason)])``.

        Complete: the four views among the used instances and nothing new for
        ``quiet_seconds``. Failed: a view still missing ``timeout_seconds`` after the first
        instance.
        """
        now = self.clock()
        completed, failed = [], []
        with self.transaction() as db:
            for study in db.execute("SELECT * FROM studies WHERE state=?", (RECEIVED,)).fetchall():
                views = {r[0] for r in db.execute(
                    "SELECT DISTINCT view FROM instances WHERE study_id=? AND used=1",
                    (study["id"],))}
                missing = [v for v in VIEWS if v not in views]
                if not missing and now - study["last_received"] >= quiet_seconds:
                    db.execute("UPDATE studies SET state=?, completed_at=? WHERE id=?",
                               (COMPLETE, now, study["id"]))
                    completed.append(study["id"])
                elif missing and now - study["first_received"] >= timeout_seconds:
                    reason = (f"incomplete study: no usable {', '.join(missing)} image "
                              f"{timeout_seconds:g} s after its first instance")
                    db.execute("UPDATE studies SET state=?, reason=? WHERE id=?",
                               (FAILED, reason, study["id"]))
                    failed.append((study["id"], reason))
        return completed, failed

    def claim(self, study_id):
        """complete -> running; counts an attempt. False if the study was not complete."""
        with self.transaction() as db:
            cursor = db.execute("UPDATE studies SET state=?, started_at=?, attempts=attempts+1 "
                                "WHERE id=? AND state=?",
                                (RUNNING, self.clock(), study_id, COMPLETE))
            return cursor.rowcount == 1

    def fail(self, study_id, reason):
        with self.transaction() as db:
            db.execute("UPDATE studies SET state=?, reason=? WHERE id=?",
                       (FAILED, reason, study_id))

    def record_results(self, study_id, objects, kind):
        """Register the written result objects: dicts with ``path``, ``sop_uid``,
        ``sop_class``. From now on the sender sends them."""
        with self.transaction() as db:
            for obj in objects:
                db.execute("INSERT OR IGNORE INTO results (study_id, path, sop_uid, sop_class, "
                           "kind) VALUES (?, ?, ?, ?, ?)",
                           (study_id, obj["path"], obj["sop_uid"], obj["sop_class"], kind))
            db.execute("UPDATE studies SET results_at=? WHERE id=?", (self.clock(), study_id))

    def mark_accepted(self, study_id, path):
        with self.transaction() as db:
            db.execute("UPDATE results SET accepted=1, accepted_at=? WHERE study_id=? AND "
                       "path=?", (self.clock(), study_id, path))

    def finish(self, study_id, reason=None):
        """Every result object accepted (or none can be written): running -> sent, a failed
        study stays failed; ``finished_at`` is set. Returns the study row, or None when
        objects are still pending."""
        with self.transaction() as db:
            pending = db.execute("SELECT COUNT(*) FROM results WHERE study_id=? AND "
                                 "accepted=0", (study_id,)).fetchone()[0]
            if pending:
                return None
            db.execute("UPDATE studies SET state=CASE state WHEN ? THEN ? ELSE state END, "
                       "finished_at=?, reason=COALESCE(?, reason) WHERE id=?",
                       (RUNNING, SENT, self.clock(), reason, study_id))
            return dict(db.execute("SELECT * FROM studies WHERE id=?", (study_id,)).fetchone())

    def recover(self, max_attempts):
        """After a restart: studies left running without results go back to complete, or to
        failed once ``max_attempts`` runs were interrupted. Returns ``(requeued, failed)``."""
        with self.transaction() as db:
            rows = db.execute("SELECT id, attempts FROM studies WHERE state=? AND results_at "
                              "IS NULL", (RUNNING,)).fetchall()
            requeued, failed = [], []
            for row in rows:
                if row["attempts"] >= max_attempts:
                    db.execute("UPDATE studies SET state=?, reason=? WHERE id=?",
                               (FAILED, f"processing was interrupted {row['attempts']} times "
                                "(the service stopped while it ran)", row["id"]))
                    failed.append(row["id"])
                else:
                    db.execute("UPDATE studies SET state=? WHERE id=?", (COMPLETE, row["id"]))
                    requeued.append(row["id"])
        return requeued, failed

    def forget(self, study_id):
        """Remove a study, its instances and its result rows."""
        with self.transaction() as db:
            db.execute("DELETE FROM studies WHERE id=?", (study_id,))
