"""Write deterministic, UNTRAINED demo weights for the checkpoints missing from models/.

Kept at the original's path; the same command is ``bcc demo-weights``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.demo_weights import main  # noqa: E402

if __name__ == "__main__":
    main()
