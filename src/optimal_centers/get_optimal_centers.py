"""Stage 2: the best center of each cropped image's model window (SPEC §5).

Kept at the original's path; its flags are in commands/scripts/get_optimal_centers.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.get_optimal_centers import main  # noqa: E402

if __name__ == "__main__":
    main()
