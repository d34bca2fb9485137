"""``bcc finetune`` (tools/finetune): learning, resume, schedule, split, formats, bad input.

The learning run is sized for CI: a 12-exam synthetic cohort of quarter-size phantoms
(malignant breasts carry a planted blob the others lack), demo weights, frozen columns,
the image-mode model (each view's head sees its own breast).
Every training step and validation pass still runs the models at full input size.
"""

import csv
import math

import numpy as np
import pytest
import torch

from breast_cancer_classifier.bcc import main as bcc_main
from breast_cancer_classifier.core.checkpoints.classifier import (ALIASES, COLUMN_PREFIX,
                                                                  load_classifier,
                                                                  read_classifier_state_dict)
from breast_cancer_classifier.core.errors import (CheckpointError, ExamListError,
                                                  OutputExistsError, SettingsError)
from breast_cancer_classifier.core.exam_list import load_exam_list, save_exam_list
from breast_cancer_classifier.tools import demo_weights, phantoms
from breast_cancer_classifier.tools.evaluate import read_labels, sklearn_metrics, target_arrays
from breast_cancer_classifier.core.formats import read_predictions_csv
from breast_cancer_classifier.tools.finetune import FinetuneSettings, finetune
from breast_cancer_classifier.tools.finetune.data import split_exams
from breast_cancer_classifier.tools.finetune.schedule import (EarlyStopping, columns_frozen,
                                                              warmup_cosine)

from helpers import run_script

COHORT_EXAMS = 12
DEMO_SCALE = 0.05  # demo weights calibrated on small windows: quick to make
LEARNING = FinetuneSettings(model_mode="image", epochs=4, freeze_columns_epochs=4,
                            lr=3e-3, effective_batch_size=1, val_num_epochs=1, warmup_steps=0,
                            malignant_weight=3.0, seed=0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    # Quarter-size phantoms shown at full size (pixels repeated): their crops fill the
    # model's window as real mammograms do, so the planted blobs move the features.
    exam_list = phantoms.write_labelled_cohort(root, COHORT_EXAMS, upscale=4)
    inits = {}
    for mode in ("view_split", "image"):
        path = root / f"demo_{mode}.p"
        torch.save({"model": demo_weights.make_classifier_state_dict(mode, 1, window_scale=DEMO_SCALE)},
                   path)
        inits[mode] = path
    return {"root": root, "exam_list": exam_list, "images": root / "images", "init": inits,
            "cache": root / "cache"}


def _run(cohort, output_dir, settings=LEARNING, **kwargs):
    kwargs.setdefault("val_fraction", 0.5)
    return finetune(cohort["exam_list"], cohort["images"], output_dir,
                    cohort["init"][settings.model_mode], settings, cache_dir=cohort["cache"],
                    device_type="cpu", **kwargs)


def _metrics(path):
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def learned(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("learned") / "run"
    assert _run(cohort, out) == 0
    return out


# --------------------------------------------------------------------------- learning
def test_finetuning_learns_the_planted_findings(learned):
    rows = _metrics(learned)
    before = float(rows[0]["val_malignant_auc"])
    best = max(float(r["val_malignant_auc"]) for r in rows[1:])
    print(f"validation malignant AUC: {before:.4f} before, {best:.4f} best")
    assert rows[0]["epoch"] == "0" and 0.25 <= before <= 0.75
    assert best >= 0.9


def test_best_checkpoint_through_run_model_gives_the_logged_auc(learned, cohort, tmp_path):
    rows = _metrics(learned)
    best = next(r for r in rows if r["best"] == "1" and float(r["val_malignant_auc"]) == max(
        float(x["val_malignant_auc"]) for x in rows[1:]))
    output = tmp_path / "predictions.csv"
    run_script("modeling/run_model.py", "--model-path", learned / "best.p",
               "--data-path", learned / "val_exam_list.pkl",
               "--image-path", cohort["cache"] / "cropped_images", "--output-path", output,
               "--model-mode", LEARNING.model_mode,
               "--use-augmentation", "--num-epochs", LEARNING.val_num_epochs,
               "--seed", LEARNING.seed, "--device-type", "cpu", check=0)
    labels = read_labels(learned / "val_exam_list.pkl")
    auc = sklearn_metrics(*target_arrays(read_predictions_csv(output), labels,
                                         "malignant"))["roc_auc"]
    print(f"run_model AUC {auc:.4f}, training log {best['val_malignant_auc']}")
    assert abs(auc - float(best["val_malignant_auc"])) <= 0.005


def test_outputs_are_written(learned):
    for name in ("best.p", "last.p", "metrics.csv", "curves.png", "train_state.pt",
                 "train_exam_list.pkl", "val_exam_list.pkl", "finetune_settings.json"):
        assert (learned / name).is_file(), name
    assert (learned / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- resume
RESUME = FinetuneSettings(model_mode="view_split", epochs=2, freeze_columns_epochs=1,
                          lr=1e-3, column_lr=1e-3, effective_batch_size=1, val_num_epochs=1,
                          warmup_steps=0, seed=3)


@pytest.fixture(scope="module")
def tiny_lists(cohort, tmp_path_factory):
    """One training exam and one validation exam (a malignant and a clear breast)."""
    root = tmp_path_factory.mktemp("lists")
    exams = load_exam_list(cohort["exam_list"])
    save_exam_list([exams[0]], root / "train.pkl")
    save_exam_list([exams[1]], root / "val.pkl")
    return root


def test_resume_ends_with_the_bytes_of_an_uninterrupted_run(cohort, tiny_lists, tmp_path):
    kwargs = dict(val_fraction=None, val_exam_list_path=tiny_lists / "val.pkl")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for out, extra in ((whole, {}), (parts, {"stop_after_epoch": 1})):
        finetune(tiny_lists / "train.pkl", cohort["images"], out, cohort["init"]["view_split"],
                 RESUME, cache_dir=cohort["cache"], device_type="cpu", **kwargs, **extra)
    epoch1 = read_classifier_state_dict(parts / "last.p")
    init = read_classifier_state_dict(cohort["init"]["view_split"])
    finetune(tiny_lists / "train.pkl", cohort["images"], parts, cohort["init"]["view_split"],
             RESUME, cache_dir=cohort["cache"], device_type="cpu", resume=True, **kwargs)
    assert (parts / "last.p").read_bytes() == (whole / "last.p").read_bytes()
    assert (parts / "best.p").read_bytes() == (whole / "best.p").read_bytes()
    assert [r["val_loss"] for r in _metrics(parts)] == [r["val_loss"] for r in _metrics(whole)]

    # Epoch 1 trained the heads only; epoch 2 (columns unfrozen) changed the columns too.
    epoch2 = read_classifier_state_dict(whole / "last.p")
    columns = [k for k in init if k.startswith(COLUMN_PREFIX) and k.endswith("weight")]
    heads = [k for k in init if not k.startswith(COLUMN_PREFIX)]
    assert all(torch.equal(epoch1[k], init[k]) for k in columns)
    assert any(not torch.equal(epoch1[k], init[k]) for k in heads)
    assert all(not torch.equal(epoch2[k], epoch1[k]) for k in columns)

    # Saved as the originals are: legacy serialization, with the per-view column aliases.
    for name in ("best.p", "last.p"):
        data = (whole / name).read_bytes()
        assert not data.startswith(b"PK")  # a zip archive would be the new format
        raw = torch.load(whole / name, weights_only=True)
        assert set(raw) == {"model"}
        for alias, column in ALIASES.items():
            key = f"{COLUMN_PREFIX}{alias}.first_conv.weight"
            assert torch.equal(raw["model"][key], raw["model"][f"{COLUMN_PREFIX}{column}.first_conv.weight"])
        load_classifier(whole / name, "view_split", 1)


def test_image_mode_checkpoint_loads_as_single_image_model(cohort, tmp_path):
    from breast_cancer_classifier.core.checkpoints.classifier import (load_single_image_model,
                                                                      save_classifier)

    model = load_classifier(cohort["init"]["image"], "image", 1)
    save_classifier(model, tmp_path / "image.p")
    raw = torch.load(tmp_path / "image.p", weights_only=True)["model"]
    assert f"{COLUMN_PREFIX}r_mlo.final_bn.weight" in raw and "fc1_rmlo.weight" in raw
    single = load_single_image_model(tmp_path / "image.p", "R-MLO", 1)
    assert torch.equal(single.fc1.weight, model.fc1_rmlo.weight)
    save_classifier(model, tmp_path / "again.p")
    assert (tmp_path / "again.p").read_bytes() == (tmp_path / "image.p").read_bytes()


# --------------------------------------------------------------------------- schedule, split
def test_warmup_then_cosine_decay():
    factors = [warmup_cosine(step, 2, 10) for step in range(10)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == 1.0 and all(a > b for a, b in zip(factors[2:], factors[3:]))
    assert math.isclose(warmup_cosine(6, 2, 10), 0.5)
    assert [columns_frozen(e, 2) for e in (1, 2, 3)] == [True, True, False]


def test_early_stopping_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(patience=2)
    history = [(0.6, 0.5), (0.7, 0.5), (0.7, 0.4), (0.65, 0.3), (0.7, 0.45), (0.9, 0.1)]
    stopped_at = None
    for epoch, (auc, loss) in enumerate(history, start=1):
        stopper.update(epoch, auc, loss)
        if stopper.should_stop:
            stopped_at = epoch
            break
    assert stopped_at == 5  # epochs 4 and 5 did not beat epoch 3
    assert stopper.best_epoch == 3  # the tie on AUC at epoch 3 was broken by the lower loss


def test_split_keeps_each_patients_exams_on_one_side():
    exams = [{"patient_id": f"p{i % 7}"} for i in range(40)] + [{} for _ in range(5)]
    train, val = split_exams(exams, 0.3, seed=4)
    assert sorted(train + val) == list(range(45))
    assert not {exams[i].get("patient_id") for i in train if "patient_id" in exams[i]} & \
        {exams[i].get("patient_id") for i in val if "patient_id" in exams[i]}
    assert 8 <= len(val) <= 20
    assert split_exams(exams, 0.3, seed=4) == (train, val)
    assert split_exams(exams, 0.3, seed=5) != (train, val)


# --------------------------------------------------------------------------- bad input
def test_labels_that_do_not_match_the_exam_list(cohort, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("left_benign,right_benign,left_malignant,right_malignant\n0,0,0,1\n")
    with pytest.raises(ExamListError, match="labels.csv.*do not match the exam list"):
        _run(cohort, tmp_path / "out", labels_path=labels)


def test_validation_set_with_one_class(cohort, tmp_path):
    exams = load_exam_list(cohort["exam_list"])
    save_exam_list([exams[0]], tmp_path / "val.pkl")  # no malignant breast
    with pytest.raises(SettingsError, match="malignant ROC AUC is undefined"):
        _run(cohort, tmp_path / "out", val_fraction=None, val_exam_list_path=tmp_path / "val.pkl")


@pytest.mark.parametrize("mode,heatmaps,message", [
    ("view_split", False, "does not fit the view_split classifier"),
    ("image", True, "has 1 input channel"),
])
def test_checkpoint_of_the_wrong_kind_or_channels(cohort, tmp_path, mode, heatmaps, message):
    settings = FinetuneSettings(model_mode=mode, use_heatmaps=heatmaps)
    wrong = cohort["init"]["image"]  # image-mode, 1 channel
    with pytest.raises(CheckpointError, match=message):
        finetune(cohort["exam_list"], cohort["images"], tmp_path / "out", wrong, settings,
                 val_fraction=0.5, cache_dir=cohort["cache"], device_type="cpu")


def test_existing_output_folder_needs_overwrite(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "last.p").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="already exists"):
        _run(cohort, out)
    with pytest.raises(SystemExit) as exit_info:
        bcc_main(["finetune", "--exam-list", str(cohort["exam_list"]), "--data-folder",
                  str(cohort["images"]), "--output-dir", str(out), "--init",
                  str(cohort["init"]["view_split"]), "--device-type", "cpu"])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
