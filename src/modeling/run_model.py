"""Stage 4: run the view-wise or image-wise cancer classifier over an exam list (SPEC 7)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.run_model import main  # noqa: E402

if __name__ == "__main__":
    main()
