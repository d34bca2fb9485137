"""Score a predictions CSV against labels: breast-level ROC AUC and PR AUC with bootstrap CIs.

Kept at the original's path; the same command is ``bcc evaluate``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
