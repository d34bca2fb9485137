"""Prometheus metrics and ``/healthz``, served on 127.0.0.1:``--http-port``.

Metrics (prometheus_client, in a registry of their own):

* ``bcc_serve_studies{state}``: studies per state, read from the database at each scrape
  (``received``; ``complete``, i.e. queued; ``running``; ``sent``; ``failed``), so they
  survive restarts; ``bcc_serve_queue_length``: received + complete + running, what
  ``--max-queue`` limits;
* counters since the process started: ``bcc_serve_instances_received_total``,
  ``bcc_serve_refusals_total{reason}`` (caller, called_ae, busy, sop_class, unreadable,
  queue_full, write_error), ``bcc_serve_repeated_instances_total`` (instances of studies
  already sent or failed), ``bcc_serve_processing_failures_total``,
  ``bcc_serve_result_objects_accepted_total``, ``bcc_serve_studies_finished_total{state}``
  (sent or failed, files removed);
* ``bcc_serve_study_latency_seconds{outcome}``: histogram of the time from a study being
  complete to its last result object being accepted (outcome ``sent`` or ``failed``).

``/healthz`` answers 200 and ``{"status": "ok", ...}`` while the listener, the worker and
the sender run and the database answers, else 503 with what is wrong.
"""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

from .state import QUEUED_STATES, TERMINAL_STATES

log = logging.getLogger("breast_cancer_classifier.serve")

REFUSAL_REASONS = ("caller", "called_ae", "busy", "sop_class", "unreadable", "queue_full",
                   "write_error")
LATENCY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, float("inf"))


class _StudyStates:
    """A collector: the studies per state, counted in the database at scrape time."""

    def __init__(self, state):
        self.state = state

    def collect(self):
        counts = self.state.counts()
        studies = GaugeMetricFamily("bcc_serve_studies", "Studies per state (complete: "
                                    "queued for analysis)", labels=["state"])
        for name, count in counts.items():
            studies.add_metric([name], count)
        yield studies
        yield GaugeMetricFamily("bcc_serve_queue_length", "Studies received, complete or "
                                "running (limited by --max-queue)",
                                value=sum(counts[s] for s in QUEUED_STATES))


class Metrics:
    """The service's metrics; the methods are what the other modules count."""

    def __init__(self, state):
        self.registry = CollectorRegistry()
        self._received = Counter("bcc_serve_instances_received", "Instances stored and "
                                 "recorded", registry=self.registry)
        self._refusals = Counter("bcc_serve_refusals", "Associations, contexts and instances "
                                 "refused, by reason", ["reason"], registry=self.registry)
        for reason in REFUSAL_REASONS:
            self._refusals.labels(reason)
        self._repeated = Counter("bcc_serve_repeated_instances", "Instances of studies already"
                                 " sent or failed: acknowledged, not run again",
                                 registry=self.registry)
        self._processing_failures = Counter("bcc_serve_processing_failures", "Studies whose "
                                            "analysis failed", registry=self.registry)
        self._accepted = Counter("bcc_serve_result_objects_accepted", "Result objects the "
                                 "destination accepted", registry=self.registry)
        self._finished = Counter("bcc_serve_studies_finished", "Studies whose objects were all"
                                 " accepted, files removed, by state", ["state"],
                                 registry=self.registry)
        self._latency = Histogram("bcc_serve_study_latency_seconds", "From a study being "
                                  "complete to its last result object being accepted",
                                  ["outcome"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StudyStates(state))

    def instance_received(self):
        self._received.inc()

    def refused(self, reason):
        self._refusals.labels(reason).inc()

    def repeated(self):
        self._repeated.inc()

    def processing_failed(self):
        self._processing_failures.inc()

    def study_finished(self, row, objects):
        """A study's ``objects`` result objects are all accepted; ``row`` its database row."""
        self._accepted.inc(objects)
        self._finished.labels(row["state"]).inc()
        if row.get("completed_at") is not None:
            self._latency.labels(row["state"]).observe(row["finished_at"] - row["completed_at"])

    def finished_count(self):
        """Studies finished since the process started."""
        return sum(self.registry.get_sample_value("bcc_serve_studies_finished_total",
                                                  {"state": state}) or 0
                   for state in TERMINAL_STATES)

    def text(self):
        return generate_latest(self.registry)


def start_http_server(port, metrics, health):
    """Serve ``/metrics`` and ``/healthz`` on 127.0.0.1:``port`` (0: a free port) in a
    daemon thread; returns the server (``server_address[1]`` is the port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, metrics.text())
            elif self.path == "/healthz":
                problems = health()
                body = {"status": "ok" if not problems else "unhealthy", "problems": problems}
                self._answer(503 if problems else 200, "application/json",
                             json.dumps(body).encode())
            else:
                self._answer(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _answer(self, code, content_type, body):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # no access log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bcc-serve-http", daemon=True).start()
    return server
