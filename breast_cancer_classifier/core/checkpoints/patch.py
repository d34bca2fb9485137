"""The patch classifier's weight file (SPEC 6.1): a bare DenseNet-121 state dict.

Two historical variations are accepted and nothing else is guessed:

- Old torchvision releases named the parts of a dense layer with dots
  (``denselayer1.norm.1.weight``, ``conv.2.weight``); current ones write ``norm1``/``conv2``.
  The official ``sample_patch_model.p`` may be of either kind.
- BatchNorm ``num_batches_tracked`` counters may be absent (they do not affect inference).

Everything else must match exactly (``strict=True``); otherwise the error lists the missing
and unexpected keys and says what the file looks like (a classifier checkpoint, say).
"""

import re

import torch

from ..errors import CheckpointError
from ..patch_model import PatchClassifier
from . import check_keys, describe_state_dict, load_weights_file

# denselayer<i>.norm.1.weight -> denselayer<i>.norm1.weight (also relu, conv; 1 and 2).
_LEGACY_DENSE_LAYER_KEY = re.compile(r"(\.denselayer\d+\.(?:norm|relu|conv))\.([12])\.")
_BATCHES_TRACKED = "num_batches_tracked"


def modernize_densenet_keys(state_dict):
    """Rename legacy dotted dense-layer keys to the current torchvision form (new dict)."""
    return {_LEGACY_DENSE_LAYER_KEY.sub(r"\1\2.", key): value
            for key, value in state_dict.items()}


def _as_state_dict(obj, path):
    """Check that a loaded file is a bare state dict (str -> tensor)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a DenseNet-121 state dict (a dict of tensors), "
                              f"found a {type(obj).__name__}")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path}: expected a bare DenseNet-121 state dict (the patch classifier, "
            f"SPEC 6.1), but key(s) {', '.join(map(repr, not_tensors[:4]))} do not hold "
            f"tensors; the file looks like {describe_state_dict(obj)}. Is it the patch "
            "model (sample_patch_model.p)?")
    return obj


def fit_patch_state_dict(state_dict, model, path="patch checkpoint"):
    """Return ``state_dict`` renamed and completed to fit ``model`` exactly, or raise.

    Legacy keys are renamed; missing ``num_batches_tracked`` entries are taken from the
    model (they are unused in eval mode). Key sets and tensor shapes must then match.
    """
    state_dict = modernize_densenet_keys(state_dict)
    expected = model.state_dict()
    absent_counters = [k for k in expected if k.endswith(_BATCHES_TRACKED) and k not in state_dict]
    check_keys(path, [k for k in expected if k not in absent_counters], state_dict,
               "the DenseNet-121 patch classifier (SPEC 6.1)")
    for key in absent_counters:
        state_dict[key] = expected[key].clone()
    wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if tuple(state_dict[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(
            f"{path}: tensor shapes do not fit the DenseNet-121 patch classifier with "
            f"{model.classifier.out_features} outputs: {'; '.join(wrong[:4])}"
            + (f" ... ({len(wrong)} in all)" if len(wrong) > 4 else ""))
    return state_dict


def load_patch_classifier(path, device="cpu", trust=False):
    """Build the patch classifier from a weight file, in eval mode on ``device``.

    ``trust`` allows files that ``torch.load(weights_only=True)`` refuses (``--trust-checkpoint``).
    Raises :class:`CheckpointError` for unreadable, foreign or mismatching files.
    """
    state_dict = _as_state_dict(load_weights_file(path, trust=trust), path)
    model = PatchClassifier()
    model.load_state_dict(fit_patch_state_dict(state_dict, model, path), strict=True)
    return model.eval().to(device)
