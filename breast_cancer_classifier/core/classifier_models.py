"""The stage-4 cancer classifiers: a pre-activation ResNet-22 column and its heads (SPEC 7.1, 9).

Three public models, all taking float32 ``N x C x H x W`` images (C = 1 image-only, 3 with
the benign and malignant heatmaps):

- :class:`ViewSplitModel` (the reference's ``SplitBreastModel``, ``--model-mode view_split``):
  both CC views share the ``cc`` column, both MLO views the ``mlo`` column; the two CC
  feature vectors are concatenated into one head, likewise for MLO.
- :class:`ImageModel` (``--model-mode image``): the same two columns, one head per view.
- :class:`SingleImageModel` (SPEC 9): one column, one ``fc1`` and the first 4 output rows of
  one view's head, as the single-image path builds it from an image-mode checkpoint.

State-dict keys of the first two are exactly those of the original checkpoints without the
per-view column aliases (``four_view_resnet.cc.…``, ``fc1_cc.…``, ``output_layer_cc.fc_layer.…``);
``checkpoints.classifier`` loads the files, with or without the aliases.
"""

import torch
from torch import nn

from .views import VIEWS, view_angle

# SPEC 7.1: planes and strides of the five layers, two blocks each.
COLUMN_PLANES = (16, 32, 64, 128, 256)
COLUMN_STRIDES = (1, 2, 2, 2, 2)
BLOCKS_PER_LAYER = 2
FEATURES = COLUMN_PLANES[-1]  # per view, after the spatial mean
PAIRS = 4  # each head yields 4 (negative, positive) pairs: 8 logits
# Head names of the image-mode model and of the checkpoint keys, per view.
VIEW_KEY = {"L-CC": "lcc", "R-CC": "rcc", "L-MLO": "lmlo", "R-MLO": "rmlo"}


class _BasicBlockV2(nn.Module):
    """Pre-activation basic block: ``a = relu(bn1(x))``; ``conv2(relu(bn2(conv1(a)))) + shortcut``.

    The shortcut is ``downsample(a)`` (a 1x1 convolution) when the block has one, else ``x``.
    """

    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False))
                           if downsample else None)

    def forward(self, x):
        # In-place ReLU and sum: same numbers, fewer full-size allocations (the outputs of
        # bn1, bn2 and conv2 are not needed again, also not by autograd).
        a = torch.relu_(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(a)
        h = self.conv1(a)
        h = self.conv2(torch.relu_(self.bn2(h)))
        return h.add_(shortcut)


class ResNetColumn(nn.Module):
    """The ResNet-22 column ("ViewResNetV2"): ``N x C x H x W`` → ``N x 256`` features.

    ``first_conv`` (7x7, stride 2, no padding) and ``first_pool`` (3x3 max, stride 2), five
    layers of two pre-activation blocks whose first block always has a 1x1 ``downsample``,
    ``final_bn`` and ReLU, then the mean over all spatial positions.
    """

    def __init__(self, in_channels):
        super().__init__()
        self.first_conv = nn.Conv2d(in_channels, COLUMN_PLANES[0], 7, stride=2, padding=0,
                                    bias=False)
        self.first_pool = nn.MaxPool2d(3, stride=2, padding=0)
        layers = []
        inplanes = COLUMN_PLANES[0]
        for planes, stride in zip(COLUMN_PLANES, COLUMN_STRIDES):
            blocks = [_BasicBlockV2(inplanes, planes, stride, downsample=True)]
            blocks += [_BasicBlockV2(planes, planes, 1, downsample=False)
                       for _ in range(BLOCKS_PER_LAYER - 1)]
            layers.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer_list = nn.ModuleList(layers)
        self.final_bn = nn.BatchNorm2d(inplanes)

    def forward(self, x):
        h = self.first_pool(self.first_conv(x))
        for layer in self.layer_list:
            h = layer(h)
        h = torch.relu_(self.final_bn(h))
        return h.flatten(2).mean(-1)


class _FourViewColumns(nn.Module):
    """The two columns, ``cc`` and ``mlo`` (checkpoint prefix ``four_view_resnet.``)."""

    def __init__(self, in_channels):
        super().__init__()
        self.cc = ResNetColumn(in_channels)
        self.mlo = ResNetColumn(in_channels)

    def forward(self, views):
        """``{view: N x C x H x W}`` → ``{view: N x 256}``.

        On a GPU the two views of an angle run as one batch (fewer, fuller kernels). In
        inference on the CPU each view runs alone: the same bits and speed (a full-size
        3-channel CC pair: 0.22 s either way on 2 cores) with half the activation memory
        (peak 209 MB above the inputs instead of 367 MB), as the reference runs them. In
        training mode the pair stays one batch: BatchNorm's batch statistics depend on it.
        """
        features = {}
        for angle, column in (("CC", self.cc), ("MLO", self.mlo)):
            left, right = f"L-{angle}", f"R-{angle}"
            if views[left].device.type == "cpu" and not self.training:
                features[left], features[right] = column(views[left]), column(views[right])
                continue
            n = views[left].shape[0]
            both = column(torch.cat([views[left], views[right]], dim=0))
            features[left], features[right] = both[:n], both[n:]
        return features


class OutputLayer(nn.Module):
    """Linear ``in_features → 2 * pairs`` → ``N x pairs x 2`` log-probabilities."""

    def __init__(self, in_features, pairs=PAIRS):
        super().__init__()
        self.pairs = pairs
        self.fc_layer = nn.Linear(in_features, 2 * pairs)

    def forward(self, x):
        h = self.fc_layer(x)
        return torch.log_softmax(h.view(*h.shape[:-1], self.pairs, 2), dim=-1)


class ViewSplitModel(nn.Module):
    """``SplitBreastModel``: returns ``{"CC": N x 4 x 2, "MLO": N x 4 x 2}`` log-probabilities.

    Rows of each head: left_benign, right_benign, left_malignant, right_malignant (SPEC 7.3).
    """

    def __init__(self, in_channels):
        super().__init__()
        self.four_view_resnet = _FourViewColumns(in_channels)
        self.fc1_cc = nn.Linear(2 * FEATURES, 2 * FEATURES)
        self.fc1_mlo = nn.Linear(2 * FEATURES, 2 * FEATURES)
        self.output_layer_cc = OutputLayer(2 * FEATURES)
        self.output_layer_mlo = OutputLayer(2 * FEATURES)
        self.relu = nn.ReLU()

    def forward(self, views):
        h = self.four_view_resnet(views)
        cc = torch.cat([h["L-CC"], h["R-CC"]], dim=1)
        mlo = torch.cat([h["L-MLO"], h["R-MLO"]], dim=1)
        return {"CC": self.output_layer_cc(self.relu(self.fc1_cc(cc))),
                "MLO": self.output_layer_mlo(self.relu(self.fc1_mlo(mlo)))}


class ImageModel(nn.Module):
    """``ImageBreastModel``: returns ``{view: N x 4 x 2}`` log-probabilities, one head per view.

    Of each view's 4 pairs only rows 0 (benign) and 1 (malignant) are used (SPEC 7.3).
    """

    def __init__(self, in_channels):
        super().__init__()
        self.four_view_resnet = _FourViewColumns(in_channels)
        for key in VIEW_KEY.values():
            self.add_module(f"fc1_{key}", nn.Linear(FEATURES, FEATURES))
        for key in VIEW_KEY.values():
            self.add_module(f"output_layer_{key}", OutputLayer(FEATURES))
        self.relu = nn.ReLU()

    def forward(self, views):
        h = self.four_view_resnet(views)
        out = {}
        for view in VIEWS:
            key = VIEW_KEY[view]
            fc1 = getattr(self, f"fc1_{key}")
            out[view] = getattr(self, f"output_layer_{key}")(self.relu(fc1(h[view])))
        return out


class SingleImageModel(nn.Module):
    """One view's classifier (SPEC 9): ``N x C x H x W`` → ``N x 2 x 2`` log-probabilities.

    Row 0 is the (negative, positive) benign pair, row 1 the malignant pair. Its keys are
    ``column.…``, ``fc1.…`` and ``output_layer.fc_layer.…`` (4 outputs); the weights come
    from an image-mode checkpoint, see ``checkpoints.classifier.load_single_image_model``.
    """

    def __init__(self, in_channels):
        super().__init__()
        self.column = ResNetColumn(in_channels)
        self.fc1 = nn.Linear(FEATURES, FEATURES)
        self.output_layer = OutputLayer(FEATURES, pairs=2)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.output_layer(self.relu(self.fc1(self.column(x))))


def build_view_split_model(channels):
    """The view_split model for 1 (image-only) or 3 (image + heatmaps) input channels."""
    return ViewSplitModel(_checked_channels(channels))


def build_image_model(channels):
    """The image-mode model for 1 (image-only) or 3 (image + heatmaps) input channels."""
    return ImageModel(_checked_channels(channels))


def build_single_image_model(channels):
    """The single-image model of SPEC 9 for 1 or 3 input channels."""
    return SingleImageModel(_checked_channels(channels))


def single_image_column(full_view):
    """Which shared column (``cc`` or ``mlo``) a view uses."""
    return view_angle(full_view).lower()


def _checked_channels(channels):
    if channels not in (1, 3):
        raise ValueError(f"classifier input channels must be 1 (image only) or 3 "
                         f"(image + heatmaps), got {channels!r}")
    return channels
