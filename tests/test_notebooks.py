"""notebooks/image_level.ipynb: committed without outputs, and runs top to bottom.

It is executed in a fresh kernel of this interpreter (nbclient, the ``notebook`` extra),
from the repository root, with one repetition instead of ten, on demo weights in a temporary
folder; its predictions must be those of ``bcc single`` with the same weights. The demo
weights are written beforehand by ``write_demo_weights`` with tiny calibration inputs, as
``tests/test_demo_weights.py`` does (the notebook calls the same function for missing
files, which takes longer with the full calibration).
"""

import json
import re
import sys

import pytest

from breast_cancer_classifier.tools import demo_weights
from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "image_level.ipynb"
LINE = re.compile(r"^(\S+)\s+(image only|image \+ heatmaps)\s+benign (\S+)\s+malignant (\S+)$")


def test_committed_without_outputs_and_warns_first():
    notebook = json.loads(NOTEBOOK.read_text())
    first = "".join(notebook["cells"][0]["source"])
    assert notebook["cells"][0]["cell_type"] == "markdown"
    assert "Demo weights are not the trained model" in first
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_runs_top_to_bottom_and_predicts_as_bcc_single(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra: pip install "
                                   "'breast-cancer-classifier[notebook]'")
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra")
    pytest.importorskip("ipykernel", reason="the notebook extra")
    from breast_cancer_classifier.core.single import SingleSettings, run_single

    # A kernel spec for this very interpreter, so that no other Python is picked up.
    spec = tmp_path / "jupyter" / "kernels" / "bcc-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bcc test", "language": "python"}))
    models = tmp_path / "models"
    make_patch, make_classifier = (demo_weights.make_patch_state_dict,
                                   demo_weights.make_classifier_state_dict)
    with monkeypatch.context() as fast:
        fast.setattr(demo_weights, "make_patch_state_dict",
                     lambda seed, n: make_patch(seed, patches_per_image=1))
        fast.setattr(demo_weights, "make_classifier_state_dict",
                     lambda mode, channels, seed, scale: make_classifier(
                         mode, channels, seed, window_scale=0.05))
        demo_weights.write_demo_weights(models)
    assert set(demo_weights.weights_status(models).values()) == {"demo"}
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("BCC_MODELS_DIR", str(models))
    monkeypatch.setenv("BCC_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="bcc-test",
                            resources={"metadata": {"path": str(REPO)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "DEMO WEIGHTS (untrained)" in text
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 1
    printed = {(m[1], m[2]): (float(m[3]), float(m[4]))
               for m in map(LINE.match, text.splitlines()) if m}
    assert set(printed) == {("0_L_CC", "image only"), ("0_L_CC", "image + heatmaps")}

    settings = SingleSettings(patch_model_path=str(models / "sample_patch_model.p"),
                              image_model_path=str(models / "ImageOnly__ModeImage_weights.p"),
                              imageheatmaps_model_path=str(
                                  models / "ImageHeatmaps__ModeImage_weights.p"),
                              device_type="cpu", num_epochs=1)
    expected = run_single(REPO / "sample_data" / "images" / "0_L_CC.png", "L-CC",
                          tmp_path / "single", settings)
    for stage, name in (("image", "image only"), ("imageheatmaps", "image + heatmaps")):
        benign, malignant = printed["0_L_CC", name]
        assert benign == pytest.approx(expected[stage]["benign"], abs=1e-6)
        assert malignant == pytest.approx(expected[stage]["malignant"], abs=1e-6)
