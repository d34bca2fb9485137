"""Score a predictions CSV against labels (ROC and PR AUC, bootstrap intervals).

Breast-level ROC AUC and PR AUC with bootstrap confidence intervals:

    python src/utilities/evaluate.py --predictions sample_output/image_predictions.csv \
        --labels labels.csv --output-dir sample_output/evaluation

``--labels`` is a CSV with the columns left_benign,right_benign,left_malignant,right_malignant
(rows in exam-list order) or an exam list (.pkl/.json) whose exams carry ``cancer_label``.
``--target-sensitivity``, ``--target-specificity`` and ``--threshold`` add operating points.
"""

import argparse

from breast_cancer_classifier.tools import evaluate, operating_points
from breast_cancer_classifier.cli import add_overwrite_flag, run_cli


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", "--predictions-path", dest="predictions_path",
                        required=True, help="predictions CSV (one row per exam, exam-list order)")
    parser.add_argument("--labels", "--labels-path", dest="labels_path", required=True,
                        help="labels CSV with the four label columns, or an exam list "
                             "(.pkl/.json) with 'cancer_label' per exam")
    parser.add_argument("--output-dir", required=True,
                        help="folder for summary.json, summary.md, roc_curves.png, pr_curves.png")
    parser.add_argument("--n-bootstrap", type=int, default=evaluate.N_BOOTSTRAP,
                        help="bootstrap resamples of exams (default %(default)s; 0 for no CIs)")
    parser.add_argument("--seed", type=int, default=evaluate.SEED,
                        help="seed of the bootstrap (default %(default)s)")
    parser.add_argument("--confidence", type=float, default=evaluate.CONFIDENCE,
                        help="confidence level of the intervals (default %(default)s)")
    points = parser.add_argument_group(
        "operating points", "thresholds of the malignant score, scored at breast and exam "
        "level (exam score: the larger of its two breasts'); each flag may be repeated")
    points.add_argument("--target-sensitivity", type=float, action="append", default=[],
                        metavar="S", help="the largest threshold whose sensitivity is >= S")
    points.add_argument("--target-specificity", type=float, action="append", default=[],
                        metavar="S", help="the smallest threshold whose specificity is >= S")
    points.add_argument("--threshold", type=float, action="append", default=[], metavar="T",
                        help="score a fixed threshold (chosen on another set): positive "
                             "when score >= T")
    points.add_argument("--choose-at", choices=operating_points.LEVELS, default="breast",
                        help="level whose scores the targets are met on (default %(default)s)")
    parser.add_argument("--calibrated", action="store_true",
                        help="score the calibrated columns of a CSV written with "
                             "--calibration instead of the raw ones")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.n_bootstrap < 0 or not 0 < args.confidence < 1:
        parser.error("--n-bootstrap must be >= 0 and --confidence between 0 and 1")
    targets = args.target_sensitivity + args.target_specificity
    if any(not 0 <= t <= 1 for t in targets):
        parser.error("--target-sensitivity and --target-specificity must be in [0, 1]")
    operating = None
    if targets or args.threshold:
        operating = {"target_sensitivity": args.target_sensitivity,
                     "target_specificity": args.target_specificity,
                     "thresholds": args.threshold, "choose_at": args.choose_at}

    def body():
        result = evaluate.evaluate_files(args.predictions_path, args.labels_path,
                                         args.output_dir, n_bootstrap=args.n_bootstrap,
                                         seed=args.seed, confidence=args.confidence,
                                         overwrite=args.overwrite, operating=operating,
                                         calibrated=args.calibrated)
        print(evaluate.summary_markdown(result, f"Evaluation of {args.predictions_path}"), end="")
        return 0

    run_cli(parser.prog, body)


if __name__ == "__main__":
    main()
