"""Export every network to ONNX, torch.export programs and TF SavedModels, each checked.

The same command is ``bcc export``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.commands.export import main  # noqa: E402

if __name__ == "__main__":
    main()
