"""``bcc run``: the whole pipeline on an exam list, in one process, into one output folder.

Pass 1 crops and centers every image (process pool), the plan takes every random draw
(:mod:`plan`), and pass 2 takes each exam through heatmaps and both classifiers in memory
(:class:`engine.Engine`). The folder holds run.sh's files under run.sh's names, plus the
plan, the run record (:mod:`run_record`) and one small result file per exam::

    cropped_images/ (with cropped_exam_list.pkl)   data.pkl   heatmaps/heatmap_{malignant,benign}/
    image_predictions.csv   imageheatmaps_predictions.csv   failures.csv (when anything failed)
    qa.csv (the quality check of the crops, :mod:`quality`)   plan.npz   run_settings.json
    run_manifest.jsonl   exams/<index>.json

Each exam's files are written atomically and then recorded in the manifest, so a killed run
continued with ``--continue`` recomputes only what was not finished, and ends with the bytes
of an uninterrupted run. The CSVs are assembled at the end, in exam-list order.
"""

import json
import shutil
import time
from pathlib import Path

import numpy as np

from . import formats
from .errors import OutputExistsError, PipelineError
from .exam_list import iter_images, load_exam_list, save_exam_list
from .failures import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL
from .hashing import file_sha256
from .plan import load_plan, make_plan, save_plan
from .qa import check_run
from .run_lock import locks_output_dir
from .run_record import (RunRecord, command_line, exam_list_digest, library_versions,
                         worker_name)
from .runtime import log, parallel_map, progress
from .stages.preprocess import CENTER_STAGE, CROP_STAGE, preprocess_exam_list

CROPPED_DIR, CROPPED_LIST = "cropped_images", "cropped_images/cropped_exam_list.pkl"
DATA_PKL, HEATMAPS_DIR, EXAMS_DIR, PLAN_NAME = "data.pkl", "heatmaps", "exams", "plan.npz"
CSV_NAMES = {"image": "image_predictions.csv", "imageheatmaps": "imageheatmaps_predictions.csv"}
FAILURES_NAME = "failures.csv"
QA_NAME = "qa.csv"
PASS1 = "pass1"
# Everything a run writes here: what --overwrite removes (and nothing else in the folder).
RUN_OUTPUTS = (CROPPED_DIR, DATA_PKL, HEATMAPS_DIR, EXAMS_DIR, PLAN_NAME, FAILURES_NAME,
               QA_NAME, "run_settings.json", "run_manifest.jsonl", "visualizations",
               *CSV_NAMES.values())


class RunLayout:
    """Paths of one output folder."""

    def __init__(self, output_dir):
        self.root = Path(output_dir)
        self.cropped_dir = self.root / CROPPED_DIR
        self.cropped_list = self.root / CROPPED_LIST
        self.data_pkl = self.root / DATA_PKL
        self.heatmaps_dir = self.root / HEATMAPS_DIR
        self.plan = self.root / PLAN_NAME
        self.failures = self.root / FAILURES_NAME
        self.qa = self.root / QA_NAME
        self.csvs = {stage: self.root / name for stage, name in CSV_NAMES.items()}

    def exam_file(self, index):
        return self.root / EXAMS_DIR / f"{index}.json"

    def existing_outputs(self):
        return [self.root / name for name in RUN_OUTPUTS if (self.root / name).exists()]


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
    ``device`` is where pass 2 runs (the executor resolves it), the runtime follows the
    runtime rule for it.
    """
    from .errors import CheckpointError
    from .patch_runtime import choose_runtime

    weights = {}
    for role, path in settings.weight_paths().items():
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: weight file not found ({role} model)")
        weights[role] = file_sha256(path)
    return {
        "weights": {role: str(path) for role, path in settings.weight_paths().items()},
        "weights_sha256": weights,
        "exam_list_sha256": exam_list_digest(exam_list),
        "seed": settings.seed, "num_epochs": settings.num_epochs,
        "use_augmentation": settings.use_augmentation, "precision": settings.precision,
        "runtime": choose_runtime(settings.runtime, settings.precision,
                                  str(device).startswith("cpu")),
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
    """Stages 1-2 into ``cropped_images/`` and ``data.pkl``; returns the pass-1 failures."""
    from .failures import FailureReport

    reports = FailureReport(CROP_STAGE), FailureReport(CENTER_STAGE)
    start = time.perf_counter()
    with formats.staged_output_dir(layout.cropped_dir, overwrite=True) as stage:
        cropped, with_centers = preprocess_exam_list(exam_list, data_folder, stage,
                                                     reports=reports, map_tasks=map_tasks)
        save_exam_list(cropped, stage / Path(CROPPED_LIST).name)
    save_exam_list(with_centers, layout.data_pkl)
    failures = [(r.stage, item, reason) for r in reports for item, reason in r.failures]
    record.append({"unit": PASS1, "status": "done", "failures": failures,
                   "images": sum(1 for _ in iter_images(exam_list)),
                   "outputs": record.output_entry([layout.cropped_list, layout.data_pkl]),
                   "seconds": round(time.perf_counter() - start, 3), "worker": worker_name()})
    return failures


def write_exam_result(layout, result):
    """``exams/<index>.json``: both predictions (float32 values, exact) and the failures."""
    data = {"exam": result.index, "failures": [list(f) for f in result.failures]}
    for stage in CSV_NAMES:
        value = result.predictions.get(stage)
        data[stage] = None if value is None else [float(v) for v in value]
    path = layout.exam_file(result.index)
    formats.write_bytes_atomic(path, (json.dumps(data) + "\n").encode())
    return path


def read_exam_result(layout, index):
    return json.loads(layout.exam_file(index).read_text())


def assemble(layout, exam_count, pass1_failures):
    """Write both CSVs in exam-list order and failures.csv; returns the exit status."""
    results = [read_exam_result(layout, i) for i in range(exam_count)]
    for stage, path in layout.csvs.items():
        formats.write_predictions_csv(path, [
            None if r[stage] is None else np.asarray(r[stage], dtype=np.float32)
            for r in results])
    failures = list(pass1_failures) + [tuple(f) for r in results for f in r["failures"]]
    if failures:
        formats.write_csv(layout.failures, ("stage", "item", "reason"), failures)
        log.error("run: %d failure(s); see %s", len(failures), layout.failures)
    elif layout.failures.exists():
        layout.failures.unlink()
    if not failures:
        return EXIT_OK
    nothing = all(r[stage] is None for r in results for stage in CSV_NAMES)
    return EXIT_NOTHING_DONE if nothing else EXIT_PARTIAL


class ExamRunner:
    """Pass 2 on one worker: the engine, and the run's ``data.pkl`` and plan read from its
    folder; :meth:`run` takes one exam into its files and returns its manifest entry.

    Every worker writes the same bytes for an exam, each file atomically, so an exam done
    twice (a retried worker) leaves the files of one; only the driver writes the manifest.
    """

    def __init__(self, settings, device, expected_runtime, output_dir, engine_factory=None):
        from .engine import Engine

        self.layout = RunLayout(output_dir)
        self.record = RunRecord(self.layout.root)
        self.data = load_exam_list(self.layout.data_pkl)
        self.plan = load_plan(self.layout.plan)
        self.engine = (engine_factory or Engine)(settings, device=device)
        if self.engine.runtime_name != expected_runtime:
            self.engine.close()
            raise PipelineError(f"runtime {self.engine.runtime_name} was loaded, "
                                f"{expected_runtime} was expected")

    def run(self, index):
        result = self.engine.run_exam(self.data[index], self.plan[index],
                                      self.layout.cropped_dir, self.layout.heatmaps_dir)
        outputs = result.heatmap_files + [write_exam_result(self.layout, result)]
        failed = [s for s in CSV_NAMES if result.predictions.get(s) is None]
        return {"exam": index, "status": "failed" if len(failed) == 2 else
                "partial" if failed else "done", "outputs": self.record.output_entry(outputs),
                "seconds": round(result.seconds, 3), "finished": round(time.time(), 3),
                "worker": worker_name()}

    def close(self):
        self.engine.close()


class LocalExecutor:
    """This machine: pass 1 in a pool of processes, pass 2 in this process, one exam at a time."""

    name = "local"

    def __init__(self, num_processes=10, engine_factory=None):
        self.num_processes, self.engine_factory = num_processes, engine_factory

    def device(self, settings):
        from .runtime import resolve_device

        return str(resolve_device(settings.device_type, settings.gpu_number))

    def check_output_dir(self, layout, data_folder=None):
        """Nothing to check here: this process reads and writes every file itself."""

    def map_tasks(self, function, items, desc):
        return parallel_map(function, items, self.num_processes, desc=desc)

    def run_exams(self, settings, device, expected_runtime, output_dir, indices):
        """Manifest entries of ``indices``, in order, as each exam finishes."""
        runner = ExamRunner(settings, device, expected_runtime, output_dir,
                            self.engine_factory)
        try:
            for index in indices:
                yield runner.run(index)
        finally:
            runner.close()

    def close(self):
        pass


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
    work: :class:`LocalExecutor` by default (with ``num_processes`` and ``engine_factory``),
    or a cluster's (``tools.cluster``). Only this process writes the run record.
    """
    executor = executor or LocalExecutor(num_processes, engine_factory)
    layout = RunLayout(output_dir)
    record = RunRecord(layout.root)
    exam_list = load_exam_list(exam_list_path)
    selected = (parse_exam_selection(exams, len(exam_list)) if exams
                else list(range(len(exam_list))))
    prepare_output_dir(layout, resume, overwrite)
    new_settings = settings_record(settings, exam_list, executor.device(settings))
    layout.root.mkdir(parents=True, exist_ok=True)
    executor.check_output_dir(layout, data_folder)  # before anything is written there
    if resume and record.read_settings() is not None:
        record.check_same_settings(new_settings)
        log.info("run: continuing the run in %s", layout.root)
    else:
        record.write_settings(new_settings)

    pass1 = record.finished(PASS1) if resume else None
    if pass1 is None:
        pass1_failures = run_pass1(exam_list, data_folder, layout, record, executor.map_tasks)
        check_run(layout.cropped_list, layout.cropped_dir, layout.qa, executor.map_tasks)
    else:
        pass1_failures = [tuple(f) for f in pass1.get("failures", [])]
        log.info("run: stages 1-2 already done; reusing %s", layout.data_pkl)
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
    bar = ExamProgress(len(selected), len(selected) - len(todo))
    recorded = set()
    try:
        # The models load after pass 1, whose workers are forks of this process.
        for entry in executor.run_exams(settings, new_settings["device"],
                                        new_settings["runtime"], layout.root, todo):
            if entry["exam"] in recorded:  # a retried worker's second answer
                continue
            recorded.add(entry["exam"])
            record.append(entry)
            bar.update(entry)
    finally:
        bar.close()
        executor.close()
    finished = record.finished_exams()
    missing = [i for i in range(len(data)) if i not in finished]
    if missing:
        log.warning("run: %d of %d exam(s) done; run again with --continue (without --exams) "
                    "to finish the others and write the CSVs", len(data) - len(missing),
                    len(data))
        return EXIT_PARTIAL
    return assemble(layout, len(data), pass1_failures)


def _same_plan(path, plan):
    """Whether ``path`` holds exactly ``plan`` (a resumed run keeps the file it has)."""
    from .plan import plan_arrays

    try:
        saved = plan_arrays(load_plan(path))
    except PipelineError:
        return False
    fresh = plan_arrays(plan)
    return all(np.array_equal(saved[k], fresh[k]) for k in fresh)
