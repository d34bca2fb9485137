"""The registry of exam-classifier families: what ``bcc run`` runs in stage 4.

A family is a name, a checkpoint loader, its input channels and its output CSV. The engine,
the output folder (``run_layout``), the exam result files, the assembled CSVs, the run
record's weights and ``bcc run``'s ``--families`` / ``--weights`` flags all iterate this
registry, so a new family is one :func:`register_family` call, and no line of ``core``
changes for it. The two built-in families are the paper's stage 4a and 4b.

A family's model takes ``{view: N x C x H x W float32 tensor}`` (the four views' windows,
C = ``len(input_channels)``) and returns the view-split classifier's outputs: ``{"CC": N x 4
x 2, "MLO": N x 4 x 2}`` log-probabilities, rows in ``views.LABELS`` order.
"""

from dataclasses import dataclass
from typing import Callable

from .errors import SettingsError
from .stages.classify import IMAGE_AND_HEATMAPS, IMAGE_ONLY, uses_heatmaps


@dataclass(frozen=True)
class ClassifierFamily:
    """One exam classifier.

    ``load(path, channels, device, trust)``: the model of a weight file, in eval mode on
    ``device`` (a ``torch.device``); ``trust`` is ``--trust-checkpoint``.
    ``input_channels``: :data:`classify.IMAGE_ONLY` or :data:`classify.IMAGE_AND_HEATMAPS`.
    """

    name: str
    csv_name: str
    load: Callable
    input_channels: tuple = IMAGE_ONLY

    @property
    def uses_heatmaps(self):
        return uses_heatmaps(self.input_channels)


_REGISTRY = {}


def register_family(family):
    """Add ``family``; refuses a name or CSV name already taken. Returns the family."""
    for other in _REGISTRY.values():
        if family.name == other.name or family.csv_name == other.csv_name:
            raise SettingsError(f"classifier family {family.name!r} ({family.csv_name}) clashes "
                                f"with the registered {other.name!r} ({other.csv_name})")
    _REGISTRY[family.name] = family
    return family


def unregister_family(name):
    _REGISTRY.pop(name, None)


def families():
    """Every registered family, in registration order (the built-ins first)."""
    return tuple(_REGISTRY.values())


def get_family(name):
    """The family called ``name``; :class:`SettingsError` naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SettingsError(f"unknown classifier family {name!r}; registered: "
                            f"{', '.join(_REGISTRY)}") from None


def load_view_split_classifier(path, channels, device, trust=False):
    """The paper's exam classifier (ResNet-22 columns, view-split heads), channels-last."""
    import torch

    from .checkpoints.classifier import load_classifier

    model = load_classifier(path, "view_split", channels, trust=trust, device=device)
    return model.to(memory_format=torch.channels_last)


IMAGE = register_family(ClassifierFamily(
    "image", "image_predictions.csv", load_view_split_classifier, IMAGE_ONLY))
IMAGEHEATMAPS = register_family(ClassifierFamily(
    "imageheatmaps", "imageheatmaps_predictions.csv", load_view_split_classifier,
    IMAGE_AND_HEATMAPS))
BUILT_IN = (IMAGE.name, IMAGEHEATMAPS.name)
