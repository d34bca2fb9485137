"""Classify one cropped mammogram on TensorFlow with an image-mode checkpoint (SPEC 9).

The original's TF image-wise classifier: the same windows, augmentation and output as
run_model_single.py, with the ResNet-22 run by TensorFlow (a Keras model whose weights are
converted from the PyTorch checkpoint when it is loaded). Prints exactly one line on
stdout, the JSON ``{"benign": p, "malignant": p}``. Needs the `tf` extra (pip install '.[tf]').
"""

import argparse
import sys

from breast_cancer_classifier.cli import add_device_flags, add_trust_flag, run_cli
from breast_cancer_classifier.core.formats import single_prediction_line
from breast_cancer_classifier.core.stages.classify import ClassifierSettings
from breast_cancer_classifier.core.views import VIEWS
from breast_cancer_classifier.tools.tf_port import require_tensorflow

PROG = "run_model_single_tf"
WEIGHTS_MAP_NOTE = ("note: --tf-torch-weights-map-path is not needed: the weights are "
                    "converted from the PyTorch checkpoint (--model-path) when loaded; ignoring it")


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--view", required=True, choices=list(VIEWS))
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--tf-torch-weights-map-path",
                        help="accepted for the original's command lines; not needed")
    parser.add_argument("--cropped-mammogram-path", required=True)
    parser.add_argument("--metadata-path", required=True,
                        help="cropped_metadata.pkl with best_center (centers step output)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="repetitions classified at once (same numbers at any size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--use-heatmaps", action="store_true")
    parser.add_argument("--heatmap-path-malignant")
    parser.add_argument("--heatmap-path-benign")
    parser.add_argument("--use-augmentation", action="store_true")
    parser.add_argument("--use-hdf5", action="store_true",
                        help="accepted for the original's command lines: the image is read "
                             "by its extension (.png or .hdf5)")
    parser.add_argument("--num-epochs", type=int, default=1)
    add_device_flags(parser)
    add_trust_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.use_heatmaps and not (args.heatmap_path_malignant and args.heatmap_path_benign):
        parser.error("--use-heatmaps needs --heatmap-path-malignant and --heatmap-path-benign")
    if args.batch_size < 1 or args.num_epochs < 1:
        parser.error("--batch-size and --num-epochs must be at least 1")
    if args.tf_torch_weights_map_path:
        print(f"{PROG}: {WEIGHTS_MAP_NOTE}", file=sys.stderr)
    settings = ClassifierSettings(
        model_mode="image", use_heatmaps=args.use_heatmaps,
        use_augmentation=args.use_augmentation, num_epochs=args.num_epochs,
        batch_size=args.batch_size, seed=args.seed)
    heatmaps = ((args.heatmap_path_malignant, args.heatmap_path_benign)
                if args.use_heatmaps else None)

    def body():
        require_tensorflow()
        from breast_cancer_classifier.tools.tf_port.single import run_model_single_tf

        prediction = run_model_single_tf(
            args.model_path, args.view, args.cropped_mammogram_path, args.metadata_path,
            settings, heatmap_paths=heatmaps, device_type=args.device_type,
            gpu_number=args.gpu_number, trust_checkpoint=args.trust_checkpoint)
        print(single_prediction_line(prediction), flush=True)
        return 0

    run_cli(PROG, body)

