"""Write the synthetic sample exams: sample_data/images/{0..3}_{L,R}_{CC,MLO}.png and
sample_data/exam_list_before_cropping.pkl (see breast_cancer_classifier/phantoms.py).

The phantoms are deterministic: running this again leaves identical files alone.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse  # noqa: E402

from breast_cancer_classifier.cli import add_overwrite_flag, run_cli  # noqa: E402
from breast_cancer_classifier.tools.phantoms import NUM_EXAMS, write_sample_data  # noqa: E402
from breast_cancer_classifier.core.runtime import log, progress  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(
        prog="make_sample_data",
        description="Generate the synthetic sample mammograms and their exam list.")
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


if __name__ == "__main__":
    main()
