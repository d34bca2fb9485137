"""The download command: git blob SHA-1 verification against a local HTTP server.

The server on 127.0.0.1 serves the parity kit's real CC images (their blob hashes are in
the package's official_files.tsv as sample_data/images/<name>.png) and, where a test asks, a
tampered copy that must be rejected and removed.
"""

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from breast_cancer_classifier.tools import demo_weights
from breast_cancer_classifier.tools import download
from breast_cancer_classifier.tools.download import DownloadError
from conftest import REPO, SHARED, parity_case

SCRIPT = REPO / "src" / "utilities" / "download_files.py"
IMAGES = ("1_L_CC", "1_R_CC", "2_L_CC", "2_R_CC")


class _Server:
    """Serves ``files`` ({url path: bytes}) and records the paths asked for."""

    def __init__(self):
        self.files, self.requests = {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/raw"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, commit, path, body):
        self.files[f"/raw/{commit}/{path}"] = body

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def release():
    return download.read_official_files()


@pytest.fixture
def real_images():
    """{name: bytes} of the parity kit's four real CC images (skips without the kit)."""
    folder = parity_case("real_cc") / "images"
    return {name: (folder / f"{name}.png").read_bytes() for name in IMAGES}


def _subset_list(tmp_path, release, lines):
    """A list of official files with the release's commit and the given (path, sha1) lines."""
    path = tmp_path / "official_files.tsv"
    path.write_text(f"# Files at commit {release.commit} (test subset)\n"
                    + "".join(f"{p}\t{h}\n" for p, h in lines))
    return path


def _official(release, name):
    return next(f for f in release.files if f.path == f"sample_data/images/{name}.png")


def _serve_images(server, release, images, tmp_path, names=IMAGES):
    for name in names:
        server.serve(release.commit, f"sample_data/images/{name}.png", images[name])
    return _subset_list(tmp_path, release,
                            [(f"sample_data/images/{n}.png", _official(release, n).blob_sha1)
                             for n in names])


# --------------------------------------------------------------------------- pure parts
def test_git_blob_sha1_is_what_git_computes(tmp_path):
    empty, hello = tmp_path / "empty", tmp_path / "hello"
    empty.write_bytes(b"")
    hello.write_bytes(b"hello\n")
    assert download.git_blob_sha1(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert download.git_blob_sha1(hello) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_the_list_names_the_original_release(release):
    assert release.commit == "6176ebea6950b0a953339593d2da417ab846dae0"
    assert len(release.select(weights=True)) == 5
    assert len(release.select(weights=False, sample_data=True)) == 17
    assert {f.name for f in release.select()} == set(demo_weights.DEMO_FILES)
    shared_copy = SHARED / "official_files.tsv"
    if shared_copy.is_file():
        assert download.OFFICIAL_FILES_PATH.read_text() == shared_copy.read_text()


def test_bad_line_of_the_list_is_reported(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("# commit " + "0" * 40 + "\nmodels/x.p not-a-hash\n")
    with pytest.raises(DownloadError, match="line 2"):
        download.read_official_files(path)


def test_destinations_and_urls(release):
    patch = next(f for f in release.files if f.name == "sample_patch_model.p")
    assert download.destination(patch, "M", "S").as_posix() == "M/sample_patch_model.p"
    exam_list = next(f for f in release.files if f.name.endswith(".pkl"))
    assert (download.destination(exam_list, "M", "S").as_posix()
            == "S/exam_list_before_cropping.pkl")
    assert download.file_url(download.DEFAULT_BASE_URL, release.commit, patch.path) == (
        "https://github.com/nyukat/breast_cancer_classifier/raw/"
        "6176ebea6950b0a953339593d2da417ab846dae0/models/sample_patch_model.p")


# --------------------------------------------------------------------------- with a server
def test_downloads_verify_and_land_in_place(server, release, real_images, tmp_path):
    subset = _serve_images(server, release, real_images, tmp_path)
    out = tmp_path / "official_sample_data"
    downloaded, skipped = download.download_official_files(
        weights=False, sample_data=True, sample_dir=out, base_url=server.base_url,
        official_files_path=subset)
    assert len(downloaded) == 4 and not skipped
    for name in IMAGES:
        assert (out / "images" / f"{name}.png").read_bytes() == real_images[name]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{n}.png" for n in IMAGES]


def test_tampered_file_is_rejected_and_removed(server, release, real_images, tmp_path):
    names = ("1_L_CC", "1_R_CC")
    subset = _serve_images(server, release, real_images, tmp_path, names)
    tampered = bytearray(real_images["1_R_CC"])
    tampered[len(tampered) // 2] ^= 0xFF
    server.serve(release.commit, "sample_data/images/1_R_CC.png", bytes(tampered))
    out = tmp_path / "official_sample_data"
    with pytest.raises(DownloadError) as err:
        download.download_official_files(weights=False, sample_data=True, sample_dir=out,
                                         base_url=server.base_url, official_files_path=subset)
    message = str(err.value)
    assert "1_R_CC.png" in message and _official(release, "1_R_CC").blob_sha1 in message
    assert "deleted" in message
    # The good file landed; the tampered one, and any temporary file, are gone.
    assert sorted(p.name for p in (out / "images").iterdir()) == ["1_L_CC.png"]


def test_present_and_verified_files_are_skipped(server, release, real_images, tmp_path):
    subset = _serve_images(server, release, real_images, tmp_path, ("1_L_CC", "2_L_CC"))
    out = tmp_path / "official_sample_data"
    (out / "images").mkdir(parents=True)
    (out / "images" / "1_L_CC.png").write_bytes(real_images["1_L_CC"])
    downloaded, skipped = download.download_official_files(
        weights=False, sample_data=True, sample_dir=out, base_url=server.base_url,
        official_files_path=subset)
    assert [p.name for p in skipped] == ["1_L_CC.png"]
    assert [p.name for p in downloaded] == ["2_L_CC.png"]
    assert server.requests == [f"/raw/{release.commit}/sample_data/images/2_L_CC.png"]


def test_foreign_file_is_kept_unless_overwrite(server, release, real_images, tmp_path):
    subset = _serve_images(server, release, real_images, tmp_path, ("2_R_CC",))
    target = tmp_path / "s" / "images" / "2_R_CC.png"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"my own file")
    with pytest.raises(DownloadError, match="not the official file.*--overwrite"):
        download.download_official_files(weights=False, sample_data=True,
                                         sample_dir=tmp_path / "s", base_url=server.base_url,
                                         official_files_path=subset)
    assert target.read_bytes() == b"my own file" and not server.requests
    download.download_official_files(weights=False, sample_data=True, sample_dir=tmp_path / "s",
                                     base_url=server.base_url, official_files_path=subset,
                                     overwrite=True)
    assert target.read_bytes() == real_images["2_R_CC"]


def test_demo_weights_are_replaced_and_forgotten(server, release, real_images, tmp_path):
    # Stand-in "official" checkpoint: an image served under a weight's name with its hash.
    body = real_images["1_L_CC"]
    server.serve(release.commit, "models/sample_patch_model.p", body)
    subset = _subset_list(tmp_path, release, [("models/sample_patch_model.p",
                                                    _official(release, "1_L_CC").blob_sha1)])
    models = tmp_path / "models"
    models.mkdir()
    (models / "sample_patch_model.p").write_bytes(b"demo weights")
    demo_weights._write_marker(models, {"sample_patch_model.p": download.git_blob_sha1(
        models / "sample_patch_model.p")}, seed=0)
    download.download_official_files(models_dir=models, base_url=server.base_url,
                                     official_files_path=subset)
    assert (models / "sample_patch_model.p").read_bytes() == body
    assert not (models / demo_weights.MARKER_NAME).exists()


def test_http_error_names_the_url(server, release, tmp_path):
    subset = _subset_list(tmp_path, release, [("sample_data/images/9_L_CC.png", "0" * 40)])
    with pytest.raises(DownloadError, match="9_L_CC.png: the server answered HTTP 404"):
        download.download_official_files(weights=False, sample_data=True,
                                         sample_dir=tmp_path / "s", base_url=server.base_url,
                                         official_files_path=subset)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_says_what_to_fetch_by_hand(release, tmp_path):
    base = f"http://127.0.0.1:{_closed_port()}/raw"
    with pytest.raises(DownloadError) as err:
        download.download_official_files(models_dir=tmp_path / "m", base_url=base, timeout=5)
    message = str(err.value)
    assert "network seems unreachable" in message and "by hand" in message
    for official in release.select(weights=True):
        assert download.file_url(base, release.commit, official.path) in message
        assert str(tmp_path / "m" / official.name) in message
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


# --------------------------------------------------------------------------- command line
def _run(*args, env_base=None):
    env = dict(os.environ, BCC_NO_PROGRESS="1")
    if env_base:
        env[download.BASE_URL_ENV] = env_base
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_command_line(server, release, real_images, tmp_path):
    subset = _serve_images(server, release, real_images, tmp_path, ("2_L_CC",))
    out = tmp_path / "s"
    common = ("--no-weights", "--sample-images", "--sample-dir", out, "--official-files", subset)
    check = _run("--check", *common)
    assert check.returncode == 1 and "1 missing" in check.stderr
    done = _run(*common, env_base=server.base_url)  # base address from the environment
    assert done.returncode == 0, done.stderr
    assert (out / "images" / "2_L_CC.png").read_bytes() == real_images["2_L_CC"]
    assert _run("--check", *common).returncode == 0

    shutil.rmtree(out)
    server.serve(release.commit, "sample_data/images/2_L_CC.png", b"not the image")
    failed = _run(*common, "--base-url", server.base_url)
    assert failed.returncode == 1
    assert "download_files.py: error:" in failed.stderr and "git blob SHA-1" in failed.stderr
    assert not (out / "images" / "2_L_CC.png").exists()
