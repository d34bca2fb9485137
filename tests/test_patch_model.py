"""The patch classifier (SPEC 6.1) and its checkpoint loader (checkpoints.patch).

Models with random weights are used for shapes and padding only; the numbers are checked
against the reference in test_heatmaps.py (parity kit).
"""

import argparse
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import densenet121

from breast_cancer_classifier.core.checkpoints.patch import (fit_patch_state_dict,
                                                              load_patch_classifier,
                                                              modernize_densenet_keys)
from breast_cancer_classifier.core.errors import CheckpointError
from breast_cancer_classifier.core.patch_model import (PatchClassifier, SameConv2d, SameMaxPool2d,
                                                       apply_tf_same_padding, tf_same_padding)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PatchClassifier().eval()


def legacy_state_dict(state_dict):
    """The key style of old torchvision releases (denselayer1.norm.1.weight), no counters."""
    return {re.sub(r"(\.denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value
            for key, value in state_dict.items() if not key.endswith("num_batches_tracked")}


# --------------------------------------------------------------------------- padding
@pytest.mark.parametrize("extent, kernel, stride, expected", [
    (256, 7, 2, (2, 3)),   # conv0 on a patch: asymmetric
    (255, 7, 2, (3, 3)),
    (128, 3, 2, (0, 1)),   # pool0: only trailing
    (127, 3, 2, (1, 1)),
    (64, 3, 1, (1, 1)),    # dense-layer 3x3: the layer's own padding
    (64, 1, 1, (0, 0)),
    (5, 2, 4, (0, 1)),     # n % s != 0: max(0, k - n % s)
    (8, 1, 4, (0, 0)),     # k < s: no padding
])
def test_tf_same_padding(extent, kernel, stride, expected):
    assert tf_same_padding(extent, kernel, stride) == expected


def test_only_the_stem_gets_explicit_padding(model):
    replaced = {name for name, m in model.features.named_modules()
                if isinstance(m, (SameConv2d, SameMaxPool2d))}
    assert replaced == {"conv0", "pool0"}
    assert model.features.conv0.padding == (0, 0) and model.features.pool0.padding == 0
    for name, m in model.features.named_modules():
        if isinstance(m, nn.Conv2d) and name != "conv0":
            assert m.stride == (1, 1) and m.padding == ((m.kernel_size[0] - 1) // 2,) * 2
    pools = [m for m in model.features.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 3 and all(p.padding == 0 for p in pools)  # transitions unchanged


def test_same_conv_pads_two_before_three_after():
    torch.manual_seed(1)
    conv = SameConv2d(3, 4, 7, stride=2, padding=0, bias=False)
    x = torch.randn(2, 3, 16, 17)
    expected = F.conv2d(F.pad(x, (3, 3, 2, 3)), conv.weight, stride=2)  # W odd: 3/3, H even: 2/3
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)
    assert conv(x).shape == (2, 4, 8, 9)  # ceil(n / s), as TensorFlow "SAME"


def test_same_max_pool_pads_with_zeros_not_minus_infinity():
    pool = SameMaxPool2d(3, stride=2, padding=0)
    x = -torch.ones(1, 1, 4, 4)  # all negative: a padded zero wins where it is in the window
    out = pool(x)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 0] == -1  # no padding before: window inside the image
    assert out[0, 0, 0, 1] == 0 and out[0, 0, 1, 0] == 0 and out[0, 0, 1, 1] == 0


def test_forward_shapes(model):
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 256, 256)).shape == (2, 4)
        assert model(torch.zeros(1, 3, 255, 300)).shape == (1, 4)


def test_forward_is_features_relu_pool_classifier(model):
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        features = F.relu(model.features(x)).mean(dim=(2, 3))
        torch.testing.assert_close(model(x), model.classifier(features))


def test_state_dict_keys_are_torchvisions(model):
    reference = densenet121(weights=None, num_classes=4).state_dict()
    ours = model.state_dict()
    assert list(ours) == list(reference)
    assert all(ours[k].shape == reference[k].shape for k in ours)


def test_built_and_run_as_torchvision_s_densenet121():
    # Built here without torchvision: from the same seed, the same random weights, and with
    # the same padding the same logits, bit for bit.
    torch.manual_seed(0)
    ours = PatchClassifier().eval()
    torch.manual_seed(0)
    reference = densenet121(weights=None, num_classes=4)
    apply_tf_same_padding(reference.features)
    reference.eval()
    for (key, value), expected in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(value, expected), key
    x = torch.randn(2, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        pooled = F.adaptive_avg_pool2d(F.relu(reference.features(x)), (1, 1)).flatten(1)
        assert torch.equal(ours(x), reference.classifier(pooled))


# --------------------------------------------------------------------------- checkpoints
def test_modernize_legacy_keys():
    keys = {"features.denseblock1.denselayer1.norm.1.weight": 0,
            "features.denseblock4.denselayer16.conv.2.weight": 0,
            "features.denseblock2.denselayer3.relu.1.x": 0,
            "features.norm0.weight": 0, "features.transition1.conv.weight": 0,
            "features.denseblock1.denselayer1.norm1.bias": 0}
    assert sorted(modernize_densenet_keys(keys)) == sorted([
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.denseblock2.denselayer3.relu1.x",
        "features.norm0.weight", "features.transition1.conv.weight",
        "features.denseblock1.denselayer1.norm1.bias"])


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("ckpt") / "patch.p"
    torch.save(model.state_dict(), path)
    return path


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_load_current_keys(random_checkpoint, model):
    loaded = load_patch_classifier(random_checkpoint)
    assert not loaded.training
    assert_same_weights(loaded, model)


def test_load_legacy_keys_without_counters(tmp_path, random_checkpoint, model):
    legacy = legacy_state_dict(torch.load(random_checkpoint, weights_only=True))
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert not any(k.endswith("num_batches_tracked") for k in legacy)
    path = tmp_path / "legacy.p"
    torch.save(legacy, path)
    assert_same_weights(load_patch_classifier(path), model)


def test_load_parity_kit_weights(parity_weights):
    model = load_patch_classifier(parity_weights / "patch.p")
    raw = torch.load(parity_weights / "patch.p", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw[key]), key


def test_truncated_file(tmp_path, random_checkpoint):
    path = tmp_path / "truncated.p"
    path.write_bytes(random_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_patch_classifier(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_patch_classifier(tmp_path / "nothing.p")


def test_classifier_checkpoint_is_refused(tmp_path):
    path = tmp_path / "classifier.p"
    torch.save({"model": {"four_view_resnet.cc.first_conv.weight": torch.zeros(16, 1, 7, 7)}},
               path)
    with pytest.raises(CheckpointError, match="cancer-classifier checkpoint"):
        load_patch_classifier(path)


def test_bare_classifier_state_dict_lists_keys(tmp_path):
    path = tmp_path / "classifier_sd.p"
    torch.save({"four_view_resnet.cc.first_conv.weight": torch.zeros(16, 1, 7, 7),
                "fc1_cc.weight": torch.zeros(512, 512)}, path)
    with pytest.raises(CheckpointError) as info:
        load_patch_classifier(path)
    message = str(info.value)
    assert "Missing keys: classifier.bias" in message
    assert "Unexpected keys: fc1_cc.weight" in message
    assert "view_split cancer-classifier state dict" in message


def test_wrong_number_of_classes(tmp_path):
    path = tmp_path / "imagenet.p"
    torch.save(densenet121(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"classifier.weight \(1000, 1024\) \(expected "
                                              r"\(4, 1024\)\)"):
        load_patch_classifier(path)


class StateDictSubclass(dict):
    """A dict of tensors that torch.load(weights_only=True) refuses to rebuild."""


def test_unsafe_pickle_needs_trust(tmp_path, random_checkpoint, model):
    path = tmp_path / "subclass.p"
    torch.save(StateDictSubclass(torch.load(random_checkpoint, weights_only=True)), path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_patch_classifier(path)
    assert_same_weights(load_patch_classifier(path, trust=True), model)


def test_trusted_pickle_must_still_be_a_state_dict(tmp_path):
    path = tmp_path / "namespace.p"
    torch.save({"args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_patch_classifier(path)
    with pytest.raises(CheckpointError, match="'args' do not hold tensors"):
        load_patch_classifier(path, trust=True)


def test_fit_reports_shapes_before_loading(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["features.conv0.weight"] = torch.zeros(64, 1, 7, 7)
    with pytest.raises(CheckpointError, match=r"features.conv0.weight \(64, 1, 7, 7\)"):
        fit_patch_state_dict(state, model)


def test_loads_onto_requested_device(random_checkpoint):
    loaded = load_patch_classifier(random_checkpoint, device="cpu")
    assert next(loaded.parameters()).device.type == "cpu"
    assert np.isfinite(loaded(torch.zeros(1, 3, 256, 256)).detach().numpy()).all()

