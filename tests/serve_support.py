"""What the ``bcc serve`` tests and benchmark share: synthetic studies, a test-only
processor, a recording destination, a DICOM sender, ``bcc serve`` as a subprocess, and a
real PACS (Orthanc) on loopback.

The test processor (:class:`SyntheticProcessor`) lives here, outside the package, and is
reached only through the test hook of ``tools/serve/processor.py``: the environment
variable ``BCC_SERVE_TEST_PROCESSOR=serve_support:make_processor`` with ``tests/`` on
PYTHONPATH (:func:`serve_env`). It decodes every used image (so a corrupt one fails as in
the real analysis) and writes one small Secondary Capture (highdicom) per study, whose
pixels are the four views' mean values; every object gets a new random SOPInstanceUID, so
a result set written twice would show as two objects at the destination.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt

from breast_cancer_classifier.core.errors import InputImageError
from breast_cancer_classifier.core.views import VIEWS
from breast_cancer_classifier.tools.serve.config import Destination, ServeConfig
from breast_cancer_classifier.tools.serve.intake import MG_FOR_PRESENTATION, MG_FOR_PROCESSING
from breast_cancer_classifier.tools.serve.processor import PROCESSOR_HOOK_ENV
from dicom_files import BASIC_TEXT_SR, mammogram, phantom
from helpers import debian_tool
from loopback_only import listening_addresses, listens_on_loopback_only, loopback_preload

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists()
                                      else None)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
RESULT_DESCRIPTION, FAILURE_DESCRIPTION = "BCC test result", "BCC analysis failed"
SHAPE = (32, 24)  # tiny: ~1.5 KB of pixels per image
VIEW_CODES = {"CC": ("399162004", "SCT", "cranio-caudal"),
              "MLO": ("399368009", "SCT", "medio-lateral oblique")}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




# --------------------------------------------------------------------------- studies
def write_study(folder, index, views=VIEWS, shape=SHAPE, seed=0):
    """Four (or ``views``) MG For Presentation images of one synthetic study in ``folder``.

    Returns ``{"study_uid", "patient_id", "patient_name", "files": [paths]}``.
    """
    study_uid = generate_uid()
    patient_id, patient_name = f"SERVEPAT{index:04d}", f"Doe^Serve{index:04d}"
    files = []
    for k, view in enumerate(views):
        side, angle = view.split("-")
        files.append(mammogram(
            Path(folder) / f"s{index}" / f"{view}.dcm",
            phantom(12, "left" if side == "L" else "right", seed + k, shape), study=study_uid,
            patient=patient_id, side=side, view=angle, view_code=VIEW_CODES[angle],
            PatientName=patient_name, AccessionNumber=f"ACC{index:05d}", StudyID=str(index),
            SeriesNumber=1, InstanceNumber=k + 1))
    return {"study_uid": study_uid, "patient_id": patient_id, "patient_name": patient_name,
            "files": files}


def corrupt_copy(source, target):
    """A copy of a mammogram whose pixel data is cut short: the header reads, the pixels
    do not decode."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(target, enforce_file_format=True)
    return Path(target)


# --------------------------------------------------------------------------- processor
class SyntheticProcessor:
    """A deterministic, fast stand-in for the analysis (tests and benchmark only)."""

    def __init__(self, seconds=0.0):
        self.seconds = seconds
        self.calls = []  # study ids processed, in order

    def process(self, study, out_dir):
        self.calls.append(study.id)
        means, failures = {}, []
        for image in study.used_images:
            try:
                pixels = pydicom.dcmread(image.path).pixel_array
                means.setdefault(image.view, float(pixels.mean()))
            except Exception as err:  # a corrupt image: that view may still have another
                failures.append(f"{image.view}: pixel data cannot be decoded "
                                f"({type(err).__name__})")
        missing = [view for view in VIEWS if view not in means]
        if missing:
            raise InputImageError(f"no decodable image of {', '.join(missing)}"
                                  + (f" ({'; '.join(failures)})" if failures else ""))
        if self.seconds:
            time.sleep(self.seconds)
        values = np.array([[means[v] for v in VIEWS[:2]], [means[v] for v in VIEWS[2:]]])
        pixels = np.clip(np.rint(values * 255 / 4095), 0, 255).astype(np.uint8)
        return [self._write(study, out_dir / "result.dcm", pixels, RESULT_DESCRIPTION, "")]

    def failure_objects(self, study, reason, out_dir):
        return [self._write(study, out_dir / "failure.dcm", np.zeros((2, 2), np.uint8),
                            FAILURE_DESCRIPTION, reason)]

    def close(self):
        pass

    @staticmethod
    def _write(study, path, pixels, description, comments):
        ref = pydicom.dcmread(study.images[0].path, stop_before_pixels=True)
        image = hd.sc.SCImage(
            pixel_array=pixels, photometric_interpretation="MONOCHROME2", bits_allocated=8,
            coordinate_system="PATIENT", study_instance_uid=study.study_instance_uid,
            series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="bcc serve tests", patient_id=ref.PatientID,
            patient_name=ref.get("PatientName"), study_date=ref.get("StudyDate"),
            accession_number=ref.get("AccessionNumber"), patient_orientation=("L", "F"),
            series_description=description)
        if comments:
            image.ImageComments = comments[:10240]
        image.save_as(path, enforce_file_format=True)
        return path


def make_processor():
    """The test hook's factory; ``BCC_TEST_PROCESSOR_SECONDS`` adds a delay per study."""
    return SyntheticProcessor(float(os.environ.get("BCC_TEST_PROCESSOR_SECONDS", "0")))


def serve_env(**extra):
    """Environment of a ``bcc serve`` subprocess that uses the test processor."""
    path = os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, **{PROCESSOR_HOOK_ENV: "serve_support:make_processor"},
                PYTHONPATH=path, BCC_NO_PROGRESS="1", **extra)


def quick_config(work_dir, destination, **overrides):
    """A ServeConfig with test timings: quiet 0.3 s, polls of 0.05 s, retries from 0.1 s."""
    values = dict(work_dir=Path(work_dir), destination=destination, port=0,
                  study_quiet_seconds=0.3, study_timeout_seconds=5.0, poll_seconds=0.05,
                  retry_first_seconds=0.1, retry_max_seconds=0.4, network_timeout_seconds=5)
    values.update(overrides)
    return ServeConfig(**values)


# --------------------------------------------------------------------------- DICOM nodes
class RecordingSCP:
    """A destination that stores nothing and records every C-STORE it accepted."""

    def __init__(self, port=None, ae_title="DEST"):
        self.port = port or free_port()
        self.ae_title = ae_title
        self.received = []  # (SOPInstanceUID, StudyInstanceUID, SeriesDescription)
        self._lock = threading.Lock()
        self.server = None

    @property
    def destination(self):
        return Destination(self.ae_title, "127.0.0.1", self.port)

    def start(self):
        ae = AE(ae_title=self.ae_title)
        for sop_class in (SECONDARY_CAPTURE, "1.2.840.10008.5.1.4.1.1.88.50",
                          "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.11"):
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _store(self, event):
        ds = event.dataset
        with self._lock:
            self.received.append((str(ds.SOPInstanceUID), str(ds.StudyInstanceUID),
                                  str(ds.get("SeriesDescription", ""))))
        return 0x0000

    def by_study(self):
        counts = {}
        for _, study, _ in list(self.received):
            counts[study] = counts.get(study, 0) + 1
        return counts


def send_files(files, port, calling="PACS", called="BCC", tls_args=None):
    """C-STORE ``files`` over one association: the status of each (``"refused"`` when its
    SOP class was refused at negotiation), or None when the association was rejected."""
    ae = AE(ae_title=calling)
    for sop_class in (MG_FOR_PRESENTATION, MG_FOR_PROCESSING, SECONDARY_CAPTURE, BASIC_TEXT_SR):
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls_args)
    if not assoc.is_established:
        return None
    try:
        statuses = []
        for path in files:
            try:
                status = assoc.send_c_store(pydicom.dcmread(path))
            except ValueError:  # no accepted presentation context for its SOP class
                statuses.append("refused")
                continue
            statuses.append(status.get("Status") if status else None)
        return statuses
    finally:
        assoc.release()


def wait_for(condition, timeout, interval=0.05, what="the condition"):
    """Poll ``condition()`` until it is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def http_get(url, timeout=5):
    """``(status, body text)`` of a GET; (None, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return None, str(err)


def metric(text, name, labels=""):
    """The value of one sample of Prometheus text (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.split(" ")[0] == wanted:
            return float(line.split(" ")[1])
    return 0.0


# --------------------------------------------------------------------------- bcc serve
class ServeProcess:
    """``bcc serve`` as a subprocess with the test processor (``model=True``: the model
    processor, its weights and settings among ``extra``); stderr goes to a file."""

    def __init__(self, work_dir, port, destination, log_path, *extra, model=False, **env):
        self.port, self.http_port = port, free_port()
        self.args = [sys.executable, "-m", "breast_cancer_classifier.bcc", "serve",
                     "--work-dir", str(work_dir), "--port", str(port), "--destination",
                     str(destination), "--http-port", str(self.http_port), *map(str, extra)]
        self.env = serve_env(**env)
        if model:
            del self.env[PROCESSOR_HOOK_ENV]
        self.log_path = Path(log_path)
        self.proc = None

    def start(self, timeout=60):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env=self.env,
                                         cwd=REPO)
        wait_for(lambda: self.proc.poll() is not None or self.health()[0] == 200, timeout,
                 what="bcc serve to answer /healthz")
        if self.proc.poll() is not None:
            pytest.fail(f"bcc serve exited {self.proc.returncode}:\n{self.log()}")
        for port in (self.port, self.http_port):
            assert listens_on_loopback_only(port), (port, listening_addresses(port))
        return self

    def health(self):
        return http_get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2)

    def metrics(self):
        return http_get(f"http://127.0.0.1:{self.http_port}/metrics")[1]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --------------------------------------------------------------------------- Orthanc
class Orthanc:
    """Orthanc on free loopback ports, with a temporary storage folder, knowing the BCC
    node as modality ``bcc`` (``BCC`` at 127.0.0.1:``bcc_port``). Only that modality may
    C-STORE into it, from 127.0.0.1."""

    def __init__(self, folder, bcc_port, **settings):
        self.folder = Path(folder)
        self.settings = settings  # more (or other) configuration entries
        self.http_port, self.dicom_port, self.bcc_port = free_port(), free_port(), bcc_port
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.destination = Destination("ORTHANC", "127.0.0.1", self.dicom_port)
        self.proc = None

    def configuration(self):
        return {
            "Name": "bcc-serve-tests", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"), "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [], "ConcurrentJobs": 4,
            "DicomModalities": {"bcc": ["BCC", "127.0.0.1", self.bcc_port]},
            "DicomAlwaysAllowStore": False, "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True, "DicomScuTimeout": 30, "SaveJobs": False,
            "StableAge": 3600, "HttpTimeout": 120, **self.settings}

    def start(self, timeout=30):
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.configuration(), indent=1))
        self.log_path = self.folder / "orthanc.log"
        env = dict(os.environ, **loopback_preload(self.folder / "preload"))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=log,
                                         cwd=self.folder, env=env)
        wait_for(lambda: self.proc.poll() is not None or self.get("/system") is not None,
                 timeout, 0.1, "Orthanc to start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited {self.proc.returncode}: "
                               f"{self.log_path.read_text(errors='replace')[-2000:]}")
        wait_for(lambda: listening_addresses(self.dicom_port), timeout, 0.1,
                 "Orthanc's DICOM port")
        for port in (self.http_port, self.dicom_port):
            if not listens_on_loopback_only(port):
                self.stop()
                raise RuntimeError(f"Orthanc listens on {listening_addresses(port)} (hex) "
                                   f"for port {port}, not on loopback only")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    # REST
    def request(self, method, path, body=None, timeout=120):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            text = reply.read()
        return json.loads(text) if text else None

    def get(self, path):
        try:
            return self.request("GET", path, timeout=5)
        except OSError:
            return None

    def upload(self, path):
        """POST /instances; returns the Orthanc ID of the instance's study."""
        return self.request("POST", "/instances", Path(path).read_bytes())["ParentStudy"]

    def upload_study(self, study):
        ids = {self.upload(path) for path in study["files"]}
        assert len(ids) == 1, ids
        study["orthanc_id"] = ids.pop()
        return study["orthanc_id"]

    def store_to_bcc(self, orthanc_ids, timeout=300):
        """Ask Orthanc to C-STORE these studies to BCC (one association); the job's answer."""
        return self.request("POST", "/modalities/bcc/store",
                            {"Resources": list(orthanc_ids), "Synchronous": True,
                             "Permissive": True, "Timeout": 60}, timeout=timeout)

    def download_results(self, orthanc_id, folder):
        """The study's instances that are not MG, saved as ``<folder>/<Orthanc id>.dcm``;
        their paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for series in self.request("GET", f"/studies/{orthanc_id}/series"):
            if series["MainDicomTags"].get("Modality") == "MG":
                continue
            for instance in series["Instances"]:
                with urllib.request.urlopen(f"{self.url}/instances/{instance}/file",
                                            timeout=60) as reply:
                    paths.append(folder / f"{instance}.dcm")
                    paths[-1].write_bytes(reply.read())
        return sorted(paths)

    def results_per_study(self, orthanc_ids):
        """{Orthanc study id: [SeriesDescription of each instance that is not MG]}."""
        found = {}
        for study_id in orthanc_ids:
            found[study_id] = []
            for series in self.request("GET", f"/studies/{study_id}/series"):
                tags = series["MainDicomTags"]
                if tags.get("Modality") != "MG":
                    found[study_id] += [tags.get("SeriesDescription", "")] * len(
                        series["Instances"])
        return found


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """Orthanc for the session (skips, saying why, when it is absent outside CI)."""
    debian_tool("Orthanc", "orthanc")
    server = Orthanc(tmp_path_factory.mktemp("orthanc"), bcc_port=free_port()).start()
    yield server
    server.stop()
