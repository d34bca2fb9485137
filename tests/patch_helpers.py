"""Stage-3 test helpers: a stand-in patch model, tiny images and exam lists, map reading.

Shared by test_heatmaps.py (the stage module) and test_stage_scripts.py (the scripts).
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.patch_model import PatchClassifier
from breast_cancer_classifier.core.stages import heatmaps


class StatsModel(nn.Module):
    """Stand-in patch classifier: logits from patch statistics, one sample at a time."""

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3))
        corner = x[:, 0, :16, :16].mean(dim=(1, 2))
        return torch.stack([mean, corner, -mean, torch.zeros_like(mean)], dim=1)


def naive_heatmaps(model, image, row_strides, column_strides):
    """Direct SPEC 6 steps 3-5: every patch alone, column-major, float32 sums and counts."""
    sums = np.zeros((2,) + image.shape, np.float32)
    counts = np.zeros(image.shape, np.float32)
    for c in heatmaps.patch_starts(column_strides):
        for r in heatmaps.patch_starts(row_strides):
            patch = image[r:r + 256, c:c + 256].astype(np.float32)
            x = torch.from_numpy(np.repeat(patch[None, None], 3, axis=1))
            with torch.inference_mode():
                p = torch.softmax(model(x), dim=1)[0].numpy()
            sums[0, r:r + 256, c:c + 256] += p[0]
            sums[1, r:r + 256, c:c + 256] += p[1]
            counts[r:r + 256, c:c + 256] += 1
    return sums[0] / counts, sums[1] / counts


def random_image(shape, seed):
    return np.random.default_rng(seed).integers(0, 65535, size=shape, dtype=np.uint16)


def write_images(folder, shapes):
    for seed, (name, shape) in enumerate(shapes.items()):
        formats.write_png(Path(folder) / f"{name}.png", random_image(shape, seed))


def exam(horizontal_flip="NO", window_location=None, **views):
    entry = {"horizontal_flip": horizontal_flip}
    entry.update({v: views.get(v.replace("-", "_"), []) for v in ("L-CC", "R-CC", "L-MLO",
                                                                 "R-MLO")})
    if window_location is not None:
        entry["window_location"] = window_location
    return entry


def windows(**by_view):
    """window_location for an exam: {view: [(0, H, 0, W), ...]} from shapes."""
    out = {v: [] for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")}
    for view, shapes in by_view.items():
        out[view.replace("_", "-")] = [(0, h, 0, w) for h, w in shapes]
    return out


def read_map(folder, kind, name):
    return formats.read_hdf5(Path(folder) / f"heatmap_{kind}" / f"{name}.hdf5")


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "patch.p"
    torch.manual_seed(0)
    torch.save(PatchClassifier().state_dict(), path)
    return path


def legacy_copy(weights, path):
    """The patch checkpoint with old torchvision key names and no num_batches_tracked."""
    state = torch.load(weights, weights_only=True)
    legacy = {re.sub(r"(\.denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
              for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, path)
    return path
