"""``bcc``: the whole pipeline and its tools behind one command.

    bcc run --exam-list PATH --data-folder DIR --output-dir DIR [--continue] [--overwrite] ...
    bcc single IMAGE VIEW [--output-dir DIR] ...
    bcc dicom | exam-list | qa | visualize | evaluate | calibrate | download | demo-weights
        | export | finetune  [their flags]

Each command's flags and body live in ``commands/<command>.py`` (``run`` and ``single`` work in
one process: :mod:`core.pipeline`, :mod:`core.single`); the tool commands are those of the
scripts under ``src/utilities/``, with the same flags.
Exit status: 0 done, 3 some items failed (the rest is complete), 1 nothing could be done,
2 bad arguments, exam list, checkpoint or settings, or an existing output.
"""

import argparse
import importlib
import sys

from . import __version__

# Command -> module of breast_cancer_classifier.commands (which parses its own flags).
COMMANDS = {
    "run": "run",  # the pipeline on an exam list, into one folder
    "single": "single",  # the single-image path
}
# Tool command -> module of breast_cancer_classifier.commands (and script of src/utilities).
TOOLS = {
    "dicom": "dicom",
    "exam-list": "exam_list",
    "visualize": "visualize",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "download": "download",
    "demo-weights": "demo_weights",
    "export": "export",  # every network to ONNX / .pt2 / SavedModel, checked
    "qa": "qa",
    "finetune": "finetune",  # fine-tuning on labelled exams (tools/finetune)
}


def build_parser():
    parser = argparse.ArgumentParser(prog="bcc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", add_help=False,
                        help="the pipeline on an exam list, into one folder")
    commands.add_parser("single", add_help=False, help="the single-image path")
    for name, module in TOOLS.items():
        commands.add_parser(name, add_help=False, help=f"as src/utilities/{module}.py "
                            f"(bcc {name} --help lists its flags)")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in COMMANDS or argv[0] in TOOLS):
        name = COMMANDS.get(argv[0]) or TOOLS[argv[0]]
        module = importlib.import_module(f"{__package__}.commands.{name}")
        return module.main(argv[1:])
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
