"""Fit a calibration of the predicted probabilities on labelled data (Platt or isotonic).

    python src/utilities/calibrate.py --predictions sample_output/imageheatmaps_predictions.csv \
        --labels labels.csv --output-dir sample_output/calibration

Writes calibration.json (give it to ``bcc run`` or ``run_model.py`` as ``--calibration``),
summary.md (held-out Brier score and ECE, before and after) and reliability_<target>.png.
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.tools import calibration


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", "--predictions-path", dest="predictions_path",
                        required=True, help="predictions CSV (one row per exam, exam-list order)")
    parser.add_argument("--labels", "--labels-path", dest="labels_path", required=True,
                        help="labels CSV with the four label columns, or an exam list "
                             "(.pkl/.json) with 'cancer_label' per exam")
    parser.add_argument("--output-dir", required=True,
                        help="folder for calibration.json, summary.md and reliability PNGs")
    parser.add_argument("--method", choices=calibration.METHODS, default="platt",
                        help="'platt' (default): logistic regression on logit(p); "
                             "'isotonic': monotone step fit (needs more data)")
    parser.add_argument("--folds", type=int, default=calibration.FOLDS,
                        help="cross-validation folds of the held-out figures (default "
                             "%(default)s, at least 2)")
    parser.add_argument("--seed", type=int, default=calibration.SEED,
                        help="seed of the fold split (default %(default)s)")
    parser.add_argument("--model", choices=calibration.MODELS,
                        help="the model that made the predictions, when the file's name "
                             "(image_predictions.csv, imageheatmaps_predictions.csv) does "
                             "not say it: image (no heatmap inputs) or imageheatmaps; bcc run "
                             "needs it to know which CSV to calibrate")
    parser.add_argument("--model-mode", choices=calibration.MODEL_MODES,
                        help="run_model.py's --model-mode that made them, if known (bcc run "
                             "and run.sh: view_split)")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")

    def body():
        result = calibration.calibrate_files(
            args.predictions_path, args.labels_path, args.output_dir, method=args.method,
            folds=args.folds, seed=args.seed, model=args.model,
            model_mode=args.model_mode, overwrite=args.overwrite)
        print(calibration.summary_markdown(result), end="")
        return 0

    run_cli(parser.prog, body)


if __name__ == "__main__":
    main()
