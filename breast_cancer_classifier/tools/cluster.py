"""``bcc run --engine ray``: a cohort's work spread over a Ray cluster, with the serial bytes.

The driver (this process) does what ``core.pipeline.run_pipeline`` does for any executor:
settings, run record, the plan and the CSVs. :class:`RayExecutor` implements the
``core.executors.Executor`` protocol and gives it the workers:

* pass 1 (stages 1-2) as Ray CPU tasks, one per image, for the whole cohort (a barrier:
  the plan needs every crop's shape);
* pass 2 (stages 3-4) as a Ray Data actor pool (``map_batches`` with a class and
  ``ActorPoolStrategy``): each actor builds the engine once (:class:`core.executors.ExamRunner`)
  and takes exams through it; exams stream back to the driver, which writes the manifest.

Exams are pure functions of the exam, its plan entry and the models, so the bytes do not
depend on which actor does an exam, or in which order. Workers write each file atomically
and identically, so an exam done twice by a retried actor leaves one set of files, and the
driver records each exam once. The output folder (and the data folder for pass 1) must be
the same shared path on every node; :meth:`RayExecutor.check_output_dir` refuses one that a
node cannot write.
"""

import json
import uuid
from pathlib import Path

import numpy as np

from ..core.errors import SettingsError
from ..core.runtime import log, progress

INSTALL_HINT = ("--engine ray needs Ray Data: pip install 'breast-cancer-classifier[cluster]' "
                "(or pip install 'ray[data]')")
PASS1_RETRIES = 3  # a pass-1 task whose worker process dies is run again this often
CPU_BATCH_EXAMS, GPU_BATCH_EXAMS = 1, 4  # an exam is minutes on CPUs, seconds on a GPU


def import_ray():
    """``ray`` with Ray Data, or SettingsError (exit 2) saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise SettingsError(f"{INSTALL_HINT} ({err})") from None
    return ray


class RayExecutor:
    """Pass 1 as Ray tasks, pass 2 on a pool of engine actors; see the module docstring.

    ``address``: ``"auto"`` or ``HOST:PORT`` joins a running cluster (the driver runs on one
    of its nodes); None starts a private Ray on this machine (no dashboard, the CPUs and
    GPUs it finds; ``init_options`` are passed to ``ray.init``). ``workers``,
    ``batch_exams`` and ``threads_per_worker`` default from the cluster's resources
    (:meth:`plan_workers`).
    """

    name = "ray"

    def __init__(self, address=None, workers=None, batch_exams=None, threads_per_worker=None,
                 init_options=None):
        ray = self.ray = import_ray()
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            options = dict(logging_level="WARNING", **(init_options or {}))
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(include_dashboard=False, **options)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours says exams done, failed and remaining
        self.requested = (workers, batch_exams, threads_per_worker)
        self.use_gpus = False

    # ----------------------------------------------------------------------- resources
    def device(self, settings):
        """``torch.device("cuda")`` when GPUs are asked for and the cluster has some (each
        actor sees its own GPU as the current one), else the CPU (with run.sh's message when a
        GPU was asked for)."""
        import torch

        gpus = int(self.ray.cluster_resources().get("GPU", 0))
        self.use_gpus = settings.device_type == "gpu" and gpus > 0
        if settings.device_type == "gpu" and not gpus:
            log.warning("no GPU in the Ray cluster; the workers run on CPUs")
        return torch.device("cuda" if self.use_gpus else "cpu")

    def plan_workers(self):
        """``(workers, batch_exams, threads_per_worker)`` from the flags and the cluster.

        With GPUs: one actor per GPU, the CPUs shared out among them. On CPUs: one actor per
        node using all its cores, the thread count of a serial run on that node.
        """
        workers, batch_exams, threads = self.requested
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes] or [1]
        if self.use_gpus:
            gpus = int(self.ray.cluster_resources().get("GPU", 1))
            workers = workers or gpus
            threads = threads or max(1, sum(node_cpus) // max(1, workers))
            batch_exams = batch_exams or GPU_BATCH_EXAMS
        else:
            threads = threads or max(1, min(node_cpus))
            workers = workers or max(1, sum(c // threads for c in node_cpus))
            batch_exams = batch_exams or CPU_BATCH_EXAMS
        return workers, batch_exams, threads

    # ----------------------------------------------------------------------- shared folder
    def check_output_dir(self, layout, data_folder=None):
        """Refuse (SettingsError, exit 2) an output folder that a node cannot write, or a data
        folder it cannot read: on a cluster both must be the same shared path everywhere."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(num_cpus=0)(_check_paths)
        calls = []
        for node in self.ray.nodes():
            if not node.get("Alive"):
                continue
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            calls.append((node.get("NodeManagerAddress", node["NodeID"]),
                          probe.options(scheduling_strategy=strategy).remote(
                              str(layout.root), None if data_folder is None else str(data_folder))))
        problems = [f"node {address}: {problem}" for address, ref in calls
                    for problem in [self.ray.get(ref)] if problem]
        if problems:
            raise SettingsError("; ".join(problems) + ". On a cluster the output and data "
                                "folders must be one shared path, the same on every node")

    # ----------------------------------------------------------------------- the passes
    def map_tasks(self, function, items, desc):
        """``[function(item) for item in items]`` as Ray tasks (1 CPU each), in order."""
        remote = self.ray.remote(num_cpus=1, max_retries=PASS1_RETRIES)(function)
        refs = [remote.remote(item) for item in items]
        bar = progress(total=len(refs), desc=desc, unit="image")
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=min(len(pending), 64),
                                           timeout=1.0)
            bar.update(len(ready))
        bar.close()
        return self.ray.get(refs)

    def run_exams(self, settings, device, expected_runtime, output_dir, indices):
        """Manifest entries of ``indices`` as the actors finish them (any order)."""
        if not indices:
            return
        workers, batch_exams, threads = self.plan_workers()
        log.info("ray: %d worker(s), %d thread(s) each, %d exam(s) per batch, on %s",
                 workers, threads, batch_exams, device)
        data = self.ray.data
        exams = data.from_items([{"exam": int(i)} for i in indices])
        results = exams.map_batches(
            _ExamWorker, batch_size=batch_exams, batch_format="numpy",
            compute=data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs=dict(settings=settings, device=device,
                                       expected_runtime=expected_runtime,
                                       output_dir=str(output_dir), threads=threads),
            num_cpus=threads, num_gpus=1 if self.use_gpus else 0,
            # A worker process that dies is started again and its exams are run again.
            max_restarts=-1, max_task_retries=-1)
        for row in results.iter_rows():
            yield json.loads(row["entry"])

    def close(self):
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()


class _ExamWorker:
    """One pass-2 actor: the engine built once, then batches of exam indices."""

    def __init__(self, settings, device, expected_runtime, output_dir, threads):
        import torch

        from ..core.executors import ExamRunner

        torch.set_num_threads(threads)
        self.runner = ExamRunner(settings, device, expected_runtime, output_dir)

    def __call__(self, batch):
        entries = [json.dumps(self.runner.run(int(index))) for index in batch["exam"]]
        return {"exam": np.asarray(batch["exam"]), "entry": np.asarray(entries, dtype=object)}


def _check_paths(output_dir, data_folder):
    """On one node: a message if ``output_dir`` cannot be written or ``data_folder`` read."""
    import socket

    host = socket.gethostname()
    if data_folder is not None and not Path(data_folder).is_dir():
        return f"{data_folder}: no such data folder on {host}"
    probe = Path(output_dir) / f".write-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return f"{output_dir}: cannot write there from {host} ({err.strerror or err})"
    return None
