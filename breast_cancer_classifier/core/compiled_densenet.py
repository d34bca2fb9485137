"""The patch classifier's forward pass for ``--runtime compiled``: PyTorch eager's numbers in
fewer passes over memory.

On the CPU, PyTorch eager spends about 40% of a DenseNet-121 forward pass outside the
convolutions: each dense layer concatenates all the feature maps before it again
(``torch.cat``), then runs BatchNorm and ReLU over them as two more passes, each into newly
allocated memory. This forward pass computes the same thing as follows:

* each dense layer's first half, norm1-ReLU, the 1x1 conv1 and norm2-ReLU, is one call of a
  C kernel (:mod:`.native_kernels`) that applies norm1-ReLU while it packs its input, sums
  the product in oneDNN's order and applies norm2-ReLU before it stores: one pass over the
  layer's input instead of three. PyTorch's CPU BatchNorm in eval mode computes
  ``fma(x, alpha, beta)`` with per-channel ``alpha`` and ``beta``; both are read back from
  that kernel itself (``batchnorm_terms``);
* each transition (BatchNorm, ReLU, 1x1 convolution, 2x2 average pool) is one call too, with
  the pool taken *before* the convolution: the same in exact arithmetic (both are linear
  maps over pixels and channels apart), a quarter of the products. This is the one change
  of order in the pass: it rounds differently, by up to about 2e-7 on a logit;
* the other convolutions, the pools and the classifier are the model's own calls, on the
  same values in the same channels-last layout as eager calls them, so the same oneDNN
  kernels run; the stem's and the last BatchNorm-ReLU are one pass of the C kernel each;
* each dense block writes into one preallocated buffer: a layer reads its input as a
  channel slice of it and writes its 32 new channels behind, so nothing is concatenated.

The pass runs from :func:`prepare`'s tensors, not from the model: a checkpoint is prepared
once (in a child process, cached by its SHA-256: ``patch_runtime.CompiledRuntime``), so the
stage-3 process imports neither torchvision nor, through it, ``torch._dynamo`` (about 165 MB
of its peak memory). :func:`prepare` reads every setting from torchvision's DenseNet
modules; the calls here are those the modules make (``F.conv2d`` with the module's stride
and padding, TF "SAME"'s explicit zero padding for the stem, ...), on the same values.

The logits equal eager's bit for bit, for the same pieces of patches, on the model with its
transitions pooling before their convolution, and are within 1e-6 of the model's own as a
probability (``tests/test_patch_runtime.py``; figures in ``docs/stage3_runtime.md``).
"""

import torch
import torch.nn.functional as F

PATCH_SIZE = 256  # the input this plan is laid out for (SPEC 6: 256 x 256 patches)
PREPARED_FORMAT = 1  # the layout of prepare()'s dictionary: change it when that changes
# DenseNet's transition pool (kernel, stride, padding, ceil_mode, count_include_pad,
# divisor_override), the one the pass can take before the transition's convolution.
TRANSITION_POOL = (2, 2, 0, False, True, None)


def pixel_rows(x):
    """A channels-last (N, C, H, W) tensor, or a channel slice of one, as its (N*H*W, C)
    matrix (a view: never a copy)."""
    return x.permute(0, 2, 3, 1).view(-1, x.shape[1])


def batchnorm_terms(norm):
    """``(alpha, beta)``, each (C,): eval-mode ``norm(x)`` is ``fma(x, alpha, beta)``.

    Both are read back from PyTorch's own kernel so that they are its values to the bit:
    ``beta = norm(0)``, and ``alpha`` is the same BatchNorm with mean and bias zero applied
    to 1 (``fma(1, alpha, 0)``).
    """
    channels = norm.num_features
    with torch.inference_mode():
        zeros = torch.zeros((1, channels, 1, 1)).contiguous(memory_format=torch.channels_last)
        beta = F.batch_norm(zeros, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            False, 0.0, norm.eps)
        alpha = F.batch_norm(torch.ones_like(zeros), torch.zeros_like(norm.running_mean),
                             norm.running_var, norm.weight, torch.zeros_like(norm.bias),
                             False, 0.0, norm.eps)
    return alpha.reshape(channels).clone(), beta.reshape(channels).clone()


def channels_last_view(flat, n, channels, height, width):
    """The first ``n * channels * height * width`` floats of ``flat`` as a channels-last
    (N, C, H, W) tensor (NHWC in memory)."""
    return flat[:n * height * width * channels].view(n, height, width, channels).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- preparation
def prepare(model):
    """The forward pass's tensors and settings, read from a ``PatchClassifier`` in eval mode
    (torchvision's DenseNet-121 with TF "SAME" padding): a dictionary of tensors, numbers
    and tuples (saved with ``torch.save``, loaded with ``weights_only``). Convolution weights
    are channels-last copies (the activations' layout: oneDNN reorders them into the same
    blocked layout either way, without a copy per call); the model is not changed.
    """
    from torch import nn

    from .patch_model import SameConv2d, SameMaxPool2d, tf_same_padding

    features = model.features
    stem_out = PATCH_SIZE // 2  # conv0 halves the patch
    pool = features.pool0
    if not isinstance(pool, SameMaxPool2d) or pool.padding not in (0, (0, 0)):
        raise ValueError(f"pool0: expected a TF-SAME max-pool, got {pool}")
    pool_kernel, pool_stride = _single(pool.kernel_size), _single(pool.stride)
    blocks, size = [], stem_out // pool_stride
    for index in range(1, 5):
        block = getattr(features, f"denseblock{index}")
        transition = getattr(features, f"transition{index}", None)
        norm = features.norm5 if transition is None else transition.norm
        layers = list(block.children())
        blocks.append({
            "size": size,
            "in_channels": layers[0].norm1.num_features,
            "channels": norm.num_features,
            "layers": [(batchnorm_terms(layer.norm1), _conv(layer.conv1),
                        batchnorm_terms(layer.norm2), _conv(layer.conv2)) for layer in layers],
            "out_terms": batchnorm_terms(norm),
            "transition": None if transition is None else (_conv(transition.conv),
                                                           _avg_pool(transition.pool)),
        })
        if transition is not None:
            size //= _single(transition.pool.stride)
    if not isinstance(features.conv0, SameConv2d):
        raise ValueError(f"conv0: expected a TF-SAME convolution, got {features.conv0}")
    kernel, stride = _single(features.conv0.kernel_size), _single(features.conv0.stride)
    leading, trailing = tf_same_padding(PATCH_SIZE, kernel, stride)
    pool_leading, pool_trailing = tf_same_padding(stem_out, pool_kernel, pool_stride)
    classifier = model.classifier
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"classifier: expected a linear layer, got {classifier}")
    return {
        "format": PREPARED_FORMAT,
        "stem": (_conv(features.conv0), (leading, trailing, leading, trailing)),
        "stem_terms": batchnorm_terms(features.norm0),
        "pool0": (pool_kernel, pool_stride, (pool_leading, pool_trailing) * 2),
        "blocks": blocks,
        "classifier": (classifier.weight.detach().clone(), classifier.bias.detach().clone()),
    }


def _single(value):
    """A square kernel's or stride's one number."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if pair[0] != pair[1]:
        raise ValueError(f"expected a square setting, got {value}")
    return pair[0]


def _conv(conv):
    """(weight channels-last, bias or None, stride, padding): what ``F.conv2d`` gets from
    the module (its TF-SAME padding, if any, is applied apart, see ``prepare``)."""
    if tuple(conv.dilation) != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError(f"unexpected convolution settings: {conv}")
    bias = None if conv.bias is None else conv.bias.detach().clone()
    weight = conv.weight.detach().clone(memory_format=torch.channels_last)
    return weight, bias, tuple(conv.stride), tuple(conv.padding)


def _avg_pool(pool):
    """``F.avg_pool2d``'s arguments after the input, from an ``nn.AvgPool2d``."""
    if type(pool).__name__ != "AvgPool2d":
        raise ValueError(f"transition pool: expected an AvgPool2d, got {pool}")
    return (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode,
            pool.count_include_pad, pool.divisor_override)


def load_prepared(path):
    """:func:`prepare`'s dictionary from a file written by ``torch.save``."""
    prepared = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(prepared, dict) or prepared.get("format") != PREPARED_FORMAT:
        raise ValueError(f"{path}: not a prepared patch classifier of format {PREPARED_FORMAT}")
    return prepared


# --------------------------------------------------------------------------- forward pass
def conv2d(x, conv):
    weight, bias, stride, padding = conv
    return F.conv2d(x, weight, bias, stride, padding)


class CompiledDenseNet:
    """``forward(x) -> logits`` for a prepared patch classifier (:func:`prepare`), on the CPU.

    ``x``: (N, 3, 256, 256) float32, channels-last in memory (stage 3's NCHW view of its NHWC
    batch). ``kernels`` is a :class:`.native_kernels.NativeKernels`, whose layout the 1x1
    convolutions' weights are packed into here. The object keeps two work buffers of 4 MiB
    per patch of the largest batch seen.
    """

    def __init__(self, prepared, kernels):
        self.prepared = prepared
        self.kernels = kernels
        self.blocks = [self._packed(block) for block in prepared["blocks"]]
        stem_conv, _ = prepared["stem"]
        stem = stem_conv[0].shape[0] * (PATCH_SIZE // 2) ** 2
        block_floats = max(b["channels"] * b["size"] ** 2 for b in self.blocks)
        self.floats_per_patch = max(stem, block_floats)
        self._buffers = (torch.empty(0), torch.empty(0))

    def _packed(self, block):
        """``block`` with its 1x1 convolutions' weights in the kernel's layout."""
        def pointwise(conv):
            weight, bias, stride, padding = conv
            if bias is not None or tuple(stride) != (1, 1) or tuple(padding) != (0, 0):
                raise ValueError("expected 1x1 convolutions without bias, stride or padding")
            return self.kernels.pack_weight(weight)

        layers = [(terms1, pointwise(conv1), terms2, conv2)
                  for terms1, conv1, terms2, conv2 in block["layers"]]
        transition = block["transition"]
        if transition is not None:
            conv, pool = transition
            if pool != TRANSITION_POOL:
                raise ValueError(f"transition pool: expected F.avg_pool2d arguments "
                                 f"{TRANSITION_POOL}, got {pool}")
            transition = pointwise(conv)
        return {**block, "layers": layers, "transition": transition}

    def _norm_relu(self, x, terms, out):
        """``out = relu(norm(x))``, one pass (``terms`` from ``batchnorm_terms``)."""
        self.kernels.norm_relu(pixel_rows(x), *terms, pixel_rows(out))

    def _work_buffers(self, n):
        """(blocks, scratch): flat float32 buffers for ``n`` patches, grown when needed."""
        needed = n * self.floats_per_patch
        if self._buffers[0].numel() < needed:
            self._buffers = (torch.empty(0), torch.empty(0))  # free the old ones first
            self._buffers = (torch.empty(needed), torch.empty(needed))
        return self._buffers

    @torch.inference_mode()
    def __call__(self, x):
        n = x.shape[0]
        if tuple(x.shape[1:]) != (3, PATCH_SIZE, PATCH_SIZE):
            raise ValueError(f"expected (N, 3, {PATCH_SIZE}, {PATCH_SIZE}) patches, got "
                             f"{tuple(x.shape)}")
        blocks, scratch = self._work_buffers(n)
        stem_conv, stem_padding = self.prepared["stem"]
        # conv0 as SameConv2d runs it: TF "SAME" zeros first, then the convolution.
        stem = conv2d(F.pad(x, stem_padding, mode="constant", value=0.0), stem_conv)
        # Before the first block the blocks buffer is free: the stem's BatchNorm-ReLU goes there.
        normed = channels_last_view(blocks, n, *stem.shape[1:])
        self._norm_relu(stem, self.prepared["stem_terms"], normed)
        del stem
        x = self._stem_pool(normed)
        for block in self.blocks:
            x = self._dense_block(block, x, blocks, scratch)
        weight, bias = self.prepared["classifier"]
        return F.linear(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1), weight, bias)

    def _stem_pool(self, x):
        """``pool0`` (TF "SAME", zeros): on the 128-pixel stem a 3x3, stride-2 pool pads
        nothing before and one row and column after; on ReLU outputs (>= 0) a padded zero
        never exceeds the window's other values, so the pool over the windows clipped at the
        edge (``ceil_mode``) is the same, without the padded copy."""
        kernel, stride, padding = self.prepared["pool0"]
        if (kernel, stride, tuple(padding)) == (3, 2, (0, 1, 0, 1)):
            return F.max_pool2d(x, 3, 2, ceil_mode=True)
        return F.max_pool2d(F.pad(x, padding, mode="constant", value=0.0), kernel, stride)

    def _dense_block(self, block, x, blocks, scratch):
        """The block's layers on ``x``, then its transition's (or the final) BatchNorm-ReLU."""
        n, size = x.shape[0], block["size"]
        features = channels_last_view(blocks, n, block["channels"], size, size)
        channels = block["in_channels"]
        features[:, :channels].copy_(x)
        del x
        for terms1, conv1, terms2, conv2 in block["layers"]:
            # norm1-ReLU, conv1 (1x1) and norm2-ReLU: one kernel call, one pass over the input.
            width = conv1.shape[0] * conv1.shape[2]
            normed = channels_last_view(scratch, n, width, size, size)
            self.kernels.pointwise_conv(pixel_rows(features[:, :channels]), terms1, conv1,
                                        terms2, pixel_rows(normed))
            new = conv2d(normed, conv2)
            features[:, channels:channels + new.shape[1]].copy_(new)
            channels += new.shape[1]
        if block["transition"] is None:
            normed = channels_last_view(scratch, n, channels, size, size)
            self._norm_relu(features, block["out_terms"], normed)
            return normed  # relu(norm5(features)): what the model's head pools
        # The transition's 2x2 average pool taken before its 1x1 convolution, not after: the
        # same in exact arithmetic (both are linear), a quarter of the products.
        conv = block["transition"]
        out = channels_last_view(scratch, n, conv.shape[0] * conv.shape[2], size // 2, size // 2)
        self.kernels.pointwise_conv(pixel_rows(features), block["out_terms"], conv, None,
                                    pixel_rows(out), pooled_maps=(size, size))
        return out
