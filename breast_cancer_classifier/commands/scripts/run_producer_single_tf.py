"""Stage 3 for one cropped image on TensorFlow (the original's TF image-wise path, SPEC 9).

The same patches, strides and outputs as run_producer_single.py; only the patch
classifier runs in TensorFlow (a Keras DenseNet-121 whose weights are converted from the
PyTorch checkpoint when it is loaded). Needs the `tf` extra (pip install '.[tf]').
"""

import argparse
import sys

from breast_cancer_classifier.cli import run_cli
from breast_cancer_classifier.commands.scripts.run_producer_single import (
    add_single_heatmap_flags, single_heatmap_arguments)
from breast_cancer_classifier.tools.tf_port import require_tensorflow

PROG = "run_producer_single_tf"
WEIGHTS_MAP_NOTE = ("note: --tf-torch-weights-map-path is not needed: the weights are "
                    "converted from the PyTorch checkpoint (--model-path) when loaded; ignoring it")


def add_original_tf_flags(parser):
    """Flags of the original's TF scripts that are accepted and not needed (both TF scripts)."""
    parser.add_argument("--tf-torch-weights-map-path",
                        help="accepted for the original's command lines; not needed")
    parser.add_argument("--use-hdf5", action="store_true",
                        help="accepted for the original's command lines: the image is read "
                             "by its extension (.png or .hdf5)")


def note_weights_map(prog, args):
    if args.tf_torch_weights_map_path:
        print(f"{prog}: {WEIGHTS_MAP_NOTE}", file=sys.stderr)


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_single_heatmap_flags(parser)
    add_original_tf_flags(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    note_weights_map(PROG, args)

    def body():
        require_tensorflow()
        from breast_cancer_classifier.tools.tf_port.single import run_producer_single_tf

        positional, keywords = single_heatmap_arguments(args)
        return run_producer_single_tf(*positional, **keywords)

    run_cli(PROG, body)
