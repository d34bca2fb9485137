"""tools.tf_port: the Keras ports against PyTorch, the TF single-image scripts against the kit,
the SavedModel round trip, and the scripts without TensorFlow.

Kit parity here runs the small ``synth_a/a1_R_CC`` case (a right view: the single-image
quirk shows): its heatmaps from ``run_producer_single_tf.py`` within 1e-5 of the kit's, and
its image+heatmaps prediction from ``run_model_single_tf.py`` within 1e-4. The other
single-image cases (``synth_a/a0_L_MLO``, ``synth_c``, ``real_cc``) take minutes of
TensorFlow time on two cores: ``benchmarks/bench_tf_parity.py`` runs them all and prints
the deviations. Converted models are built once per module.
"""

import importlib.util
import json
import re
import zipfile

import numpy as np
import pytest
import torch

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.checkpoints.classifier import load_single_image_model
from breast_cancer_classifier.core.errors import SettingsError
from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier
from breast_cancer_classifier.core.exam_list import load_metadata
from breast_cancer_classifier.core.stages import heatmaps
from breast_cancer_classifier.core.stages.augmentation import draw_single_image, window_batch
from breast_cancer_classifier.core.stages.classify import read_joint_array
from breast_cancer_classifier.core.views import view_angle
from breast_cancer_classifier.tools import tf_port

from conftest import PARITY, REPO, parity_case

needs_tf = pytest.mark.skipif(not tf_port.tensorflow_available(),
                              reason="TensorFlow not installed (pip install '.[tf]')")
MAP_TOL = 1e-5        # heatmaps, and patch-classifier outputs (issue 16)
PREDICTION_TOL = 1e-4  # single-image probabilities, classifier outputs (issue 16)
CASE, NAME, VIEW = "synth_a", "a1_R_CC", "R-CC"


def load_script(relative):
    """A script of src/ as a module, so its main() runs in this process (no TF re-import)."""
    path = REPO / "src" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(module, argv):
    with pytest.raises(SystemExit) as stop:
        module.main([str(a) for a in argv])
    return stop.value.code


# --------------------------------------------------------------------------- kit inputs
@pytest.fixture(scope="module")
def weights():
    path = PARITY / "weights"
    if not path.is_dir():
        pytest.skip(f"parity weights not found at {path} (set BCC_SHARED)")
    return path


@pytest.fixture(scope="module")
def legacy_weights(weights, tmp_path_factory):
    """Legacy (non-zip) serializations, as the official 2019 files are: the patch model also
    with old torchvision key names and no num_batches_tracked (SPEC 6.1)."""
    folder = tmp_path_factory.mktemp("legacy")
    patch = torch.load(weights / "patch.p", weights_only=True)
    patch = {re.sub(r"(\.denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
             for k, v in patch.items() if not k.endswith("num_batches_tracked")}
    torch.save(patch, folder / "patch.p", _use_new_zipfile_serialization=False)
    torch.save(torch.load(weights / "imageheatmaps_mode.p", weights_only=True),
               folder / "imageheatmaps_mode.p", _use_new_zipfile_serialization=False)
    for name in ("patch.p", "imageheatmaps_mode.p"):
        assert zipfile.is_zipfile(weights / name) and not zipfile.is_zipfile(folder / name)
    return folder


@pytest.fixture(scope="module")
def kit_image(tmp_path_factory):
    """``(cropped image path, metadata path, expected folder)`` of the kit's a1_R_CC."""
    case = parity_case(CASE)
    expected = case / "expected" / "single" / NAME
    metadata_path = expected / "cropped_metadata.pkl"
    top, bottom, left, right = load_metadata(metadata_path)["window_location"]
    image = formats.read_mammogram_png(case / "images" / f"{NAME}.png")[top:bottom, left:right]
    pixels = json.loads((case / "expected" / "cropped_pixels.json").read_text())[NAME]
    assert list(image.shape) == pixels["shape"]
    path = tmp_path_factory.mktemp("kit") / f"{NAME}.png"
    formats.write_png(path, image)
    return path, metadata_path, expected


@pytest.fixture(scope="module")
def kit_patches(kit_image):
    """Six standardized 256 x 256 x 3 patches of the kit image (NHWC float32)."""
    image = heatmaps.prepare_image(formats.read_image_file(kit_image[0]), "CC", "NO")
    starts = [(r, c) for r in (0, 400, image.shape[0] - 256)
              for c in (0, image.shape[1] - 256)]
    patches = [image[r:r + 256, c:c + 256] for r, c in starts]
    return np.repeat(np.stack(patches)[..., None], 3, axis=-1).astype(np.float32)


@pytest.fixture(scope="module")
def kit_window(kit_image):
    """The top-left 1024 x 768 of a classifier input window (1 x H x W x 1, float32) of the
    kit image, not augmented: the full 2974 x 1748 window runs in the script test below."""
    path, metadata_path, _ = kit_image
    metadata = load_metadata(metadata_path)
    joint = read_joint_array(path, VIEW, metadata["horizontal_flip"])
    draws = draw_single_image(np.random.RandomState(0), 1, False)
    window = window_batch([joint], [metadata["best_center"]], view_angle(VIEW), draws, False)
    return np.ascontiguousarray(window[:, :1024, :768])


@pytest.fixture(scope="module")
def torch_patch(weights):
    return load_patch_classifier(weights / "patch.p")


@pytest.fixture(scope="module")
def torch_single(weights):
    return load_single_image_model(weights / "image_mode.p", VIEW, 1)


def torch_forward(model, nhwc):
    with torch.inference_mode():
        return model(torch.from_numpy(nhwc).permute(0, 3, 1, 2)).numpy()


def check_outputs(what, got, want, tol):
    """Max |got - want| within ``tol``; returns it. Patch-classifier logits (N x 4) are
    checked through the softmax probabilities stage 3 uses, and relative to their scale:
    logits of magnitude ~6 after 120 float32 layers differ by ~1e-6 of that (up to 9.5e-6
    absolute was seen), which moves a probability by ~2e-6."""
    assert got.shape == want.shape
    deviation = float(np.abs(got - want).max())
    if want.ndim == 2:  # patch logits
        probabilities = float((torch.softmax(torch.tensor(got), 1)
                               - torch.softmax(torch.tensor(want), 1)).abs().max())
        print(f"{what}: max |logit dev| {deviation:.2e} (logits up to "
              f"{np.abs(want).max():.2f}), max |probability dev| {probabilities:.2e}")
        assert probabilities <= tol
        assert deviation <= tol * max(1.0, float(np.abs(want).max()))
    else:
        print(f"{what}: max |log-probability dev| {deviation:.2e}")
        assert deviation <= tol
    return deviation


# --------------------------------------------------------------------------- the ports
@needs_tf
def test_keras_port_keeps_the_spec_layer_settings(torch_single):
    from breast_cancer_classifier.tools.tf_port.keras_models import build_single_image_classifier

    model = build_single_image_classifier(torch_single)
    norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert norms and all(layer.epsilon == 1e-5 for layer in norms)
    # Symmetric PyTorch padding: every convolution is VALID after an explicit zero pad.
    assert convs and all(layer.padding == "valid" for layer in convs)


# --------------------------------------------------------------------------- the scripts
@needs_tf
def test_tf_scripts_match_the_kit_and_accept_legacy_files(kit_image, legacy_weights, tmp_path,
                                                         capsys):
    path, metadata_path, expected = kit_image
    producer = load_script("heatmaps/run_producer_single_tf.py")
    maps = {kind: tmp_path / f"{kind}_heatmap.hdf5" for kind in ("malignant", "benign")}
    args = ["--model-path", legacy_weights / "patch.p", "--cropped-mammogram-path", path,
            "--metadata-path", metadata_path, "--heatmap-path-malignant", maps["malignant"],
            "--heatmap-path-benign", maps["benign"], "--device-type", "cpu"]
    assert run_main(producer, args + ["--tf-torch-weights-map-path", "unused.npy"]) == 0
    assert "--tf-torch-weights-map-path is not needed" in capsys.readouterr().err
    for kind, made in maps.items():
        got, want = formats.read_hdf5(made), formats.read_hdf5(expected / f"{kind}_heatmap.hdf5")
        assert got.shape == want.shape and got.dtype == np.float32
        deviation = float(np.abs(got.astype(np.float64) - want).max())
        print(f"{NAME} {kind} heatmap: max deviation {deviation:.2e}")
        assert deviation <= MAP_TOL
    assert run_main(producer, args) == 2  # outputs exist, no --overwrite
    assert "already exists" in capsys.readouterr().err

    # The kit's heatmaps (made by the reference's PyTorch producer) feed the TF classifier.
    classifier = load_script("modeling/run_model_single_tf.py")
    assert run_main(classifier, [
        "--view", VIEW, "--model-path", legacy_weights / "imageheatmaps_mode.p",
        "--cropped-mammogram-path", path, "--metadata-path", metadata_path, "--use-heatmaps",
        "--heatmap-path-malignant", expected / "malignant_heatmap.hdf5",
        "--heatmap-path-benign", expected / "benign_heatmap.hdf5", "--use-augmentation",
        "--num-epochs", 10, "--device-type", "cpu"]) == 0
    got = json.loads(capsys.readouterr().out.strip())
    want = next(e for e in json.loads((parity_case(CASE) / "expected" /
                                       "single_predictions.json").read_text())
                if e["name"] == NAME)["imageheatmaps"]
    deviation = max(abs(got[key] - want[key]) for key in ("benign", "malignant"))
    print(f"{NAME} image+heatmaps prediction: max deviation {deviation:.2e}")
    assert set(got) == {"benign", "malignant"} and deviation <= PREDICTION_TOL


@needs_tf
def test_tf_classifier_refuses_a_patch_checkpoint(kit_image, weights, capsys):
    path, metadata_path, _ = kit_image
    classifier = load_script("modeling/run_model_single_tf.py")
    assert run_main(classifier, ["--view", VIEW, "--model-path", weights / "patch.p",
                                 "--cropped-mammogram-path", path,
                                 "--metadata-path", metadata_path]) == 2
    assert "patch.p" in capsys.readouterr().err


def test_tf_scripts_without_tensorflow_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(tf_port, "tensorflow_available", lambda: False)
    for script, args in (("heatmaps/run_producer_single_tf.py",
                          ["--heatmap-path-malignant", tmp_path / "m.hdf5",
                           "--heatmap-path-benign", tmp_path / "b.hdf5"]),
                         ("modeling/run_model_single_tf.py", ["--view", "L-CC"])):
        code = run_main(load_script(script), ["--model-path", tmp_path / "w.p",
                                              "--cropped-mammogram-path", tmp_path / "x.png",
                                              "--metadata-path", tmp_path / "m.pkl"] + args)
        assert code == 2
        assert "pip install" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(SettingsError, match=r"\[tf\]"):
        tf_port.export_saved_model(None, "patch", tmp_path / "saved")


# --------------------------------------------------------------------------- SavedModel
@needs_tf
def test_saved_model_round_trip(torch_patch, torch_single, kit_patches, kit_window, tmp_path):
    # The SavedModel is the Keras port plus NCHW <-> NHWC transposes: this is also the check
    # of both ports against PyTorch on kit inputs (zip-serialized files; the script tests
    # above load legacy ones).
    for network, torch_model, nhwc, tol in (("patch", torch_patch, kit_patches, MAP_TOL),
                                            ("single_image", torch_single, kit_window,
                                             PREDICTION_TOL)):
        directory = tmp_path / network
        assert tf_port.export_saved_model(torch_model, network, directory) == directory
        assert (directory / "saved_model.pb").is_file()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
        run = tf_port.load_saved_model(directory)
        nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
        got = run(nchw)
        assert isinstance(got, np.ndarray)
        check_outputs(f"SavedModel {network}", got, torch_forward(torch_model, nhwc), tol)
    with pytest.raises(ValueError, match="network"):
        tf_port.export_saved_model(torch_patch, "view_split", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
