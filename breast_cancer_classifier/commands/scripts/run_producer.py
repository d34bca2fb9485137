"""Stage 3: patch-classifier heatmaps for every image of an exam list (SPEC section 6).

Writes <output-heatmap-path>/heatmap_malignant/<short_file_path>.hdf5 and heatmap_benign/.
Exit status: 0 all images done, 3 some failed (listed in <output>.failures.csv), 1 none
done, 2 bad arguments, exam list or checkpoint, or an existing output folder.
"""

import argparse

from breast_cancer_classifier.cli import (add_device_flags, add_overwrite_flag,
                                          add_precision_flag, add_runtime_flag, add_trust_flag,
                                          positive_int, run_cli)
from breast_cancer_classifier.core import stage_scripts
from breast_cancer_classifier.core.stages import heatmaps

PROG = "run_producer"


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", required=True, help="patch classifier weights (.p)")
    parser.add_argument("--data-path", required=True,
                        help="exam list after stage 2 (pickle or .json)")
    parser.add_argument("--image-path", required=True, help="folder of the cropped images")
    parser.add_argument("--batch-size", type=positive_int, default=heatmaps.DEFAULT_BATCH_SIZE)
    parser.add_argument("--output-heatmap-path", required=True,
                        help="heatmaps folder to create (refused if it exists, see --overwrite)")
    parser.add_argument("--seed", type=int, default=heatmaps.DEFAULT_SEED)
    add_device_flags(parser)
    parser.add_argument("--use-hdf5", action="store_true",
                        help="read cropped images as .hdf5 instead of .png")
    add_overwrite_flag(parser)
    add_trust_flag(parser)
    add_runtime_flag(parser)
    add_precision_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_cli(PROG, lambda: stage_scripts.run_producer(
        args.model_path, args.data_path, args.image_path, args.output_heatmap_path,
        batch_size=args.batch_size, seed=args.seed, device_type=args.device_type,
        gpu_number=args.gpu_number, use_hdf5=args.use_hdf5, overwrite=args.overwrite,
        trust_checkpoint=args.trust_checkpoint, runtime=args.runtime,
        precision=args.precision))

