"""The worker: one thread that decides when studies are complete and runs the processor.

Each turn it

1. promotes received studies (``StateDB.promote``): complete after ``--study-quiet-seconds``
   of quiet with the four views, failed after ``--study-timeout-seconds`` without them;
2. writes the failure report of each failed study that has none yet;
3. takes the complete study that became complete first, and processes it.

Results are written into a staging folder, fsynced, and renamed to
``results/<study id>/`` (a failure report to ``results/<study id>.failure/``); only then are
they registered for sending. A results folder found
in place (the service was killed after the rename) is registered as it is, never written
again, so a restart sends the same objects with the same SOPInstanceUIDs.
"""

import logging
import shutil
import time
import traceback
from pathlib import Path

import pydicom

from ...core import formats
from ...core.errors import PipelineError
from .durable import fsync_dir, fsync_tree, make_dirs_durable
from .loop import Loop
from .naming import scrub
from .processor import SourceImage, Study
from .state import FAILURE, RESULT

log = logging.getLogger("breast_cancer_classifier.serve")

RESULTS, SCRATCH = "results", "scratch"


def results_folder_name(study_id, kind):
    """``<study id>`` for the results, ``<study id>.failure`` for a failure report."""
    return study_id if kind == RESULT else f"{study_id}.{kind}"


def result_objects(folder, work_dir):
    """The objects in a results folder: dicts with ``path`` (relative to ``work_dir``),
    ``sop_uid`` and ``sop_class``, sorted by file name. A file that is not DICOM raises
    PipelineError."""
    objects = []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            objects.append({"path": path.relative_to(work_dir).as_posix(),
                            "sop_uid": str(ds.SOPInstanceUID),
                            "sop_class": str(ds.SOPClassUID)})
        except Exception as err:  # pydicom fails in many ways on a non-DICOM file
            raise PipelineError(f"result file {path.name} is not a DICOM object with a SOP "
                                f"Instance UID and SOP Class UID ({type(err).__name__})") from err
    if not objects:
        raise PipelineError("the processor wrote no result object")
    return objects


class Worker(Loop):
    """Completeness, processing and failure reports; ``wake()`` prompts a turn, ``stop()``
    ends the thread after the current study."""

    def __init__(self, config, state, processor, metrics, on_results):
        super().__init__("bcc-serve-worker", config.poll_seconds)
        self.config = config
        self.state = state
        self.processor = processor
        self.metrics = metrics
        self.on_results = on_results  # called once a study's objects are registered

    def turn(self):
        """One step; True when it did something (then the next turn comes at once)."""
        completed, failed = self.state.promote(self.config.study_quiet_seconds,
                                               self.config.study_timeout_seconds)
        for study_id in completed:
            log.info("serve: study %s is complete (four views, %gs quiet); queued", study_id,
                     self.config.study_quiet_seconds)
        for study_id, reason in failed:
            log.warning("serve: study %s failed: %s", study_id, reason)
        for study_id in self.state.failed_without_report():
            if self.stopping:
                return True
            self.write_failure_report(study_id)
        study_id = self.state.next_complete()
        if study_id is None or self.stopping:
            return bool(completed or failed)
        if self.state.claim(study_id):
            self.process(study_id)
        return True

    # ------------------------------------------------------------------ one study
    def study(self, study_id):
        row = self.state.study(study_id)
        images = tuple(SourceImage(self.config.work_dir / r["path"], r["sop_uid"],
                                   r["sop_class"], r["view"], bool(r["used"]), r["reason"] or "")
                       for r in self.state.instances(study_id))
        scratch = self.config.work_dir / SCRATCH / study_id
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        return Study(study_id, row["study_uid"], images, scratch)

    def process(self, study_id):
        """Run the processor on a claimed study and register its results, or fail it."""
        study = self.study(study_id)
        try:
            started = time.monotonic()
            reused = self._write_results(study, RESULT, lambda out: self.processor.process(
                study, out))
            if not reused:
                log.info("serve: study %s analysed in %.1f s", study_id,
                         time.monotonic() - started)
            self._register(study_id, RESULT)
        except Exception as err:  # the processor's failure policy: any error fails the study
            reason = self._reason(study, err)
            log.warning("serve: study %s failed: %s", study_id, reason)
            if not isinstance(err, PipelineError):  # where, without the message's values
                log.debug("serve: study %s: raised at %s", study_id, " <- ".join(
                    f"{f.filename}:{f.lineno}" for f in traceback.extract_tb(err.__traceback__)))
            self.state.fail(study_id, reason)
            self.metrics.processing_failed()
            self.write_failure_report(study_id)
        finally:
            shutil.rmtree(study.scratch_dir, ignore_errors=True)

    def write_failure_report(self, study_id):
        """The failure objects of a failed study, registered for sending. When even they
        cannot be written, the study is finished without them (and says so)."""
        study, reason = self.study(study_id), self.state.study(study_id)["reason"]
        try:
            self._write_results(study, FAILURE, lambda out: self.processor.failure_objects(
                study, reason, out))
            self._register(study_id, FAILURE)
        except Exception as err:
            why = self._reason(study, err)
            log.error("serve: study %s: no failure report could be written (%s); nothing is "
                      "sent for it", study_id, why)
            self.on_results(study_id, f"{reason}; no failure report could be written: {why}")
        finally:
            shutil.rmtree(study.scratch_dir, ignore_errors=True)

    def results_dir(self, study_id, kind=RESULT):
        return self.config.work_dir / RESULTS / results_folder_name(study_id, kind)

    def _register(self, study_id, kind):
        objects = result_objects(self.results_dir(study_id, kind), self.config.work_dir)
        self.state.record_results(study_id, objects, kind)
        self.on_results(study_id)

    def _write_results(self, study, kind, write):
        """``write(staging folder)`` then rename the folder into place; True when a folder
        already in place (renamed before a restart) was reused instead."""
        target = self.results_dir(study.id, kind)
        if target.is_dir():
            log.info("serve: study %s: %s objects found in place (written before a restart); "
                     "sending them as they are", study.id, kind)
            return True
        make_dirs_durable(target.parent)
        with formats.staged_output_dir(target) as stage:
            write(Path(stage))
            fsync_tree(stage)
        fsync_dir(target.parent)
        return False

    @staticmethod
    def _reason(study, err):
        """The words of a failure, without any identifier of the study's headers."""
        text = str(err) if isinstance(err, PipelineError) else f"{type(err).__name__}: {err}"
        return scrub(text, study.identifiers())
