"""``bcc``: the whole pipeline and its tools behind one command.

    bcc run --exam-list PATH --data-folder DIR --output-dir DIR [--continue] [--overwrite] ...
    bcc single IMAGE VIEW [--output-dir DIR] ...
    bcc demo [--output-dir DIR]
    bcc dicom | dicom-out | exam-list | qa | visualize | evaluate | calibrate | download
        | demo-weights | export | finetune | serve | report  [their flags]

Each command ``X`` is ``commands/X.py`` (its parser and ``main(argv, prog)``), whose
docstring's first line is its line in ``bcc --help``; ``run`` and ``single`` work in one
process (:mod:`core.pipeline`, :mod:`core.single`).
Exit status: 0 done, 3 some items failed (the rest is complete), 1 nothing could be done,
2 bad arguments, exam list, checkpoint or settings, or an existing output.
"""

import argparse
import importlib
import sys

from . import __version__
from .commands import summary

# Command -> module of breast_cancer_classifier.commands (which parses its own flags).
COMMANDS = {
    "run": "run",  # the pipeline on an exam list, into one folder
    "single": "single",  # the single-image path
    "demo": "demo",  # sample exams and the whole pipeline, from an empty folder
    "dicom": "dicom",
    "dicom-out": "dicom_out",  # DICOM results (Mammography CAD SR, overlays) of a run folder
    "exam-list": "exam_list",
    "visualize": "visualize",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "download": "download",
    "demo-weights": "demo_weights",
    "export": "export",  # every network to ONNX / .pt2 / SavedModel, checked
    "qa": "qa",
    "finetune": "finetune",  # fine-tuning on labelled exams (tools/finetune)
    "serve": "serve",  # a DICOM node: studies in from a PACS, results back (tools/serve)
    "report": "report",  # one HTML folder per finished run: summary, QA, subgroup AUCs, exams
}


def build_parser():
    parser = argparse.ArgumentParser(prog="bcc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        commands.add_parser(name, add_help=False, help=summary(module))
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(f"{__package__}.commands.{COMMANDS[argv[0]]}")
        return module.main(argv[1:], prog=f"bcc {argv[0]}")
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
