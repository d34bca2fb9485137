"""Stage 3 for one cropped image on TensorFlow (the original's TF image-wise path, SPEC 9).

The same patches, strides and outputs as run_producer_single.py; only the patch
classifier runs in TensorFlow (a Keras DenseNet-121 whose weights are converted from the
PyTorch checkpoint when it is loaded). Needs the `tf` extra (pip install '.[tf]').
"""

import argparse
import sys

from breast_cancer_classifier.cli import (add_device_flags, add_overwrite_flag,
                                          add_trust_flag, positive_int, run_cli)
from breast_cancer_classifier.core.stages.heatmaps import (DEFAULT_BATCH_SIZE,
                                                           DEFAULT_SEED)
from breast_cancer_classifier.tools.tf_port import require_tensorflow

PROG = "run_producer_single_tf"
WEIGHTS_MAP_NOTE = ("note: --tf-torch-weights-map-path is not needed: the weights are "
                    "converted from the PyTorch checkpoint (--model-path) when loaded; ignoring it")


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", required=True, help="patch classifier weights (.p)")
    parser.add_argument("--tf-torch-weights-map-path",
                        help="accepted for the original's command lines; not needed")
    parser.add_argument("--cropped-mammogram-path", required=True,
                        help="cropped image (.png, or .hdf5)")
    parser.add_argument("--metadata-path", required=True,
                        help="metadata after the centers step (pickle or .json)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--heatmap-path-malignant", required=True)
    parser.add_argument("--heatmap-path-benign", required=True)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    add_device_flags(parser)
    parser.add_argument("--use-hdf5", action="store_true",
                        help="accepted for the original's command lines: the image is read "
                             "by its extension (.png or .hdf5)")
    parser.add_argument("--proper-mirroring", action="store_true",
                        help="orient the image by its full view (e.g. R-CC) and mirror the "
                             "heatmaps back, instead of the reference's unmirrored behaviour")
    add_overwrite_flag(parser)
    add_trust_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.tf_torch_weights_map_path:
        print(f"{PROG}: {WEIGHTS_MAP_NOTE}", file=sys.stderr)

    def body():
        require_tensorflow()
        from breast_cancer_classifier.tools.tf_port.single import run_producer_single_tf

        return run_producer_single_tf(
            args.model_path, args.cropped_mammogram_path, args.metadata_path,
            args.heatmap_path_malignant, args.heatmap_path_benign, batch_size=args.batch_size,
            seed=args.seed, device_type=args.device_type, gpu_number=args.gpu_number,
            proper_mirroring=args.proper_mirroring, overwrite=args.overwrite,
            trust_checkpoint=args.trust_checkpoint)

    run_cli(PROG, body)

