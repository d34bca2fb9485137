"""The service: the listener, the worker, the sender and the metrics on one work folder.

Work folder layout::

    state.sqlite3        the database (state.py)
    serve.lock           held while a service runs on the folder (one service per folder)
    incoming/<study>/    received instances, one file each, until the study is finished
    results/<study>/     result objects, renamed into place whole, until all are accepted
                         (a failure report: results/<study>.failure/)
    scratch/<study>/     the processor's temporary files, removed after each study

A start on an existing folder first recovers: studies left ``running`` without results go
back to ``complete`` (or fail after ``max_attempts`` interrupted runs); files that were
written but never acknowledged, staging folders and the files of finished studies are
removed. Nothing acknowledged is lost, nothing already written is written again.
"""

import fcntl
import logging
import shutil
import signal
import threading
from pathlib import Path

from ...core.errors import SettingsError
from .config import server_ssl_context
from .durable import make_dirs_durable, remove_tree
from .intake import INCOMING, Intake
from .metrics import Metrics, start_http_server
from .sender import Sender
from .state import FAILURE, QUEUED_STATES, RESULT, StateDB
from .worker import RESULTS, SCRATCH, Worker, results_folder_name

log = logging.getLogger("breast_cancer_classifier.serve")
LOCK_NAME = "serve.lock"


class Service:
    """``start()`` (returns once listening), ``stop()``; ``run_forever()`` for the command."""

    def __init__(self, config, processor):
        self.config = config
        self.processor = processor
        self.state = self.metrics = self.server = self.http = None
        self.worker = self.sender = None
        self._lock_file = None
        self.port = self.http_port = None

    # ------------------------------------------------------------------ start and stop
    def start(self):
        config = self.config
        ssl_context = server_ssl_context(config.tls_cert, config.tls_key, config.tls_ca)
        make_dirs_durable(config.work_dir)
        self._lock()
        self.state = StateDB(config.work_dir)
        self.metrics = Metrics(self.state)
        self._recover()
        intake = Intake(config, self.state, self.metrics)
        self.sender = Sender(config, self.state, self._finished)
        self.worker = Worker(config, self.state, self.processor, self.metrics,
                             self._results_ready)
        self.worker.start()
        self.sender.start()
        self.server = intake.build_ae().start_server(
            (config.host, config.port), block=False, evt_handlers=intake.handlers(),
            ssl_context=ssl_context)
        self.port = self.server.server_address[1]
        if config.http_port is not None:
            self.http = start_http_server(config.http_port, self.metrics, self.health)
            self.http_port = self.http.server_address[1]
        self._announce(ssl_context is not None)
        return self

    def stop(self):
        """Stop taking associations, let the current study's step end, release all."""
        if self.server is not None:
            self.server.shutdown()
        for thread in (self.worker, self.sender):
            if thread is not None:
                thread.stop()
        for thread in (self.worker, self.sender):
            if thread is not None and thread.is_alive():
                thread.join()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self.processor.close()
        if self.state is not None:
            self.state.close()
        if self._lock_file is not None:
            self._lock_file.close()
        log.info("serve: stopped")

    def run_forever(self):
        """Start, serve until SIGTERM or SIGINT, stop; returns 0."""
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        self.start()
        try:
            while not stopping.wait(1.0):
                pass
        finally:
            self.stop()
        return 0

    def health(self):
        """What is wrong (empty when healthy)."""
        problems = [f"the {name} thread has stopped" for name, thread in
                    (("worker", self.worker), ("sender", self.sender))
                    if thread is None or not thread.is_alive()]
        if self.server is None or not self.server.socket or self.server.socket.fileno() < 0:
            problems.append("the DICOM listener is not running")
        try:
            self.state.counts()
        except Exception as err:  # the database itself is the problem here
            problems.append(f"the database does not answer ({type(err).__name__})")
        return problems

    # ------------------------------------------------------------------ callbacks
    def _results_ready(self, study_id, nothing_to_send_reason=None):
        """The worker registered a study's objects (or could write none)."""
        if nothing_to_send_reason is None:
            self.sender.wake()
        else:
            self._finished(study_id, nothing_to_send_reason)

    def _finished(self, study_id, reason=None):
        """Every object accepted: finish the study, then remove its files."""
        objects = len(self.state.results(study_id))
        row = self.state.finish(study_id, reason)
        if row is None:
            return
        self._remove_files(study_id)
        self.metrics.study_finished(row, objects)
        took = (f" {row['finished_at'] - row['completed_at']:.1f} s after it was complete"
                if row["completed_at"] is not None else "")
        log.info("serve: study %s %s: %d object(s) accepted by the destination%s", study_id,
                 row["state"], objects, took)

    # ------------------------------------------------------------------ helpers
    def _lock(self):
        path = self.config.work_dir / LOCK_NAME
        self._lock_file = open(path, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self._lock_file.close()
            self._lock_file = None
            raise SettingsError(f"{self.config.work_dir}: another bcc serve runs on this work "
                                "folder; stop it, or give another --work-dir") from err

    def _recover(self):
        requeued, failed = self.state.recover(self.config.max_attempts)
        for study_id in requeued:
            log.info("serve: study %s was running when the service stopped; queued again",
                     study_id)
        for study_id in failed:
            log.warning("serve: study %s failed: %s", study_id,
                        self.state.study(study_id)["reason"])
        for study_id in self.state.finished_studies():
            self._remove_files(study_id)
        self._sweep_incoming()
        results = self.config.work_dir / RESULTS
        if results.is_dir():
            for stage in results.glob(".*.partial"):  # staging folders of an interrupted run
                shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(self.config.work_dir / SCRATCH, ignore_errors=True)
        counts = self.state.counts()
        if any(counts[s] for s in QUEUED_STATES):
            log.info("serve: %s", ", ".join(f"{counts[s]} {s}" for s in QUEUED_STATES))

    def _sweep_incoming(self):
        """Remove files written but never acknowledged (no database row)."""
        incoming = self.config.work_dir / INCOMING
        if not incoming.is_dir():
            return
        for folder in incoming.iterdir():
            recorded = {r["path"] for r in self.state.instances(folder.name)}
            for path in folder.iterdir():
                if path.relative_to(self.config.work_dir).as_posix() not in recorded:
                    path.unlink()
            if not any(folder.iterdir()):
                remove_tree(folder)

    def _remove_files(self, study_id):
        remove_study_files(self.config.work_dir, study_id)

    def _announce(self, tls):
        config = self.config
        log.info("serve: listening on %s:%d as %s%s; results to %s; work folder %s",
                 config.host, self.port, config.ae_title, " (TLS)" if tls else "",
                 config.destination, config.work_dir)
        if self.http is not None:
            log.info("serve: metrics on http://127.0.0.1:%d/metrics, health on /healthz",
                     self.http_port)
        if not config.loopback_only and not config.allow_callers:
            log.warning("serve: listening on %s without --allow-caller: any DICOM node that "
                        "reaches this port can send studies", config.host)


def reprocess(work_dir, study_id):
    """Forget a finished study so that the next time it arrives it is analysed again (and a
    new result set, with new UIDs, is sent). Refused for a study still queued or sending."""
    work_dir = Path(work_dir)
    if not (work_dir / "state.sqlite3").is_file():
        raise SettingsError(f"{work_dir}: no bcc serve work folder (state.sqlite3 missing)")
    state = StateDB(work_dir)
    try:
        row = state.study(study_id)
        if row is None:
            raise SettingsError(f"{work_dir}: no study {study_id!r} (studies are named by the "
                                "12-character hash shown in the log)")
        if row["finished_at"] is None:
            raise SettingsError(f"study {study_id} is {row['state']} and not finished (still "
                                "queued, running or being sent): nothing to reprocess yet")
        state.forget(study_id)
    finally:
        state.close()
    remove_study_files(work_dir, study_id)
    log.info("serve: study %s (%s) forgotten; send it again from the PACS and it is analysed "
             "again", study_id, row["state"])
    return 0



def remove_study_files(work_dir, study_id):
    """Remove a study's received instances, result objects and scratch files."""
    for folder in (INCOMING + "/" + study_id, SCRATCH + "/" + study_id,
                   RESULTS + "/" + results_folder_name(study_id, RESULT),
                   RESULTS + "/" + results_folder_name(study_id, FAILURE)):
        remove_tree(Path(work_dir) / folder)
