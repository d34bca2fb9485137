"""Cancer-classifier checkpoints (SPEC 7.1, 9): ``{"model": state_dict}`` files.

The reference registers each of its two ResNet columns under several names, so its files
hold the ``four_view_resnet.cc.`` column again as ``.l_cc.`` and ``.r_cc.`` (and ``mlo`` as
``.l_mlo.``/``.r_mlo.``). Our models hold each column once. The aliases are optional; when
present they must equal the shared column tensor for tensor, because the reference uses the
``r_`` copies for exams and the shared ones for single images, and a file where they differ
has no single meaning. ``num_batches_tracked`` buffers (unused in eval mode) may be absent.
"""

from collections import OrderedDict

import torch

from . import check_keys, describe_state_dict, load_weights_file
from ..classifier_models import (VIEW_KEY, build_image_model, build_single_image_model,
                                 build_view_split_model, single_image_column)
from ..errors import CheckpointError
from ..views import VIEWS

COLUMN_PREFIX = "four_view_resnet."
# Alias prefix → the shared column it copies.
ALIASES = {"l_cc": "cc", "r_cc": "cc", "l_mlo": "mlo", "r_mlo": "mlo"}
MODEL_MODES = ("view_split", "image")
_BUILDERS = {"view_split": build_view_split_model, "image": build_image_model}


def read_classifier_state_dict(path, trust=False):
    """Read a ``{"model": state_dict}`` file; return the state dict with the aliases checked
    and removed (a :class:`CheckpointError` names the first disagreeing keys)."""
    checkpoint = load_weights_file(path, trust=trust)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        found = (f"keys {', '.join(map(str, list(checkpoint)[:5]))}"
                 if isinstance(checkpoint, dict) else type(checkpoint).__name__)
        raise CheckpointError(
            f"{path}: expected a cancer-classifier checkpoint {{'model': state_dict}}, found "
            f"{found}. Is this the patch model (give it to stage 3) or a bare state dict?")
    state_dict = checkpoint["model"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: checkpoint['model'] is a {type(state_dict).__name__}, "
                              "expected a state dict")
    return _without_aliases(path, state_dict)


def _without_aliases(path, state_dict):
    shared, aliased = {}, {}
    for key, value in state_dict.items():
        alias = _alias_of(key)
        (aliased if alias else shared)[key] = value
    disagreeing, orphans = [], []
    for key, value in aliased.items():
        alias, rest = _alias_of(key)
        target = f"{COLUMN_PREFIX}{ALIASES[alias]}.{rest}"
        if target not in shared:
            orphans.append(key)
        elif not _same_tensor(value, shared[target]):
            disagreeing.append(f"{key} != {target}")
    if orphans:
        raise CheckpointError(
            f"{path}: alias key(s) without a shared column key: {_show(orphans)}; the file "
            f"must hold the {COLUMN_PREFIX}cc./mlo. columns")
    if disagreeing:
        raise CheckpointError(
            f"{path}: per-view column aliases disagree with the shared column: "
            f"{_show(disagreeing)}. The reference would use the r_cc/r_mlo copies for exams and "
            "cc/mlo for single images; refusing a file with two meanings")
    return shared


def _alias_of(key):
    """``(alias, rest)`` for ``four_view_resnet.<alias>.<rest>`` keys, else ``None``."""
    if not key.startswith(COLUMN_PREFIX):
        return None
    name, _, rest = key[len(COLUMN_PREFIX):].partition(".")
    return (name, rest) if name in ALIASES else None


def _same_tensor(a, b):
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
            and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b))


def _show(items, limit=6):
    items = list(items)
    return "; ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def checkpoint_channels(state_dict, path, first_conv_key):
    """Input channels of a column, from its ``first_conv.weight`` (16 x C x 7 x 7)."""
    weight = state_dict.get(first_conv_key)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise CheckpointError(f"{path}: no 4-D {first_conv_key!r} in the checkpoint; "
                              "not a cancer-classifier state dict")
    return int(weight.shape[1])


def _check_channels(path, state_dict, channels, first_conv_key):
    found = checkpoint_channels(state_dict, path, first_conv_key)
    if found != channels:
        def what(c):
            return {1: "image only", 3: "image + heatmaps"}.get(c, f"{c} channels")
        hint = ("drop --use-heatmaps or use an image+heatmaps model" if channels == 3
                else "pass --use-heatmaps (with --heatmaps-path) or use an image-only model")
        raise CheckpointError(
            f"{path}: {first_conv_key} has {found} input channel(s) ({what(found)}), but this "
            f"run feeds {channels} ({what(channels)}); {hint}")


def _fill_batch_counters(model_state, state_dict):
    """Add absent ``num_batches_tracked`` buffers (unused in eval mode) from the model."""
    filled = dict(state_dict)
    for key, value in model_state.items():
        if key.endswith("num_batches_tracked") and key not in filled:
            filled[key] = value
    return filled


def load_classifier(path, model_mode, channels, trust=False, device=None):
    """Build the ``view_split`` or ``image`` model and load ``path`` into it (strict).

    ``channels`` is 1 (image only) or 3 (with heatmaps); a checkpoint with another input
    channel count or another head layout is refused with a message saying which.
    Returns the model in eval mode on ``device`` (CPU by default).
    """
    if model_mode not in MODEL_MODES:
        raise ValueError(f"model mode must be one of {', '.join(MODEL_MODES)}, got {model_mode!r}")
    state_dict = read_classifier_state_dict(path, trust)
    _check_channels(path, state_dict, channels, f"{COLUMN_PREFIX}cc.first_conv.weight")
    model = _BUILDERS[model_mode](channels)
    expected = model.state_dict()
    state_dict = _fill_batch_counters(expected, state_dict)
    check_keys(path, expected, state_dict, f"the {model_mode} classifier "
               f"(--model-mode {model_mode})")
    _load_strict(path, model, state_dict)
    return model.eval().to(device or "cpu")


def single_image_state_dict(state_dict, full_view):
    """Map an image-mode state dict to :class:`SingleImageModel` keys for ``full_view``.

    The column is ``cc`` or ``mlo`` by angle, ``fc1`` the view's ``fc1_<lcc|rcc|lmlo|rmlo>``
    and the output layer the FIRST 4 rows of the view's ``output_layer_<view>.fc_layer``
    (benign pair, then malignant pair), SPEC 9.
    """
    column = f"{COLUMN_PREFIX}{single_image_column(full_view)}."
    key = VIEW_KEY[full_view]
    mapped = {}
    for name, value in state_dict.items():
        if name.startswith(column):
            mapped["column." + name[len(column):]] = value
        elif name.startswith(f"fc1_{key}."):
            mapped["fc1." + name[len(f"fc1_{key}."):]] = value
        elif name.startswith(f"output_layer_{key}.fc_layer."):
            mapped["output_layer.fc_layer." + name.rsplit(".", 1)[1]] = value[:4]
    return mapped


def load_single_image_model(path, full_view, channels, trust=False, device=None):
    """The single-image classifier of SPEC 9 for ``full_view`` from an image-mode checkpoint."""
    if full_view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {full_view!r}")
    state_dict = read_classifier_state_dict(path, trust)
    key = VIEW_KEY[full_view]
    if f"output_layer_{key}.fc_layer.weight" not in state_dict:
        raise CheckpointError(
            f"{path}: no 'output_layer_{key}.fc_layer.weight'; the single-image classifier needs "
            f"an image-mode checkpoint, this looks like {describe_state_dict(state_dict)}")
    column = single_image_column(full_view)
    _check_channels(path, state_dict, channels, f"{COLUMN_PREFIX}{column}.first_conv.weight")
    model = build_single_image_model(channels)
    expected = model.state_dict()
    mapped = _fill_batch_counters(expected, single_image_state_dict(state_dict, full_view))
    check_keys(path, expected, mapped, f"the single-image classifier for {full_view} "
               f"(built from {COLUMN_PREFIX}{column}., fc1_{key}, output_layer_{key})")
    _load_strict(path, model, mapped)
    return model.eval().to(device or "cpu")


def _load_strict(path, model, state_dict):
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:  # shape mismatches: keys already match
        raise CheckpointError(f"{path}: tensor shapes do not fit the model: {err}") from err


# --------------------------------------------------------------------------- writing
# The original files' order: the shared columns, then their per-view copies, then the heads.
_ALIAS_ORDER = (("cc", "l_cc"), ("mlo", "l_mlo"), ("cc", "r_cc"), ("mlo", "r_mlo"))


def with_column_aliases(state_dict):
    """The state dict with the original's per-view column copies added (same tensors).

    Both model modes have them in the original files; a loader that strips them (ours) and
    the original's (which registers the copies itself) read the result alike.
    """
    columns = [(k, v) for k, v in state_dict.items() if k.startswith(COLUMN_PREFIX)]
    rest = [(k, v) for k, v in state_dict.items() if not k.startswith(COLUMN_PREFIX)]
    prefix = len(COLUMN_PREFIX)
    aliases = [(f"{COLUMN_PREFIX}{alias}.{k[prefix + len(column) + 1:]}", v)
               for column, alias in _ALIAS_ORDER for k, v in columns
               if k.startswith(f"{COLUMN_PREFIX}{column}.")]
    return OrderedDict(columns + aliases + rest)


def save_classifier(model, path):
    """Write ``model`` (view_split or image mode) as the original's ``{"model": state_dict}``.

    CPU tensors, column aliases added, PyTorch's legacy (non-zip) serialization, as the
    official 2019 files: the original release's PyTorch 0.4 reads only that. Atomic; the
    same weights give the same bytes.
    """
    from ..formats import atomic_path

    state = {k: v.detach().to("cpu", copy=True).contiguous()
             for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            save_legacy({"model": with_column_aliases(state)}, f)


def save_legacy(obj, f):
    """``torch.save(obj, f, _use_new_zipfile_serialization=False)``, with stable storage keys.

    PyTorch's legacy writer names each storage by its memory address, so the same weights
    give other bytes in every process. This writes the same format (magic number, protocol,
    system info, the pickled object, the storage keys, the storages) with keys numbered in
    order of first use; readers resolve keys by name, so they read it as any legacy file.
    CPU tensors only (``obj`` holds tensors, numbers, strings and containers).
    """
    import pickle
    import sys

    from torch import serialization

    keys, storages = {}, {}

    class _Pickler(pickle.Pickler):
        def persistent_id(self, item):
            if not isinstance(item, torch.storage.TypedStorage):
                return None
            untyped = item._untyped_storage
            key = keys.setdefault(untyped.data_ptr(), str(len(keys)))
            storages.setdefault(key, (untyped, item.dtype))
            return ("storage", getattr(torch, item._pickle_storage_type()), key, "cpu",
                    item._size(), None)

    protocol = serialization.DEFAULT_PROTOCOL
    sys_info = {"protocol_version": serialization.PROTOCOL_VERSION,
                "little_endian": sys.byteorder == "little",
                "type_sizes": {"short": serialization.SHORT_SIZE,
                               "int": serialization.INT_SIZE,
                               "long": serialization.LONG_SIZE}}
    for header in (serialization.MAGIC_NUMBER, serialization.PROTOCOL_VERSION, sys_info):
        pickle.dump(header, f, protocol=protocol)
    _Pickler(f, protocol=protocol).dump(obj)
    order = sorted(storages)  # as PyTorch's writer lists them
    pickle.dump(order, f, protocol=protocol)
    f.flush()
    for key in order:
        storage, dtype = storages[key]
        storage._write_file(f, serialization._should_read_directly(f), True,
                            torch._utils._element_size(dtype))
