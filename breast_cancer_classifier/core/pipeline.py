"""``bcc run``: the whole pipeline on an exam list, in one process, into one output folder.

Pass 1 crops and centers every image and takes the quality check's measures on each crop
(one map over the images, by the executor: :mod:`executors`), the plan takes every random
draw (:mod:`plan`), and pass 2 takes each exam through heatmaps and the classifier
families in memory (:class:`engine.Engine`). The folder (:mod:`run_layout`) holds run.sh's
files under run.sh's names, plus the plan, the run record (:mod:`run_record`) and one small
result file per exam.

Each exam's files are written atomically and then recorded in the manifest, so a killed run
continued with ``--continue`` recomputes only what was not finished, and ends with the bytes
of an uninterrupted run. The CSVs are assembled at the end, in exam-list order.
"""

import shutil
import time
from pathlib import Path

import numpy as np

from . import formats
from .errors import OutputExistsError, PipelineError
from .exam_list import iter_images, load_exam_list, save_exam_list
from .executors import LocalExecutor
from .failures import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL
from .hashing import file_sha256
from .plan import load_plan, make_plan, save_plan
from .qa import check_run
from .run_lock import locks_output_dir
from .run_layout import CROPPED_LIST, RunLayout, read_exam_result
from .run_record import (RunRecord, command_line, exam_list_digest, library_versions,
                         worker_name)
from .runtime import log, progress
from .stages.preprocess import CENTER_STAGE, CROP_STAGE, preprocess_exam_list

PASS1 = "pass1"


def parse_exam_selection(text, count):
    """``"0,3-5"`` → sorted exam indices; refuses indices outside ``[0, count)``."""
    indices = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            start, stop = int(first), int(last or first)
        except ValueError:
            raise PipelineError(f"--exams: {part!r} is not an index or a range like 3-5") from None
        if not 0 <= start <= stop < count:
            raise PipelineError(f"--exams: {part!r} is outside the exam list's 0-{count - 1}")
        indices.update(range(start, stop + 1))
    return sorted(indices)


def settings_record(settings, exam_list, device):
    """What ``run_settings.json`` holds (the binding settings of run_record, and more).

    Worked out before any model is loaded (pass 1 forks its workers from this process);
    ``device`` (a ``torch.device``) is where pass 2 runs (the executor resolves it), the
    runtime follows the runtime rule for it. ``weights`` has the patch model's and each
    classifier family's.
    """
    from .errors import CheckpointError
    from .patch_runtime import choose_runtime

    paths = settings.weight_paths()
    weights = {}
    for role, path in paths.items():
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: weight file not found ({role} model)")
        weights[role] = file_sha256(path)
    return {
        "weights": {role: str(path) for role, path in paths.items()},
        "weights_sha256": weights,
        "exam_list_sha256": exam_list_digest(exam_list),
        "seed": settings.seed, "num_epochs": settings.num_epochs,
        "use_augmentation": settings.use_augmentation, "precision": settings.precision,
        "runtime": choose_runtime(settings.runtime, settings.precision, device.type == "cpu"),
        "device": str(device),
        "batch_size": settings.batch_size, "heatmap_batch_size": settings.heatmap_batch_size,
        "versions": library_versions(), "command": command_line(),
    }


def prepare_output_dir(layout, resume, overwrite):
    """Refuse an existing run without --continue/--overwrite; clear it with --overwrite."""
    existing = layout.existing_outputs()
    if not existing or resume:
        return
    if not overwrite:
        raise OutputExistsError(
            f"{layout.root}: holds the outputs of an earlier run ({existing[0].name}, ...); "
            "pass --continue to resume it or --overwrite to replace it")
    for path in existing:
        log.info("run: removing %s, left by an earlier run", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def run_pass1(exam_list, data_folder, layout, record, map_tasks):
    """Stages 1-2 into ``cropped_images/`` and ``data.pkl``, and ``qa.csv`` from the measures
    the same workers took on the crops; returns the pass-1 failures."""
    from .failures import FailureReport

    reports = FailureReport(CROP_STAGE), FailureReport(CENTER_STAGE)
    measured = {}
    start = time.perf_counter()
    with formats.staged_output_dir(layout.cropped_dir, overwrite=True) as stage:
        cropped, with_centers = preprocess_exam_list(exam_list, data_folder, stage,
                                                     reports=reports, map_tasks=map_tasks,
                                                     measured=measured)
        save_exam_list(cropped, stage / Path(CROPPED_LIST).name)
    save_exam_list(with_centers, layout.data_pkl)
    failures = [(r.stage, item, reason) for r in reports for item, reason in r.failures]
    record.append({"unit": PASS1, "status": "done", "failures": failures,
                   "images": sum(1 for _ in iter_images(exam_list)),
                   "outputs": record.output_entry([layout.cropped_list, layout.data_pkl]),
                   "seconds": round(time.perf_counter() - start, 3), "worker": worker_name()})
    check_run(cropped, measured, layout.qa)
    return failures


def assemble(layout, exam_count, pass1_failures):
    """Write each family's CSV in exam-list order and failures.csv; returns the exit status."""
    results = [read_exam_result(layout, i) for i in range(exam_count)]
    for name, path in layout.csvs.items():
        formats.write_predictions_csv(path, [
            None if r[name] is None else np.asarray(r[name], dtype=np.float32)
            for r in results])
    failures = list(pass1_failures) + [tuple(f) for r in results for f in r["failures"]]
    if failures:
        formats.write_csv(layout.failures, ("stage", "item", "reason"), failures)
        log.error("run: %d failure(s); see %s", len(failures), layout.failures)
    elif layout.failures.exists():
        layout.failures.unlink()
    if not failures:
        return EXIT_OK
    nothing = all(r[name] is None for r in results for name in layout.families)
    return EXIT_NOTHING_DONE if nothing else EXIT_PARTIAL


class ExamProgress:
    """Pass 2's progress on stderr: exams done, failed and remaining, and exams per minute."""

    def __init__(self, total, initial):
        self.failed, self.count, self.start = 0, 0, time.perf_counter()
        self.bar = progress(total=total, initial=initial, desc="Exams", unit="exam")
        self.remaining = total - initial

    def update(self, entry):
        self.count += 1
        self.remaining -= 1
        self.failed += entry["status"] != "done"
        minutes = (time.perf_counter() - self.start) / 60
        self.bar.set_postfix(failed=self.failed, remaining=self.remaining,
                             per_min=f"{self.count / minutes:.2f}" if minutes else "-",
                             refresh=False)
        self.bar.update()

    def close(self):
        self.bar.close()


@locks_output_dir  # a second run on the folder exits 2 (core.run_lock)
def run_pipeline(exam_list_path, data_folder, output_dir, settings, *, num_processes=10,
                 resume=False, overwrite=False, exams=None, engine_factory=None,
                 executor=None):
    """The ``bcc run`` command; returns the exit status (0, 3 or 1; errors raise).

    ``exams`` (``"0,3-5"``) runs pass 2 on those exams only; the CSVs are written once every
    exam is finished (a later ``--continue`` completes the others). ``executor`` runs the
    work: an :class:`executors.Executor`, :class:`executors.LocalExecutor` by default (with
    ``num_processes`` and ``engine_factory``) or a cluster's (``tools.cluster``). Only this
    process writes the run record.
    """
    executor = executor or LocalExecutor(num_processes, engine_factory)
    layout = RunLayout(output_dir, settings.families)
    record = RunRecord(layout.root)
    exam_list = load_exam_list(exam_list_path)
    selected = (parse_exam_selection(exams, len(exam_list)) if exams
                else list(range(len(exam_list))))
    prepare_output_dir(layout, resume, overwrite)
    device = executor.device(settings)  # resolved once, passed on to every worker
    new_settings = settings_record(settings, exam_list, device)
    layout.root.mkdir(parents=True, exist_ok=True)
    executor.check_output_dir(layout, data_folder)  # before anything is written there
    if resume and record.read_settings() is not None:
        record.check_same_settings(new_settings)
        log.info("run: continuing the run in %s", layout.root)
    else:
        record.write_settings(new_settings)

    pass1_failures = _pass1(exam_list, data_folder, layout, record, executor, resume)
    data = load_exam_list(layout.data_pkl)  # what the stage scripts would read
    plan = make_plan(data, settings.seed, settings.num_epochs, settings.use_augmentation)
    if not (layout.plan.is_file() and _same_plan(layout.plan, plan)):
        save_plan(plan, layout.plan)

    done = record.finished_exams() if resume else {}
    todo = [i for i in selected if i not in done]
    if resume:
        record.append({"event": "continue", "reused": sorted(i for i in selected if i in done),
                       "recomputing": todo, "command": command_line(), "worker": worker_name(),
                       "engine": executor.name})
    # The models load after pass 1, whose workers are forks of this process.
    _pass2(executor, record, ExamProgress(len(selected), len(selected) - len(todo)),
           (settings, device, new_settings["runtime"], layout.root, todo))
    finished = record.finished_exams()
    missing = [i for i in range(len(data)) if i not in finished]
    if missing:
        log.warning("run: %d of %d exam(s) done; run again with --continue (without --exams) "
                    "to finish the others and write the CSVs", len(data) - len(missing),
                    len(data))
        return EXIT_PARTIAL
    return assemble(layout, len(data), pass1_failures)


def _pass1(exam_list, data_folder, layout, record, executor, resume):
    """Pass 1, or its failures from the manifest when a resumed run has done it already."""
    pass1 = record.finished(PASS1) if resume else None
    if pass1 is None:
        return run_pass1(exam_list, data_folder, layout, record, executor.map_tasks)
    log.info("run: stages 1-2 already done; reusing %s", layout.data_pkl)
    return [tuple(f) for f in pass1.get("failures", [])]


def _pass2(executor, record, bar, run_exams_arguments):
    """Record each exam's manifest entry once, as the executor hands it back."""
    recorded = set()
    try:
        for entry in executor.run_exams(*run_exams_arguments):
            if entry["exam"] in recorded:  # a retried worker's second answer
                continue
            recorded.add(entry["exam"])
            record.append(entry)
            bar.update(entry)
    finally:
        bar.close()
        executor.close()


def _same_plan(path, plan):
    """Whether ``path`` holds exactly ``plan`` (a resumed run keeps the file it has)."""
    from .plan import plan_arrays

    try:
        saved = plan_arrays(load_plan(path))
    except PipelineError:
        return False
    fresh = plan_arrays(plan)
    return all(np.array_equal(saved[k], fresh[k]) for k in fresh)
