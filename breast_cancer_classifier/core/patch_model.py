"""The patch classifier of stage 3: torchvision's DenseNet-121 with TensorFlow "SAME" padding.

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

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.densenet import DenseNet

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


class PatchClassifier(DenseNet):
    """DenseNet-121 (torchvision) with 4 outputs and TF-SAME padding in ``features``.

    Input: N x 3 x H x W float32 (stage 3 feeds 256 x 256 patches, channels-last in memory).
    Output: N x 4 logits. State-dict keys are torchvision's (``features.…``, ``classifier.…``).
    """

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__(growth_rate=GROWTH_RATE, block_config=BLOCK_CONFIG,
                         num_init_features=NUM_INIT_FEATURES, bn_size=BN_SIZE, drop_rate=0,
                         num_classes=num_classes)
        apply_tf_same_padding(self.features)

    def forward(self, x):
        features = self.features(x)
        out = F.relu(features)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))
