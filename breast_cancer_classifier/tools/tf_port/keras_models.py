"""Keras ports of the patch DenseNet-121 and the single-image ResNet-22, weights from PyTorch.

Both take NHWC float32 input (TensorFlow's layout) and return what the PyTorch modules
return: the patch classifier N x 4 logits, the single-image classifier N x 2 x 2
log-probabilities. Every layer follows SPEC, not Keras defaults:

- BatchNorm epsilon 1e-5 (Keras defaults to 1e-3), inference statistics only;
- DenseNet (SPEC 6.1): TF "SAME" padding is the spec's padding for the stride-2 stem; its
  max-pool pads with -inf where SPEC pads zeros, which agree because the pool follows a
  ReLU (inputs >= 0). Dense-layer 3x3 convolutions (stride 1, padding 1) are "SAME" too;
  the transitions' 2x2 average pools are "VALID" (torchvision's, no padding);
- ResNet-22 (SPEC 7.1): PyTorch's symmetric padding, written as an explicit zero pad
  before a "VALID" convolution: "SAME" would pad a stride-2 convolution asymmetrically.

Weights are copied from a loaded PyTorch module (``core.checkpoints`` reads and checks the
files, legacy or zip serialization alike): every Keras layer built here records the torch
parameter prefix it stands for, and :func:`copy_torch_weights` fills it from the module's
state dict (convolutions OIHW → HWIO, linear layers transposed).
"""

import os

import numpy as np

# Before TensorFlow: importing torchvision after TensorFlow crashes the process (segmentation
# fault with TF 2.21 and torchvision 0.29 on Linux); the other order is fine.
import torchvision  # noqa: F401, E402 - imported first on purpose (core.patch_model does not)

from ...core.classifier_models import BLOCKS_PER_LAYER, COLUMN_PLANES, COLUMN_STRIDES
from ...core.patch_model import BLOCK_CONFIG, BN_SIZE, GROWTH_RATE, NUM_INIT_FEATURES

# Keras 3 reads its backend at import time; this package needs TensorFlow's.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
from keras import layers  # noqa: E402

BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d default, used by both networks (SPEC 6.1, 7.1)
NETWORKS = ("patch", "single_image")


def _check_backend():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"the TensorFlow port needs Keras' TensorFlow backend, but "
                           f"KERAS_BACKEND is {keras.backend.backend()!r}")


class _Builder:
    """Creates Keras layers and remembers the torch prefix of each weighted one."""

    def __init__(self):
        self.weighted = []  # (keras layer, torch prefix, kind)

    def _named(self, prefix):
        return prefix.replace(".", "_")

    def conv(self, prefix, filters, kernel, stride=1, padding="valid", bias=False):
        layer = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=bias,
                              name=self._named(prefix))
        self.weighted.append((layer, prefix, "conv"))
        return layer

    def bn(self, prefix):
        layer = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9,
                                          name=self._named(prefix))
        self.weighted.append((layer, prefix, "bn"))
        return layer

    def dense(self, prefix, units):
        layer = layers.Dense(units, name=self._named(prefix))
        self.weighted.append((layer, prefix, "dense"))
        return layer


def _relu(x):
    return layers.ReLU()(x)


# --------------------------------------------------------------------------- DenseNet-121
def build_patch_classifier(torch_model):
    """The Keras DenseNet-121 of ``torch_model`` (a ``core.patch_model.PatchClassifier``)."""
    _check_backend()
    b = _Builder()
    inputs = keras.Input((None, None, 3), name="patches")
    h = b.conv("features.conv0", NUM_INIT_FEATURES, 7, stride=2, padding="same")(inputs)
    h = _relu(b.bn("features.norm0")(h))
    h = layers.MaxPooling2D(3, strides=2, padding="same")(h)  # after a ReLU: -inf pad = 0 pad
    channels = NUM_INIT_FEATURES
    for block, count in enumerate(BLOCK_CONFIG, start=1):
        for index in range(1, count + 1):
            p = f"features.denseblock{block}.denselayer{index}"
            new = b.conv(f"{p}.conv1", BN_SIZE * GROWTH_RATE, 1)(_relu(b.bn(f"{p}.norm1")(h)))
            new = b.conv(f"{p}.conv2", GROWTH_RATE, 3, padding="same")(
                _relu(b.bn(f"{p}.norm2")(new)))
            h = layers.Concatenate(axis=-1)([h, new])  # torchvision appends new features
            channels += GROWTH_RATE
        if block < len(BLOCK_CONFIG):
            p = f"features.transition{block}"
            channels //= 2
            h = b.conv(f"{p}.conv", channels, 1)(_relu(b.bn(f"{p}.norm")(h)))
            h = layers.AveragePooling2D(2, strides=2, padding="valid")(h)
    h = _relu(b.bn("features.norm5")(h))
    h = layers.GlobalAveragePooling2D()(h)
    logits = b.dense("classifier", torch_model.classifier.out_features)(h)
    model = keras.Model(inputs, logits, name="patch_classifier")
    copy_torch_weights(b.weighted, torch_model.state_dict())
    return model


# --------------------------------------------------------------------------- ResNet-22
def _symmetric_conv(b, prefix, filters, kernel, stride, pad):
    """A torch ``Conv2d(padding=pad)``: explicit symmetric zero pad, then VALID."""
    conv = b.conv(prefix, filters, kernel, stride=stride)

    def apply(x):
        if pad:
            x = layers.ZeroPadding2D(pad)(x)
        return conv(x)
    return apply


def build_single_image_classifier(torch_model):
    """The Keras ResNet-22 single-image classifier of ``torch_model`` (a
    ``core.classifier_models.SingleImageModel``, 1 or 3 input channels)."""
    _check_backend()
    in_channels = int(torch_model.column.first_conv.in_channels)
    pairs = int(torch_model.output_layer.pairs)
    b = _Builder()
    inputs = keras.Input((None, None, in_channels), name="windows")
    h = b.conv("column.first_conv", COLUMN_PLANES[0], 7, stride=2)(inputs)
    h = layers.MaxPooling2D(3, strides=2, padding="valid")(h)
    for layer_index, (planes, stride) in enumerate(zip(COLUMN_PLANES, COLUMN_STRIDES)):
        for block in range(BLOCKS_PER_LAYER):
            p = f"column.layer_list.{layer_index}.{block}"
            s = stride if block == 0 else 1
            a = _relu(b.bn(f"{p}.bn1")(h))
            shortcut = (b.conv(f"{p}.downsample.0", planes, 1, stride=s)(a) if block == 0
                        else h)
            r = _symmetric_conv(b, f"{p}.conv1", planes, 3, s, 1)(a)
            r = _symmetric_conv(b, f"{p}.conv2", planes, 3, 1, 1)(_relu(b.bn(f"{p}.bn2")(r)))
            h = layers.Add()([r, shortcut])
    h = _relu(b.bn("column.final_bn")(h))
    h = layers.GlobalAveragePooling2D()(h)
    h = _relu(b.dense("fc1", torch_model.fc1.out_features)(h))
    h = b.dense("output_layer.fc_layer", 2 * pairs)(h)
    h = layers.Reshape((pairs, 2))(h)
    out = layers.Activation(lambda x: keras.ops.log_softmax(x, axis=-1), name="log_softmax")(h)
    model = keras.Model(inputs, out, name="single_image_classifier")
    copy_torch_weights(b.weighted, torch_model.state_dict())
    return model


def build_keras_model(torch_model, network):
    """``network`` "patch" or "single_image": the Keras port of ``torch_model``."""
    if network == "patch":
        return build_patch_classifier(torch_model)
    if network == "single_image":
        return build_single_image_classifier(torch_model)
    raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")


# --------------------------------------------------------------------------- weights
def _numpy(state_dict, key):
    return state_dict[key].detach().cpu().numpy().astype(np.float32)


def copy_torch_weights(weighted, state_dict):
    """Set every recorded Keras layer from the torch state dict (all tensors used, shapes
    checked by Keras' ``set_weights``)."""
    used = set()
    for layer, prefix, kind in weighted:
        if kind == "conv":
            names = ["weight"] + (["bias"] if layer.use_bias else [])
            values = [_numpy(state_dict, f"{prefix}.weight").transpose(2, 3, 1, 0)]
            values += [_numpy(state_dict, f"{prefix}.bias")] if layer.use_bias else []
        elif kind == "bn":  # Keras order: gamma, beta, moving mean, moving variance
            names = ["weight", "bias", "running_mean", "running_var"]
            values = [_numpy(state_dict, f"{prefix}.{n}") for n in names]
        else:
            names = ["weight", "bias"]
            values = [_numpy(state_dict, f"{prefix}.weight").T,
                      _numpy(state_dict, f"{prefix}.bias")]
        layer.set_weights(values)
        used.update(f"{prefix}.{n}" for n in names)
    unused = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")]
    if unused:  # a layer of the torch module with no Keras counterpart: the port is wrong
        raise RuntimeError(f"Keras port left torch parameters unused: {', '.join(unused[:6])}")
