"""Compare predictions on the official sample exams with the published ones (SPEC §11).

The command line of ``src/utilities/compare_published.py`` (``make reproduce`` runs it).
Exit status: 0 within the tolerance, 1 a difference over it, 2 unreadable predictions.
"""

import argparse

from breast_cancer_classifier.cli import run_cli
from breast_cancer_classifier.tools.published import (TOLERANCE, compare_single_with_published,
                                                      compare_with_published)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-predictions", required=True)
    parser.add_argument("--imageheatmaps-predictions", required=True)
    parser.add_argument("--single-predictions",
                        help="run_single.sh's JSON lines for 0_L_CC (L-CC), optional")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        lines, worst = compare_with_published({"image": args.image_predictions,
                                               "imageheatmaps": args.imageheatmaps_predictions})
        if args.single_predictions:
            more, single_worst = compare_single_with_published(args.single_predictions)
            lines, worst = lines + more, max(worst, single_worst)
        print("\n".join(lines))
        verdict = "OK" if worst <= args.tolerance else "TOO LARGE"
        print(f"\nlargest difference: {worst:.4f} (tolerance {args.tolerance}): {verdict}")
        return 0 if worst <= args.tolerance else 1
    run_cli("compare_published", body)
