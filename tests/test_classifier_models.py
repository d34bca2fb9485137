"""The ResNet-22 classifiers (SPEC 7.1, 9) and their checkpoint loader.

Random weights here test shapes, key layouts and loading only; their outputs are never
compared with reference numbers (test_classify.py does that with the parity kit's weights).
"""

import pytest
import torch

from breast_cancer_classifier.core.checkpoints.classifier import (load_classifier,
                                                                   load_single_image_model,
                                                                   read_classifier_state_dict)
from breast_cancer_classifier.core.classifier_models import (build_image_model,
                                                             build_single_image_model,
                                                             build_view_split_model)
from breast_cancer_classifier.core.errors import CheckpointError
from breast_cancer_classifier.core.views import VIEWS

ALIASES = {"cc": ("l_cc", "r_cc"), "mlo": ("l_mlo", "r_mlo")}
SMALL = {"CC": (80, 64), "MLO": (88, 60)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny inputs: one thread avoids thread-pool overhead dominating on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _with_aliases(state_dict):
    """The state dict as the reference saves it: each column again under its view aliases."""
    out = dict(state_dict)
    for key, value in state_dict.items():
        for column, aliases in ALIASES.items():
            prefix = f"four_view_resnet.{column}."
            if key.startswith(prefix):
                for alias in aliases:
                    out[f"four_view_resnet.{alias}.{key[len(prefix):]}"] = value.clone()
    return out


def _randomized(model, seed=0):
    """Give BatchNorm statistics non-trivial values so that loading mistakes show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.5
                             if name.endswith("running_var")
                             else torch.randn(tensor.shape, generator=gen) * 0.1)
    return model.eval()


def _save(path, state_dict):
    torch.save({"model": state_dict}, path)
    return path


def _views(channels, n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {view: torch.randn(n, channels, *SMALL[view.split("-")[1]], generator=gen)
            for view in VIEWS}


# --------------------------------------------------------------------------- architecture
def test_column_keys_follow_the_reference_layout():
    keys = set(build_view_split_model(1).state_dict())
    assert "four_view_resnet.cc.first_conv.weight" in keys
    for layer in range(5):  # every layer's first block has a 1x1 downsample, even stride 1
        assert f"four_view_resnet.mlo.layer_list.{layer}.0.downsample.0.weight" in keys
        assert f"four_view_resnet.mlo.layer_list.{layer}.1.downsample.0.weight" not in keys
    assert {"fc1_cc.weight", "fc1_mlo.bias", "output_layer_cc.fc_layer.weight",
            "output_layer_mlo.fc_layer.bias", "four_view_resnet.cc.final_bn.running_var"} <= keys
    assert not any(".l_cc." in k or ".r_mlo." in k for k in keys)
    image_keys = set(build_image_model(3).state_dict())
    assert {"fc1_lcc.weight", "fc1_rmlo.bias", "output_layer_lmlo.fc_layer.weight"} <= image_keys
    assert build_image_model(3).state_dict()["four_view_resnet.cc.first_conv.weight"].shape == \
        (16, 3, 7, 7)


@pytest.mark.parametrize("stem,builder", [("image_split", build_view_split_model),
                                          ("imageheatmaps_mode", build_image_model)])
def test_builder_keys_are_the_checkpoint_keys_without_aliases(parity_weights, stem, builder):
    state_dict = read_classifier_state_dict(parity_weights / f"{stem}.p")
    channels = 3 if stem.startswith("imageheatmaps") else 1
    model_state = builder(channels).state_dict()
    assert set(state_dict) == set(model_state)
    assert all(state_dict[k].shape == model_state[k].shape for k in model_state)


def test_output_shapes():
    with torch.inference_mode():
        split = _randomized(build_view_split_model(3))(_views(3))
        image = _randomized(build_image_model(1))(_views(1))
        single = _randomized(build_single_image_model(1))(_views(1)["L-CC"])
    assert set(split) == {"CC", "MLO"} and split["CC"].shape == (2, 4, 2)
    assert set(image) == set(VIEWS) and image["R-MLO"].shape == (2, 4, 2)
    assert single.shape == (2, 2, 2)
    # log-softmax over each pair
    torch.testing.assert_close(split["MLO"].exp().sum(-1), torch.ones(2, 4))


def test_channel_count_must_be_1_or_3():
    with pytest.raises(ValueError, match="1 .* or 3"):
        build_view_split_model(2)


# --------------------------------------------------------------------------- loading
def test_load_with_and_without_aliases_gives_the_same_model(tmp_path):
    source = _randomized(build_view_split_model(1))
    plain = _save(tmp_path / "plain.p", source.state_dict())
    aliased = _save(tmp_path / "aliased.p", _with_aliases(source.state_dict()))
    inputs = _views(1)
    with torch.inference_mode():
        expected = source(inputs)
        for path in (plain, aliased):
            got = load_classifier(path, "view_split", 1)(inputs)
            for head in ("CC", "MLO"):
                torch.testing.assert_close(got[head], expected[head], rtol=0, atol=0)


def test_disagreeing_aliases_are_refused_naming_the_keys(tmp_path):
    state_dict = _with_aliases(_randomized(build_image_model(1)).state_dict())
    state_dict["four_view_resnet.r_mlo.final_bn.bias"] += 1.0
    path = _save(tmp_path / "bad.p", state_dict)
    with pytest.raises(CheckpointError, match=r"four_view_resnet\.r_mlo\.final_bn\.bias != "
                                              r"four_view_resnet\.mlo\.final_bn\.bias"):
        load_classifier(path, "image", 1)


def test_one_channel_checkpoint_with_heatmaps_is_refused(tmp_path):
    path = _save(tmp_path / "image_only.p", build_view_split_model(1).state_dict())
    with pytest.raises(CheckpointError, match=r"1 input channel.*feeds 3.*--use-heatmaps"):
        load_classifier(path, "view_split", 3)
    path3 = _save(tmp_path / "with_heatmaps.p", build_view_split_model(3).state_dict())
    with pytest.raises(CheckpointError, match=r"3 input channel.*feeds 1"):
        load_classifier(path3, "view_split", 1)


def test_wrong_model_mode_is_refused_with_the_keys(tmp_path):
    path = _save(tmp_path / "split.p", build_view_split_model(1).state_dict())
    with pytest.raises(CheckpointError, match=r"--model-mode image.*Missing keys: fc1_lcc"):
        load_classifier(path, "image", 1)


def test_missing_batch_counters_are_accepted(tmp_path):
    source = _randomized(build_image_model(1))
    state_dict = {k: v for k, v in source.state_dict().items()
                  if not k.endswith("num_batches_tracked")}
    model = load_classifier(_save(tmp_path / "old.p", state_dict), "image", 1)
    torch.testing.assert_close(model.fc1_rcc.weight, source.fc1_rcc.weight)


def test_bare_state_dict_is_refused(tmp_path):
    path = tmp_path / "bare.p"
    torch.save(build_view_split_model(1).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"\{'model': state_dict\}"):
        load_classifier(path, "view_split", 1)


class _NotATensor:
    pass


def test_file_needing_code_asks_for_trust(tmp_path):
    path = tmp_path / "pickled.p"
    torch.save({"model": _NotATensor()}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_classifier(path, "view_split", 1)


@pytest.mark.parametrize("view", VIEWS)
def test_single_image_model_is_the_image_models_view_head(tmp_path, view):
    source = _randomized(build_image_model(3), seed=1)
    path = _save(tmp_path / "mode.p", _with_aliases(source.state_dict()))
    single = load_single_image_model(path, view, 3)
    x = _views(3)[view]
    with torch.inference_mode():
        expected = source({v: x if v.split("-")[1] == view.split("-")[1] else
                           _views(3)[v] for v in VIEWS})[view][:, :2]
        torch.testing.assert_close(single(x), expected, rtol=1e-5, atol=1e-6)


def test_single_image_model_needs_an_image_mode_checkpoint(tmp_path):
    path = _save(tmp_path / "split.p", build_view_split_model(1).state_dict())
    with pytest.raises(CheckpointError, match="image-mode checkpoint"):
        load_single_image_model(path, "L-CC", 1)


def test_on_the_cpu_each_view_runs_alone_with_the_bits_of_the_joined_pair():
    torch.manual_seed(0)
    model = build_view_split_model(3).eval()
    views = {view: torch.randn(2, 3, *SMALL[view.split("-")[1]]) for view in VIEWS}
    with torch.inference_mode():
        features = model.four_view_resnet(views)
        for angle, column in (("CC", model.four_view_resnet.cc),
                              ("MLO", model.four_view_resnet.mlo)):
            both = column(torch.cat([views[f"L-{angle}"], views[f"R-{angle}"]]))
            assert torch.equal(features[f"L-{angle}"], both[:2])
            assert torch.equal(features[f"R-{angle}"], both[2:])
