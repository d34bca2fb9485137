"""The DICOM listener: C-ECHO, and C-STORE of digital mammograms into the work folder.

What comes in and what is refused (each refusal is logged with its reason and counted):

* associations: a calling AE title not on ``--allow-caller`` (when given), or a called AE
  title other than ``--ae-title``, is rejected (A-ASSOCIATE-RJ);
* presentation contexts: only Verification and Digital Mammography X-Ray Image Storage,
  For Presentation and For Processing (PS3.4 B.5), are accepted, in any transfer syntax;
  other SOP classes are refused at negotiation;
* C-STORE: the instance's bytes are written durably to ``incoming/<study id>/`` and
  recorded in the database before 0x0000 (success) goes back. A header that cannot be read
  is answered 0xC210 (cannot understand); an instance of a new study while ``--max-queue``
  studies are queued, or a failed write, 0xA700 (out of resources). For Processing images
  and anything ``bcc dicom`` would skip are stored and recorded, but left out of the
  analysis (``used`` 0, with ``bcc dicom``'s reason). An instance of a study whose results
  already went out (state sent or failed) is acknowledged, logged and dropped: that study
  is not run again (docs/serve.md: reprocessing).
"""

import io
import logging

import pydicom
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt

from ...core.views import VIEWS
from ..dicom import IDENTIFYING, breast_side, mammogram_view, skip_reason
from .durable import write_durable
from .naming import instance_file_name, scrub, study_hash
from .state import RUNNING, TERMINAL_STATES

log = logging.getLogger("breast_cancer_classifier.serve")

VERIFICATION = "1.2.840.10008.1.1"
MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"  # PS3.4 B.5
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
MAMMOGRAPHY_SOP_CLASSES = (MG_FOR_PRESENTATION, MG_FOR_PROCESSING)
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC210  # PS3.4 GG.4
INCOMING = "incoming"
REFUSED_NAMES_SHOWN = 5

# pynetdicom logs request identifiers and UIDs at INFO and DEBUG: keep it to warnings, and
# never dump the identifiers of a request.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def instance_record(ds, sop_class):
    """The database fields of an instance from its header: ``view``, ``used``, ``reason``.

    An image is used when ``bcc dicom`` would keep it (``tools.dicom.skip_reason``) and its
    SOP class is For Presentation; its view is ``<side>-<CC|MLO>``.
    """
    reason = skip_reason(ds)
    if not reason and sop_class != MG_FOR_PRESENTATION:
        reason = ("FOR PROCESSING SOP class (raw detector data); only FOR PRESENTATION "
                  "images are used")
    view = None
    if not reason:
        angle, side_from_text = mammogram_view(ds)
        view = f"{breast_side(ds, side_from_text)[0]}-{angle}"
        if view not in VIEWS:  # skip_reason has checked side and angle; kept as a guard
            reason, view = f"view {view!r} is not one of {', '.join(VIEWS)}", None
    return {"view": view, "used": int(not reason), "reason": reason or None}


class Intake:
    """The C-ECHO and C-STORE handlers and the association events of the listener."""

    def __init__(self, config, state, metrics):
        self.config = config
        self.state = state
        self.metrics = metrics

    def build_ae(self):
        """The listening application entity, with its contexts and rules (not started)."""
        ae = AE(ae_title=self.config.ae_title)
        ae.add_supported_context(VERIFICATION)
        for sop_class in MAMMOGRAPHY_SOP_CLASSES:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        ae.require_called_aet = True
        ae.require_calling_aet = list(self.config.allow_callers)
        for attribute in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, attribute, self.config.network_timeout_seconds)
        return ae

    def handlers(self):
        return [(evt.EVT_C_ECHO, self.on_echo), (evt.EVT_C_STORE, self.on_store),
                (evt.EVT_REJECTED, self.on_rejected), (evt.EVT_ACCEPTED, self.on_accepted)]

    # ------------------------------------------------------------------ events
    def on_echo(self, event):
        return SUCCESS

    def on_rejected(self, event):
        caller = event.assoc.requestor.ae_title
        called = event.assoc.acceptor.ae_title
        if self.config.allow_callers and caller not in self.config.allow_callers:
            why, label = f"calling AE title {caller!r} is not on --allow-caller", "caller"
        elif event.assoc.requestor.primitive.called_ae_title != self.config.ae_title:
            why = (f"called AE title {event.assoc.requestor.primitive.called_ae_title!r} is "
                   f"not ours ({called!r})")
            label = "called_ae"
        else:
            why, label = "too many associations at once", "busy"
        log.warning("serve: refused an association from %s (%s): %s", caller,
                    event.assoc.requestor.address, why)
        self.metrics.refused(label)

    def on_accepted(self, event):
        """One line per association for the SOP classes refused at negotiation (a PACS
        often proposes dozens at once), one refusal counted per class."""
        refused = sorted({str(getattr(c.abstract_syntax, "name", "") or c.abstract_syntax)
                          for c in event.assoc.rejected_contexts})
        if not refused:
            return
        shown = ", ".join(refused[:REFUSED_NAMES_SHOWN]) + (
            f" and {len(refused) - REFUSED_NAMES_SHOWN} more"
            if len(refused) > REFUSED_NAMES_SHOWN else "")
        log.info("serve: association from %s: %d SOP class(es) refused at negotiation (only "
                 "digital mammography images and C-ECHO are taken): %s",
                 event.assoc.requestor.ae_title, len(refused), shown)
        for _ in refused:
            self.metrics.refused("sop_class")

    def on_store(self, event):
        """Store one instance durably and record it; the C-STORE status to answer."""
        try:
            data = event.encoded_dataset(include_meta=True)
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            study_uid = str(ds.get("StudyInstanceUID") or "").strip()
            sop_uid = str(ds.get("SOPInstanceUID") or event.request.AffectedSOPInstanceUID
                          or "").strip()
            record = instance_record(ds, str(event.request.AffectedSOPClassUID))
        except Exception as err:  # a damaged header fails inside pydicom in many ways
            return self._refuse_store(CANNOT_UNDERSTAND, "unreadable",
                                      f"its header cannot be read ({type(err).__name__})")
        if not study_uid or not sop_uid:
            return self._refuse_store(CANNOT_UNDERSTAND, "unreadable",
                                      "no StudyInstanceUID or SOPInstanceUID")
        return self._store(data, ds, study_uid, sop_uid, record,
                           str(event.request.AffectedSOPClassUID))

    # ------------------------------------------------------------------ helpers
    def _store(self, data, ds, study_uid, sop_uid, record, sop_class):
        study_id = study_hash(study_uid)
        study = self.state.study(study_id)
        if study is not None and study["state"] in TERMINAL_STATES:
            return self._repeated(study_id, study["state"])
        if self.state.has_instance(sop_uid):
            return SUCCESS  # a PACS retrying: the first copy is stored and recorded
        if study is None and self.state.queue_length() >= self.config.max_queue:
            return self._queue_full(study_id)
        path = self.config.work_dir / INCOMING / study_id / instance_file_name(sop_uid)
        try:
            write_durable(path, data)
        except OSError as err:
            return self._refuse_store(OUT_OF_RESOURCES, "write_error",
                                      f"cannot be written: {err.strerror or err}", study_id)
        instance = dict(record, sop_uid=sop_uid, sop_class=sop_class,
                        path=path.relative_to(self.config.work_dir).as_posix())
        outcome = self.state.add_instance(study_uid, study_id, instance,
                                          self.config.max_queue)
        if outcome in ("full", "finished"):  # changed since the checks above
            path.unlink(missing_ok=True)
            if outcome == "finished":
                return self._repeated(study_id, self.state.study(study_id)["state"])
            return self._queue_full(study_id)  # another study took the last place
        if outcome == "added":
            self.metrics.instance_received()
            if study is None:
                log.info("serve: study %s: first instance received", study_id)
            elif study["state"] == RUNNING:
                log.warning("serve: study %s: an instance arrived while the study was being "
                            "analysed; it is stored but not part of this analysis", study_id)
            if not record["used"]:
                log.info("serve: study %s: an instance is left out: %s", study_id,
                         scrub(record["reason"], [str(ds.get(k) or "") for k in IDENTIFYING]))
        return SUCCESS

    def _repeated(self, study_id, state):
        log.info("serve: study %s arrived again after its results went out (state %s): "
                 "acknowledged, not run again (bcc serve --reprocess %s forgets it)",
                 study_id, state, study_id)
        self.metrics.repeated()
        return SUCCESS

    def _queue_full(self, study_id):
        return self._refuse_store(OUT_OF_RESOURCES, "queue_full",
                                  f"{self.config.max_queue} studies are queued (--max-queue)",
                                  study_id)

    def _refuse_store(self, status, label, why, study_id=None):
        where = f" of study {study_id}" if study_id else ""
        log.warning("serve: refused an instance%s (status 0x%04X): %s", where, status, why)
        self.metrics.refused(label)
        return status
