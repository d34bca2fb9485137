"""``bcc serve`` benchmark: studies per hour and latency per study through the service,
beside the processor called directly on the same studies (and, with ``--processor model``,
beside ``bcc dicom`` + ``bcc run --dicom-out``); and the memory of the service while its
queue grows.

Usage (from the repository root; needs the `clinical` extra, which `make test` installs)::

    .venv/bin/python benchmarks/bench_serve.py [--studies 40] [--parallel 4]
        [--processor-seconds 0 2] [--rss-instances 200]
    .venv/bin/python benchmarks/bench_serve.py --processor model [--studies 4]
        [--weights ../shared/parity/weights] [--num-epochs 1] [--device-type cpu]

``--processor test`` (the default): synthetic four-view studies (tests/serve_support.py: 32 x
24 pixels, a few KB each) and the test processor, which decodes the images and writes one
Secondary Capture; ``--processor-seconds`` adds a sleep per study that stands in for the
analysis (0: the service overhead alone).

``--processor model``: the real analysis (``ModelProcessor``) with ``--weights`` (default:
the parity kit's random-but-healthy weights in their original formats); four-view studies of
300 x 300 pixels (tests/dicom_files.py ``screening_study``). A row ``bcc run`` is added:
``bcc dicom`` then ``bcc run --dicom-out`` (``--num-processes 1``) on all the studies at
once, as subprocesses, wall time per study (its one model load and start-up included).

Studies are sent by ``--parallel`` pynetdicom associations at once to a service in this
process, whose results go to a recording pynetdicom node; quiet period 0.2 s.

* ``direct``: the processor's ``process`` on each study, one after the other (seconds per
  study and studies per hour);
* ``service``: the same studies through the service. Throughput is counted from the first
  study being complete to the last study's results being accepted (the quiet period, a
  configured wait, is left out); ``latency`` is complete -> accepted for a study sent alone
  (median of ``--single`` studies sent one at a time), and the median and 95th percentile
  under load, where it includes the wait in the queue;
* ``intake``: instances per second taken in (stored, fsynced, recorded) while the studies
  under load were sent: when the analysis is faster than that, intake is the bound;
* ``overhead``: service seconds per study under load minus direct seconds per study, and
  that as a share of the direct time (model: also against ``bcc run``; target <= 5%).

Memory (test processor only): ``bcc serve`` as a subprocess whose processor is kept busy
(so the queue only grows) receives ``--rss-instances`` instances of 512 x 512 pixels (512 KB
each); its resident memory is read from /proc after the first 20 and after all of them.
"""

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import pydicom  # noqa: E402

from breast_cancer_classifier.core.views import VIEWS  # noqa: E402
from breast_cancer_classifier.tools.serve.intake import MG_FOR_PRESENTATION  # noqa: E402
from breast_cancer_classifier.tools.serve.naming import study_hash  # noqa: E402
from breast_cancer_classifier.tools.serve.processor import SourceImage, Study  # noqa: E402
from breast_cancer_classifier.tools.serve.service import Service  # noqa: E402
from dicom_files import screening_study  # noqa: E402
from serve_support import (RecordingSCP, ServeProcess, SyntheticProcessor,  # noqa: E402
                           free_port, quick_config, send_files, wait_for, write_study)

PARITY_WEIGHTS = REPO.parent / "shared" / "parity" / "weights"
WEIGHT_FILES = {"patch": "patch.p", "image": "image_split.p",
                "imageheatmaps": "imageheatmaps_split.p"}  # the parity kit's names


def weight_flags(args):
    """The analysis flags of ``bcc run`` for ``--processor model``."""
    flags = ["--device-type", args.device_type, "--num-epochs", str(args.num_epochs)]
    for role, name in WEIGHT_FILES.items():
        flags += [f"--{role}-model-path", str(Path(args.weights) / name)]
    return flags


def engine_settings(args):
    from breast_cancer_classifier.core.engine import EngineSettings

    return EngineSettings(device_type=args.device_type, num_epochs=args.num_epochs,
                          **{f"{role}_model_path": str(Path(args.weights) / name)
                             for role, name in WEIGHT_FILES.items()})


def make_processor(args, seconds):
    if args.processor == "test":
        return SyntheticProcessor(seconds)
    from breast_cancer_classifier.tools.serve.processor import ModelProcessor

    return ModelProcessor(engine_settings(args))


def make_studies(args, folder, count):
    """``count`` studies: ``{"study_uid", "files"}`` each, tiny ones for the test processor,
    300 x 300-pixel ones for the model."""
    if args.processor == "test":
        return [write_study(folder, k, seed=k) for k in range(count)]
    studies = []
    for k in range(count):
        uid = f"1.2.826.0.1.3680043.99.{31000 + k}"
        files = screening_study(folder / f"s{k}", uid, f"BENCH{k:04d}", seed=4 * k,
                                PatientName=f"Bench^{k:04d}")
        studies.append({"study_uid": uid, "files": list(files.values())})
    return studies


def study_input(study, scratch):
    images = []
    for path, view in zip(study["files"], VIEWS):  # both makers write them in VIEWS order
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        images.append(SourceImage(path, uid, MG_FOR_PRESENTATION, view, True, ""))
    return Study(study_hash(study["study_uid"]), study["study_uid"], tuple(images), scratch)


def cpu_seconds(children=False):
    """CPU seconds (user + system) used so far by this process (all its threads), or by its
    finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def link_studies(studies, dicom):
    for k, study in enumerate(studies):
        for path in study["files"]:
            (dicom / f"s{k}").mkdir(parents=True, exist_ok=True)
            os.link(path, dicom / f"s{k}" / Path(path).name)


def run_bcc_run(args, studies, folder):
    """``bcc dicom`` then ``bcc run --dicom-out`` on all ``studies`` (subprocesses, one
    after the other): ``(wall s/study, CPU s/study, [wall s of each command])``."""
    dicom = folder / "dicom"
    link_studies(studies, dicom)
    bcc = [sys.executable, "-m", "breast_cancer_classifier.bcc"]
    commands = [bcc + ["dicom", "--dicom-folder", str(dicom), "--output-data-folder",
                       str(folder / "png"), "--exam-list-path", str(folder / "exams.pkl"),
                       "--num-processes", "1"],
                bcc + ["run", "--exam-list", str(folder / "exams.pkl"), "--data-folder",
                       str(folder / "png"), "--output-dir", str(folder / "run"),
                       "--dicom-out", str(folder / "dcm"), "--num-processes", "1",
                       *weight_flags(args)]]
    seconds, cpu = [], cpu_seconds(children=True)
    for command in commands:
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - started)
    return (sum(seconds) / len(studies), (cpu_seconds(children=True) - cpu) / len(studies),
            seconds)


def in_thread(work):
    """``work()`` in a thread of its own, as the service's worker runs the analysis: PyTorch
    on the CPU can take very different times for the same work in the main thread and in
    another one (on the 2-CPU VM of docs/serve.md, under load, about twice as long in the
    main thread). Returns its ``(wall, CPU)`` seconds."""
    done = []

    def timed():
        started, used = time.perf_counter(), cpu_seconds()
        work()
        done.append((time.perf_counter() - started, cpu_seconds() - used))

    thread = threading.Thread(target=timed, name="bench")
    thread.start()
    thread.join()
    if not done:
        raise RuntimeError("the benchmark's work failed (its error is above)")
    return done[0]


def run_bcc_run_in_thread(args, studies, folder):
    """What ``bcc dicom`` + ``bcc run --dicom-out`` do, through the same functions, in this
    process but in a thread (see :func:`in_thread`), one model load included:
    ``(wall s/study, CPU s/study)``."""
    from breast_cancer_classifier.core.pipeline import run_pipeline
    from breast_cancer_classifier.tools.dicom import dicom_to_exam_list
    from breast_cancer_classifier.tools.dicom_results import write_dicom_results

    link_studies(studies, folder / "dicom")

    def work():
        dicom_to_exam_list(folder / "dicom", folder / "png", folder / "exams.pkl",
                           num_processes=1)
        assert run_pipeline(folder / "exams.pkl", folder / "png", folder / "run",
                            engine_settings(args), num_processes=1) == 0
        assert write_dicom_results(folder / "run", folder / "dcm") == 0

    wall, cpu = in_thread(work)
    return wall / len(studies), cpu / len(studies)


def run_direct(processor, studies, folder, warm_up=()):
    """``process`` on each study in turn (in a thread, see :func:`in_thread`), after the
    ``warm_up`` studies (untimed: the first forward passes build caches): ``(wall seconds,
    CPU seconds)`` of each timed study."""
    wall, cpu = [], []

    def work():
        for k, study in enumerate([*warm_up, *studies]):
            out, scratch = folder / f"out{k}", folder / f"scratch{k}"
            out.mkdir(parents=True)
            scratch.mkdir()
            started, used = time.perf_counter(), cpu_seconds()
            processor.process(study_input(study, scratch), out)
            if k >= len(warm_up):
                wall.append(time.perf_counter() - started)
                cpu.append(cpu_seconds() - used)

    in_thread(work)
    return wall, cpu


def run_service(processor, studies, single, parallel, folder):
    """``(seconds per study under load, single latencies, loaded latencies, instances per
    second taken in under load, CPU seconds per study under load)``."""
    dest = RecordingSCP().start()
    service = Service(quick_config(folder / "work", dest.destination, max_queue=len(studies)
                                   + single, study_quiet_seconds=0.2), processor).start()
    try:
        for k, study in enumerate(studies[:single]):  # one at a time: latency alone
            send_files(study["files"], service.port)
            wait_for(lambda: service.metrics.finished_count() >= k + 1, 600)
        loaded = studies[single:]
        started, cpu = time.perf_counter(), cpu_seconds()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda group: [send_files(s["files"], service.port) for s in group],
                          [loaded[i::parallel] for i in range(parallel)]))
        intake = 4 * len(loaded) / (time.perf_counter() - started)
        wait_for(lambda: service.metrics.finished_count() >= len(studies), 3600)
        cpu = (cpu_seconds() - cpu) / len(loaded)
        rows = {r["id"]: r for r in service.state.studies()}
    finally:
        service.stop()
        dest.stop()
    latency = [rows[study_hash(s["study_uid"])] for s in studies]
    alone = [r["finished_at"] - r["completed_at"] for r in latency[:single]]
    under_load = latency[single:]
    span = (max(r["finished_at"] for r in under_load)
            - min(r["completed_at"] for r in under_load))
    return span / len(under_load), alone, [r["finished_at"] - r["completed_at"]
                                           for r in under_load], intake, cpu


def rss_kib(pid, field="VmRSS"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_memory(instances, folder):
    """Resident memory (MiB) of ``bcc serve`` after 20 and after ``instances`` instances,
    its processor busy so that every study stays queued; and its peak."""
    dest = RecordingSCP().start()
    port = free_port()
    serve = ServeProcess(folder / "work", port, dest.destination, folder / "serve.log",
                         "--max-queue", instances, BCC_TEST_PROCESSOR_SECONDS="3600")
    studies = [write_study(folder / "big", k, shape=(512, 512)) for k in range(instances // 4)]
    try:
        serve.start()
        send_files(studies[0]["files"], port)  # the worker takes it and stays busy
        wait_for(lambda: "analysed" in serve.log() or "complete" in serve.log(), 60)
        for study in studies[1:5]:
            send_files(study["files"], port)
        early = rss_kib(serve.proc.pid)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda s: send_files(s["files"], port), studies[5:]))
        late, peak = rss_kib(serve.proc.pid), rss_kib(serve.proc.pid, "VmHWM")
    finally:
        serve.kill()  # safe at any moment; SIGTERM would wait for the busy study
        dest.stop()
    return early / 1024, late / 1024, peak / 1024, len(studies) * 4


def pct(value, reference):
    return f"{100 * (value - reference) / reference:+.1f}%"


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=None,
                        help="studies sent under load (default 40; --processor model: 4)")
    parser.add_argument("--single", type=int, default=None,
                        help="studies sent one at a time first, for the latency alone "
                        "(default 5; --processor model: 1)")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--processor", choices=["test", "model"], default="test")
    parser.add_argument("--processor-seconds", type=float, nargs="+", default=[0.0, 2.0],
                        help="test processor: sleep per study standing in for the analysis")
    parser.add_argument("--weights", default=str(PARITY_WEIGHTS),
                        help="model: folder of patch.p, image_split.p, imageheatmaps_split.p")
    parser.add_argument("--num-epochs", type=int, default=1, help="model: as bcc run")
    parser.add_argument("--device-type", default="cpu", help="model: as bcc run")
    parser.add_argument("--rss-instances", type=int, default=200,
                        help="test processor only (0: no memory figure)")
    args = parser.parse_args()
    model = args.processor == "model"
    args.studies = args.studies or (4 if model else 40)
    args.single = args.single if args.single is not None else (1 if model else 5)
    os.environ.setdefault("BCC_NO_PROGRESS", "1")
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), "
          f"Python {platform.python_version()}; processor: {args.processor}"
          + (f" (weights {args.weights}, {args.device_type}, --num-epochs "
             f"{args.num_epochs})" if model else ""))
    rows = [("analysis s", "studies", "direct s/study", "direct studies/h",
             "service s/study", "service studies/h", "latency alone (median)",
             "latency loaded (median / p95)", "intake inst/s", "overhead s/study",
             "overhead %")]
    model_rows = []
    for seconds in ([None] if model else args.processor_seconds):
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
            folder = Path(tmp)
            studies = make_studies(args, folder / "in", args.studies + args.single)
            processor = make_processor(args, seconds)
            try:
                direct, direct_cpu = (statistics.mean(v) for v in run_direct(
                    processor, studies[args.single:], folder / "direct",
                    studies[:args.single] if model else ()))
            finally:
                processor.close()
            per_study, alone, loaded, intake, service_cpu = run_service(
                make_processor(args, seconds), studies, args.single, args.parallel, folder)
            if model:  # last: the ONNX export cache is warm for them too
                threaded = run_bcc_run_in_thread(args, studies[args.single:],
                                                 folder / "bcc_run_thread")
                bcc_run = run_bcc_run(args, studies[args.single:], folder / "bcc_run")
                model_rows = [
                    ("", "bcc dicom + bcc run", "the same in a thread", "direct", "service"),
                    ("wall s/study", f"{bcc_run[0]:.2f}", f"{threaded[0]:.2f}",
                     f"{direct:.2f}", f"{per_study:.2f}"),
                    ("CPU s/study", f"{bcc_run[1]:.2f}", f"{threaded[1]:.2f}",
                     f"{direct_cpu:.2f}", f"{service_cpu:.2f}"),
                    ("service vs it, wall", pct(per_study, bcc_run[0]),
                     pct(per_study, threaded[0]), pct(per_study, direct), ""),
                    ("service vs it, CPU", pct(service_cpu, bcc_run[1]),
                     pct(service_cpu, threaded[1]), pct(service_cpu, direct_cpu), "")]
                commands = bcc_run[2]
        p95 = sorted(loaded)[int(0.95 * (len(loaded) - 1))]
        rows.append(("model" if model else f"{seconds:g}", args.studies, f"{direct:.3f}",
                     f"{3600 / direct:.0f}", f"{per_study:.3f}", f"{3600 / per_study:.0f}",
                     f"{statistics.median(alone):.2f} s",
                     f"{statistics.median(loaded):.2f} / {p95:.2f} s", f"{intake:.0f}",
                     f"{per_study - direct:+.3f}", pct(per_study, direct)))
    table(rows)
    if model_rows:
        print(f"\nthe same {args.studies} studies (bcc dicom {commands[0]:.1f} s + bcc run "
              f"--dicom-out {commands[1]:.1f} s in all, start-up and one model load "
              "included; the same through the same functions in a thread of this process, "
              "one model load included; direct: models loaded, after one study to warm up):")
        table(model_rows)
    if args.rss_instances and not model:
        with tempfile.TemporaryDirectory(prefix="bench-serve-rss-") as tmp:
            early, late, peak, sent = run_memory(args.rss_instances, Path(tmp))
        print(f"\nmemory of bcc serve, queue growing: {early:.0f} MiB resident after 20 "
              f"instances, {late:.0f} MiB after {sent} (512 KB each, "
              f"{sent * 0.5:.0f} MB received); peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
