"""Stage 3 for one cropped image (the single-image path, SPEC section 9).

By default this reproduces the reference's orientation quirk: the image is patched as
stored (a right-side image faces left) and the heatmaps are saved unmirrored.
--proper-mirroring orients the image with its full view, as the exam path does.
"""

import argparse

from breast_cancer_classifier.cli import (add_device_flags, add_overwrite_flag,
                                          add_precision_flag, add_runtime_flag, add_trust_flag,
                                          positive_int, run_cli)
from breast_cancer_classifier.core import stage_scripts
from breast_cancer_classifier.core.stages import heatmaps

PROG = "run_producer_single"


def add_single_heatmap_flags(parser):
    """The flags of this script that its TensorFlow form (run_producer_single_tf) shares."""
    parser.add_argument("--model-path", required=True, help="patch classifier weights (.p)")
    parser.add_argument("--cropped-mammogram-path", required=True,
                        help="cropped image (.png, or .hdf5)")
    parser.add_argument("--metadata-path", required=True,
                        help="metadata after the centers step (pickle or .json)")
    parser.add_argument("--batch-size", type=positive_int, default=heatmaps.DEFAULT_BATCH_SIZE)
    parser.add_argument("--heatmap-path-malignant", required=True)
    parser.add_argument("--heatmap-path-benign", required=True)
    parser.add_argument("--seed", type=int, default=heatmaps.DEFAULT_SEED)
    add_device_flags(parser)
    parser.add_argument("--proper-mirroring", action="store_true",
                        help="orient the image by its full view (e.g. R-CC) and mirror the "
                             "heatmaps back, instead of the reference's unmirrored behaviour")
    add_overwrite_flag(parser)
    add_trust_flag(parser)


def single_heatmap_arguments(args):
    """``run_producer_single``'s positional and keyword arguments common to both forms."""
    return ((args.model_path, args.cropped_mammogram_path, args.metadata_path,
             args.heatmap_path_malignant, args.heatmap_path_benign),
            dict(batch_size=args.batch_size, seed=args.seed, device_type=args.device_type,
                 gpu_number=args.gpu_number, proper_mirroring=args.proper_mirroring,
                 overwrite=args.overwrite, trust_checkpoint=args.trust_checkpoint))


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_single_heatmap_flags(parser)
    add_runtime_flag(parser)
    add_precision_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    positional, keywords = single_heatmap_arguments(args)
    run_cli(PROG, lambda: stage_scripts.run_producer_single(
        *positional, **keywords, runtime=args.runtime, precision=args.precision))
