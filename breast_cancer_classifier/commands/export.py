"""Export every network (ONNX, .pt2, TF SavedModel), each checked on real inputs.

    python src/utilities/export_models.py --output-dir exported_models
    bcc export --output-dir exported_models --networks patch,single_image --formats onnx,pt2

Each export is loaded back, run beside PyTorch on a sample exam, and its largest absolute
difference printed; one over its tolerance is removed and reported, and the run exits 3.
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, add_trust_flag, run_cli
from breast_cancer_classifier.core.views import VIEWS
from breast_cancer_classifier.tools import export
from breast_cancer_classifier.tools.export_networks import NETWORKS


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def build_parser(prog=None):
    defaults = export.ExportSettings()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", required=True, help="folder for the exported files")
    parser.add_argument("--networks", type=_names, default=list(NETWORKS),
                        help=f"comma-separated, default all: {','.join(NETWORKS)}")
    parser.add_argument("--formats", type=_names,
                        help=f"comma-separated from {','.join(export.FORMATS)}; default all "
                        "(savedmodel, for patch and single_image*, is then skipped with a "
                        "note when TensorFlow is missing; asked for explicitly, it exits 2)")
    parser.add_argument("--patch-model-path", default=defaults.patch_model_path)
    parser.add_argument("--image-model-path", default=defaults.image_model_path,
                        help="view_split image-only weights (%(default)s)")
    parser.add_argument("--imageheatmaps-model-path", default=defaults.imageheatmaps_model_path,
                        help="view_split image+heatmaps weights (%(default)s)")
    parser.add_argument("--image-mode-model-path", default=defaults.image_mode_model_path,
                        help="image-mode image-only weights, also single_image (%(default)s)")
    parser.add_argument("--imageheatmaps-mode-model-path",
                        default=defaults.imageheatmaps_mode_model_path,
                        help="image-mode image+heatmaps weights, also single_image_heatmaps "
                        "(%(default)s)")
    parser.add_argument("--view", default=defaults.view, choices=VIEWS,
                        help="the single-image networks' view (default %(default)s)")
    parser.add_argument("--check-exam", default=defaults.check_exam,
                        help="the exam the exports are checked on: PREFIX_L_CC.png ... "
                        "PREFIX_R_MLO.png, uncropped (default %(default)s)")
    parser.add_argument("--check-heatmaps",
                        help="heatmaps folder of that exam (heatmap_malignant/, heatmap_benign/)"
                        "; default: stand-in maps from the image")
    parser.add_argument("--window-scale", type=float, default=defaults.window_scale,
                        help="export the classifiers for windows this fraction of the model's "
                        "size (quick checks; the pipeline needs 1, the default)")
    parser.add_argument("--patch-tolerance", type=float, default=defaults.patch_tolerance,
                        help="largest allowed max abs difference, patch (default %(default)g)")
    parser.add_argument("--classifier-tolerance", type=float,
                        default=defaults.classifier_tolerance,
                        help="the same for the classifiers (default %(default)g)")
    add_trust_flag(parser)
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    settings = export.ExportSettings(
        patch_model_path=args.patch_model_path, image_model_path=args.image_model_path,
        imageheatmaps_model_path=args.imageheatmaps_model_path,
        image_mode_model_path=args.image_mode_model_path,
        imageheatmaps_mode_model_path=args.imageheatmaps_mode_model_path, view=args.view,
        check_exam=args.check_exam, check_heatmaps=args.check_heatmaps,
        window_scale=args.window_scale, patch_tolerance=args.patch_tolerance,
        classifier_tolerance=args.classifier_tolerance, trust_checkpoint=args.trust_checkpoint)
    run_cli(parser.prog, lambda: export.export_all(
        args.output_dir, settings, args.networks, args.formats or list(export.FORMATS),
        formats_explicit=args.formats is not None, overwrite=args.overwrite))


if __name__ == "__main__":
    main()
