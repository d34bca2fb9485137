"""Fine-tune the exam classifiers on your own labelled exams (best.p, last.p, metrics.csv).

Kept beside the original's utilities; the same command is ``bcc finetune``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.finetune import main  # noqa: E402

if __name__ == "__main__":
    main()
