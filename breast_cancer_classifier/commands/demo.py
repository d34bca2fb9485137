"""Generate the sample exams and run the whole pipeline on them (from an empty folder).

    bcc demo [--output-dir bcc_demo]

Writes OUTPUT/sample_data/ (four synthetic four-view exams) and OUTPUT/output/ (a ``bcc
run`` folder: cropped images, heatmaps, image_predictions.csv and
imageheatmaps_predictions.csv). The weights come from the models folder (``--models-dir``,
default the home folder's: $BCC_HOME/models, this checkout's models/ or the user data
folder); checkpoints missing there are filled in with untrained demo weights, and the run
then says loudly that its numbers are not predictions. Exit status as ``bcc run``.
"""

import argparse

from breast_cancer_classifier.cli import (add_device_flags, add_models_dir_flag,
                                          add_overwrite_flag, models_dir_of, positive_int,
                                          run_cli)


def build_parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="bcc_demo",
                        help="folder for the sample exams and the run (default: bcc_demo)")
    add_models_dir_flag(parser, "the weights")
    parser.add_argument("--num-exams", type=positive_int, default=4,
                        help="sample exams to generate and run (default 4)")
    parser.add_argument("--num-epochs", type=positive_int, default=10,
                        help="augmented repetitions averaged by the classifiers (default 10, "
                             "as bcc run; 1 is quicker)")
    parser.add_argument("--num-processes", type=positive_int, default=2,
                        help="processes for stages 1-2 (default 2)")
    add_overwrite_flag(parser)
    add_device_flags(parser)
    parser.set_defaults(device_type="gpu")
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)

    def body():
        from breast_cancer_classifier.tools.demo import BANNER, run_demo

        result = run_demo(args.output_dir, models_dir_of(args, parser.prog),
                          num_exams=args.num_exams, overwrite=args.overwrite,
                          num_processes=args.num_processes, num_epochs=args.num_epochs,
                          device_type=args.device_type, gpu_number=args.gpu_number)
        banner = f"\n{BANNER}\n" if result.demo_weights_used else ""
        print(f"{banner}\n{parser.prog}: finished with exit status {result.status}\n"
              f"{result.summary()}{banner}")
        return result.status

    run_cli(parser.prog, body)
