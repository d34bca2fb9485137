"""``bcc serve`` benchmark: studies per hour and latency per study through the service,
beside the processor called directly on the same studies; and the memory of the service
while its queue grows.

Usage (from the repository root; needs the `clinical` extra, which `make test` installs)::

    .venv/bin/python benchmarks/bench_serve.py [--studies 40] [--parallel 4]
        [--processor-seconds 0 2] [--processor test|model] [--rss-instances 200]

Synthetic four-view studies (tests/serve_support.py: 32 x 24 pixels, a few KB each) are sent
by ``--parallel`` pynetdicom associations at once to a service in this process, whose results
go to a recording pynetdicom node; quiet period 0.2 s.

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
  that as a share of the direct time (target <= 5% with the real analysis).

Phase 1 has only the test processor (``--processor test``), which decodes the images and
writes one Secondary Capture: ``--processor-seconds`` adds a sleep per study that stands in
for the analysis (0: the service overhead alone). Phase 2 adds ``--processor model`` (the
real analysis, with the parity kit's weights).

Memory: ``bcc serve`` as a subprocess whose processor is kept busy (so the queue only
grows) receives ``--rss-instances`` instances of 512 x 512 pixels (512 KB each); its
resident memory is read from /proc after the first 20 and after all of them.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from breast_cancer_classifier.tools.serve.intake import MG_FOR_PRESENTATION  # noqa: E402
from breast_cancer_classifier.tools.serve.naming import study_hash  # noqa: E402
from breast_cancer_classifier.tools.serve.processor import SourceImage, Study  # noqa: E402
from breast_cancer_classifier.tools.serve.service import Service  # noqa: E402
from serve_support import (RecordingSCP, ServeProcess, SyntheticProcessor,  # noqa: E402
                           free_port, quick_config, send_files, wait_for, write_study)


def make_processor(kind, seconds):
    if kind == "test":
        return SyntheticProcessor(seconds)
    from breast_cancer_classifier.tools.serve.processor import ModelProcessor

    return ModelProcessor()  # phase 2: settings from the parity kit's weights


def study_input(study, scratch):
    images = tuple(SourceImage(path, f"sop-{k}", MG_FOR_PRESENTATION, path.stem, True, "")
                   for k, path in enumerate(study["files"]))
    return Study(study_hash(study["study_uid"]), study["study_uid"], images, scratch)


def run_direct(processor, studies, folder):
    """Seconds per study of ``processor.process`` called on each study in turn."""
    times = []
    for k, study in enumerate(studies):
        out, scratch = folder / f"out{k}", folder / f"scratch{k}"
        out.mkdir(parents=True)
        scratch.mkdir()
        started = time.perf_counter()
        processor.process(study_input(study, scratch), out)
        times.append(time.perf_counter() - started)
    return times


def run_service(processor, studies, single, parallel, folder):
    """``(seconds per study under load, single latencies, loaded latencies, instances per
    second taken in under load)``."""
    dest = RecordingSCP().start()
    service = Service(quick_config(folder / "work", dest.destination, max_queue=len(studies)
                                   + single, study_quiet_seconds=0.2), processor).start()
    try:
        for k, study in enumerate(studies[:single]):  # one at a time: latency alone
            send_files(study["files"], service.port)
            wait_for(lambda: service.metrics.finished_count() >= k + 1, 600)
        loaded = studies[single:]
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda group: [send_files(s["files"], service.port) for s in group],
                          [loaded[i::parallel] for i in range(parallel)]))
        intake = 4 * len(loaded) / (time.perf_counter() - started)
        wait_for(lambda: service.metrics.finished_count() >= len(studies), 3600)
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
                                           for r in under_load], intake


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


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--single", type=int, default=5,
                        help="studies sent one at a time first (latency alone)")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--processor", choices=["test", "model"], default="test")
    parser.add_argument("--processor-seconds", type=float, nargs="+", default=[0.0, 2.0],
                        help="test processor: sleep per study standing in for the analysis")
    parser.add_argument("--rss-instances", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("BCC_NO_PROGRESS", "1")
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), "
          f"Python {platform.python_version()}; processor: {args.processor}")
    rows = [("analysis s", "studies", "direct s/study", "direct studies/h",
             "service s/study", "service studies/h", "latency alone (median)",
             "latency loaded (median / p95)", "intake inst/s", "overhead s/study",
             "overhead %")]
    for seconds in args.processor_seconds:
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
            folder = Path(tmp)
            studies = [write_study(folder / "in", k, seed=k)
                       for k in range(args.studies + args.single)]
            direct = statistics.mean(run_direct(make_processor(args.processor, seconds),
                                                studies[args.single:], folder / "direct"))
            per_study, alone, loaded, intake = run_service(make_processor(args.processor, seconds),
                                                   studies, args.single, args.parallel, folder)
        p95 = sorted(loaded)[int(0.95 * (len(loaded) - 1))]
        rows.append((f"{seconds:g}", args.studies, f"{direct:.3f}", f"{3600 / direct:.0f}",
                     f"{per_study:.3f}", f"{3600 / per_study:.0f}",
                     f"{statistics.median(alone):.2f} s",
                     f"{statistics.median(loaded):.2f} / {p95:.2f} s", f"{intake:.0f}",
                     f"{per_study - direct:+.3f}", f"{100 * (per_study - direct) / direct:+.1f}%"))
    table(rows)
    if args.rss_instances:
        with tempfile.TemporaryDirectory(prefix="bench-serve-rss-") as tmp:
            early, late, peak, sent = run_memory(args.rss_instances, Path(tmp))
        print(f"\nmemory of bcc serve, queue growing: {early:.0f} MiB resident after 20 "
              f"instances, {late:.0f} MiB after {sent} (512 KB each, "
              f"{sent * 0.5:.0f} MB received); peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
