"""Classify one cropped mammogram on TensorFlow with an image-mode checkpoint (SPEC 9).

The original's TF image-wise classifier: the same windows, augmentation and output as
run_model_single.py, with the ResNet-22 run by TensorFlow (a Keras model whose weights are
converted from the PyTorch checkpoint when it is loaded). Prints exactly one line on
stdout, the JSON ``{"benign": p, "malignant": p}``. Needs the `tf` extra (pip install '.[tf]').
"""

from breast_cancer_classifier.cli import run_cli
from breast_cancer_classifier.commands.scripts.run_model_single import (
    print_prediction, single_classifier_inputs, single_classifier_parser)
from breast_cancer_classifier.commands.scripts.run_producer_single_tf import (
    add_original_tf_flags, note_weights_map)
from breast_cancer_classifier.tools.tf_port import require_tensorflow

PROG = "run_model_single_tf"


def build_parser():
    parser = single_classifier_parser(PROG, __doc__)
    add_original_tf_flags(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    settings, heatmaps = single_classifier_inputs(parser, args)
    note_weights_map(PROG, args)

    def body():
        require_tensorflow()
        from breast_cancer_classifier.tools.tf_port.single import run_model_single_tf

        return print_prediction(run_model_single_tf, args, settings, heatmaps)

    run_cli(PROG, body)
