"""Check the images of an exam list before the model runs.

The checks (docs/qa.md): bit depth, inversion, horizontal_flip, crop size, breast area,
intensities, missing views.

    python src/utilities/check_data.py --exam-list sample_data/exam_list_before_cropping.pkl \
        --data-folder sample_data/images --output qa.csv

Given the exam list before cropping, stage 1's crop is run here, in memory; given stage 1's
cropped exam list, --data-folder is its folder of crops. Writes a CSV with one row per image
(and per missing view), a 0/1 column per check and ``flags``; a summary goes to stderr.
Exit status: 0 checked (flags are warnings), 3 some images unreadable, 1 none readable,
2 bad arguments, exam list or existing output.
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, positive_int, run_cli
from breast_cancer_classifier.core.qa import check_files


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--exam-list", "--exam-list-path", dest="exam_list", required=True,
                        help="exam list before cropping, or stage 1's cropped exam list")
    parser.add_argument("--data-folder", required=True,
                        help="its images: the raw PNGs, or stage 1's cropped PNGs")
    parser.add_argument("--output", required=True, help="CSV to write")
    parser.add_argument("--num-processes", type=positive_int, default=1,
                        help="processes that read and crop images (default 1)")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run_cli(parser.prog, lambda: check_files(args.exam_list, args.data_folder, args.output,
                                      num_processes=args.num_processes,
                                      overwrite=args.overwrite))


if __name__ == "__main__":
    main()
