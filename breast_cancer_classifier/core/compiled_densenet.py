"""The patch classifier's forward pass for ``--runtime compiled``: PyTorch eager's numbers in
fewer passes over memory.

On the CPU, PyTorch eager spends about 40% of a DenseNet-121 forward pass outside the
convolutions: each dense layer concatenates all the feature maps before it again
(``torch.cat``), then runs BatchNorm and ReLU over them as two more passes, each into newly
allocated memory. This forward pass computes the same thing as follows:

* the convolutions, pooling layers and the classifier are the model's own modules, called
  on the same values in the same channels-last layout as eager calls them, so the same
  oneDNN kernels run;
* each BatchNorm + ReLU pair is one pass of a small C kernel (:mod:`.norm_relu_kernel`),
  ``max(fma(x, alpha, beta), 0)``, written into a reused buffer. PyTorch's CPU BatchNorm in
  eval mode computes ``fma(x, alpha, beta)`` with per-channel ``alpha`` and ``beta``; both are
  read back from that kernel itself (``batchnorm_terms``);
* each dense block writes into one preallocated buffer: a layer reads its input as a
  channel slice of it and writes its 32 new channels behind, so nothing is concatenated.

The logits equal eager's bit for bit for the same pieces of patches
(``tests/test_patch_runtime.py``; figures in ``docs/stage3_runtime.md``).
"""

import torch
import torch.nn.functional as F

from .patch_model import tf_same_padding

PATCH_SIZE = 256  # the input this plan is laid out for (SPEC 6: 256 x 256 patches)


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


class _Block:
    """One dense block and the transition (or final BatchNorm) after it."""

    def __init__(self, block, transition, final_norm, size):
        layers = list(block.children())
        self.size = size  # height = width of its feature maps
        self.in_channels = layers[0].norm1.num_features
        self.channels = final_norm.num_features if transition is None else transition.norm.num_features
        self.layers = [(batchnorm_terms(layer.norm1), layer.conv1, batchnorm_terms(layer.norm2),
                        layer.conv2) for layer in layers]
        norm = final_norm if transition is None else transition.norm
        self.out_terms = batchnorm_terms(norm)
        self.transition = transition


class CompiledDenseNet:
    """``forward(x) -> logits`` for a ``PatchClassifier`` in eval mode on the CPU.

    ``x``: (N, 3, 256, 256) float32, channels-last in memory (stage 3's NCHW view of its NHWC
    batch). ``norm_relu`` is a :class:`.norm_relu_kernel.NormRelu`. The model's parameters
    are read, never changed; the object keeps two work buffers of 4 MiB per patch of the
    largest batch seen.
    """

    def __init__(self, model, norm_relu):
        features = model.features
        self.model = model
        self.stem_terms = batchnorm_terms(features.norm0)
        self.blocks, size = [], PATCH_SIZE // 4  # conv0 and pool0 each halve the patch
        for index in range(1, 5):
            transition = getattr(features, f"transition{index}", None)
            self.blocks.append(_Block(getattr(features, f"denseblock{index}"), transition,
                                      features.norm5, size))
            size //= 2
        stem = features.norm0.num_features * (PATCH_SIZE // 2) ** 2
        block_floats = max(b.channels * b.size ** 2 for b in self.blocks)
        self.floats_per_patch = max(stem, block_floats)
        self._buffers = (torch.empty(0), torch.empty(0))
        self.norm_relu = norm_relu

    def _norm_relu(self, x, terms, out):
        """``out = relu(norm(x))``, one pass (``terms`` from ``batchnorm_terms``)."""
        self.norm_relu(pixel_rows(x), *terms, pixel_rows(out))

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
        features = self.model.features
        blocks, scratch = self._work_buffers(n)
        stem = features.conv0(x)
        # Before the first block the blocks buffer is free: the stem's BatchNorm-ReLU goes there.
        normed = channels_last_view(blocks, n, *stem.shape[1:])
        self._norm_relu(stem, self.stem_terms, normed)
        del stem
        x = self._stem_pool(normed)
        for block in self.blocks:
            x = self._dense_block(block, x, blocks, scratch)
        return self.model.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))

    def _stem_pool(self, x):
        """``pool0`` (3x3, stride 2, TF "SAME": no padding before, one row and column of
        zeros after on the 128-pixel stem) without the padded copy: on ReLU outputs (>= 0)
        a padded zero never exceeds the window's other values, so the pool over the windows
        clipped at the edge (``ceil_mode``) is the same."""
        pool = self.model.features.pool0
        if tf_same_padding(x.shape[-1], 3, 2) != (0, 1) or pool.kernel_size != 3 \
                or pool.stride != 2:
            return pool(x)
        return F.max_pool2d(x, 3, 2, ceil_mode=True)

    def _dense_block(self, block, x, blocks, scratch):
        """The block's layers on ``x``, then its transition's (or the final) BatchNorm-ReLU."""
        n, size = x.shape[0], block.size
        features = channels_last_view(blocks, n, block.channels, size, size)
        channels = block.in_channels
        features[:, :channels].copy_(x)
        del x
        for terms1, conv1, terms2, conv2 in block.layers:
            normed = channels_last_view(scratch, n, channels, size, size)
            self._norm_relu(features[:, :channels], terms1, normed)
            bottleneck = conv1(normed)
            normed = channels_last_view(scratch, n, bottleneck.shape[1], size, size)
            self._norm_relu(bottleneck, terms2, normed)
            del bottleneck
            new = conv2(normed)
            features[:, channels:channels + new.shape[1]].copy_(new)
            channels += new.shape[1]
        normed = channels_last_view(scratch, n, channels, size, size)
        self._norm_relu(features, block.out_terms, normed)
        if block.transition is None:
            return normed  # relu(norm5(features)): what the model's head pools
        return block.transition.pool(block.transition.conv(normed))
