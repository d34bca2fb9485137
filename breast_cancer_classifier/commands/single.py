"""Run the single-image path on one mammogram.

Crop, center, heatmaps and the two image-wise classifiers for one image; prints one JSON
line per model (run_single.sh in one process, SPEC 9).

    bcc single IMAGE VIEW [--output-dir DIR] ...
"""

import argparse

from breast_cancer_classifier.cli import add_compute_flags, run_cli

def build_parser(prog=None):
    from breast_cancer_classifier.core.single import SingleSettings

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n    bcc")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="the mammogram (16-bit PNG)")
    parser.add_argument("view", help="L-CC, R-CC, L-MLO or R-MLO")
    parser.add_argument("--output-dir", default="sample_single_output")
    parser.add_argument("--horizontal-flip", default="NO", choices=["NO", "YES"])
    parser.add_argument("--proper-mirroring", action="store_true",
                        help="mirror right-side images for the heatmaps (the reference does "
                        "not: SPEC 9); changes the numbers")
    add_compute_flags(parser, SingleSettings())
    return parser


def run(args):
    from breast_cancer_classifier.core.single import SingleSettings, run_single

    settings = SingleSettings.from_namespace(args)
    run_single(args.image, args.view, args.output_dir, settings, overwrite=args.overwrite)
    return 0


def main(argv=None, prog="bcc single"):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run_cli(parser.prog, lambda: run(args))
