"""Stage 2: the best center of each cropped image's model window (SPEC §5).

The command line of ``src/optimal_centers/get_optimal_centers.py`` (the original's flags).
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.core.stages.centers import run_get_optimal_centers


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cropped-exam-list-path", required=True)
    parser.add_argument("--data-prefix", required=True, help="folder of the cropped PNGs")
    parser.add_argument("--output-exam-list-path", required=True)
    parser.add_argument("--num-processes", type=int, default=20)
    add_overwrite_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_cli("get_optimal_centers", lambda: run_get_optimal_centers(
        args.cropped_exam_list_path, args.data_prefix, args.output_exam_list_path,
        args.num_processes, args.overwrite))
