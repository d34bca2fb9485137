"""Download the official checkpoints (and, optionally, the original sample exams), verified.

Kept at the original's path; the same command is ``bcc download``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.download import main  # noqa: E402

if __name__ == "__main__":
    main()
