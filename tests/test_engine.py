"""The engine's shared steps (core.engine): in-memory inputs are the stage-4 script's file
inputs, bit for bit, and the settings name every family's weights.

The byte-identity of whole runs with run.sh's is tested end to end in test_pipeline.py.
"""

import numpy as np
import pytest

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.engine import EngineSettings, exam_inputs
from breast_cancer_classifier.core.errors import InputImageError, SettingsError
from breast_cancer_classifier.core.stages.classify import (IMAGE_AND_HEATMAPS, IMAGE_ONLY,
                                                           ClassifierSettings, read_exam_inputs)
from breast_cancer_classifier.core.views import VIEWS, flip_for_model

SHAPE = (40, 30)


@pytest.fixture
def files(tmp_path):
    """One exam (two L-CC images) as files, and as the arrays the engine holds."""
    rng = np.random.default_rng(0)
    exam = {"horizontal_flip": "NO", "L-CC": ["a", "b"], "R-CC": ["c"], "L-MLO": ["d"],
            "R-MLO": ["e"]}
    images, maps = {}, {}
    for view in VIEWS:
        for name in exam[view]:
            images[name] = rng.integers(0, 65535, SHAPE, dtype=np.uint16)
            maps[name] = tuple(rng.random(SHAPE, dtype=np.float32) for _ in range(2))
            formats.write_png(tmp_path / "cropped" / f"{name}.png", images[name])
            for heatmap, path in zip(maps[name],
                                     formats.heatmap_paths(tmp_path / "heatmaps", name)):
                formats.write_hdf5(path, heatmap)
    return tmp_path, exam, images, maps


@pytest.mark.parametrize("channels", [IMAGE_ONLY, IMAGE_AND_HEATMAPS])
def test_inputs_in_memory_are_the_scripts_inputs_from_files(files, channels):
    folder, exam, images, maps = files
    settings = ClassifierSettings(use_heatmaps=channels == IMAGE_AND_HEATMAPS)
    from_files = read_exam_inputs(exam, folder / "cropped", folder / "heatmaps", settings)
    in_memory = exam_inputs(exam, images, maps, channels)
    for view in VIEWS:
        for got, want in zip(in_memory[view], from_files[view]):
            assert got.dtype == np.float32 and got.shape == SHAPE + (len(channels),)
            np.testing.assert_array_equal(got, want)
    # R-CC faces right after mirroring; channels are image, benign, malignant (SPEC 7.2)
    r_cc = in_memory["R-CC"][0]
    np.testing.assert_array_equal(r_cc[..., 0], np.fliplr(images["c"]).astype(np.float32))
    if len(channels) == 3:
        np.testing.assert_array_equal(r_cc[..., 1], flip_for_model(maps["c"][1], "R-CC", "NO"))
        np.testing.assert_array_equal(r_cc[..., 2], flip_for_model(maps["c"][0], "R-CC", "NO"))


def test_missing_maps_fail_the_heatmap_families_only(files):
    _, exam, images, maps = files
    del maps["d"]
    assert exam_inputs(exam, images, maps, IMAGE_ONLY)["L-MLO"][0].shape == SHAPE + (1,)
    with pytest.raises(InputImageError, match="d: no heatmaps"):
        exam_inputs(exam, images, maps, IMAGE_AND_HEATMAPS)
    del images["e"]
    with pytest.raises(InputImageError, match="e: the cropped image could not be read"):
        exam_inputs(exam, images, maps, IMAGE_ONLY)


def test_weight_paths_name_the_patch_model_and_each_family():
    settings = EngineSettings(patch_model_path="p.p", image_model_path="i.p",
                              imageheatmaps_model_path="ih.p")
    assert settings.weight_paths() == {"patch": "p.p", "image": "i.p", "imageheatmaps": "ih.p"}
    chosen = EngineSettings(families=("imageheatmaps",), weights=(("imageheatmaps", "x.p"),))
    assert chosen.weight_paths() == {"patch": chosen.patch_model_path, "imageheatmaps": "x.p"}
    with pytest.raises(SettingsError, match="unknown classifier family 'toy'"):
        EngineSettings(families=("toy",)).weight_paths()
