"""``bcc serve`` with a real PACS: Orthanc (Debian package ``orthanc``) on loopback.

Studies are uploaded to Orthanc over REST, Orthanc is asked to C-STORE them to BCC
(``/modalities/bcc/store``, four jobs at once: four parallel associations), and the results
are counted in Orthanc, in the same studies. The processor is the test-only
``SyntheticProcessor``, whose every object has a new random SOPInstanceUID: a result set
made twice would show up as two objects.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pydicom

from breast_cancer_classifier.tools.serve.service import Service
from helpers import debian_tool
from serve_support import (ORTHANC, REPO, RESULT_DESCRIPTION, Orthanc, ServeProcess,
                           SyntheticProcessor, free_port, metric, orthanc, quick_config,
                           wait_for, write_study)  # noqa: F401 (fixture)

STUDIES = 20


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
