"""The sender: one thread that C-STOREs result objects to ``--destination``.

For each study with objects not yet accepted (oldest results first) it opens one
association, sends each pending object, and marks it accepted in the database as soon as
the destination answers success or a warning (PS3.4 B.2.3: the object is stored). When
every object of a study is accepted the study is finished (``sent``, or ``failed`` for a
failure report) and its files are removed.

When the destination cannot be reached, or refuses an object, the sender waits and tries
again: 1 s, then twice as long each time, up to ``retry_max_seconds``, with no limit on the
number of tries; each failure is logged.

Exactly once: an object is sent again only when the destination accepted it and the
service died before the acceptance was committed (a window of one database commit). It is
then the same file, with the same SOPInstanceUID, which a PACS stores once.
"""

import logging

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from .loop import Loop

log = logging.getLogger("breast_cancer_classifier.serve")

ACCEPTED_STATUSES = (0x0000, 0xB000, 0xB006, 0xB007)  # success, and the storage warnings


class Sender(Loop):
    """Sends pending result objects; ``wake()`` after new results, ``stop()`` to end."""

    def __init__(self, config, state, on_finished):
        super().__init__("bcc-serve-sender", config.poll_seconds * 4)
        self.config = config
        self.state = state
        self.on_finished = on_finished  # called with the study id once all are accepted
        self.failures = 0  # consecutive failed attempts (for the backoff)

    def turn(self):
        """Send every study with pending objects; after a failure, wait (backoff)."""
        pending = self.state.studies_to_send()
        for study_id in pending:
            if self.stopping:
                break
            try:
                sent = self.send_study(study_id)
            except Exception:  # a bug or a broken file: log it, retry later
                log.exception("serve: study %s: sending failed", study_id)
                sent = False
            if not sent:
                self._back_off()
                break
        return bool(pending)

    def retry_delay(self):
        """Seconds to wait after ``failures`` failed attempts in a row."""
        return min(self.config.retry_first_seconds * 2 ** (self.failures - 1),
                   self.config.retry_max_seconds)

    def _back_off(self):
        self.failures += 1
        delay = self.retry_delay()
        log.info("serve: next try to send in %.1f s", delay)
        self.pause(delay)

    def send_study(self, study_id):
        """Send a study's pending objects; True when all of them are now accepted."""
        rows = self.state.results(study_id, pending_only=True)
        if not rows:  # all accepted before a restart, or no object could be written
            self.on_finished(study_id)
            return True
        destination = self.config.destination
        assoc = self._ae(rows).associate(destination.host, destination.port,
                                         ae_title=destination.ae_title)
        if not assoc.is_established:
            log.warning("serve: study %s: cannot reach the destination %s (association %s)",
                        study_id, destination,
                        "rejected" if assoc.is_rejected else "failed")
            return False
        all_accepted = True
        try:
            for row in rows:
                if not self._send_one(assoc, study_id, row):
                    all_accepted = False
                    break
        finally:
            if assoc.is_established:
                assoc.release()
        if all_accepted:
            self.failures = 0
            self.on_finished(study_id)
        return all_accepted

    def _send_one(self, assoc, study_id, row):
        path = self.config.work_dir / row["path"]
        status = assoc.send_c_store(path)
        code = status.get("Status") if status else None
        if code in ACCEPTED_STATUSES:
            self.state.mark_accepted(study_id, row["path"])
            return True
        why = "no answer (timeout or aborted)" if code is None else f"status 0x{code:04X}"
        log.warning("serve: study %s: the destination did not store a result object: %s",
                    study_id, why)
        return False

    def _ae(self, rows):
        """A requesting AE with a context per SOP class and transfer syntax to send."""
        ae = AE(ae_title=self.config.ae_title)
        for attribute in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, attribute, self.config.network_timeout_seconds)
        ae.connection_timeout = self.config.network_timeout_seconds
        wanted = {}
        for row in rows:
            syntax = pydicom.dcmread(self.config.work_dir / row["path"],
                                     stop_before_pixels=True).file_meta.TransferSyntaxUID
            wanted.setdefault(row["sop_class"], {syntax, ExplicitVRLittleEndian,
                                                 ImplicitVRLittleEndian}).add(syntax)
        for sop_class, syntaxes in sorted(wanted.items()):
            ae.add_requested_context(sop_class, sorted(syntaxes))
        return ae
