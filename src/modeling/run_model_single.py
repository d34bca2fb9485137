"""Classify one cropped mammogram with an image-mode checkpoint (SPEC 9)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.run_model_single import main  # noqa: E402

if __name__ == "__main__":
    main()
