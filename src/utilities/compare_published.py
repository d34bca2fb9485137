"""Compare predictions on the official sample exams with the published ones (SPEC §11).

Its flags are in commands/scripts/compare_published.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.compare_published import main  # noqa: E402

if __name__ == "__main__":
    main()
