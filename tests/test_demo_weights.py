"""Demo weights: deterministic, in the original checkpoint formats, loadable, never over official.

These weights are random (untrained): the tests check formats and determinism only, never
output values against references.
"""

import subprocess
import sys

import pytest
import torch
from torchvision.models import densenet121

from breast_cancer_classifier.tools import demo_weights
from breast_cancer_classifier.tools import download
from breast_cancer_classifier.core.checkpoints import load_weights_file
from breast_cancer_classifier.core.errors import OutputExistsError
from breast_cancer_classifier.core.views import VIEWS
from conftest import PARITY, REPO

# Tiny calibration inputs keep these tests fast; the command uses the full settings.
TINY = 0.05


def _assert_same_tensors(a, b):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _parity_state_dict(name):
    path = PARITY / "weights" / name
    if not path.is_file():
        pytest.skip(f"parity weights not found at {path} (set BCC_SHARED)")
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    return loaded.get("model", loaded)


@pytest.fixture(scope="module")
def patch_state():
    return demo_weights.make_patch_state_dict(patches_per_image=1)


CLASSIFIERS = [("view_split", 1, "image_split.p"), ("view_split", 3, "imageheatmaps_split.p"),
               ("image", 1, "image_mode.p"), ("image", 3, "imageheatmaps_mode.p")]


@pytest.fixture(scope="module")
def classifier_states():
    return {(mode, channels): demo_weights.make_classifier_state_dict(mode, channels,
                                                                      window_scale=TINY)
            for mode, channels, _ in CLASSIFIERS}


@pytest.fixture(scope="module")
def split_state(classifier_states):
    return classifier_states[("view_split", 1)]


def test_patch_weights_are_deterministic(patch_state):
    _assert_same_tensors(patch_state, demo_weights.make_patch_state_dict(patches_per_image=1))


def test_patch_weights_have_torchvision_densenet121_keys_and_shapes(patch_state):
    reference = densenet121(weights=None, num_classes=4).state_dict()
    assert list(patch_state) == list(reference)
    assert all(patch_state[k].shape == reference[k].shape for k in reference)
    parity = _parity_state_dict("patch.p")
    assert {k: v.shape for k, v in patch_state.items()} == {k: v.shape for k, v in parity.items()}


def test_batchnorm_statistics_are_measured(patch_state, split_state):
    for state in (patch_state, split_state):
        variances = [v for k, v in state.items() if k.endswith("running_var")]
        assert all(torch.isfinite(v).all() and (v > 0).all() for v in variances)
        assert not all(torch.allclose(v, torch.ones_like(v)) for v in variances)
        counts = [v for k, v in state.items() if k.endswith("num_batches_tracked")]
        assert counts and all(int(c) == 1 for c in counts)


def test_classifier_weights_are_deterministic(split_state):
    again = demo_weights.make_classifier_state_dict("view_split", 1, window_scale=TINY)
    _assert_same_tensors(split_state, again)
    other = demo_weights.make_classifier_state_dict("view_split", 1, seed=1, window_scale=TINY)
    key = "four_view_resnet.cc.first_conv.weight"
    assert not torch.equal(other[key], split_state[key])


@pytest.mark.parametrize("mode,channels,parity_name", CLASSIFIERS)
def test_classifier_keys_match_the_original_files(classifier_states, mode, channels,
                                                  parity_name):
    state = classifier_states[(mode, channels)]
    assert state["four_view_resnet.cc.first_conv.weight"].shape == (16, channels, 7, 7)
    for column, alias in (("cc", "l_cc"), ("cc", "r_cc"), ("mlo", "l_mlo"), ("mlo", "r_mlo")):
        assert (state[f"four_view_resnet.{alias}.final_bn.running_var"]
                is state[f"four_view_resnet.{column}.final_bn.running_var"])
    parity = _parity_state_dict(parity_name)
    assert list(state) == list(parity)  # same keys in the same order, aliases included
    assert all(state[k].shape == parity[k].shape for k in parity)


def test_classifier_outputs_are_not_saturated(split_state):
    from breast_cancer_classifier.core.classifier_models import build_view_split_model

    model = build_view_split_model(1)
    model.load_state_dict({k: v for k, v in split_state.items()
                           if k.split(".")[1] not in ("l_cc", "r_cc", "l_mlo", "r_mlo")})
    views = {v: torch.from_numpy(demo_weights._calibration_windows(v, 1, 0, TINY))
             for v in VIEWS}
    with torch.no_grad():
        probabilities = [torch.exp(out)[..., 1] for out in model.eval()(views).values()]
    for p in probabilities:
        assert ((p > 0.05) & (p < 0.95)).all()


@pytest.fixture
def fast_settings(monkeypatch, patch_state, classifier_states):
    """File handling tests reuse the state dicts made above instead of making them again."""
    monkeypatch.setattr(demo_weights, "make_patch_state_dict", lambda seed, n: patch_state)
    monkeypatch.setattr(demo_weights, "make_classifier_state_dict",
                        lambda mode, channels, seed, scale: classifier_states[(mode, channels)])


def test_write_load_keep_and_refuse(tmp_path, fast_settings):
    from breast_cancer_classifier.core.checkpoints.classifier import (load_classifier,
                                                                      load_single_image_model)
    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier

    models = tmp_path / "models"
    written, kept = demo_weights.write_demo_weights(models)
    assert [p.name for p in written] == list(demo_weights.DEMO_FILES) and not kept
    marker = (models / demo_weights.MARKER_NAME).read_text()
    assert "NOT TRAINED" in marker and "NOT PREDICTIONS" in marker
    assert set(demo_weights.demo_weight_files(models)) == set(demo_weights.DEMO_FILES)
    assert set(demo_weights.weights_status(models).values()) == {"demo"}

    # The original formats, through the project's own checkpoint loaders.
    assert set(load_weights_file(models / "sample_image_model.p")) == {"model"}
    load_patch_classifier(models / "sample_patch_model.p")
    for name, (mode, channels) in list(demo_weights.DEMO_FILES.items())[1:]:
        load_classifier(models / name, mode, channels)
        if mode == "image":
            load_single_image_model(models / name, "R-MLO", channels)

    written, kept = demo_weights.write_demo_weights(models)
    assert not written and len(kept) == 5

    (models / "sample_image_model.p").write_bytes(b"someone's own weights")
    with pytest.raises(OutputExistsError, match="sample_image_model.p"):
        demo_weights.write_demo_weights(models)
    written, _ = demo_weights.write_demo_weights(models, overwrite=True)
    assert [p.name for p in written] == ["sample_image_model.p"]


def test_official_weights_are_never_replaced(tmp_path, fast_settings):
    models = tmp_path / "models"
    models.mkdir()
    official = models / "sample_patch_model.p"
    official.write_bytes(b"stand-in for the official file")
    official_files = tmp_path / "official_files.tsv"
    official_files.write_text(f"# commit {'a' * 40}\nmodels/sample_patch_model.p\t"
                        f"{download.git_blob_sha1(official)}\n")
    written, kept = demo_weights.write_demo_weights(models, overwrite=True,
                                                    official_files_path=official_files)
    assert kept == [official] and official.name not in [p.name for p in written]
    assert official.read_bytes() == b"stand-in for the official file"
    status = demo_weights.weights_status(models, official_files)
    assert status.pop("sample_patch_model.p") == "official"
    assert set(status.values()) == {"demo"}
    assert "sample_patch_model.p" not in (models / demo_weights.MARKER_NAME).read_text()


def test_status_command_on_an_empty_folder(tmp_path):
    script = REPO / "src" / "utilities" / "make_demo_weights.py"
    done = subprocess.run([sys.executable, str(script), "--status", "--models-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{name}\tmissing" for name in demo_weights.DEMO_FILES]
