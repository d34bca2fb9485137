"""Stage 2 for one image: add best_center to its metadata file (SPEC §9).

Kept at the original's path; its flags are in commands/scripts/get_optimal_center_single.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.get_optimal_center_single import main  # noqa: E402

if __name__ == "__main__":
    main()
