"""Convert DICOM screening mammograms into 16-bit PNGs and an exam list.

Every file under --dicom-folder is examined; 2-D FOR PRESENTATION mammograms (Modality MG)
of CC and MLO views become <output-data-folder>/<patient>_<date>_<L|R>_<CC|MLO>.png and are
grouped into one exam per study. A report CSV lists every file with the reason it was kept,
skipped or failed. With --pseudonymize KEYFILE, names, exam list and report carry keyed
pseudonyms instead of patient ID, study date, study UID and input paths; the table back to
them is written beside the key only. Exit status: 0 done, 3 some mammograms failed, 1 nothing kept,
2 bad arguments or existing outputs.
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.tools.dicom import dicom_to_exam_list


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicom-folder", required=True,
                        help="folder searched recursively for DICOM files")
    parser.add_argument("--output-data-folder", required=True,
                        help="folder to create for the 16-bit PNGs")
    parser.add_argument("--exam-list-path", required=True,
                        help="exam list to write: .pkl (pickle, as the original) or .json")
    parser.add_argument("--num-processes", type=int, default=4,
                        help="processes that read and decode files (default 4)")
    parser.add_argument("--report", default=None,
                        help="report CSV, one row per file (default <exam list>.report.csv)")
    parser.add_argument("--apply-voi-lut", action="store_true",
                        help="apply the file's first VOI LUT or window before rescaling "
                             "(off by default: the models were trained on raw values)")
    parser.add_argument("--pseudonymize", metavar="KEYFILE",
                        help="name files and exams by HMAC-SHA-256 of patient ID and study UID "
                             "with the secret in KEYFILE (created, mode 0600, when absent); "
                             "the mapping goes to KEYFILE.mapping.csv only")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run_cli(parser.prog, lambda: dicom_to_exam_list(
        args.dicom_folder, args.output_data_folder, args.exam_list_path,
        num_processes=args.num_processes, report_path=args.report,
        apply_voi_lut=args.apply_voi_lut, overwrite=args.overwrite,
        pseudonymize=args.pseudonymize).exit_code)


if __name__ == "__main__":
    main()
