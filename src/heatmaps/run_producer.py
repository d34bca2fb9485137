"""Stage 3: patch-classifier heatmaps for every image of an exam list (SPEC section 6)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.run_producer import main  # noqa: E402

if __name__ == "__main__":
    main()
