"""Who does a run's work: the :class:`Executor` seam of ``bcc run``, and this machine's.

``core.pipeline.run_pipeline`` (the driver) does everything that makes a run one run:
settings, run record, the plan, the CSVs. An executor gives it workers for the two passes:
pass 1 (stages 1-2) as a map over images, pass 2 (stages 3-4) as exams run through an
:class:`ExamRunner`. :class:`LocalExecutor` is this machine (a process pool, then this
process); ``tools.cluster.RayExecutor`` is a Ray cluster. Exams are pure functions of the
exam, its plan entry and the models, so the bytes never depend on the executor.
"""

import time
from typing import Iterable, Iterator, Protocol

from .engine import Engine
from .errors import PipelineError
from .exam_list import load_exam_list
from .plan import load_plan
from .run_layout import RunLayout, write_exam_result
from .run_record import RunRecord, worker_name
from .runtime import parallel_map


class Executor(Protocol):
    """What :func:`core.pipeline.run_pipeline` needs from an executor."""

    name: str  # recorded in the run manifest ("local", "ray", ...)

    def device(self, settings):
        """The ``torch.device`` pass 2 runs on, resolved once from ``settings`` (device type,
        GPU number) and what the workers have; the driver passes it to :meth:`run_exams`."""

    def check_output_dir(self, layout, data_folder=None):
        """Raise ``SettingsError`` if the workers cannot write ``layout.root`` or read
        ``data_folder``; called before anything is written there."""

    def map_tasks(self, function, items, desc) -> list:
        """``[function(item) for item in items]``, in order (pass 1: one item per image;
        ``function`` never raises and its results are small)."""

    def run_exams(self, settings, device, expected_runtime, output_dir,
                  indices: Iterable[int]) -> Iterator[dict]:
        """Run the exams ``indices`` of the run in ``output_dir`` (each through an
        :class:`ExamRunner`) and yield each one's manifest entry as it finishes, in any
        order; an exam may come back twice (a retried worker), the driver keeps one."""

    def close(self):
        """Release the workers (called once, when pass 2 ends or fails)."""


class ExamRunner:
    """Pass 2 on one worker: the engine, and the run's ``data.pkl`` and plan read from its
    folder; :meth:`run` takes one exam into its files and returns its manifest entry.

    Every worker writes the same bytes for an exam, each file atomically, so an exam done
    twice (a retried worker) leaves the files of one; only the driver writes the manifest.
    The outputs' digests are those of the bytes as written (no file is read back).
    """

    def __init__(self, settings, device, expected_runtime, output_dir, engine_factory=None):
        self.layout = RunLayout(output_dir, settings.families)
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
        path, digest = write_exam_result(self.layout, result)
        outputs = {**result.heatmap_files, path: digest}
        failed = [name for name in self.layout.families if result.predictions.get(name) is None]
        status = ("failed" if len(failed) == len(self.layout.families) else
                  "partial" if failed else "done")
        return {"exam": index, "status": status, "outputs": self.record.output_entry(outputs),
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

        return resolve_device(settings.device_type, settings.gpu_number)

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
