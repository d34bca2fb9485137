"""Generate the synthetic sample mammograms and their exam list (tools/phantoms.py).

The command line of ``src/utilities/make_sample_data.py``: writes
``<output-dir>/images/{0..3}_{L,R}_{CC,MLO}.png`` and
``<output-dir>/exam_list_before_cropping.pkl``. The phantoms are deterministic: running it
again leaves identical files alone.
"""

import argparse

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.core.runtime import log, progress
from breast_cancer_classifier.tools.phantoms import NUM_EXAMS, write_sample_data


def build_parser():
    parser = argparse.ArgumentParser(prog="make_sample_data",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="sample_data",
                        help="folder to write images/ and exam_list_before_cropping.pkl into "
                             "(default: sample_data)")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default: 0)")
    parser.add_argument("--num-exams", type=int, default=NUM_EXAMS,
                        help=f"number of four-view exams (default: {NUM_EXAMS})")
    add_overwrite_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        written, unchanged = write_sample_data(
            args.output_dir, seed=args.seed, num_exams=args.num_exams,
            overwrite=args.overwrite,
            progress_bar=lambda jobs: progress(jobs, desc="Phantoms", unit="image"))
        log.info("make_sample_data: %d file(s) written, %d already up to date, in %s",
                 len(written), len(unchanged), args.output_dir)
        return 0

    run_cli("make_sample_data", body)
