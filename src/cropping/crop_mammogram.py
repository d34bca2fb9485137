"""Stage 1: crop mammograms around the breast and record window and points (SPEC §4).

Kept at the original's path; its flags are in commands/scripts/crop_mammogram.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.crop_mammogram import main  # noqa: E402

if __name__ == "__main__":
    main()
