"""Write DICOM results of a finished run: a Mammography CAD SR per exam, overlay images.

From a bcc run folder: a Mammography CAD SR per exam and an overlay Secondary Capture per
source image, for a mammography workstation or a PACS.

The run's exam list must come from bcc dicom (it records each image's DICOM identity). Writes
SR_exam<i>.dcm, SC_exam<i>_<image>.dcm, dicom_results.csv (which file belongs to which study
and image) and, when exams failed, failures.csv into --output. Send them with dcmtk's
storescu or dcmsend (docs/dicom_results.md). Exit status: 0 done, 3 some exams failed,
1 every exam failed or the folder is not a finished run, 2 bad arguments, an exam list not
from bcc dicom, a calibration of other weights, or an existing output folder.
"""

import argparse

from breast_cancer_classifier.cli import add_calibrations_flag, add_overwrite_flag, run_cli


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a finished bcc run output folder")
    parser.add_argument("--output", required=True, help="folder to create for the objects")
    add_calibrations_flag(parser, "adds the calibrated probabilities (and, with an operating "
                          "point, which breasts are at or above it)")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog="bcc dicom-out"):
    parser = build_parser(prog)
    args = parser.parse_args(argv)

    def body():
        from breast_cancer_classifier.tools.dicom_results import write_dicom_results

        return write_dicom_results(args.run_dir, args.output, calibrations=args.calibration,
                                   overwrite=args.overwrite)

    run_cli(parser.prog, body)


if __name__ == "__main__":
    main()
