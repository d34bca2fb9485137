"""The classifier-family registry (core.families): a family defined here, in the test file
only, runs through ``bcc run`` and gets its own CSV, with no change to ``core``.

The toy family's model reads four probabilities from a tiny JSON weight file and answers
them for every window (checking that it gets the four views' windows with its channels);
the patch model has random weights (a fixture: its heatmaps mean nothing).
"""

import csv
import json

import pytest
import torch
from torch import nn

from breast_cancer_classifier.commands import run as run_command
from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.errors import SettingsError
from breast_cancer_classifier.core.exam_list import save_exam_list
from breast_cancer_classifier.core.families import (BUILT_IN, ClassifierFamily, families,
                                                    get_family, register_family,
                                                    unregister_family)
from breast_cancer_classifier.core.stages.classify import IMAGE_AND_HEATMAPS
from breast_cancer_classifier.core.views import INPUT_SIZE, LABELS, VIEWS, view_angle
from breast_cancer_classifier.tools.phantoms import make_phantom, short_file_path

from patch_helpers import random_weights  # noqa: F401

TOY_PROBABILITIES = [0.125, 0.25, 0.375, 0.5]  # exact in float32 and in "%.4f"
PHANTOM_SHAPE = (320, 400)  # crops of 256-325 pixels a side: one patch each (quick)


class ToyModel(nn.Module):
    """``{view: N x C x H x W}`` in, the view-split classifier's outputs out (families.py)."""

    def __init__(self, probabilities, channels):
        super().__init__()
        self.register_buffer("positive", torch.tensor(probabilities))
        self.channels = channels

    def forward(self, views):
        assert sorted(views) == sorted(VIEWS)
        for view, x in views.items():
            assert tuple(x.shape[1:]) == (self.channels,) + INPUT_SIZE[view_angle(view)]
        n = views["L-CC"].shape[0]
        pairs = torch.stack([1 - self.positive, self.positive], dim=-1).expand(n, 4, 2)
        return {"CC": torch.log(pairs), "MLO": torch.log(pairs)}


def load_toy(path, channels, device, trust=False):
    return ToyModel(json.loads(open(path).read())["positive"], channels).to(device)


@pytest.fixture
def toy_family():
    family = register_family(ClassifierFamily("toy", "toy_predictions.csv", load_toy,
                                              IMAGE_AND_HEATMAPS))
    yield family
    unregister_family("toy")


@pytest.fixture
def cohort(tmp_path):
    """Two phantom exams; exam 1 has no R-MLO image (every classifier fails it)."""
    images = tmp_path / "images"
    exams = []
    for index in range(2):
        exam = {"horizontal_flip": "NO"}
        for view in VIEWS:
            name = short_file_path(index, view)
            exam[view] = [] if (index, view) == (1, "R-MLO") else [name]
            formats.write_png(images / f"{name}.png",
                              make_phantom(index, view, shape=PHANTOM_SHAPE).image)
        exams.append(exam)
    save_exam_list(exams, tmp_path / "exams.pkl")
    weights = tmp_path / "toy.json"
    weights.write_text(json.dumps({"positive": TOY_PROBABILITIES}))
    return tmp_path, weights


def bcc_run(*argv):
    with pytest.raises(SystemExit) as stop:
        run_command.main([str(a) for a in argv])
    return stop.value.code


def test_the_built_in_families_are_registered_first():
    assert [f.name for f in families()[:2]] == list(BUILT_IN) == ["image", "imageheatmaps"]
    assert [get_family(n).csv_name for n in BUILT_IN] == ["image_predictions.csv",
                                                          "imageheatmaps_predictions.csv"]
    assert not get_family("image").uses_heatmaps and get_family("imageheatmaps").uses_heatmaps
    with pytest.raises(SettingsError, match="unknown classifier family 'nope'; registered: "
                                            "image, imageheatmaps"):
        get_family("nope")
    with pytest.raises(SettingsError, match="clashes"):
        register_family(ClassifierFamily("other", "image_predictions.csv", load_toy))


def test_a_toy_family_runs_through_bcc_run(toy_family, cohort, random_weights):
    root, weights = cohort
    out = root / "out"
    status = bcc_run("--exam-list", root / "exams.pkl", "--data-folder", root / "images",
                     "--output-dir", out, "--families", "toy", "--weights", f"toy={weights}",
                     "--patch-model-path", random_weights, "--device-type", "cpu",
                     "--num-epochs", "2", "--num-processes", "1")
    assert status == 3  # exam 1 lacks a view
    with open(out / "toy_predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [list(LABELS), [f"{p:.4f}" for p in TOY_PROBABILITIES], ["", "", "", ""]]
    assert not (out / "image_predictions.csv").exists()
    assert json.loads((out / "exams" / "0.json").read_text())["toy"] == TOY_PROBABILITIES
    recorded = json.loads((out / "run_settings.json").read_text())["weights"]
    assert recorded == {"patch": str(random_weights), "toy": str(weights)}
    failures = (out / "failures.csv").read_text()
    assert "toy,exam 1,no image listed for view(s) R-MLO" in failures
    assert len(list((out / "heatmaps" / "heatmap_benign").iterdir())) == 7  # the toy's inputs


@pytest.mark.parametrize("flags, message", [
    (["--families", "toy"], "no weights for classifier family 'toy'"),
    (["--weights", "nope=x.p"], "unknown classifier family 'nope'"),
    (["--weights", "toy"], "expected FAMILY=PATH"),
    (["--weights", "toy=x.json"], "toy is not among --families image,imageheatmaps"),
])
def test_a_family_without_weights_or_unknown_exits_2(toy_family, cohort, flags, message,
                                                     capsys):
    root, _ = cohort
    status = bcc_run("--exam-list", root / "exams.pkl", "--data-folder", root / "images",
                     "--output-dir", root / "out", "--device-type", "cpu", *flags)
    assert status == 2 and message in capsys.readouterr().err
    assert not (root / "out").exists()
