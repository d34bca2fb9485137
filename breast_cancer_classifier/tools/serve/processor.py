"""The seam between the service and the analysis: a ``Processor`` turns a study into result
objects.

The service owns the queue, the files, the database and the sending; a processor only reads
the study's files and writes DICOM objects into the folder it is given. It is built once
(models loaded once), then called by one worker thread, one study at a time:

``process(study, out_dir) -> list[Path]``
    ``study`` is a :class:`Study`. Write every result object (DICOM Part 10 files, each with
    a SOPInstanceUID of its own, in the study's StudyInstanceUID) directly into ``out_dir`` and
    return their paths; ``out_dir`` holds nothing else. ``out_dir`` is a staging folder that
    the service fsyncs and renames to ``<work>/results/<study id>/`` (failure objects:
    ``<study id>.failure/``) only after the call returns, and before anything is sent:
    after a crash the renamed folder is sent as it is (same SOPInstanceUIDs), never
    regenerated. When the study cannot be analysed (an image
    that cannot be decoded, a view missing among the usable images, ...) raise
    :class:`~breast_cancer_classifier.core.errors.PipelineError` (or a subclass) whose
    message says why, in words without patient data: the service then asks for
    ``failure_objects``. Any other exception is taken as the same, with its type named.
``failure_objects(study, reason, out_dir) -> list[Path]``
    Write the objects that tell the destination the analysis failed and why (a Mammography
    CAD SR), into ``out_dir`` as above. Called for a study that never got its four views
    before ``--study-timeout-seconds``, and after ``process`` failed.
``close()``
    Release what the processor holds (models, threads); called once at shutdown.

The processor of ``bcc serve`` is :class:`ModelProcessor`: the analysis of ``bcc dicom``
then ``bcc run`` (then ``bcc dicom-out``), on one study at a time, with the models loaded
once. Its results are those of ``bcc run`` on the files ``bcc dicom`` converts
(docs/serve.md, "What the results are"). The tests use a test-only processor too
(``tests/serve_support.py``, never part of the package). The test hook: when the environment
variable :data:`PROCESSOR_HOOK_ENV` holds ``module:factory``, :func:`load_processor` imports
``module`` and calls ``factory()`` instead of building :class:`ModelProcessor`; only the
tests set it (with ``tests/`` on PYTHONPATH).

The result UIDs are deterministic (``tools.dicom_results``: derived from the weights, run
settings, calibrations and the converted exam list, whose records include the source UIDs
and the study's path in the work folder): the same study analysed again in the same work
folder with the same settings gets the same SOPInstanceUIDs, so a PACS holds one result
set, not two (``--reprocess``, docs/serve.md). A failure report gets new random UIDs each
time it is written; written once per failure, it is kept and sent as it is after a crash.
"""

import csv
import importlib
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom

from ...core.errors import PipelineError, SettingsError
from ...core.failures import EXIT_OK
from ...core.views import VIEWS
from ..dicom import IDENTIFYING, _safe_name
from ..make_exam_list import FAILED
from .naming import scrub

PROCESSOR_HOOK_ENV = "BCC_SERVE_TEST_PROCESSOR"
CORE_LOGGER = "breast_cancer_classifier"  # core.runtime.log
FAILURE_SR_NAME = "SR_failure.dcm"


@dataclass(frozen=True)
class SourceImage:
    """One received instance of a study."""

    path: Path  # its DICOM file (read-only)
    sop_instance_uid: str
    sop_class_uid: str
    view: str  # "L-CC", "R-CC", "L-MLO", "R-MLO", or None when left out
    used: bool  # False: left out of the analysis, ``reason`` says why (as bcc dicom)
    reason: str


@dataclass(frozen=True)
class Study:
    """What a processor is given: a study's id (short hash), its StudyInstanceUID, its
    instances, and a scratch folder of its own (empty, removed after the study)."""

    id: str
    study_instance_uid: str
    images: tuple
    scratch_dir: Path

    @property
    def used_images(self):
        return [image for image in self.images if image.used]

    def identifiers(self):
        """What identifies the study or its patient, to keep out of logs and reasons: its
        UIDs, the identifying header values (``tools.dicom.IDENTIFYING``) and the forms in
        which ``bcc dicom`` puts patient ID and study date into file names."""
        found = {self.study_instance_uid}
        for image in self.images:
            found.add(image.sop_instance_uid)
            try:
                ds = pydicom.dcmread(image.path, stop_before_pixels=True)
            except Exception:  # an unreadable file has no identifiers to hide
                continue
            values = {k: str(ds.get(k) or "") for k in IDENTIFYING}
            found.update(values.values())
            found.update(_safe_name(values[k], "") for k in ("PatientID", "StudyDate"))
        found.discard("")
        return found


class ModelProcessor:
    """The analysis: ``bcc dicom``'s conversion, ``bcc run``'s pipeline and ``bcc dicom-out``'s
    objects, one study at a time, with one engine (models loaded once) for the process's
    life.

    ``settings``: ``core.engine.EngineSettings`` from the ``bcc run`` flags;
    ``calibration_paths``: ``bcc calibrate``'s calibration.json files (one per model), checked
    against the weights here, before the models load (SettingsError, exit 2).
    """

    def __init__(self, settings, calibration_paths=()):
        from ..calibration import calibrations_for_run
        from ..dicom_results.writer import require_highdicom

        require_highdicom()
        self.settings = settings
        self.calibration_paths = tuple(str(p) for p in calibration_paths)
        calibrations_for_run(list(self.calibration_paths), settings.weight_paths())
        self.engine = KeptEngine(settings)

    def process(self, study, out_dir):
        """The study's Mammography CAD SR and overlays, written into ``out_dir``."""
        with core_log_scrubbed(study.id, study.identifiers()):
            return self._process(study, Path(out_dir))

    def _process(self, study, out_dir):
        from ..dicom import dicom_to_exam_list
        from ..dicom_results import write_dicom_results

        scratch = Path(study.scratch_dir)
        dicom_dir, png_dir, run_dir = scratch / "dicom", scratch / "png", scratch / "run"
        dicom_dir.mkdir(parents=True)
        for image in study.used_images:
            _link_or_copy(image.path, dicom_dir / image.path.name)
        # As bcc dicom does it, without --pseudonymize: the results go to the source study.
        report = scratch / "exam_list.report.csv"
        try:
            dicom_to_exam_list(dicom_dir, png_dir, scratch / "exam_list.pkl",
                               num_processes=1, report_path=report)
        except PipelineError as err:  # no image could be converted: the report says why
            raise PipelineError("no image could be converted: " + _failure_text(
                scratch, _not_converted(report), err)) from err
        not_converted = _not_converted(report)
        status = self.engine.run(scratch / "exam_list.pkl", png_dir, run_dir)
        if status != EXIT_OK:  # the causes (images not converted) first, then the run's
            raise PipelineError(_failure_text(
                scratch, not_converted + _failure_reasons(run_dir / "failures.csv"),
                f"the pipeline ended with exit status {status}"))
        objects_dir = scratch / "dicom_results"
        status = write_dicom_results(run_dir, objects_dir, calibrations=self.calibration_paths)
        if status != EXIT_OK:
            raise PipelineError("the result objects could not be written: " + _failure_text(
                scratch, _failure_reasons(objects_dir / "failures.csv"),
                f"exit status {status}"))
        written = []
        for name, target in _result_names(objects_dir, study):
            written.append(out_dir / target)
            os.replace(objects_dir / name, written[-1])
        return written

    def failure_objects(self, study, reason, out_dir):
        """A Mammography CAD SR saying that the analysis failed and why, in the study; its
        Image Library lists the study's used images (all its images when none is used)."""
        from ..dicom_results import failure_sr, image_record, study_record

        images = sorted(study.used_images or study.images, key=lambda i: (
            VIEWS.index(i.view) if i.view in VIEWS else len(VIEWS), str(i.path)))
        headers, records = None, []
        for image in images:
            try:
                ds = pydicom.dcmread(image.path, stop_before_pixels=True)
            except Exception:  # a damaged header: the other images still describe the study
                continue
            side, _, view = (image.view or "").partition("-")
            records.append(image_record(ds, side=side or None, view=view or None))
            headers = headers or ds
        if headers is None:
            raise PipelineError("no instance header of the study can be read")
        path = Path(out_dir) / FAILURE_SR_NAME
        failure_sr(study_record(headers), records, reason).save_as(path,
                                                                    enforce_file_format=True)
        return [path]

    def close(self):
        self.engine.close()


class KeptEngine:
    """The one adapter between the service and ``core``: one ``core.engine.Engine`` built at
    start, and ``core.pipeline.run_pipeline`` (``bcc run``, in this process) on each study
    with that engine; ``run_pipeline`` closes the engine it gets, so it gets the kept one
    behind a ``close()`` that does nothing."""

    def __init__(self, settings):
        from ...core.engine import Engine

        self.settings = settings
        self.engine = Engine(settings)

    def run(self, exam_list_path, data_folder, run_dir):
        """``bcc run --num-processes 1`` on one exam list; its exit status (0, 3 or 1)."""
        from ...core.pipeline import run_pipeline

        return run_pipeline(exam_list_path, data_folder, run_dir, self.settings,
                            num_processes=1,
                            engine_factory=lambda _settings, device=None: _Lent(self.engine))

    def close(self):
        self.engine.close()


class _Lent:
    """The kept engine as one run sees it: everything but ``close``."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def close(self):
        pass


def _link_or_copy(source, target):
    """A hard link (same file system: instant), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _result_names(objects_dir, study):
    """``[(file written by write_dicom_results, name in the results folder)]``: ``SR.dcm``
    and ``SC_<view>.dcm`` (``SC_<view>_<n>.dcm`` from a view's second image on), since
    ``bcc dicom`` names the images, and so the objects' files, by patient ID and study
    date."""
    from ..dicom_results.writer import INDEX_NAME

    views = {image.sop_instance_uid: image.view for image in study.used_images}
    names, seen = [], {}
    with open(Path(objects_dir) / INDEX_NAME, newline="") as f:
        for row in csv.DictReader(f):
            stem = "SR" if row["kind"] == "SR" else \
                f"SC_{views.get(row['source_sop_instance_uid'], 'image')}"
            seen[stem] = seen.get(stem, 0) + 1
            names.append((row["file"], f"{stem}_{seen[stem]}.dcm" if seen[stem] > 1
                          else f"{stem}.dcm"))
    return names


def _failure_text(scratch, reasons, otherwise):
    """``<reason>; <reason>...`` (``otherwise`` without reasons): each reason once, the
    paths of the study's scratch folder (removed after the study) made relative to it."""
    reasons = [reason.replace(f"{scratch}{os.sep}", "") for reason in reasons]
    return "; ".join(dict.fromkeys(reasons)) or str(otherwise)


def _not_converted(report):
    """``<side>-<view> image: <reason>`` of each file of the study that ``bcc dicom``'s
    report lists as failed (none without a report)."""
    if not Path(report).is_file():
        return []
    with open(report, newline="") as f:
        return [f"{row['side'] or '?'}-{row['view'] or '?'} image: {row['reason']}"
                for row in csv.DictReader(f) if row["status"] == FAILED]


def _failure_reasons(path):
    """``<stage> <item>: <reason>`` of each row of a failures.csv (none when absent)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [f"{row['stage']} {row['item']}: {row['reason']}" for row in csv.DictReader(f)]


class _Scrub(logging.Filter):
    """Drops the core's progress messages (below WARNING); the others name the study (by
    its hash) and lose its identifiers."""

    def __init__(self, study_id, identifiers):
        super().__init__()
        self.prefix, self.identifiers = f"serve: study {study_id}: ", identifiers

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return False
        record.msg = self.prefix + scrub(record.getMessage(), self.identifiers)
        record.args = None
        return True


@contextmanager
def core_log_scrubbed(study_id, identifiers):
    """While a study is analysed, what the core and the tools log (their logger is
    ``breast_cancer_classifier``; the service's own, a child of it, is not touched) keeps
    only warnings and errors, each line naming the study by its hash, without the values of
    ``identifiers``: ``bcc dicom`` names images by patient ID and study date."""
    logger = logging.getLogger(CORE_LOGGER)
    scrubbing = _Scrub(study_id, identifiers)
    logger.addFilter(scrubbing)
    try:
        yield
    finally:
        logger.removeFilter(scrubbing)


def load_processor(make_settings, calibration_paths=()):
    """The processor of the service: the test hook's when :data:`PROCESSOR_HOOK_ENV` is set,
    else :class:`ModelProcessor` built from ``make_settings()`` (the run settings)."""
    hook = os.environ.get(PROCESSOR_HOOK_ENV, "").strip()
    if not hook:
        return ModelProcessor(make_settings(), calibration_paths)
    module_name, _, attribute = hook.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as err:
        raise SettingsError(f"{PROCESSOR_HOOK_ENV}={hook!r}: cannot load the processor "
                            f"factory 'module:attribute' ({err}); this hook is for tests "
                            "only: unset it") from err
    return factory()
