"""Stage 1: crop mammograms around the breast and record window and points (SPEC §4).

The command line of ``src/cropping/crop_mammogram.py`` (the original's flags).
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.core.runtime import setup_logging
from breast_cancer_classifier.core.stages.cropping import (BUFFER_SIZE, NUM_ITERATIONS,
                                                           run_crop_mammograms)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input-data-folder", required=True)
    parser.add_argument("--output-data-folder", required=True)
    parser.add_argument("--exam-list-path", required=True)
    parser.add_argument("--cropped-exam-list-path", required=True)
    parser.add_argument("--num-processes", type=int, default=10)
    parser.add_argument("--num-iterations", type=int, default=NUM_ITERATIONS)
    parser.add_argument("--buffer-size", type=int, default=BUFFER_SIZE)
    parser.add_argument("--verbose", action="store_true", help="log each image's window")
    add_overwrite_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        setup_logging(args.verbose)
        return run_crop_mammograms(args.exam_list_path, args.input_data_folder,
                                   args.output_data_folder, args.cropped_exam_list_path,
                                   args.num_processes, args.num_iterations, args.buffer_size,
                                   args.overwrite)
    run_cli("crop_mammogram", body)
