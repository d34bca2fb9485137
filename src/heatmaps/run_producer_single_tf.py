"""Stage 3 for one cropped image on TensorFlow (the original's TF image-wise path, SPEC 9)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.run_producer_single_tf import main  # noqa: E402

if __name__ == "__main__":
    main()
