"""The seam between the service and the analysis: a ``Processor`` turns a study into result
objects.

The service owns the queue, the files, the database and the sending; a processor only reads
the study's files and writes DICOM objects into the folder it is given. It is built once
(models loaded once), then called by one worker thread, one study at a time:

``process(study, out_dir) -> list[Path]``
    ``study`` is a :class:`Study`. Write every result object (DICOM Part 10 files, each with
    a new SOPInstanceUID, in the study's StudyInstanceUID) directly into ``out_dir`` and
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

Phase 1 (this module) has the seam and a test-only processor (``tests/serve_support.py``,
never part of the package). The test hook: when the environment variable
:data:`PROCESSOR_HOOK_ENV` holds ``module:factory``, :func:`load_processor` imports
``module`` and calls ``factory()`` instead of building :class:`ModelProcessor`; only the
tests set it (with ``tests/`` on PYTHONPATH).

Phase 2, the real :class:`ModelProcessor` (to be written once the engine refactor, issue
22, and the DICOM results, issue 23, are merged):

1. ``__init__(settings, calibration_paths)``: ``settings`` is ``EngineSettings`` from the
   ``bcc run`` flags; the calibrations are checked against the weights with
   ``tools.calibration.calibrations_for_run`` (a bad file stops the start, exit 2); one
   ``core.engine.Engine`` is built (models loaded once) and kept. Today ``run_pipeline``
   takes ``engine_factory(settings, device=...)`` and closes the engine after each run: pass
   a factory that returns the kept engine behind a ``close()`` that does nothing, or the
   long-lived form issue 22 provides.
2. ``process(study, out_dir)``: link the study's used instances into
   ``<study.scratch_dir>/dicom``; convert them with ``tools.dicom.dicom_to_exam_list``
   (the rules of ``bcc dicom``: same PNGs, same exam list, For Processing left out) into
   ``<scratch>/png`` and ``<scratch>/exam_list.pkl`` (``num_processes=1``); then
   ``core.pipeline.run_pipeline(exam list, png folder, <scratch>/run, settings,
   num_processes=1, engine_factory=<the kept engine>)``. A status other than 0 raises
   ``PipelineError`` with the run's failure reasons. Then
   ``tools.dicom_results.write_dicom_results(<scratch>/run, out_dir, calibrations=...)``
   writes the Mammography CAD SR and the Secondary Captures; return the files in
   ``out_dir``. The probabilities are then those of ``bcc run`` on the files that
   ``bcc dicom`` converts (tests to add to ``tests/test_serve_orthanc.py``: the SR's values
   equal ``bcc run`` on the same files; ``dciodvfy`` finds no error in the objects).
3. ``failure_objects(study, reason, out_dir)``: ``tools.dicom_results.failure_sr(study
   record, source records, reason)`` from the headers of ``study.images``, saved into
   ``out_dir``.
4. ``close()``: close the engine.
5. ``benchmarks/bench_serve.py --processor model`` (with the parity kit's weights) for the
   figures of docs/serve.md.
"""

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import SettingsError

PROCESSOR_HOOK_ENV = "BCC_SERVE_TEST_PROCESSOR"


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


class ModelProcessor:
    """The real analysis: NOT WRITTEN YET (phase 2 of issue 25, see the module docstring).

    Building it raises NotImplementedError, so ``bcc serve`` refuses to start rather than
    send anything that is not the model's output.
    """

    def __init__(self, settings=None, calibration_paths=()):
        raise NotImplementedError(
            "bcc serve: the model processor is not written yet (issue 25, phase 2: it needs "
            "the engine refactor of issue 22 and the DICOM results of issue 23); the service "
            "cannot analyse studies in this version")

    def process(self, study, out_dir):
        raise NotImplementedError("ModelProcessor.process: phase 2 of issue 25")

    def failure_objects(self, study, reason, out_dir):
        raise NotImplementedError("ModelProcessor.failure_objects: phase 2 of issue 25")

    def close(self):
        raise NotImplementedError("ModelProcessor.close: phase 2 of issue 25")


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
