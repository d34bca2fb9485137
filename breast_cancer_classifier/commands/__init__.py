"""Every command line of the project: ``commands/X.py`` is ``bcc X`` (its parser and
``main(argv=None, prog=None)``), ``commands/scripts/`` holds the parsers of the scripts under
``src/`` (which keep the original's paths and flags and only call a ``main``).

Shared flags and the error-to-exit-code mapping are in :mod:`breast_cancer_classifier.cli`.
"""

import ast
import importlib.util
from pathlib import Path


def summary(module):
    """What ``bcc <command>`` does, in one line: the first line of the docstring of
    ``commands/<module>.py``, read without importing it (``bcc --help`` stays quick although
    some commands import PyTorch)."""
    spec = importlib.util.find_spec(f"{__name__}.{module}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    return doc.split("\n", 1)[0].strip().rstrip(".")
