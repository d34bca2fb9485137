"""Write the synthetic sample exams (sample_data/images/*.png and its exam list).

Its flags are in commands/scripts/make_sample_data.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.scripts.make_sample_data import main  # noqa: E402

if __name__ == "__main__":
    main()
