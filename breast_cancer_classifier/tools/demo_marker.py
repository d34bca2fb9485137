"""Which files in a models folder are our demo weights: the note ``DEMO_WEIGHTS.txt``.

The note lists each demo file with its git blob SHA-1, so a file counts as demo weights only
while its content is the one written; downloads and ``make demo`` read and update it.
"""

from collections import OrderedDict
from pathlib import Path

from ..core.formats import write_bytes_atomic
from ..core.hashing import git_blob_sha1

MARKER_NAME = "DEMO_WEIGHTS.txt"
# Official file name → (model, input channels).
DEMO_FILES = OrderedDict([
    ("sample_patch_model.p", ("patch", 3)),
    ("sample_image_model.p", ("view_split", 1)),
    ("sample_imageheatmaps_model.p", ("view_split", 3)),
    ("ImageOnly__ModeImage_weights.p", ("image", 1)),
    ("ImageHeatmaps__ModeImage_weights.p", ("image", 3)),
])

MARKER_TEXT = """\
DEMO WEIGHTS: NOT TRAINED. THE NUMBERS THEY PRODUCE ARE NOT PREDICTIONS.

The files listed below were made by `bcc demo-weights` (seed {seed}):
random initialisation, with BatchNorm statistics measured on synthetic phantoms, saved in
the original release's checkpoint formats so that the whole pipeline can run without the
official weights. Nothing they output says anything about any mammogram.

To get the official weights run
    bcc download --models-dir <this folder>
(`make download` in a checkout), which replaces the files listed here and removes this
note when none are left.

# file<TAB>git blob SHA-1 of the demo file
"""


def demo_weight_files(models_dir):
    """``{name: path}`` of files in ``models_dir`` that hold demo weights (hash-checked)."""
    models_dir = Path(models_dir)
    recorded = _read_marker(models_dir)
    return {name: models_dir / name for name, sha1 in recorded.items()
            if (models_dir / name).is_file() and git_blob_sha1(models_dir / name) == sha1}


def forget_demo_weights(models_dir, names):
    """Drop ``names`` from the demo note (their files were replaced); remove an empty note."""
    models_dir = Path(models_dir)
    recorded = _read_marker(models_dir)
    for name in names:
        recorded.pop(name, None)
    _write_marker(models_dir, recorded)


def _read_marker(models_dir):
    path = Path(models_dir) / MARKER_NAME
    if not path.is_file():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) == 2 and fields[0] in DEMO_FILES and len(fields[1]) == 40:
            entries[fields[0]] = fields[1]
    return entries


def _marker_seed(models_dir):
    path = Path(models_dir) / MARKER_NAME
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith("# seed\t"):
                return int(line.split("\t")[1])
    return None


def _write_marker(models_dir, recorded, seed=None):
    path = Path(models_dir) / MARKER_NAME
    if not recorded:
        path.unlink(missing_ok=True)
        return
    seed = _marker_seed(models_dir) if seed is None else seed
    lines = [f"{name}\t{sha1}" for name, sha1 in recorded.items()]
    write_bytes_atomic(path, (MARKER_TEXT.format(seed=seed) + f"# seed\t{seed}\n"
                              + "\n".join(lines) + "\n").encode())
