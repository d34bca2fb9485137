"""`make reproduce`'s comparison with the published figures (SPEC §11)."""

import json

import pytest

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.errors import PipelineError
from breast_cancer_classifier.tools.published import (PUBLISHED, compare_single_with_published,
                                                      compare_with_published)

from helpers import run_script


def write(tmp_path, name, offset):
    path = tmp_path / name
    formats.write_predictions_csv(path, [row + offset for row in PUBLISHED[name.split("_")[0]]])
    return path


def test_largest_difference_is_reported(tmp_path):
    paths = {"image": write(tmp_path, "image_p.csv", 0.0),
             "imageheatmaps": write(tmp_path, "imageheatmaps_p.csv", 0.0015)}
    lines, worst = compare_with_published(paths)
    assert worst == pytest.approx(0.0015, abs=1e-9)
    assert len(lines) == 2 + 2 * 16


def test_script_exit_status_follows_tolerance(tmp_path):
    single = tmp_path / "single.jsonl"
    single.write_text(json.dumps({"benign": 0.04019, "malignant": 0.00805}) + "\n" +
                      json.dumps({"benign": 0.052365876734256744,
                                  "malignant": 0.005510155577212572}) + "\n")
    ok = run_script("utilities/compare_published.py", "--image-predictions",
                    write(tmp_path, "image_a.csv", 0.001), "--imageheatmaps-predictions",
                    write(tmp_path, "imageheatmaps_a.csv", 0.0), "--single-predictions", single)
    assert ok.returncode == 0, ok.stderr
    assert "largest difference: 0.0010" in ok.stdout
    bad = run_script("utilities/compare_published.py", "--image-predictions",
                     write(tmp_path, "image_b.csv", 0.003), "--imageheatmaps-predictions",
                     write(tmp_path, "imageheatmaps_b.csv", 0.0))
    assert bad.returncode == 1 and "TOO LARGE" in bad.stdout


def test_wrong_row_count_and_single_lines(tmp_path):
    formats.write_predictions_csv(tmp_path / "short.csv", [(0.1, 0.1, 0.1, 0.1)])
    with pytest.raises(PipelineError, match="expected 4 rows"):
        compare_with_published({"image": tmp_path / "short.csv"})
    (tmp_path / "one.jsonl").write_text('{"benign": 0.1, "malignant": 0.2}\n')
    with pytest.raises(PipelineError, match="expected 2 JSON lines"):
        compare_single_with_published(tmp_path / "one.jsonl")
