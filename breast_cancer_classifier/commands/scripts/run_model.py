"""Stage 4: run the view-wise or image-wise cancer classifier over an exam list (SPEC 7).

Writes the predictions CSV (one row per exam, in exam-list order). Exit status: 0 all exams
classified, 3 some failed (empty rows, listed in <output>.failures.csv), 1 none could be,
2 bad arguments, exam list or checkpoint, or an existing output without --overwrite.
"""

import argparse

from breast_cancer_classifier.cli import (add_device_flags, add_overwrite_flag,
                                           add_precision_flag, add_trust_flag, run_cli)
from breast_cancer_classifier.core.stage_scripts import run_model
from breast_cancer_classifier.core.stages.classify import ClassifierSettings
from breast_cancer_classifier.tools.calibration import (add_calibrated_columns,
                                                         check_model, load_calibration,
                                                         model_name)

PROG = "run_model"


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--model-mode", default="view_split", choices=["view_split", "image"])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--data-path", required=True,
                        help="exam list with best_center (stage 2 output), .pkl or .json")
    parser.add_argument("--image-path", required=True, help="folder of cropped images")
    parser.add_argument("--output-path", required=True, help="predictions CSV to write")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="repetitions classified at once (same numbers at any size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--use-heatmaps", action="store_true")
    parser.add_argument("--heatmaps-path",
                        help="folder with heatmap_malignant/ and heatmap_benign/")
    parser.add_argument("--use-augmentation", action="store_true")
    parser.add_argument("--use-hdf5", action="store_true")
    parser.add_argument("--num-epochs", type=int, default=1)
    parser.add_argument("--calibration", metavar="FILE",
                        help="calibration.json of bcc calibrate: adds *_calibrated columns "
                             "after the raw ones (refused if fitted on another model)")
    add_device_flags(parser)
    add_overwrite_flag(parser)
    add_trust_flag(parser)
    add_precision_flag(parser)
    return parser


def classifier_settings(parser, args, model_mode, precision, use_hdf5=False):
    """The :class:`ClassifierSettings` of a stage-4 script's flags (this one's and
    run_model_single's); refuses repetitions under 1."""
    if args.batch_size < 1 or args.num_epochs < 1:
        parser.error("--batch-size and --num-epochs must be at least 1")
    return ClassifierSettings(
        model_mode=model_mode, use_heatmaps=args.use_heatmaps,
        use_augmentation=args.use_augmentation, use_hdf5=use_hdf5,
        num_epochs=args.num_epochs, batch_size=args.batch_size, seed=args.seed,
        precision=precision)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.use_heatmaps and not args.heatmaps_path:
        parser.error("--use-heatmaps needs --heatmaps-path")
    settings = classifier_settings(parser, args, args.model_mode, args.precision,
                                   args.use_hdf5)

    def body():
        if args.calibration:  # refused before the model runs
            calibration = load_calibration(args.calibration)
            check_model(calibration, model_name(args.use_heatmaps), args.model_mode,
                        args.model_path)
        status = run_model(
            args.model_path, args.data_path, args.image_path, args.output_path, settings,
            heatmaps_dir=args.heatmaps_path, device_type=args.device_type,
            gpu_number=args.gpu_number, overwrite=args.overwrite,
            trust_checkpoint=args.trust_checkpoint)
        if args.calibration:
            add_calibrated_columns(args.output_path, calibration)
        return status

    run_cli(PROG, body)

