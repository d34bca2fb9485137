"""Convert a folder of DICOM screening mammograms into 16-bit PNGs and an exam list.

Kept at the original's path; the same command is ``bcc dicom``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.dicom import main  # noqa: E402

if __name__ == "__main__":
    main()
