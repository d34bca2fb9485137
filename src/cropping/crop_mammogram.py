"""Stage 1: crop mammograms around the breast and record window and points (SPEC §4)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli  # noqa: E402
from breast_cancer_classifier.core.stages.cropping import (BUFFER_SIZE, NUM_ITERATIONS,  # noqa: E402
                                                           run_crop_mammograms)
from breast_cancer_classifier.core.runtime import setup_logging  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input-data-folder", required=True)
    parser.add_argument("--output-data-folder", required=True)
    parser.add_argument("--exam-list-path", required=True)
    parser.add_argument("--cropped-exam-list-path", required=True)
    parser.add_argument("--num-processes", type=int, default=10)
    parser.add_argument("--num-iterations", type=int, default=NUM_ITERATIONS)
    parser.add_argument("--buffer-size", type=int, default=BUFFER_SIZE)
    parser.add_argument("--verbose", action="store_true", help="log each image's window")
    add_overwrite_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        setup_logging(args.verbose)
        return run_crop_mammograms(args.exam_list_path, args.input_data_folder,
                                   args.output_data_folder, args.cropped_exam_list_path,
                                   args.num_processes, args.num_iterations, args.buffer_size,
                                   args.overwrite)
    run_cli("crop_mammogram", body)


if __name__ == "__main__":
    main()
