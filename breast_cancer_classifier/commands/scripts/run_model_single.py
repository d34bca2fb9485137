"""Classify one cropped mammogram with an image-mode checkpoint (SPEC 9).

Prints exactly one line on stdout, the JSON ``{"benign": p, "malignant": p}`` (means over
the repetitions, full precision); messages go to stderr.
"""

import argparse

from breast_cancer_classifier.cli import (add_device_flags, add_precision_flag, add_trust_flag,
                                           run_cli)
from breast_cancer_classifier.core.formats import single_prediction_line
from breast_cancer_classifier.core.stage_scripts import run_model_single
from breast_cancer_classifier.core.stages.classify import ClassifierSettings
from breast_cancer_classifier.core.views import VIEWS

PROG = "run_model_single"


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
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
    add_precision_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.use_heatmaps and not (args.heatmap_path_malignant and args.heatmap_path_benign):
        parser.error("--use-heatmaps needs --heatmap-path-malignant and --heatmap-path-benign")
    if args.batch_size < 1 or args.num_epochs < 1:
        parser.error("--batch-size and --num-epochs must be at least 1")
    settings = ClassifierSettings(
        model_mode="image", use_heatmaps=args.use_heatmaps,
        use_augmentation=args.use_augmentation, num_epochs=args.num_epochs,
        batch_size=args.batch_size, seed=args.seed,
        precision=args.precision)
    heatmaps = ((args.heatmap_path_malignant, args.heatmap_path_benign)
                if args.use_heatmaps else None)

    def body():
        prediction = run_model_single(
            args.model_path, args.view, args.cropped_mammogram_path, args.metadata_path,
            settings, heatmap_paths=heatmaps, device_type=args.device_type,
            gpu_number=args.gpu_number, trust_checkpoint=args.trust_checkpoint)
        print(single_prediction_line(prediction), flush=True)
        return 0

    run_cli(PROG, body)

