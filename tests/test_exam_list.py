"""Exam lists: restricted unpickling, JSON, validation with clear messages."""

import os
import pickle

import numpy as np
import pytest

from breast_cancer_classifier.core.errors import ExamListError
from breast_cancer_classifier.core.exam_list import (iter_images, load_exam_list, load_metadata,
                                                     save_exam_list)

from conftest import parity_case


def exam(**extra):
    base = {"horizontal_flip": "NO", "L-CC": ["0_L_CC"], "R-CC": ["0_R_CC"],
            "L-MLO": ["0_L_MLO"], "R-MLO": ["0_R_MLO"]}
    base.update(extra)
    return base


class RunsCode:
    """Unpickling this would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([exam(note=RunsCode(marker))]))
    with pytest.raises(ExamListError, match="evil.pkl: refusing to load global '(posix|os).system'"):
        load_exam_list(path)
    assert not marker.exists()


def test_numpy_values_load_and_become_plain_tuples(tmp_path):
    path = tmp_path / "np.pkl"
    e = exam(window_location={v: [(np.int64(1), np.int64(2), np.int64(3), np.int64(4))]
                              for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")})
    path.write_bytes(pickle.dumps([e]))
    loaded = load_exam_list(path)
    assert loaded[0]["window_location"]["L-CC"][0] == (1, 2, 3, 4)
    assert type(loaded[0]["window_location"]["L-CC"][0][0]) is int


def test_reference_pickles_load(tmp_path):
    case = parity_case("real_cc")
    data = load_exam_list(case / "expected" / "data.pkl")
    assert data[0]["best_center"]["L-CC"] == [(1296, 240)]
    assert [name for *_, name in iter_images(data)] == ["1_L_CC", "1_R_CC", "2_L_CC", "2_R_CC"]


@pytest.mark.parametrize("suffix", [".pkl", ".json"])
def test_round_trip_keeps_unknown_keys(tmp_path, suffix):
    e = exam(cancer_label={"left_malignant": 1}, best_center={
        v: [(10, 20)] for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")})
    save_exam_list([e], tmp_path / f"list{suffix}")
    back = load_exam_list(tmp_path / f"list{suffix}")
    assert back[0]["cancer_label"] == {"left_malignant": 1}
    assert back[0]["best_center"]["R-MLO"] == [(10, 20)]


@pytest.mark.parametrize("bad,message", [
    ([exam(horizontal_flip="MAYBE")], r"exam 0: key 'horizontal_flip' must be 'YES' or 'NO', found 'MAYBE'"),
    ([{k: v for k, v in exam().items() if k != "R-MLO"}], r"exam 0: key 'R-MLO' must be a list"),
    ([exam(), exam()], r"exam 1: key 'L-CC': short file path '0_L_CC' is already listed \(exam 0, L-CC\)"),
    ([exam(best_center={"L-CC": [], "R-CC": [(1, 2)], "L-MLO": [(1, 2)], "R-MLO": [(1, 2)]})],
     r"exam 0: key 'best_center'\['L-CC'\] must list one value per image"),
    ({"not": "a list"}, r"expected a list of exams"),
    (["x"], r"exam 0: expected a dict"),
])
def test_invalid_exam_lists_name_exam_and_key(tmp_path, bad, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(bad))
    with pytest.raises(ExamListError, match=message):
        load_exam_list(path)


def test_unreadable_files(tmp_path):
    (tmp_path / "t.pkl").write_bytes(pickle.dumps([exam()])[:10])
    with pytest.raises(ExamListError, match="t.pkl: cannot read exam list"):
        load_exam_list(tmp_path / "t.pkl")
    (tmp_path / "j.json").write_text("[{")
    with pytest.raises(ExamListError, match="j.json: not valid JSON"):
        load_exam_list(tmp_path / "j.json")
    with pytest.raises(ExamListError, match="missing.pkl: exam list not found"):
        load_exam_list(tmp_path / "missing.pkl")
    with pytest.raises(ExamListError, match="unknown extension"):
        save_exam_list([exam()], tmp_path / "list.txt")


def test_metadata_requires_a_known_view(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"horizontal_flip": "NO", "full_view": "CC", "side": "L",
                                   "view": "CC"}))
    with pytest.raises(ExamListError, match="m.pkl: key 'full_view' must be one of"):
        load_metadata(path)
