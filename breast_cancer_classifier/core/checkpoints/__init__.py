"""Every weight file of the project is read here, and only here (STYLE.md).

``load_weights_file`` is the one call to ``torch.load``: on the CPU, ``weights_only=True``
unless the user explicitly trusts the file. Model-specific key fixes live beside it:
``checkpoints.patch`` (the DenseNet-121 patch classifier) and ``checkpoints.classifier``
(the ResNet-22 cancer classifiers).
"""

import pickle
from pathlib import Path

from ..errors import CheckpointError


def load_weights_file(path, trust=False):
    """Load a checkpoint file onto the CPU.

    ``weights_only=True`` refuses files whose pickle needs arbitrary code; such a file fails
    with an explanation unless ``trust`` (``--trust-checkpoint``) is set.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        if trust:
            raise CheckpointError(f"{path}: cannot unpickle weight file ({err})") from err
        raise CheckpointError(
            f"{path}: this file needs more than plain tensors to load (torch.load with "
            f"weights_only=True refused it: {str(err).splitlines()[0]}). Loading it in full "
            "can run code stored in the file; if you trust its source, pass "
            "--trust-checkpoint") from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch weight file "
                              f"(truncated or corrupt?): {type(err).__name__}: {err}") from err


def describe_state_dict(state_dict):
    """A guess, for error messages, at which of the project's checkpoints this resembles."""
    keys = list(state_dict) if isinstance(state_dict, dict) else []
    if any(k.startswith("features.denseblock") for k in keys):
        return "a DenseNet-121 patch-classifier state dict"
    if any(k.startswith("four_view_resnet.") for k in keys):
        heads = "view_split" if any(k.startswith("fc1_cc.") for k in keys) else "image-mode"
        return f"a {heads} cancer-classifier state dict"
    if set(keys) == {"model"}:
        return "a cancer-classifier checkpoint ({'model': state_dict})"
    return f"an unrecognised file with {len(keys)} top-level key(s)"


def check_keys(path, expected, found, what):
    """Raise :class:`CheckpointError` listing missing and unexpected keys, if any."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
        raise CheckpointError(
            f"{path}: does not fit {what}. Missing keys: {show(missing) or 'none'}. "
            f"Unexpected keys: {show(unexpected) or 'none'}. The file looks like "
            f"{describe_state_dict(dict.fromkeys(found))}.")
