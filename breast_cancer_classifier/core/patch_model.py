"""The patch classifier of stage 3: torchvision's DenseNet-121 with TensorFlow "SAME" padding.

The network is built here, module for module as torchvision builds DenseNet-121 (same
names, so the same state-dict keys; same construction order and initialisation, so the same
random weights from the same seed; same forward), without importing torchvision: with its
imports (sympy, triton, ...) it would add about 170 MB to every stage-3 process.

SPEC 6.1: every ``Conv2d`` and ``MaxPool2d`` inside ``features`` pads the way TensorFlow's
"SAME" mode does. For an input extent ``n``, kernel ``k`` and stride ``s`` the total padding
is ``max(0, k - s)`` when ``n % s == 0`` and ``max(0, k - n % s)`` otherwise; the leading
side gets ``p // 2`` and the trailing side the rest, padded with zeros (also before the
max-pool). Height and width are padded independently; the transition average-pools keep
their own behaviour.

For the stride-1 layers (every convolution inside the dense blocks and transitions) that
padding is ``k - 1`` split evenly, which is exactly the layer's own padding, so those layers
are left as torchvision builds them. Only the stride-2 stem (``conv0`` 7x7 and ``pool0``
3x3) can get asymmetric padding (e.g. 2 before and 3 after for a 256-pixel input); those two
are replaced by subclasses that pad explicitly and then run with ``padding=0``. The
replacements keep their parameter names, so state-dict keys are torchvision's.

The model returns logits; callers apply the softmax (stage 3 uses columns 0 and 1).
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 4  # SPEC 6.1
# torchvision's densenet121 numbers (SPEC 6.1).
GROWTH_RATE, BLOCK_CONFIG, NUM_INIT_FEATURES, BN_SIZE = 32, (6, 12, 24, 16), 64, 4


def tf_same_padding(extent, kernel, stride):
    """(leading, trailing) zero padding of TensorFlow "SAME" for one axis (SPEC 6.1)."""
    if extent % stride == 0:
        total = max(0, kernel - stride)
    else:
        total = max(0, kernel - extent % stride)
    return total // 2, total - total // 2


def _pad_same(x, kernel_size, stride):
    """Zero-pad an N x C x H x W tensor the TensorFlow "SAME" way (no-op if nothing to pad)."""
    top, bottom = tf_same_padding(x.shape[-2], kernel_size[0], stride[0])
    left, right = tf_same_padding(x.shape[-1], kernel_size[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), mode="constant", value=0.0)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class SameConv2d(nn.Conv2d):
    """``Conv2d`` with TensorFlow "SAME" zero padding computed from each input's size."""

    def forward(self, x):
        return super().forward(_pad_same(x, self.kernel_size, self.stride))


class SameMaxPool2d(nn.MaxPool2d):
    """``MaxPool2d`` with TensorFlow "SAME" zero padding (zeros, not -inf, SPEC 6.1)."""

    def forward(self, x):
        return super().forward(_pad_same(x, _pair(self.kernel_size), _pair(self.stride)))


def _own_padding_is_same(layer):
    """True when the layer's own padding equals "SAME" padding for every input extent.

    That holds exactly for stride 1, dilation 1, an odd kernel and padding ``(k - 1) / 2``
    (then "SAME" pads ``k - 1`` whatever the extent, split evenly). Max-pools also need
    zero padding to equal their -inf padding, which only holds without padding (k = 1).
    """
    kernel, stride = _pair(layer.kernel_size), _pair(layer.stride)
    padding, dilation = _pair(layer.padding), _pair(layer.dilation)
    if any(d != 1 for d in dilation) or any(s != 1 for s in stride):
        return False
    if any(k % 2 == 0 or p != (k - 1) // 2 for k, p in zip(kernel, padding)):
        return False
    return isinstance(layer, nn.Conv2d) or all(p == 0 for p in padding)


def _same_padded_copy(layer):
    """A SameConv2d/SameMaxPool2d with the settings of ``layer`` and no padding of its own."""
    if any(d != 1 for d in _pair(layer.dilation)):
        raise ValueError(f"TF-SAME padding is defined here for dilation 1 only, got {layer}")
    if isinstance(layer, nn.Conv2d):
        new = SameConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                         stride=layer.stride, padding=0, groups=layer.groups,
                         bias=layer.bias is not None)
        new.load_state_dict(layer.state_dict())
        return new
    if layer.ceil_mode:
        raise ValueError(f"TF-SAME padding is defined here for ceil_mode=False only, got {layer}")
    return SameMaxPool2d(layer.kernel_size, stride=layer.stride, padding=0)


def apply_tf_same_padding(module):
    """Give every Conv2d/MaxPool2d inside ``module`` TensorFlow "SAME" padding, in place.

    Layers whose own padding already equals "SAME" for any input are kept as they are;
    the others are swapped for :class:`SameConv2d` / :class:`SameMaxPool2d`.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, (SameConv2d, SameMaxPool2d)):
            continue
        if isinstance(child, (nn.Conv2d, nn.MaxPool2d)):
            if not _own_padding_is_same(child):
                setattr(module, name, _same_padded_copy(child))
        else:
            apply_tf_same_padding(child)
    return module


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (the bottleneck) then BN-ReLU-3x3 conv: ``GROWTH_RATE`` new channels
    from the concatenation of all the feature maps before it in its block."""

    def __init__(self, in_channels):
        super().__init__()
        bottleneck = BN_SIZE * GROWTH_RATE
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bottleneck, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bottleneck, GROWTH_RATE, kernel_size=3, stride=1, padding=1,
                               bias=False)

    def forward(self, features):
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; returns its input and every layer's output, concatenated."""

    def __init__(self, num_layers, in_channels):
        super().__init__()
        for index in range(num_layers):
            self.add_module(f"denselayer{index + 1}",
                            _DenseLayer(in_channels + index * GROWTH_RATE))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1,
                                          bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class PatchClassifier(nn.Module):
    """DenseNet-121 (torchvision's) with 4 outputs and TF-SAME padding in ``features``.

    Input: N x 3 x H x W float32 (stage 3 feeds 256 x 256 patches, channels-last in memory).
    Output: N x 4 logits. State-dict keys are torchvision's (``features.…``, ``classifier.…``).
    """

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, NUM_INIT_FEATURES, kernel_size=7, stride=2, padding=3,
                                bias=False)),
            ("norm0", nn.BatchNorm2d(NUM_INIT_FEATURES)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        channels = NUM_INIT_FEATURES
        for index, num_layers in enumerate(BLOCK_CONFIG):
            self.features.add_module(f"denseblock{index + 1}", _DenseBlock(num_layers, channels))
            channels += num_layers * GROWTH_RATE
            if index != len(BLOCK_CONFIG) - 1:
                self.features.add_module(f"transition{index + 1}",
                                         _Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                nn.init.constant_(module.bias, 0)
        apply_tf_same_padding(self.features)

    def forward(self, x):
        features = self.features(x)
        out = F.relu(features)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))
