"""Write deterministic, UNTRAINED demo weights in the original checkpoint formats for the
checkpoints that are missing from models/ (official weights are never replaced).
The numbers they produce are not predictions; models/DEMO_WEIGHTS.txt says so.
"""

from pathlib import Path

import argparse

from breast_cancer_classifier.tools import demo_weights
from breast_cancer_classifier.cli import add_overwrite_flag, run_cli
from breast_cancer_classifier.tools.download import DEFAULT_MODELS_DIR
from breast_cancer_classifier.core.runtime import log


def build_parser():
    parser = argparse.ArgumentParser(
        prog="make_demo_weights",
        description="Make untrained demo weights for the checkpoints missing from the models "
                    "folder. Official weights are kept; the outputs of demo weights are not "
                    "predictions.")
    parser.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR),
                        help="the models folder (default: models/ of this repository)")
    parser.add_argument("--seed", type=int, default=demo_weights.DEMO_SEED,
                        help=f"initialisation seed (default: {demo_weights.DEMO_SEED})")
    parser.add_argument("--status", action="store_true",
                        help="write nothing; print 'name<TAB>official|demo|missing|other' per "
                             "checkpoint on stdout")
    add_overwrite_flag(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        if args.status:
            for name, state in demo_weights.weights_status(args.models_dir).items():
                print(f"{name}\t{state}")
            return 0
        written, kept = demo_weights.write_demo_weights(args.models_dir, args.seed,
                                                        args.overwrite)
        if written:
            log.warning("make_demo_weights: wrote %d DEMO checkpoint(s) to %s. THEY ARE NOT "
                        "TRAINED: the numbers they produce are NOT predictions (see %s).",
                        len(written), args.models_dir,
                        Path(args.models_dir) / demo_weights.MARKER_NAME)
        else:
            log.info("make_demo_weights: nothing to do, %d checkpoint(s) present", len(kept))
        return 0

    run_cli("make_demo_weights", body)


if __name__ == "__main__":
    main()
