"""Classify one cropped mammogram with an image-mode checkpoint (SPEC 9).

Prints exactly one line on stdout, the JSON ``{"benign": p, "malignant": p}`` (means over
the repetitions, full precision); messages go to stderr.
"""

import argparse

from breast_cancer_classifier.cli import (add_device_flags, add_precision_flag, add_trust_flag,
                                          run_cli)
from breast_cancer_classifier.commands.scripts.run_model import classifier_settings
from breast_cancer_classifier.core.formats import single_prediction_line
from breast_cancer_classifier.core.stage_scripts import run_model_single
from breast_cancer_classifier.core.views import VIEWS

PROG = "run_model_single"


def single_classifier_parser(prog, doc):
    """A parser with the flags of this script that its TensorFlow form (run_model_single_tf)
    shares; ``doc``'s first line describes it."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--view", required=True, choices=list(VIEWS))
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--cropped-mammogram-path", required=True)
    parser.add_argument("--metadata-path", required=True,
                        help="cropped_metadata.pkl with best_center (centers step output)")
    parser.add_argument("--use-heatmaps", action="store_true")
    parser.add_argument("--heatmap-path-malignant")
    parser.add_argument("--heatmap-path-benign")
    parser.add_argument("--use-augmentation", action="store_true")
    parser.add_argument("--num-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1,
                        help="repetitions classified at once (same numbers at any size)")
    parser.add_argument("--seed", type=int, default=0)
    add_device_flags(parser)
    add_trust_flag(parser)
    return parser


def single_classifier_inputs(parser, args, precision="fp32"):
    """``(ClassifierSettings, heatmap paths or None)``; refuses flags that do not fit."""
    if args.use_heatmaps and not (args.heatmap_path_malignant and args.heatmap_path_benign):
        parser.error("--use-heatmaps needs --heatmap-path-malignant and --heatmap-path-benign")
    settings = classifier_settings(parser, args, model_mode="image", precision=precision)
    heatmaps = ((args.heatmap_path_malignant, args.heatmap_path_benign)
                if args.use_heatmaps else None)
    return settings, heatmaps


def print_prediction(run, args, settings, heatmaps, **keywords):
    """Run ``run`` (the PyTorch or TensorFlow single-image classifier) and print its line."""
    prediction = run(args.model_path, args.view, args.cropped_mammogram_path,
                     args.metadata_path, settings, heatmap_paths=heatmaps,
                     device_type=args.device_type, gpu_number=args.gpu_number,
                     trust_checkpoint=args.trust_checkpoint, **keywords)
    print(single_prediction_line(prediction), flush=True)
    return 0


def build_parser():
    parser = single_classifier_parser(PROG, __doc__)
    add_precision_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    settings, heatmaps = single_classifier_inputs(parser, args, args.precision)
    run_cli(PROG, lambda: print_prediction(run_model_single, args, settings, heatmaps))
