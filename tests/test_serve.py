"""``bcc serve`` in this process (breast_cancer_classifier.tools.serve): intake, refusals,
completeness, processing, sending with retries, restarts, exactly once, metrics, logs, TLS.

The destination is a recording pynetdicom node (``serve_support.RecordingSCP``), which counts
every C-STORE, re-sends included; the processor is the test-only ``SyntheticProcessor``.
The real PACS (Orthanc) and a SIGKILLed subprocess are in test_serve_orthanc.py.
"""

import logging
import shutil
import sqlite3
import subprocess
import sys
import threading

import pydicom
import pytest
from pynetdicom import AE

from breast_cancer_classifier.core.errors import SettingsError
from breast_cancer_classifier.tools.serve.config import Destination, ServeConfig
from breast_cancer_classifier.tools.serve.durable import write_durable
from breast_cancer_classifier.tools.serve.intake import (MG_FOR_PROCESSING,
                                                         OUT_OF_RESOURCES, VERIFICATION)
from breast_cancer_classifier.tools.serve.naming import scrub, study_hash
from breast_cancer_classifier.tools.serve.processor import PROCESSOR_HOOK_ENV
from breast_cancer_classifier.tools.serve.service import Service, reprocess
from breast_cancer_classifier.tools.serve.state import StateDB
from helpers import debian_tool
from serve_support import (FAILURE_DESCRIPTION, RESULT_DESCRIPTION, REPO, RecordingSCP,
                           SyntheticProcessor, corrupt_copy, http_get, metric, quick_config,
                           send_files, serve_env, wait_for, write_study)
from test_dicom import mammogram, phantom, structured_report


@pytest.fixture
def dest():
    node = RecordingSCP().start()
    yield node
    node.stop()


@pytest.fixture
def services():
    """Start services with ``start(config, processor)``; all are stopped afterwards."""
    started = []

    def start(config, processor=None):
        service = Service(config, processor or SyntheticProcessor()).start()
        started.append(service)
        return service

    yield start
    for service in started:
        if service.server is not None and service.state is not None:
            try:
                service.stop()
            except Exception:  # already stopped by the test
                pass


@pytest.fixture
def log_text():
    """Everything the package and pynetdicom log during the test, as one string."""
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Collect(logging.DEBUG)
    package = logging.getLogger("breast_cancer_classifier")
    old_level = package.level
    package.setLevel(logging.DEBUG)
    package.addHandler(handler)
    logging.getLogger("pynetdicom").addHandler(handler)
    yield lambda: "\n".join(lines)
    package.removeHandler(handler)
    package.setLevel(old_level)
    logging.getLogger("pynetdicom").removeHandler(handler)


def finished(service, count):
    """Wait until ``count`` studies are finished (sent or failed, objects accepted, files
    removed) since ``service`` started."""
    return wait_for(lambda: service.metrics.finished_count() >= count, 30,
                    what=f"{count} finished studies")


# --------------------------------------------------------------------------- settings
def test_destination_is_parsed_and_checked():
    assert Destination.parse("PACS@10.0.0.5:104") == Destination("PACS", "10.0.0.5", 104)
    assert Destination.parse("ORTHANC@[::1]:4242") == Destination("ORTHANC", "::1", 4242)
    for bad in ("PACS@host", "host:104", "PACS@host:0", "WAY_TOO_LONG_AE_TITLE@h:1"):
        with pytest.raises(SettingsError, match="--destination"):
            Destination.parse(bad)


def test_config_refuses_settings_that_do_not_fit(tmp_path):
    dest = Destination("D", "127.0.0.1", 104)
    with pytest.raises(SettingsError, match="longer than --study-quiet-seconds"):
        ServeConfig(tmp_path, dest, study_quiet_seconds=60, study_timeout_seconds=30)
    with pytest.raises(SettingsError, match="--tls-cert and --tls-key go together"):
        ServeConfig(tmp_path, dest, tls_key=tmp_path / "key.pem")
    with pytest.raises(SettingsError, match="--allow-caller"):
        ServeConfig(tmp_path, dest, allow_callers=("",))


def test_study_hash_and_scrub_hide_identifiers():
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert study_hash(uid) == study_hash(uid) != study_hash(uid + "0")
    assert len(study_hash(uid)) == 12 and uid not in study_hash(uid)
    assert scrub(f"bad value in {uid} of PAT1", [uid, "PAT1", ""]) == (
        "bad value in [removed] of [removed]")


def test_write_durable_leaves_only_the_file(tmp_path):
    target = tmp_path / "a" / "b" / "x.dcm"
    write_durable(target, b"payload")
    write_durable(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.dcm"]


def test_database_of_another_schema_version_is_refused(tmp_path):
    StateDB(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(SettingsError, match="schema version 99"):
        StateDB(tmp_path)


def test_state_completes_fails_and_recovers_studies(tmp_path):
    now = [1000.0]
    state = StateDB(tmp_path, clock=lambda: now[0])
    for n, view in enumerate(("L-CC", "R-CC", "L-MLO", "R-MLO")):
        record = {"sop_uid": f"1.{n}", "path": f"p{n}", "sop_class": "x", "view": view,
                  "used": 1, "reason": None}
        assert state.add_instance("9.9", "a", record, max_queue=2) == "added"
        if n < 3:
            assert state.add_instance("8.8", "b", dict(record, sop_uid=f"2.{n}"), 2) == "added"
    assert state.add_instance("7.7", "c", dict(record, sop_uid="3.0"), 2) == "full"
    assert state.add_instance("9.9", "a", record, 2) == "duplicate"
    now[0] += 10
    assert state.promote(quiet_seconds=30, timeout_seconds=60) == ([], [])
    now[0] += 30
    completed, failed = state.promote(quiet_seconds=30, timeout_seconds=60)
    assert completed == ["a"] and failed == []
    now[0] += 30
    assert state.promote(30, 60) == ([], [("b", "incomplete study: no usable R-MLO image 60 s "
                                                  "after its first instance")])
    for attempt in (1, 2, 3):  # three runs, each interrupted
        assert state.claim("a")
        assert state.recover(max_attempts=3) == (([], ["a"]) if attempt == 3 else (["a"], []))
    assert state.study("a")["state"] == "failed"
    assert "interrupted 3 times" in state.study("a")["reason"]
    assert state.add_instance("9.9", "a", dict(record, sop_uid="1.9"), 2) == "finished"
    assert state.counts() == {"received": 0, "complete": 0, "running": 0, "sent": 0,
                              "failed": 2}


def test_retry_delay_doubles_up_to_the_cap(tmp_path):
    from breast_cancer_classifier.tools.serve.sender import Sender

    sender = Sender(quick_config(tmp_path, Destination("D", "127.0.0.1", 104),
                                 retry_first_seconds=1.0, retry_max_seconds=60.0), None, None)
    delays = []
    for sender.failures in range(1, 9):
        delays.append(sender.retry_delay())
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


# --------------------------------------------------------------------------- intake
def test_study_in_results_out_for_processing_kept_aside_other_classes_refused(
        tmp_path, dest, services, log_text):
    service = services(quick_config(tmp_path / "work", dest.destination, http_port=0))
    study = write_study(tmp_path / "in", 1)
    raw = mammogram(tmp_path / "in" / "raw.dcm", phantom(14, "left", 9, (32, 24)), bits=14,
                    study=study["study_uid"], patient=study["patient_id"], side="L",
                    view="CC", intent="FOR PROCESSING", sop_class=MG_FOR_PROCESSING)
    report = tmp_path / "in" / "report.dcm"
    structured_report(report)
    echo = AE(ae_title="PACS")
    echo.add_requested_context(VERIFICATION)
    assoc = echo.associate("127.0.0.1", service.port, ae_title="BCC")
    assert assoc.send_c_echo().Status == 0
    assoc.release()

    statuses = send_files(study["files"] + [raw, report], service.port)
    assert statuses == [0, 0, 0, 0, 0, "refused"]
    finished(service, 1)
    sid = study_hash(study["study_uid"])
    assert dest.by_study() == {study["study_uid"]: 1}
    assert dest.received[0][2] == RESULT_DESCRIPTION
    assert service.state.study(sid)["state"] == "sent"
    rows = {r["sop_class"]: r for r in service.state.instances(sid)}
    assert rows[MG_FOR_PROCESSING]["used"] == 0
    assert "FOR PROCESSING" in rows[MG_FOR_PROCESSING]["reason"]
    assert sorted(r["view"] for r in service.state.instances(sid) if r["used"]) == sorted(
        ["L-CC", "R-CC", "L-MLO", "R-MLO"])
    assert ("2 SOP class(es) refused at negotiation (only digital mammography images and "
            "C-ECHO are taken): Basic Text SR Storage, Secondary Capture") in log_text()
    # Inputs and results go once every result object is accepted.
    assert not (service.config.work_dir / "incoming" / sid).exists()
    assert not (service.config.work_dir / "results" / sid).exists()
    text = http_get(f"http://127.0.0.1:{service.http_port}/metrics")[1]
    assert metric(text, "bcc_serve_studies", 'state="sent"') == 1
    assert metric(text, "bcc_serve_instances_received_total") == 5
    assert metric(text, "bcc_serve_refusals_total", 'reason="sop_class"') == 2  # SC, SR
    assert metric(text, "bcc_serve_result_objects_accepted_total") == 1
    assert metric(text, "bcc_serve_study_latency_seconds_count", 'outcome="sent"') == 1
    assert http_get(f"http://127.0.0.1:{service.http_port}/healthz")[0] == 200


def test_caller_not_on_the_allow_list_is_rejected(tmp_path, dest, services, log_text):
    service = services(quick_config(tmp_path / "work", dest.destination,
                                    allow_callers=("ORTHANC",), http_port=0))
    study = write_study(tmp_path / "in", 1)
    assert send_files(study["files"], service.port, calling="INTRUDER") is None
    assert send_files(study["files"][:1], service.port, calling="ORTHANC",
                      called="NOTBCC") is None
    assert "calling AE title 'INTRUDER' is not on --allow-caller" in log_text()
    assert "called AE title 'NOTBCC' is not ours" in log_text()
    assert service.state.studies() == []
    assert send_files(study["files"], service.port, calling="ORTHANC") == [0, 0, 0, 0]
    text = http_get(f"http://127.0.0.1:{service.http_port}/metrics")[1]
    assert metric(text, "bcc_serve_refusals_total", 'reason="caller"') == 1
    assert metric(text, "bcc_serve_refusals_total", 'reason="called_ae"') == 1


class GatedProcessor(SyntheticProcessor):
    """Waits for ``gate`` before each study."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def process(self, study, out_dir):
        assert self.gate.wait(30)
        return super().process(study, out_dir)


def test_past_max_queue_a_new_study_gets_out_of_resources(tmp_path, dest, services,
                                                          log_text):
    processor = GatedProcessor()
    service = services(quick_config(tmp_path / "work", dest.destination, max_queue=2),
                       processor)
    studies = [write_study(tmp_path / "in", i) for i in range(4)]
    assert send_files(studies[0]["files"], service.port) == [0] * 4
    assert send_files(studies[1]["files"][:2], service.port) == [0] * 2
    assert send_files(studies[2]["files"], service.port) == [OUT_OF_RESOURCES] * 4
    # A study already in the queue still gets its other instances.
    assert send_files(studies[1]["files"][2:], service.port) == [0] * 2
    assert "2 studies are queued (--max-queue)" in log_text()
    processor.gate.set()
    finished(service, 2)
    assert send_files(studies[3]["files"], service.port) == [0] * 4
    finished(service, 3)
    assert dest.by_study() == {studies[i]["study_uid"]: 1 for i in (0, 1, 3)}


# --------------------------------------------------------------------------- outcomes
def test_corrupt_and_non_mammography_instances_are_reported_and_the_others_done(
        tmp_path, dest, services, log_text):
    service = services(quick_config(tmp_path / "work", dest.destination))
    # A: an extra L-CC whose pixels do not decode; the good L-CC is used.
    a = write_study(tmp_path / "in", 1)
    a_bad = corrupt_copy(a["files"][0], tmp_path / "in" / "a_bad.dcm")
    # B: its only R-MLO does not decode: the study fails, a failure report is sent.
    b = write_study(tmp_path / "in", 2)
    b_files = b["files"][:3] + [corrupt_copy(b["files"][3], tmp_path / "in" / "b_bad.dcm")]
    # C: a work-up view (ML) among the four: stored, left out, the study is done.
    c = write_study(tmp_path / "in", 3)
    c_ml = mammogram(tmp_path / "in" / "c_ml.dcm", phantom(12, "left", 5, (32, 24)),
                     study=c["study_uid"], patient=c["patient_id"], side="L", view="ML")
    for files in (a["files"] + [a_bad], b_files, c["files"] + [c_ml]):
        assert send_files(files, service.port) == [0] * len(files)
    finished(service, 3)
    got = {study: desc for _, study, desc in dest.received}
    assert got == {a["study_uid"]: RESULT_DESCRIPTION, b["study_uid"]: FAILURE_DESCRIPTION,
                   c["study_uid"]: RESULT_DESCRIPTION}
    row = service.state.study(study_hash(b["study_uid"]))
    assert row["state"] == "failed"
    assert "R-MLO" in row["reason"] and "cannot be decoded" in row["reason"]
    assert f"study {study_hash(b['study_uid'])} failed: no decodable image of R-MLO" in log_text()
    assert "view 'ML' is not CC or MLO" in log_text()


def test_study_missing_a_view_fails_after_the_timeout(tmp_path, dest, services):
    service = services(quick_config(tmp_path / "work", dest.destination,
                                    study_timeout_seconds=1.0, http_port=0))
    study = write_study(tmp_path / "in", 1, views=("L-CC", "R-CC", "L-MLO"))
    send_files(study["files"], service.port)
    finished(service, 1)
    row = service.state.study(study_hash(study["study_uid"]))
    assert row["state"] == "failed" and "no usable R-MLO image" in row["reason"]
    assert [d for _, _, d in dest.received] == [FAILURE_DESCRIPTION]
    text = http_get(f"http://127.0.0.1:{service.http_port}/metrics")[1]
    assert metric(text, "bcc_serve_studies", 'state="failed"') == 1


def test_destination_down_then_back_everything_arrives_once(tmp_path, services):
    dest = RecordingSCP()  # not started yet
    processor = SyntheticProcessor()
    service = services(quick_config(tmp_path / "work", dest.destination), processor)
    studies = [write_study(tmp_path / "in", i) for i in range(3)]
    for study in studies:
        send_files(study["files"], service.port)
    wait_for(lambda: len(processor.calls) == 3 and all(
        service.state.study(s)["results_at"] for s in processor.calls), 30,
        what="results written")
    wait_for(lambda: service.sender.failures >= 2, 10, what="two failed tries")
    assert all(service.state.study(s)["state"] == "running" for s in processor.calls)
    assert all((service.config.work_dir / "incoming" / s).is_dir() for s in processor.calls)
    dest.start()
    try:
        finished(service, 3)
    finally:
        dest.stop()
    assert dest.by_study() == {s["study_uid"]: 1 for s in studies}
    assert len(processor.calls) == 3


def test_a_study_sent_again_after_its_results_is_not_run_again(tmp_path, dest, services,
                                                               log_text):
    processor = SyntheticProcessor()
    service = services(quick_config(tmp_path / "work", dest.destination), processor)
    study = write_study(tmp_path / "in", 1)
    send_files(study["files"], service.port)
    finished(service, 1)
    assert send_files(study["files"], service.port) == [0] * 4  # acknowledged ...
    sid = study_hash(study["study_uid"])
    assert f"study {sid} arrived again after its results went out" in log_text()
    assert not (service.config.work_dir / "incoming" / sid).exists()  # ... and dropped
    assert processor.calls == [sid] and dest.by_study() == {study["study_uid"]: 1}


# --------------------------------------------------------------------------- restarts
def results_written_then_stopped(tmp_path, services, dest):
    """One study through a service whose destination ``dest`` is down: stopped once its
    results are written and registered. Returns ``(work folder, study, study id)``."""
    work = tmp_path / "work"
    first = services(quick_config(work, dest.destination))
    study = write_study(tmp_path / "in", 1)
    send_files(study["files"], first.port)
    sid = study_hash(study["study_uid"])
    wait_for(lambda: first.state.study(sid)["results_at"], 30, what="results")
    first.stop()
    return work, study, sid


def test_restart_sends_the_results_folder_in_place_without_processing_again(tmp_path,
                                                                             services):
    """Killed after the results folder was renamed in, before it was registered."""
    dest = RecordingSCP()
    work, study, sid = results_written_then_stopped(tmp_path, services, dest)
    sop_uid = pydicom.dcmread(work / "results" / sid / "result.dcm").SOPInstanceUID
    with sqlite3.connect(work / "state.sqlite3") as db:  # as if killed before the commit
        db.execute("DELETE FROM results")
        db.execute("UPDATE studies SET results_at=NULL")
    processor = SyntheticProcessor()
    dest.start()
    try:
        second = services(quick_config(work, dest.destination), processor)
        finished(second, 1)
    finally:
        dest.stop()
    assert processor.calls == []
    assert [uid for uid, _, _ in dest.received] == [sop_uid]


class DyingProcessor(SyntheticProcessor):
    """Ends the worker thread in the middle of a study once ``gate`` is set, as a kill
    would: nothing after it runs (SystemExit passes the worker's error handling)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def process(self, study, out_dir):
        assert self.gate.wait(30)
        raise SystemExit("killed")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_restart_requeues_a_study_killed_while_running(tmp_path, dest, services):
    work = tmp_path / "work"
    dying = DyingProcessor()
    first = services(quick_config(work, dest.destination), dying)
    study = write_study(tmp_path / "in", 1)
    send_files(study["files"], first.port)
    sid = study_hash(study["study_uid"])
    wait_for(lambda: first.state.study(sid)["state"] == "running", 30, what="running")
    dying.gate.set()
    first.worker.join(10)
    assert not first.worker.is_alive()
    first.stop()
    assert list((work / "results").iterdir()) == []  # the staging folder went with it
    processor = SyntheticProcessor()
    second = services(quick_config(work, dest.destination), processor)
    finished(second, 1)
    assert processor.calls == [sid]
    assert second.state.study(sid)["attempts"] == 2
    assert dest.by_study() == {study["study_uid"]: 1}


def test_accepted_but_not_committed_is_sent_again_with_the_same_uid(tmp_path, services):
    """The one window of a second send: the destination stored the object, the service
    died before committing that; the restart sends the same object (same UID)."""
    dest = RecordingSCP()
    work, study, sid = results_written_then_stopped(tmp_path, services, dest)
    dest.start()
    try:
        result = work / "results" / sid / "result.dcm"
        sender = AE(ae_title="BCC")
        sender.add_requested_context(pydicom.dcmread(result).SOPClassUID)
        assoc = sender.associate("127.0.0.1", dest.port, ae_title=dest.ae_title)
        assert assoc.send_c_store(result).Status == 0  # accepted; the commit never came
        assoc.release()
        second = services(quick_config(work, dest.destination))
        finished(second, 1)
    finally:
        dest.stop()
    uids = [uid for uid, _, _ in dest.received]
    assert len(uids) == 2 and len(set(uids)) == 1


def test_second_service_on_one_work_folder_is_refused(tmp_path, dest, services):
    services(quick_config(tmp_path / "work", dest.destination))
    with pytest.raises(SettingsError, match="another bcc serve runs"):
        Service(quick_config(tmp_path / "work", dest.destination),
                SyntheticProcessor()).start()


# --------------------------------------------------------------------------- reprocess
def test_reprocess_forgets_a_finished_study_and_it_runs_again(tmp_path, dest, services):
    processor = SyntheticProcessor()
    work = tmp_path / "work"
    service = services(quick_config(work, dest.destination), processor)
    first, second = write_study(tmp_path / "in", 1), write_study(tmp_path / "in", 2)
    send_files(first["files"], service.port)
    finished(service, 1)
    sid = study_hash(first["study_uid"])
    send_files(second["files"][:2], service.port)  # still received
    with pytest.raises(SettingsError, match="not finished"):
        reprocess(work, study_hash(second["study_uid"]))
    with pytest.raises(SettingsError, match="no study 'feedfeedfeed'"):
        reprocess(work, "feedfeedfeed")
    proc = subprocess.run([sys.executable, "-m", "breast_cancer_classifier.bcc", "serve",
                           "--reprocess", sid, "--work-dir", str(work)],
                          capture_output=True, text=True, cwd=REPO, env=serve_env())
    assert proc.returncode == 0, proc.stderr
    assert f"study {sid} (sent) forgotten" in proc.stderr
    assert service.state.study(sid) is None
    send_files(first["files"], service.port)
    wait_for(lambda: dest.by_study().get(first["study_uid"]) == 2, 30, what="a second set")
    assert processor.calls == [sid, sid]
    # The test processor makes new UIDs each time (the model's are derived from the inputs
    # and settings: the same UIDs again, test_serve_orthanc.py).
    assert len({uid for uid, _, _ in dest.received}) == 2


# --------------------------------------------------------------------------- logs
def test_logs_carry_no_patient_id_name_or_uid(tmp_path, dest, services, log_text):
    service = services(quick_config(tmp_path / "work", dest.destination,
                                    study_timeout_seconds=1.0, allow_callers=("PACS",)))
    good, short = write_study(tmp_path / "in", 1), write_study(tmp_path / "in", 2)
    bad = corrupt_copy(good["files"][1], tmp_path / "in" / "bad.dcm")
    send_files(good["files"] + [bad], service.port)
    send_files(short["files"][:3], service.port)
    send_files(good["files"], service.port, calling="OTHER")
    finished(service, 2)
    send_files(good["files"], service.port)  # again, after sent
    text = log_text()
    assert study_hash(good["study_uid"]) in text and study_hash(short["study_uid"]) in text
    secrets = [pydicom.dcmread(p, stop_before_pixels=True) for p in
               good["files"] + short["files"] + [bad]]
    for ds in secrets:
        for value in (ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID,
                      ds.SOPInstanceUID, ds.AccessionNumber, ds.PatientName.family_name):
            assert value not in text, f"{value!r} is in the log"


# --------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, a server certificate and a client certificate signed by it (openssl)."""
    openssl = debian_tool("openssl", "openssl")
    folder = tmp_path_factory.mktemp("tls")

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem")
    return folder


def _echo(port, tls_args=None):
    ae = AE(ae_title="PACS")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", port, ae_title="BCC", tls_args=tls_args)
    if not assoc.is_established:
        return None
    status = assoc.send_c_echo().Status
    assoc.release()
    return status


def test_tls_with_client_certificates(tmp_path, dest, services, certificates):
    import ssl

    c = certificates
    service = services(quick_config(tmp_path / "work", dest.destination,
                                    tls_cert=c / "server.pem", tls_key=c / "server.key",
                                    tls_ca=c / "ca.pem"))

    def client(with_certificate):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(c / "ca.pem"))
        if with_certificate:
            context.load_cert_chain(str(c / "client.pem"), str(c / "client.key"))
        return (context, "localhost")

    assert _echo(service.port, client(True)) == 0
    assert _echo(service.port, client(False)) is None
    assert _echo(service.port) is None  # no TLS at all


# --------------------------------------------------------------------------- command line
def test_bcc_serve_with_a_missing_weight_file_exits_2_naming_it(tmp_path):
    env = serve_env()
    env.pop(PROCESSOR_HOOK_ENV)  # the model processor
    missing = tmp_path / "no_such_patch_model.p"
    proc = subprocess.run([sys.executable, "-m", "breast_cancer_classifier.bcc", "serve",
                           "--work-dir", str(tmp_path / "work"), "--destination",
                           "D@127.0.0.1:104", "--device-type", "cpu", "--patch-model-path",
                           str(missing)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{missing}: weight file not found" in proc.stderr
    assert not (tmp_path / "work" / "state.sqlite3").exists()


def test_the_analysis_log_names_the_study_and_none_of_its_identifiers(log_text):
    from breast_cancer_classifier.core.runtime import log as core_log
    from breast_cancer_classifier.tools.serve.processor import core_log_scrubbed

    serve_log = logging.getLogger("breast_cancer_classifier.serve")
    with core_log_scrubbed("0123456789ab", {"MRN77", "1.2.3.4"}):
        core_log.info("progress of MRN77")  # the core's progress: dropped
        core_log.warning("exam 0 (MRN77_2020): %s in %s", "no R-MLO image", "1.2.3.4")
        serve_log.info("serve: study 0123456789ab: the service's own line")
    core_log.warning("after the study: MRN77 left as it is")
    assert log_text().splitlines() == [
        "serve: study 0123456789ab: exam 0 ([removed]_2020): no R-MLO image in [removed]",
        "serve: study 0123456789ab: the service's own line",
        "after the study: MRN77 left as it is"]


def test_bcc_serve_refuses_bad_flags(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "breast_cancer_classifier.bcc", "serve",
                           "--work-dir", str(tmp_path), "--destination", "D@127.0.0.1:104",
                           "--study-quiet-seconds", "60", "--study-timeout-seconds", "10"],
                          capture_output=True, text=True, cwd=REPO, env=serve_env(),
                          timeout=60)
    assert proc.returncode == 2
    assert "--study-timeout-seconds 10 must be longer than --study-quiet-seconds 60" in (
        proc.stderr)
