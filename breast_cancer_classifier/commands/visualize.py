"""Draw heatmap overlay pictures of exams (one PNG each) or of a single image.

Exams (run.sh outputs):
    python src/utilities/visualize.py --exam-list-path sample_output/data.pkl \
        --cropped-image-path sample_output/cropped_images --heatmaps-path sample_output/heatmaps \
        --predictions-path sample_output/image_predictions.csv \
        --output-dir sample_output/visualizations

Single image (run_single.sh outputs):
    python src/utilities/visualize.py --single-output-dir sample_single_output \
        --output-path sample_single_output/visualization.png
"""
from pathlib import Path

import argparse
import math

from breast_cancer_classifier.tools import visualize
from breast_cancer_classifier.cli import add_overwrite_flag, run_cli


def build_parser(prog=None):
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n")[0],
        epilog="Give --exam-list-path for exams, or --single-output-dir / "
               "--cropped-mammogram-path for one image.")
    exams = parser.add_argument_group("exams")
    exams.add_argument("--exam-list-path", help="exam list after stage 2 (data.pkl)")
    exams.add_argument("--cropped-image-path", help="folder of cropped images (stage 1)")
    exams.add_argument("--heatmaps-path",
                       help="heatmaps folder (stage 3); without it the crops are drawn plain")
    exams.add_argument("--output-dir", help="folder for exam_<index>.png")
    exams.add_argument("--use-hdf5", action="store_true",
                       help="cropped images are .hdf5 files instead of .png")
    single = parser.add_argument_group("single image")
    single.add_argument("--single-output-dir",
                        help="run_single.sh output folder (cropped.png, cropped_metadata.pkl, "
                             "malignant_heatmap.hdf5, benign_heatmap.hdf5)")
    single.add_argument("--cropped-mammogram-path", help="cropped image (overrides the folder's)")
    single.add_argument("--metadata-path", help="metadata pickle (overrides the folder's)")
    single.add_argument("--malignant-heatmap-path", help="malignant heatmap (.hdf5)")
    single.add_argument("--benign-heatmap-path", help="benign heatmap (.hdf5)")
    single.add_argument("--output-path", help="PNG to write (default: "
                        "<single-output-dir>/visualization.png)")
    parser.add_argument("--predictions-path", nargs="+", default=[],
                        help="exams: predictions CSV(s), rows in exam-list order; single "
                             "image: file(s) holding the JSON lines run_single.sh prints")
    parser.add_argument("--note", help="an extra title line drawn as a warning, e.g. that "
                        "the weights are untrained demo weights")
    parser.add_argument("--heatmap-max", type=float, default=1.0,
                        help="heatmap value drawn at full colour and opacity (default 1)")
    add_overwrite_flag(parser)
    return parser


def _single_paths(parser, args):
    paths = (visualize.single_image_paths(args.single_output_dir)
             if args.single_output_dir else {})
    for role, flag in (("cropped", args.cropped_mammogram_path),
                       ("metadata", args.metadata_path),
                       ("malignant", args.malignant_heatmap_path),
                       ("benign", args.benign_heatmap_path)):
        if flag:
            paths[role] = Path(flag)
    if "cropped" not in paths or "metadata" not in paths:
        parser.error("single image: give --single-output-dir or both "
                     "--cropped-mammogram-path and --metadata-path")
    if ("malignant" in paths) != ("benign" in paths):
        parser.error("single image: give both heatmap paths or neither")
    output = args.output_path or (Path(args.single_output_dir) / "visualization.png"
                                  if args.single_output_dir else None)
    if output is None:
        parser.error("single image: give --output-path")
    return paths, output


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not (math.isfinite(args.heatmap_max) and args.heatmap_max > 0):
        parser.error("--heatmap-max must be a positive number")
    single = bool(args.single_output_dir or args.cropped_mammogram_path)
    if single == bool(args.exam_list_path):
        parser.error("give either --exam-list-path (exams) or --single-output-dir / "
                     "--cropped-mammogram-path (one image)")
    if single:
        paths, output = _single_paths(parser, args)

        def body():
            visualize.visualize_single_image(
                paths["cropped"], paths["metadata"], output, paths.get("malignant"),
                paths.get("benign"), args.predictions_path, args.heatmap_max, args.overwrite,
                args.note)
            return 0
    else:
        if not (args.cropped_image_path and args.output_dir):
            parser.error("exams: --cropped-image-path and --output-dir are required")

        def body():
            return visualize.visualize_exams(
                args.exam_list_path, args.cropped_image_path, args.output_dir,
                args.heatmaps_path, args.predictions_path, args.use_hdf5, args.heatmap_max,
                args.overwrite, args.note)

    run_cli(parser.prog, body)


if __name__ == "__main__":
    main()
