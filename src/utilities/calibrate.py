"""Fit a calibration of the predicted probabilities on labelled data (Platt or isotonic).

The same command is ``bcc calibrate``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.calibrate import main  # noqa: E402

if __name__ == "__main__":
    main()
