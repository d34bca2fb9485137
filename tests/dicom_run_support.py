"""One ``bcc dicom --pseudonymize`` + ``bcc run --dicom-out`` of a small study, shared by the
tests of the DICOM results (test_dicom_results.py) and of ``bcc serve`` with the model
(test_serve_orthanc.py): the :func:`dicom_run` session fixture (registered in conftest.py,
so that the run is made once per session), its inputs, and a reader of an SR's
probabilities.

The weights are untrained (PyTorch's initialisation) and marked as demo weights; one
augmented repetition (``--num-epochs 1``); about half a minute on 2 CPU cores.
"""

import csv

import pydicom
import pytest

from breast_cancer_classifier.core.views import LABELS

from dicom_files import screening_study

STUDY_UID = "1.2.826.0.1.3680043.99.77342"
IDENTIFIERS = {"PatientID": "MRN7734Q", "PatientName": "Doe^Jane",
               "PatientBirthDate": "19610309", "AccessionNumber": "ACC7734",
               "StudyDate": "20190817"}
MODEL_NAMES = {"image": "NYU image-only classifier (view_split)",
               "imageheatmaps": "NYU image+heatmaps classifier (view_split)"}


def _fast_demo_weights(models_dir):
    """The three checkpoints bcc run loads, untrained (PyTorch's initialisation, BatchNorm
    statistics not measured: seconds instead of a minute), marked as demo weights."""
    import torch

    from breast_cancer_classifier.core.checkpoints.classifier import with_column_aliases
    from breast_cancer_classifier.core.classifier_models import build_view_split_model
    from breast_cancer_classifier.core.patch_model import PatchClassifier
    from breast_cancer_classifier.tools import demo_weights

    def patch(seed, _):
        torch.manual_seed(seed)
        return PatchClassifier().state_dict()

    def classifier(_, channels, seed, __):
        torch.manual_seed(seed)
        return with_column_aliases(build_view_split_model(channels).state_dict())

    with pytest.MonkeyPatch.context() as patcher:
        patcher.setattr(demo_weights, "make_patch_state_dict", patch)
        patcher.setattr(demo_weights, "make_classifier_state_dict", classifier)
        demo_weights.write_demo_weights(models_dir)
    return {"patch": models_dir / "sample_patch_model.p",
            "image": models_dir / "sample_image_model.p",
            "imageheatmaps": models_dir / "sample_imageheatmaps_model.p"}


def _bcc(*args):
    """``bcc`` in this process; its exit status."""
    from breast_cancer_classifier import bcc

    with pytest.raises(SystemExit) as exit_info:
        bcc.main([str(a) for a in args])
    return exit_info.value.code


def _run_flags(weights):
    return ["--patch-model-path", weights["patch"], "--image-model-path", weights["image"],
            "--imageheatmaps-model-path", weights["imageheatmaps"], "--device-type", "cpu",
            "--num-epochs", "1", "--num-processes", "1"]


@pytest.fixture(scope="session")
def dicom_run(tmp_path_factory):
    pytest.importorskip("highdicom", reason="the clinical extra (highdicom) is not installed")
    from breast_cancer_classifier.core.exam_list import load_exam_list
    from breast_cancer_classifier.tools.dicom import dicom_to_exam_list
    from breast_cancer_classifier.tools.pseudonyms import Pseudonyms

    root = tmp_path_factory.mktemp("dicom_results")
    dicom_dir = root / "dicom" / IDENTIFIERS["PatientID"] / IDENTIFIERS["StudyDate"]
    sources = screening_study(dicom_dir, STUDY_UID, IDENTIFIERS["PatientID"], mirrored=True,
                              date=IDENTIFIERS["StudyDate"], StudyTime="101500",
                              PatientSex="F", **{k: v for k, v in IDENTIFIERS.items()
                                                 if k not in ("PatientID", "StudyDate")})
    key = root / "keys" / "site.key"
    result = dicom_to_exam_list(root / "dicom", root / "png", root / "exams.pkl",
                                pseudonymize=key)
    assert result.exit_code == 0
    weights = _fast_demo_weights(root / "models")
    status = _bcc("run", "--exam-list", root / "exams.pkl", "--data-folder", root / "png",
                  "--output-dir", root / "run", *_run_flags(weights),
                  "--dicom-out", root / "dcm")
    assert status == 0
    return {"root": root, "run": root / "run", "out": root / "dcm", "key": key,
            "weights": weights, "sources": {k: pydicom.dcmread(p) for k, p in sources.items()},
            "source_files": dict(sources), "pseudonyms": Pseudonyms(key),
            "exam": load_exam_list(root / "run" / "data.pkl")[0]}


def _content_items(item):
    """Every content item below ``item``, depth first, with its parent."""
    for child in item.get("ContentSequence", []):
        yield child, item
        yield from _content_items(child)


def _concept(item):
    return item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else None


def _probabilities(sr):
    """``{(algorithm name, concept, side): value}`` of the NUMs with a laterality."""
    found = {}
    for impression, parent in _content_items(sr):
        if _concept(impression) != "111034":
            continue
        name = next(i.TextValue for i in impression.ContentSequence if _concept(i) == "111001")
        for item in impression.ContentSequence:
            if item.get("ValueType") == "NUM" and "ContentSequence" in item:
                side = {"73056007": "right", "80248007": "left"}[
                    item.ContentSequence[0].ConceptCodeSequence[0].CodeValue]
                value = item.MeasuredValueSequence[0]
                assert value.MeasurementUnitsCodeSequence[0].CodeValue == "%"
                found[(name, _concept(item), side)] = float(value.NumericValue)
    return found


CONCEPTS = {"malignant": "111047", "benign": "BCC0001"}  # of the SR's NUMs


def check_sr_against_csvs(sr, run_dir):
    """The SR's 8 probabilities (2 breasts x malignant, benign x 2 models) equal the
    predictions CSVs of the run in ``run_dir`` times 100, within 1e-4; returns them."""
    found = _probabilities(sr)
    assert len(found) == 8
    for model, name in MODEL_NAMES.items():
        with open(run_dir / f"{model}_predictions.csv", newline="") as f:
            row = next(csv.DictReader(f))
        for label in LABELS:
            side, target = label.split("_")
            assert abs(found[(name, CONCEPTS[target], side)] - float(row[label]) * 100) < 1e-4
    return found
