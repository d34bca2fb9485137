"""Build an exam list for a folder of 16-bit PNG mammograms.

Kept at the original's path; the same command is ``bcc exam-list``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.exam_list import main  # noqa: E402

if __name__ == "__main__":
    main()
