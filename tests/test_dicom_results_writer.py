"""The run-folder side of the DICOM results (tools/dicom_results/writer.py); the whole
writer runs end to end in test_dicom_results.py."""

from decimal import Decimal

import numpy as np
import pytest

from breast_cancer_classifier.core.errors import OutputExistsError, PipelineError
from breast_cancer_classifier.tools.dicom_results import writer


def test_peak_undoes_only_the_crop_window():
    """Heatmaps lie in their crop's stored orientation (SPEC 3, 6 step 6) whatever the view
    and horizontal_flip: the maximum's source pixel is the window's offset plus its place."""
    heatmap = np.zeros((300, 260), dtype=np.float32)
    heatmap[40, 250] = 0.75
    heatmap[41, 250] = 0.75  # a tie: the first in row-major order
    assert writer._peak(heatmap, (10, 310, 100, 360)) == ((50, 350), 0.75)


def test_percentages_are_the_csv_cells_times_100():
    values = writer._percent(["0.0580", "0.0754", "0.0091", "1.0000"])
    assert values == {("L", "benign"): Decimal("5.8"), ("R", "benign"): Decimal("7.54"),
                      ("L", "malignant"): Decimal("0.91"), ("R", "malignant"): Decimal(100)}
    assert writer._percent(["", "", "", ""]) is None


def test_operating_point_of_a_calibration():
    assert writer.operating_point({"operating_point": {"threshold": 0.25}}) == 0.25
    assert writer.operating_point({"operating_point": {"sensitivity": 0.9}}) is None
    assert writer.operating_point({}) is None


def test_output_folder_holding_anything_is_refused_unless_overwrite(tmp_path):
    writer.check_output_folder(tmp_path / "new", overwrite=False)
    (tmp_path / "empty").mkdir()
    writer.check_output_folder(tmp_path / "empty", overwrite=False)
    (tmp_path / "empty" / "SR_exam0.dcm").write_bytes(b"")
    with pytest.raises(OutputExistsError, match="SR_exam0.dcm.*--overwrite"):
        writer.check_output_folder(tmp_path / "empty", overwrite=False)
    writer.check_output_folder(tmp_path / "empty", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        writer.check_output_folder(tmp_path / "file", overwrite=True)


def test_a_folder_that_is_no_run_is_refused(tmp_path):
    pytest.importorskip("highdicom", reason="the clinical extra (highdicom) is not installed")
    with pytest.raises(PipelineError, match="not a finished bcc run folder"):
        writer.write_dicom_results(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
