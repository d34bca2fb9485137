"""The home folder (core.home): $BCC_HOME, this checkout, or the platform's user data folder;
and the default weight paths that ``bcc run``, ``bcc single`` and the tools take from it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from breast_cancer_classifier.core import home
from breast_cancer_classifier.core.engine import EngineSettings
from breast_cancer_classifier.core.single import SingleSettings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_checkout(monkeypatch, tmp_path):
    """As if installed from a wheel: no checkout beside the package, no $BCC_HOME."""
    monkeypatch.setattr(home, "_CHECKOUT", tmp_path / "site-packages")
    monkeypatch.delenv(home.HOME_ENV, raising=False)


def test_bcc_home_comes_first(monkeypatch, tmp_path):
    monkeypatch.setenv(home.HOME_ENV, str(tmp_path / "h"))
    assert home.models_dir() == tmp_path / "h" / "models"
    assert home.official_sample_dir() == tmp_path / "h" / "official_sample_data"
    assert home.describe_models_dir() == f"{tmp_path / 'h' / 'models'} ($BCC_HOME)"


def test_a_checkout_keeps_its_models_folder(monkeypatch):
    monkeypatch.delenv(home.HOME_ENV, raising=False)
    assert home.models_dir() == REPO / "models"
    assert home.official_sample_dir() == REPO / "official_sample_data"


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {}, "HOME/.local/share/breast_cancer_classifier"),
    ("linux", {"XDG_DATA_HOME": "XDG"}, "XDG/breast_cancer_classifier"),
    ("darwin", {}, "HOME/Library/Application Support/breast_cancer_classifier"),
    ("win32", {"LOCALAPPDATA": "LOCAL"}, "LOCAL/breast_cancer_classifier"),
    ("win32", {}, "HOME/AppData/Local/breast_cancer_classifier"),
])
def test_user_data_folder_per_platform(monkeypatch, tmp_path, no_checkout, platform, env,
                                       expected):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "HOME"))
    for name in ("XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(tmp_path / value))
    assert home.user_data_dir() == tmp_path / expected
    assert home.models_dir() == tmp_path / expected / "models"
    assert "set $BCC_HOME" in home.describe_models_dir()


def test_default_weights_here_first_then_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(home.HOME_ENV, str(tmp_path / "h"))
    monkeypatch.chdir(tmp_path)
    in_home = tmp_path / "h" / "models"
    assert EngineSettings().weight_paths() == {
        "patch": str(in_home / "sample_patch_model.p"),
        "image": str(in_home / "sample_image_model.p"),
        "imageheatmaps": str(in_home / "sample_imageheatmaps_model.p")}
    assert SingleSettings().image_model_path == str(in_home / "ImageOnly__ModeImage_weights.p")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sample_patch_model.p").write_bytes(b"x")
    # run.sh's relative path, as before, when the file is in ./models.
    assert EngineSettings().patch_model_path == os.path.join("models", "sample_patch_model.p")
    assert EngineSettings().image_model_path == str(in_home / "sample_image_model.p")
    assert EngineSettings(patch_model_path="mine.p").patch_model_path == "mine.p"


def test_commands_print_the_models_folder_they_use(tmp_path):
    env = dict(os.environ, BCC_HOME=str(tmp_path / "h"), BCC_NO_PROGRESS="1",
               PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "breast_cancer_classifier.bcc", "demo-weights",
                           "--status"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"models folder {tmp_path / 'h' / 'models'} ($BCC_HOME)" in done.stderr
    assert done.stdout.splitlines()[0] == "sample_patch_model.p\tmissing"
