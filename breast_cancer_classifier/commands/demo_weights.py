"""Write untrained demo weights for the checkpoints missing from the models folder.

They are deterministic and in the original checkpoint formats; official weights are never
replaced. The numbers they produce are not predictions: ``DEMO_WEIGHTS.txt`` in the models
folder says so. Without ``--models-dir`` the home folder's ``models/`` is used (core/home.py)
and printed.
"""

import argparse
from pathlib import Path

from breast_cancer_classifier.cli import (add_models_dir_flag, add_overwrite_flag, models_dir_of,
                                          run_cli)
from breast_cancer_classifier.core.runtime import log
from breast_cancer_classifier.tools import demo_weights


def build_parser(prog=None):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Make untrained demo weights for the checkpoints missing from the models "
                    "folder. Official weights are kept; the outputs of demo weights are not "
                    "predictions.")
    add_models_dir_flag(parser, "the models folder")
    parser.add_argument("--seed", type=int, default=demo_weights.DEMO_SEED,
                        help=f"initialisation seed (default: {demo_weights.DEMO_SEED})")
    parser.add_argument("--status", action="store_true",
                        help="write nothing; print 'name<TAB>official|demo|missing|other' per "
                             "checkpoint on stdout")
    add_overwrite_flag(parser)
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)

    def body():
        folder = models_dir_of(args, parser.prog)
        if args.status:
            for name, state in demo_weights.weights_status(folder).items():
                print(f"{name}\t{state}")
            return 0
        written, kept = demo_weights.write_demo_weights(folder, args.seed, args.overwrite)
        if written:
            log.warning("%s: wrote %d DEMO checkpoint(s) to %s. THEY ARE NOT TRAINED: the "
                        "numbers they produce are NOT predictions (see %s).", parser.prog,
                        len(written), folder, Path(folder) / demo_weights.MARKER_NAME)
        else:
            log.info("%s: nothing to do, %d checkpoint(s) present", parser.prog, len(kept))
        return 0

    run_cli(parser.prog, body)
