"""Stage 2 for one image: add best_center to its metadata file (SPEC §9).

The command line of ``src/optimal_centers/get_optimal_center_single.py`` (the original's flags).
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.core.stages.centers import run_get_optimal_center_single


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cropped-mammogram-path", required=True)
    parser.add_argument("--metadata-path", required=True)
    add_overwrite_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_cli("get_optimal_center_single", lambda: run_get_optimal_center_single(
        args.cropped_mammogram_path, args.metadata_path, args.overwrite))
