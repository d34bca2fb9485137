"""Build an exam list for a folder of 16-bit PNG mammograms.

From a CSV manifest (--manifest; columns exam_id, file, side, view, and optionally
horizontal_flip, left_benign, right_benign, left_malignant, right_malignant), or, without
one, from file names <exam>_<L|R>_<CC|MLO>.png. Every image is checked; a report CSV lists
every input with the reason it was kept, skipped or failed. Exit status: 0 done, 3 some
images failed, 1 nothing kept, 2 bad arguments, an unreadable manifest or existing outputs.
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.tools.make_exam_list import make_exam_list


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-data-folder", required=True,
                        help="folder holding the PNGs (file paths are relative to it)")
    parser.add_argument("--exam-list-path", required=True,
                        help="exam list to write: .pkl (pickle, as the original) or .json")
    parser.add_argument("--manifest", default=None,
                        help="CSV manifest, one row per image (default: use file names)")
    parser.add_argument("--horizontal-flip", default="auto", choices=["auto", "YES", "NO"],
                        help="horizontal_flip for exams whose manifest gives none; 'auto' "
                             "(default) judges it from where each breast's pixel mass lies")
    parser.add_argument("--num-processes", type=int, default=4,
                        help="processes that read the images (default 4)")
    parser.add_argument("--report", default=None,
                        help="report CSV, one row per input (default <exam list>.report.csv)")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run_cli(parser.prog, lambda: make_exam_list(
        args.input_data_folder, args.exam_list_path, manifest_path=args.manifest,
        report_path=args.report, horizontal_flip=args.horizontal_flip,
        num_processes=args.num_processes, overwrite=args.overwrite).exit_code)


if __name__ == "__main__":
    main()
