"""DICOM results a mammography workstation shows: a Mammography CAD SR per exam and an
overlay Secondary Capture per source image, from a ``bcc run`` on ``bcc dicom``'s output.

Modules, one job each: :mod:`.sources` (what ``bcc dicom`` records of the source images, and
reading it back), :mod:`.sr` (the Mammography CAD SR, PS3.16 TID 4000), :mod:`.overlay` (the
Secondary Capture), :mod:`.writer` (all of it over a run folder). ``highdicom`` (the
``clinical`` extra) is imported only by the last three.

Stable API (``bcc dicom-out``, ``bcc run --dicom-out`` and ``bcc serve`` use it):

``write_dicom_results(run_dir, output_dir, *, calibrations=(), overwrite=False) -> int``
    Writes into ``output_dir`` (built aside, swapped in whole; a folder holding anything is
    refused with OutputExistsError unless ``overwrite``):

    - ``SR_exam<i>.dcm``: the Mammography CAD SR of exam ``i`` (the exam's index in the run's
      exam list, zero-padded to the width of the largest index);
    - ``SC_exam<i>_<short file path>.dcm``: the overlay of each source image of exam ``i``;
    - ``dicom_results.csv``: one row per file: ``file, kind (SR|SC), exam, image (short file
      path; empty for the SR), study_instance_uid, series_instance_uid, sop_instance_uid,
      source_sop_instance_uid`` (the image an SC derives from). Every object carries its
      study's Study Instance UID (the source study's, or its pseudonym with
      ``bcc dicom --pseudonymize``): that is how to tell which study a file belongs to;
    - ``failures.csv`` (``stage, item, reason``) when exams failed: they get no SR and no SC.

    ``calibrations``: paths of ``bcc calibrate``'s calibration.json, one per model. Returns
    0 (every exam written), 3 (some exams failed) or 1 (every exam failed); raises the
    package's errors (exit 2: not a ``bcc dicom`` exam list, existing output, calibration of
    another model; exit 1: not a finished run folder).

``failure_sr(study_record, source_records, reason, *, document=None, algorithms=None)``
    A ``pydicom.Dataset``: a Mammography CAD SR in the study saying that the analysis failed
    and why (CAD Processing and Findings Summary "No algorithms succeeded; without
    findings"), for a study that never reached the models. ``study_record`` and
    ``source_records``: :func:`study_record` / :func:`image_record` of the source headers
    (pydicom Datasets), at least one image. Save it with ``ds.save_as(path,
    enforce_file_format=True)``; its SOP Instance UID is new unless ``document`` gives one.

``study_record(ds)``, ``image_record(ds, source_file=None, file=None, side=None, view=None)``
    The records ``bcc dicom`` keeps, from a source header (:mod:`.sources`).

``check_dicom_output(exam_list_path, output_dir, overwrite=False)``
    What ``bcc run --dicom-out`` checks before any work.
"""

from .sources import image_record, study_record

_LAZY = {"write_dicom_results": "writer", "check_dicom_output": "writer",
         "failure_sr": "sr", "cad_sr": "sr"}
__all__ = ["write_dicom_results", "check_dicom_output", "failure_sr", "study_record",
           "image_record"]


def __getattr__(name):  # highdicom is imported only when an object is to be written
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
