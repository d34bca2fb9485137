"""Stage 1 for one image: crop it and write its metadata (SPEC §9).

The command line of ``src/cropping/crop_single.py`` (the original's flags).
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.core.stages.cropping import (BUFFER_SIZE, NUM_ITERATIONS,
                                                           run_crop_single)
from breast_cancer_classifier.core.views import VIEWS


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mammogram-path", required=True)
    parser.add_argument("--view", required=True, choices=VIEWS)
    parser.add_argument("--horizontal-flip", default="NO", choices=["NO", "YES"])
    parser.add_argument("--cropped-mammogram-path", required=True)
    parser.add_argument("--metadata-path", required=True)
    parser.add_argument("--num-iterations", type=int, default=NUM_ITERATIONS)
    parser.add_argument("--buffer-size", type=int, default=BUFFER_SIZE)
    add_overwrite_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_cli("crop_single", lambda: run_crop_single(
        args.mammogram_path, args.view, args.horizontal_flip, args.cropped_mammogram_path,
        args.metadata_path, args.num_iterations, args.buffer_size, args.overwrite))
