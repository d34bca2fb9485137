"""Write one HTML folder per finished run: summary, quality, results, subgroup AUCs, exams.

From a bcc run folder, a folder that opens in a browser from file:// (no server, no
network): the run's settings, weights and timings, the QA flags, the results against labels
with bootstrap CIs, the AUC of each subgroup (DICOM acquisition attributes, --attributes),
and a sortable table of every exam with its pictures and its own page (docs/report.md).

    bcc report RUN_DIR [--labels CSV] [--attributes CSV] [--output DIR] [--overwrite]

Open OUTPUT/index.html. Exit status: 0 done, 3 some exams' pictures could not be drawn (the
rest is complete), 2 not a finished run, unusable labels or attributes, or an existing report
without --overwrite.
"""

import argparse
import os

from breast_cancer_classifier.cli import add_overwrite_flag, positive_int, run_cli
from breast_cancer_classifier.tools import evaluate
from breast_cancer_classifier.tools.report import DEFAULT_PICTURES, REPORT_DIR, build_report

PROG = "bcc report"


def pictures_count(text):
    """argparse type: 'all' (None) or a count >= 0."""
    if text == "all":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'all' or a count >= 0, got {value}")
    return value


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog or PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the output folder of bcc run")
    parser.add_argument("--labels", metavar="FILE", help="labels: a CSV with left_benign, right_benign, "
                        "left_malignant, right_malignant (rows in exam-list order, or an "
                        "exam_index column), or an exam list with cancer_label (default: "
                        "the run's data.pkl when its exams carry cancer_label)")
    parser.add_argument("--attributes", metavar="CSV", help="a CSV with exam_index (0-based, exam-list "
                        "order) and one column per attribute, for the subgroup AUCs")
    parser.add_argument("--dicom-report", metavar="CSV", help="the report CSV of bcc dicom (default: "
                        "<exam list>.report.csv beside the run's exam list, if there): "
                        "manufacturer, model, kVp, exposure, compression per image")
    parser.add_argument("--output", metavar="DIR", help=f"folder to write (default RUN_DIR/{REPORT_DIR})")
    parser.add_argument("--pictures", type=pictures_count, default=DEFAULT_PICTURES,
                        metavar="N|all", help="draw the pictures of the N exams with the "
                        "highest malignant probability, or of all (default %(default)s; "
                        "reading full-size crops and heatmaps is the slow part)")
    parser.add_argument("--n-bootstrap", type=int, default=evaluate.N_BOOTSTRAP, metavar="N",
                        help="bootstrap resamples of exams for the CIs (default %(default)s, "
                        "as bcc evaluate)")
    parser.add_argument("--num-processes", type=positive_int, metavar="N",
                        default=min(4, os.cpu_count() or 1),
                        help="processes for the pictures, the results and the subgroups "
                        "(default %(default)s: the CPUs, at most 4)")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.n_bootstrap < 0:
        parser.error("--n-bootstrap must be >= 0")
    run_cli(parser.prog, lambda: build_report(
        args.run_dir, args.output, labels=args.labels, attributes=args.attributes,
        dicom_report=args.dicom_report, pictures=args.pictures, n_bootstrap=args.n_bootstrap,
        num_processes=args.num_processes, overwrite=args.overwrite))


if __name__ == "__main__":
    main()
