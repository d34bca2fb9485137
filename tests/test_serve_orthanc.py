"""``bcc serve`` with a real PACS: Orthanc (Debian package ``orthanc``) on loopback.

Studies are uploaded to Orthanc over REST, Orthanc is asked to C-STORE them to BCC
(``/modalities/bcc/store``, four jobs at once: four parallel associations), and the results
are counted in Orthanc, in the same studies. The load and fault tests use the test-only
``SyntheticProcessor``, whose every object has a new random SOPInstanceUID: a result set
made twice would show up as two objects.

The model tests (the end of this file) serve three studies with the real processor, once
per session (:func:`model_served`, about a minute on 2 CPU cores): the study of the session
run of test_dicom_results.py (``dicom_run``: ``bcc dicom`` then ``bcc run`` on the same
files, with the same weights and settings), a study missing a view and a study with an
image whose pixels cannot be decoded.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pydicom
import pytest
from pynetdicom import AE

from breast_cancer_classifier.core.views import VIEWS
from breast_cancer_classifier.tools.serve.naming import study_hash
from breast_cancer_classifier.tools.serve.sender import ACCEPTED_STATUSES
from breast_cancer_classifier.tools.serve.service import Service
from dicom_files import dciodvfy, screening_study
from dicom_run_support import _run_flags, check_sr_against_csvs
from helpers import debian_tool, slow
from loopback_only import listening_addresses, listens_on_loopback_only
from serve_support import (ORTHANC, REPO, RESULT_DESCRIPTION, Orthanc, ServeProcess,
                           SyntheticProcessor, corrupt_copy, free_port, metric, orthanc,
                           quick_config, serve_env, wait_for, write_study)  # noqa: F401

STUDIES = 20


def test_the_listening_check_tells_loopback_from_every_interface():
    with socket.socket() as anywhere, socket.socket() as loopback:
        anywhere.bind(("0.0.0.0", 0))
        loopback.bind(("127.0.0.1", 0))
        anywhere.listen()
        loopback.listen()
        assert listening_addresses(anywhere.getsockname()[1]) == {"00000000"}
        assert not listens_on_loopback_only(anywhere.getsockname()[1])
        assert listens_on_loopback_only(loopback.getsockname()[1])


def test_orthanc_listens_on_loopback_only(orthanc):
    for port in (orthanc.http_port, orthanc.dicom_port):
        assert listens_on_loopback_only(port), (port, listening_addresses(port))


def upload(orthanc, folder, count, first):
    studies = [write_study(folder, first + i, seed=i) for i in range(count)]
    return studies, [orthanc.upload_study(study) for study in studies]


def store_in_parallel(orthanc, ids, jobs=4):
    """Orthanc sends ``ids`` to BCC as ``jobs`` store jobs at once; returns their answers."""
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(orthanc.store_to_bcc, [ids[k::jobs] for k in range(jobs)]))


def sets_arrived(orthanc, ids):
    return sum(1 for found in orthanc.results_per_study(ids).values() if found)


def test_twenty_studies_over_four_associations_come_back_once_each(orthanc, tmp_path):
    studies, ids = upload(orthanc, tmp_path / "in", STUDIES, 0)
    config = quick_config(tmp_path / "work", orthanc.destination, port=orthanc.bcc_port,
                          allow_callers=("ORTHANC",), max_queue=STUDIES)
    service = Service(config, SyntheticProcessor()).start()
    assert listens_on_loopback_only(orthanc.bcc_port)
    peak, storing = [0], threading.Event()

    def count_associations():
        while not storing.is_set():
            peak[0] = max(peak[0], len(service.server.active_associations))
            time.sleep(0.005)

    sampler = threading.Thread(target=count_associations)
    sampler.start()
    try:
        try:
            answers = store_in_parallel(orthanc, ids)
        finally:
            storing.set()
            sampler.join()
        assert peak[0] >= 2, "Orthanc's four store jobs did not overlap"
        assert sum(a["InstancesCount"] for a in answers) == 4 * STUDIES
        assert all(a["FailedInstancesCount"] == 0 for a in answers)
        wait_for(lambda: service.metrics.finished_count() >= STUDIES, 60,
                 what="20 studies sent")
        text = service.metrics.text().decode()
    finally:
        service.stop()
    assert orthanc.results_per_study(ids) == {i: [RESULT_DESCRIPTION] for i in ids}
    assert metric(text, "bcc_serve_studies", 'state="sent"') == STUDIES
    assert metric(text, "bcc_serve_result_objects_accepted_total") == STUDIES
    assert metric(text, "bcc_serve_study_latency_seconds_count", 'outcome="sent"') == STUDIES


def test_sigkill_mid_queue_and_restart_still_one_result_set_per_study(orthanc, tmp_path):
    studies, ids = upload(orthanc, tmp_path / "in", STUDIES, 100)
    serve = ServeProcess(tmp_path / "work", orthanc.bcc_port, orthanc.destination,
                         tmp_path / "serve.log", "--allow-caller", "ORTHANC",
                         "--study-quiet-seconds", "0.5", "--max-queue", STUDIES,
                         BCC_TEST_PROCESSOR_SECONDS="0.3")
    try:
        serve.start()
        store_in_parallel(orthanc, ids)  # every instance acknowledged
        wait_for(lambda: sets_arrived(orthanc, ids) >= 4, 60, 0.1, "4 result sets")
        serve.kill()  # 1: mid-queue, every study acknowledged
        killed_at = sets_arrived(orthanc, ids)
        assert killed_at < STUDIES
        serve.start()
        store_in_parallel(orthanc, ids)  # the PACS sends everything again
        wait_for(lambda: sets_arrived(orthanc, ids) >= killed_at + 3, 60, 0.1,
                 "3 more result sets")
        serve.kill()  # 2: while results are being sent
        serve.start()
        wait_for(lambda: metric(serve.metrics(), "bcc_serve_studies", 'state="sent"')
                 == STUDIES, 90, 0.2, "20 studies sent")
        text = serve.metrics()
        time.sleep(1.0)  # anything sent twice would have arrived by now
        assert serve.stop() == 0
    finally:
        if serve.proc is not None and serve.proc.poll() is None:
            serve.kill()
    assert orthanc.results_per_study(ids) == {i: [RESULT_DESCRIPTION] for i in ids}
    assert metric(text, "bcc_serve_queue_length") == 0
    log = serve.log()
    assert log.count("serve: listening on") == 3
    for study in studies:
        ds = pydicom.dcmread(study["files"][0], stop_before_pixels=True)
        for value in (study["study_uid"], study["patient_id"], study["patient_name"],
                      ds.SOPInstanceUID, ds.AccessionNumber):
            assert value not in log, f"{value!r} is in the log"


def lua_script_of_the_docs():
    text = (REPO / "docs" / "serve.md").read_text()
    start = text.index("```lua\n") + len("```lua\n")
    return "\n".join(line[3:] for line in text[start:text.index("```", start)].splitlines())


def stable_events(orthanc, study_id):
    changes = orthanc.request("GET", "/changes?limit=1000")["Changes"]
    return sum(1 for c in changes if c["ChangeType"] == "StableStudy" and c["ID"] == study_id)


def test_orthanc_routes_stable_studies_with_the_lua_script_of_the_docs(tmp_path):
    """docs/serve.md's OnStableStudy script: a stable MG study goes to BCC once; the study,
    unstable again when the results arrive, is not sent back."""
    debian_tool("Orthanc", "orthanc")
    (tmp_path / "bcc.lua").write_text(lua_script_of_the_docs())
    routed = Orthanc(tmp_path / "orthanc", free_port(), StableAge=1,
                     LuaScripts=[str(tmp_path / "bcc.lua")]).start()
    processor = SyntheticProcessor()
    service = Service(quick_config(tmp_path / "work", routed.destination,
                                   port=routed.bcc_port, allow_callers=("ORTHANC",)),
                      processor).start()
    try:
        study = write_study(tmp_path / "in", 1)
        study_id = routed.upload_study(study)
        wait_for(lambda: routed.results_per_study([study_id])[study_id], 60, 0.2,
                 "the result routed back")
        # The results make the study unstable; once stable again the script must not
        # send it back to BCC.
        wait_for(lambda: stable_events(routed, study_id) >= 2, 30, 0.2, "a second "
                 "StableStudy event")
        time.sleep(1.0)
        repeated = service.metrics.text().decode()
        results = routed.results_per_study([study_id])
    finally:
        service.stop()
        routed.stop()
    assert results == {study_id: [RESULT_DESCRIPTION]}
    assert len(processor.calls) == 1
    assert metric(repeated, "bcc_serve_repeated_instances_total") == 0


# --------------------------------------------------------------------------- the model
MAMMOGRAPHY_CAD_SR, SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.88.50", "1.2.840.10008.5.1.4.1.1.7"
MODEL_TIMEOUT = 600  # seconds; a run takes about one minute on 2 CPU cores
BROKEN_STUDY_UID = "1.2.826.0.1.3680043.99.25002"  # short: its images' UIDs add ".<k>"


def _model_flags(dicom_run):
    """The analysis flags of the session run's ``bcc run`` (weights, device, epochs)."""
    flags = _run_flags(dicom_run["weights"])
    at = flags.index("--num-processes")
    return flags[:at] + flags[at + 2:]  # bcc serve analyses one study in one process


def _identifiers(files):
    """Every identifying value of the headers of ``files``."""
    found = set()
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.update({str(ds.PatientID), str(ds.PatientName), ds.PatientName.family_name,
                      str(ds.StudyInstanceUID), str(ds.SOPInstanceUID),
                      str(ds.get("AccessionNumber") or "")})
    found.discard("")
    return found


def _serve_model(orthanc, dicom_run, work, log_path):
    return ServeProcess(work, orthanc.bcc_port, orthanc.destination, log_path,
                        "--allow-caller", "ORTHANC", "--study-quiet-seconds", "1",
                        "--study-timeout-seconds", "6", *_model_flags(dicom_run), model=True)


def _finished(serve, sent, failed):
    text = serve.metrics()
    return (metric(text, "bcc_serve_studies_finished_total", 'state="sent"') >= sent
            and metric(text, "bcc_serve_studies_finished_total", 'state="failed"') >= failed)


@pytest.fixture(scope="session")
def model_served(orthanc, dicom_run, tmp_path_factory):
    """``bcc serve`` (a subprocess) with the model processor and the session run's weights
    and settings; Orthanc routes it three studies: the session run's study, one missing
    R-MLO and one whose R-MLO pixels cannot be decoded. Returns once all three are finished
    and the service is stopped (SIGTERM)."""
    root = tmp_path_factory.mktemp("model_served")
    files = {"good": [dicom_run["source_files"][view] for view in
                      (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))]}
    files["missing"] = write_study(root / "in", 1, views=VIEWS[:3])["files"]
    broken = list(screening_study(root / "in" / "broken", BROKEN_STUDY_UID, "SERVEPAT0002",
                                  PatientName="Doe^Broken", AccessionNumber="ACC00002")
                  .values())  # L-CC, R-CC, L-MLO, R-MLO; the last one's pixels cut short
    files["broken"] = broken[:3] + [corrupt_copy(broken[3], root / "in" / "broken.dcm")]
    ids = {name: {orthanc.upload(path) for path in paths} for name, paths in files.items()}
    assert all(len(found) == 1 for found in ids.values()), ids
    ids = {name: found.pop() for name, found in ids.items()}
    serve = _serve_model(orthanc, dicom_run, root / "work", root / "serve.log")
    try:
        serve.start(timeout=120)
        answer = orthanc.store_to_bcc(list(ids.values()))
        assert answer["FailedInstancesCount"] == 0, answer
        wait_for(lambda: _finished(serve, 1, 2) or serve.proc.poll() is not None,
                 MODEL_TIMEOUT, 0.5, "three studies finished")
        metrics = serve.metrics()
        status = serve.stop()
    finally:
        if serve.proc is not None and serve.proc.poll() is None:
            serve.kill()
    assert status == 0, serve.log()
    return {"root": root, "ids": ids, "files": files, "metrics": metrics, "log": serve.log(),
            "pid": serve.proc.pid, "serve": serve,
            "results": {name: orthanc.download_results(orthanc_id, root / "results" / name)
                        for name, orthanc_id in ids.items()}}


def _sop_classes(paths):
    return sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in paths)


def _texts(ds):
    """Every TEXT value of an SR, depth first."""
    found = []
    for item in ds.get("ContentSequence", []):
        if item.get("ValueType") == "TEXT":
            found.append(str(item.TextValue))
        found += _texts(item)
    return found


def test_model_results_come_back_into_the_same_study(model_served, dicom_run):
    results = model_served["results"]
    assert _sop_classes(results["good"]) == sorted([MAMMOGRAPHY_CAD_SR] + [SECONDARY_CAPTURE] * 4)
    for name in ("missing", "broken"):
        assert _sop_classes(results[name]) == [MAMMOGRAPHY_CAD_SR]
    study_uids = {name: str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
                  for name, paths in model_served["files"].items()}
    for name, paths in results.items():
        for path in paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert ds.StudyInstanceUID == study_uids[name]
            assert ds.PatientID == pydicom.dcmread(model_served["files"][name][0],
                                                   stop_before_pixels=True).PatientID


def test_model_sr_probabilities_equal_bcc_run_on_the_converted_files(model_served, dicom_run):
    """The session run is ``bcc dicom --pseudonymize`` then ``bcc run`` on the same files with
    the same weights and settings: pseudonyms change no number (test_dicom_results.py)."""
    sr, = (pydicom.dcmread(p) for p in model_served["results"]["good"]
           if _sop_classes([p]) == [MAMMOGRAPHY_CAD_SR])
    check_sr_against_csvs(sr, dicom_run["run"])


def test_model_failure_srs_say_why(model_served):
    missing, = model_served["results"]["missing"]
    broken, = model_served["results"]["broken"]
    missing_text = " ".join(_texts(pydicom.dcmread(missing)))
    broken_text = " ".join(_texts(pydicom.dcmread(broken)))
    assert "Analysis failed: incomplete study: no usable R-MLO image 6 s after" in missing_text
    assert "Analysis failed: R-MLO image: pixel data cannot be decoded" in broken_text
    assert "image exam 0: no image listed for view(s)" in broken_text  # then the run's
    assert str(model_served["root"]) not in broken_text  # no path of the work folder


def test_model_results_in_orthanc_pass_dciodvfy(model_served):
    for name, paths in model_served["results"].items():
        for path in paths:
            errors, _ = dciodvfy(path)
            assert errors == [], (name, _sop_classes([path]), errors)


def test_model_metrics_count_what_was_sent(model_served):
    text = model_served["metrics"]
    assert metric(text, "bcc_serve_studies", 'state="sent"') == 1
    assert metric(text, "bcc_serve_studies", 'state="failed"') == 2
    assert metric(text, "bcc_serve_result_objects_accepted_total") == 5 + 1 + 1
    assert metric(text, "bcc_serve_studies_finished_total", 'state="sent"') == 1
    assert metric(text, "bcc_serve_studies_finished_total", 'state="failed"') == 2
    assert metric(text, "bcc_serve_processing_failures_total") == 1
    assert metric(text, "bcc_serve_instances_received_total") == 4 + 3 + 4
    assert metric(text, "bcc_serve_study_latency_seconds_count", 'outcome="sent"') == 1
    assert metric(text, "bcc_serve_queue_length") == 0


def test_model_log_carries_no_patient_data_and_no_process_is_left(model_served):
    log = model_served["log"]
    files = [path for paths in model_served["files"].values() for path in paths]
    sids = {name: study_hash(pydicom.dcmread(paths[0], stop_before_pixels=True)
                             .StudyInstanceUID) for name, paths in model_served["files"].items()}
    assert all(f"study {sid}" in log for sid in sids.values())
    assert "analysed in" in log and "failed: R-MLO image: pixel data cannot be decoded" in log
    # What the analysis logs names the study and none of its identifiers:
    assert (f"serve: study {sids['broken']}: exam 0 ([removed]_[removed]) has no R-MLO image"
            in log)
    for value in _identifiers(files):
        assert value not in log, f"{value!r} is in the log"
    with pytest.raises(ProcessLookupError):  # bcc serve has exited and was reaped
        os.kill(model_served["pid"], 0)
    children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                              capture_output=True, text=True).stdout
    assert "bcc serve" not in children and "breast_cancer_classifier.bcc" not in children


def test_same_result_objects_sent_again_are_accepted_and_stored_once(model_served, orthanc):
    """What a reprocessed study sends: the model's result UIDs are derived from the inputs
    and settings, so the same study analysed again (``--reprocess``, same work folder and
    settings) sends objects with the same SOPInstanceUIDs. Orthanc answers success and keeps
    one copy of each (the full round: test_model_reprocess_sends_the_same_uids)."""
    paths = model_served["results"]["good"]
    ae = AE(ae_title="BCC")
    for sop_class in (MAMMOGRAPHY_CAD_SR, SECONDARY_CAPTURE):
        ae.add_requested_context(sop_class)
    destination = orthanc.destination
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    assert assoc.is_established
    try:
        statuses = [assoc.send_c_store(path).Status for path in paths]
    finally:
        assoc.release()
    assert all(status in ACCEPTED_STATUSES for status in statuses), statuses
    again = orthanc.download_results(model_served["ids"]["good"],
                                     model_served["root"] / "again")
    uids = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                  for p in again)
    assert uids == sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                          for p in paths)


@slow
def test_model_reprocess_sends_the_same_uids(model_served, orthanc, dicom_run):
    """``bcc serve --reprocess`` then the study sent again: analysed again, the same result
    UIDs, Orthanc still holds one result set."""
    root, orthanc_id = model_served["root"], model_served["ids"]["good"]
    before = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                    for p in model_served["results"]["good"])
    sid = study_hash(dicom_run["sources"][("L", "CC")].StudyInstanceUID)
    proc = subprocess.run([sys.executable, "-m", "breast_cancer_classifier.bcc", "serve",
                           "--reprocess", sid, "--work-dir", str(root / "work")],
                          capture_output=True, text=True, cwd=REPO, env=serve_env())
    assert proc.returncode == 0, proc.stderr
    serve = _serve_model(orthanc, dicom_run, root / "work", root / "serve-again.log")
    try:
        serve.start(timeout=120)
        orthanc.store_to_bcc([orthanc_id])
        wait_for(lambda: _finished(serve, 1, 0) or serve.proc.poll() is not None,
                 MODEL_TIMEOUT, 0.5, "the study analysed again")
        assert serve.stop() == 0
    finally:
        if serve.proc is not None and serve.proc.poll() is None:
            serve.kill()
    assert "analysed in" in serve.log()
    after = orthanc.download_results(orthanc_id, root / "reprocessed")
    assert sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                  for p in after) == before

