"""Draw heatmap overlay pictures: per exam one PNG, or one PNG of a single image.

Kept at the original's path; the same command is ``bcc visualize``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.visualize import main  # noqa: E402

if __name__ == "__main__":
    main()
