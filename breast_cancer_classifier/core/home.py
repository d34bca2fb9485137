"""Where the project keeps its files when no flag says: the home folder and its ``models/``.

The home folder is the first of:

1. ``$BCC_HOME``, when set;
2. the checkout, when the package runs from one (``pyproject.toml`` and ``src/`` beside the
   package, as in an editable install): ``make download``, ``make demo``, run.sh and the
   tests keep the weights in its ``models/``, as before;
3. the platform's user data folder (standard library only): on Linux and other Unixes
   ``$XDG_DATA_HOME/breast_cancer_classifier`` (``~/.local/share/breast_cancer_classifier``
   when unset), on macOS ``~/Library/Application Support/breast_cancer_classifier``, on
   Windows ``%LOCALAPPDATA%\\breast_cancer_classifier``.

Under it: ``models/`` (the five checkpoints, official or demo; ``bcc download`` and ``bcc
demo-weights`` write there) and ``official_sample_data/`` (``bcc download --sample-images``).
A checkpoint given by name only, e.g. ``sample_patch_model.p`` (the default of every weight
flag), is ``models/<name>`` in the current folder when that file exists (run.sh's relative
path, unchanged), else ``<home>/models/<name>``.
"""

import os
import sys
from dataclasses import field
from functools import partial
from pathlib import Path

HOME_ENV = "BCC_HOME"
APP_NAME = "breast_cancer_classifier"
_CHECKOUT = Path(__file__).resolve().parents[2]


def _is_checkout(root):
    return (root / "pyproject.toml").is_file() and (root / "src" / "cropping").is_dir()


def user_data_dir():
    """The platform's per-user data folder for this project (not created here)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / APP_NAME


def home_dir():
    """``(folder, why)``: the home folder and which rule chose it, for messages."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser(), f"${HOME_ENV}"
    if _is_checkout(_CHECKOUT):
        return _CHECKOUT, "this checkout"
    return user_data_dir(), f"the user data folder; set ${HOME_ENV} to choose another"


def models_dir():
    """Where the checkpoints are looked for and written by default."""
    return home_dir()[0] / "models"


def official_sample_dir():
    """Where ``bcc download --sample-images`` puts the original's sample exams by default."""
    return home_dir()[0] / "official_sample_data"


def describe_models_dir():
    """``'<folder> (<why>)'`` for the line a command prints when it uses the default."""
    folder, why = home_dir()
    return f"{folder / 'models'} ({why})"


def default_weight_path(name):
    """The default path of the checkpoint file ``name``: ``models/<name>`` here if present,
    else in :func:`models_dir` (where the error then points when it is missing)."""
    local = Path("models") / name
    return str(local) if local.is_file() else str(models_dir() / name)


def weight_default(name):
    """A settings dataclass field whose default is :func:`default_weight_path` of ``name``,
    worked out when the settings are made (so ``$BCC_HOME`` and the current folder count)."""
    return field(default_factory=partial(default_weight_path, name))
