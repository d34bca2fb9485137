"""Stage 1 for one image: crop it and write its metadata (SPEC §9).

Kept at the original's path; its flags are in commands/scripts/crop_single.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.crop_single import main  # noqa: E402

if __name__ == "__main__":
    main()
