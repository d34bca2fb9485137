"""The run record (core.run_record): settings that bind a run, and the append-only manifest."""

import json

import pytest

from breast_cancer_classifier.core.errors import SettingsError
from breast_cancer_classifier.core.run_record import RunRecord, exam_list_digest

SETTINGS = {"weights_sha256": {"patch": "a"}, "exam_list_sha256": "b", "seed": 0,
            "num_epochs": 10, "use_augmentation": True, "precision": "fp32",
            "runtime": "onnxruntime", "device": "cpu", "command": ["bcc", "run"]}


def test_only_settings_that_change_numbers_bind(tmp_path):
    record = RunRecord(tmp_path)
    record.write_settings(SETTINGS)
    record.check_same_settings(dict(SETTINGS, device="cuda:0", command=["other"]))
    with pytest.raises(SettingsError, match="seed: the run has 0, this command 1"):
        record.check_same_settings(dict(SETTINGS, seed=1))
    with pytest.raises(SettingsError, match="precision.*runtime"):
        record.check_same_settings(dict(SETTINGS, precision="bf16", runtime="torch"))


def test_continue_without_settings_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="--overwrite"):
        RunRecord(tmp_path).check_same_settings(SETTINGS)


def test_torn_last_line_is_ignored_and_outputs_are_verified(tmp_path):
    record = RunRecord(tmp_path)
    output = tmp_path / "exams" / "0.json"
    output.parent.mkdir()
    output.write_text("{}\n")
    record.append({"exam": 0, "status": "done", "outputs": record.output_entry([output])})
    with open(record.manifest_path, "a") as f:
        f.write('{"exam": 1, "status": "do')  # killed while writing
    assert [e["exam"] for e in record.entries()] == [0]
    assert list(record.finished_exams()) == [0]
    output.write_text("{}")  # changed after it was recorded
    assert record.finished_exams() == {}
    output.unlink()
    assert record.finished_exams() == {}


def test_the_last_entry_of_an_exam_counts(tmp_path):
    record = RunRecord(tmp_path)
    good = tmp_path / "good"
    good.write_text("x")
    record.append({"exam": 3, "outputs": record.output_entry([good])})
    record.append({"exam": 3, "outputs": {"missing": "0" * 64}})
    assert record.finished_exams() == {}
    assert record.finished("pass1") is None


def test_exam_list_digest_is_of_the_content():
    exams = [{"horizontal_flip": "NO", "L-CC": ["a"], "R-CC": ["b"], "L-MLO": [], "R-MLO": []}]
    same = json.loads(json.dumps(exams))
    assert exam_list_digest(exams) == exam_list_digest(same)
    assert exam_list_digest(exams) != exam_list_digest([dict(exams[0], horizontal_flip="YES")])
