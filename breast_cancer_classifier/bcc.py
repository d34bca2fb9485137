"""``bcc``: the whole pipeline and its tools behind one command.

    bcc run --exam-list PATH --data-folder DIR --output-dir DIR [--continue] [--overwrite] ...
    bcc single IMAGE VIEW [--output-dir DIR] ...
    bcc demo [--output-dir DIR]
    bcc dicom | exam-list | qa | visualize | evaluate | calibrate | download | demo-weights
        | export | finetune  [their flags]

``run`` and ``single`` work in one process (:mod:`core.pipeline`, :mod:`core.single`); each
other command ``X`` is ``commands/X.py`` (its parser and ``main(argv, prog)``), whose
docstring's first line is its line in ``bcc --help``.
Exit status: 0 done, 3 some items failed (the rest is complete), 1 nothing could be done,
2 bad arguments, exam list, checkpoint or settings, or an existing output.
"""

import argparse
import importlib
import sys

from . import __version__
from .core.errors import SettingsError
from .cli import (add_device_flags, add_overwrite_flag, add_precision_flag, add_runtime_flag,
                  add_trust_flag, positive_int, run_cli)
from .commands import summary

# Command -> module of breast_cancer_classifier.commands.
COMMANDS = {
    "demo": "demo",  # sample exams and the whole pipeline, from an empty folder
    "dicom": "dicom",
    "dicom-out": "dicom_out",  # DICOM results (Mammography CAD SR, overlays) of a run folder
    "exam-list": "exam_list",
    "visualize": "visualize",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "download": "download",
    "demo-weights": "demo_weights",
    "export": "export",  # every network to ONNX / .pt2 / SavedModel, checked
    "qa": "qa",
    "finetune": "finetune",  # fine-tuning on labelled exams (tools/finetune)
    "serve": "serve",  # a DICOM node: studies in from a PACS, results back (tools/serve)
    "report": "report",  # one HTML folder per finished run: summary, QA, subgroup AUCs, exams
}


def _common_flags(parser, defaults):
    """Flags ``run`` and ``single`` share; ``defaults`` gives the model paths and epochs."""
    parser.add_argument("--patch-model-path", default=defaults.patch_model_path)
    parser.add_argument("--image-model-path", default=defaults.image_model_path)
    parser.add_argument("--imageheatmaps-model-path", default=defaults.imageheatmaps_model_path)
    add_device_flags(parser)
    parser.set_defaults(device_type="gpu")
    parser.add_argument("--num-epochs", type=positive_int, default=defaults.num_epochs,
                        help="augmented repetitions averaged by the classifiers (default 10)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--heatmap-batch-size", type=positive_int,
                        default=defaults.heatmap_batch_size, help="patches per batch (stage 3)")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                        help="repetitions per classifier batch (numbers do not change)")
    add_runtime_flag(parser)
    add_precision_flag(parser)
    add_trust_flag(parser)
    add_overwrite_flag(parser)


def build_parser():
    from .core.engine import EngineSettings
    from .core.single import SingleSettings

    parser = argparse.ArgumentParser(prog="bcc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="Run the whole pipeline on an exam list, into one folder",
                              description="Crop, centers, heatmaps and both exam classifiers "
                              "on an exam list, in one process, into one output folder "
                              "(run.sh's files and names, plus a plan and a run record).")
    run.add_argument("--exam-list", required=True,
                     help="exam list before cropping (pickle or .json)")
    run.add_argument("--data-folder", required=True, help="folder of the input PNGs")
    run.add_argument("--output-dir", required=True)
    _common_flags(run, EngineSettings())
    run.add_argument("--num-processes", type=positive_int, default=10,
                     help="processes for stages 1-2 (default 10)")
    run.add_argument("--continue", dest="resume", action="store_true",
                     help="resume the run in --output-dir: finished exams whose files still "
                     "match the run manifest are kept, the rest is computed")
    run.add_argument("--exams", help="run only these exams' heatmaps and classifiers, e.g. "
                     "'0,4-7' (0-based); the CSVs are written once every exam is done")
    run.add_argument("--visualize", action="store_true",
                     help="also draw overlay pictures into OUTPUT/visualizations")
    run.add_argument("--note", help="an extra warning line on every picture")
    run.add_argument("--calibration", action="append", default=[], metavar="FILE",
                     help="calibration.json of bcc calibrate: adds *_calibrated columns to "
                     "its model's CSV (raw columns unchanged); once per model")
    run.add_argument("--dicom-out", metavar="DIR",
                     help="also write DICOM results into DIR (as bcc dicom-out does): a "
                     "Mammography CAD SR per exam, an overlay per image; the exam list must "
                     "come from bcc dicom")
    cluster = run.add_argument_group(
        "cluster", "--engine ray spreads the run over a Ray cluster (pip install "
        "'breast-cancer-classifier[cluster]'); the output and data folders must then be one "
        "shared path on every node")
    cluster.add_argument("--engine", choices=["local", "ray"], default="local",
                         help="'local' (default): this process; 'ray': Ray tasks for stages "
                         "1-2, a pool of engine actors for the exams (same bytes)")
    cluster.add_argument("--ray-address", help="join a running cluster: 'auto' or HOST:PORT "
                         "(default: start Ray on this machine)")
    cluster.add_argument("--workers", type=positive_int,
                         help="engine actors (default: one per GPU, else one per node)")
    cluster.add_argument("--batch-exams", type=positive_int,
                         help="exams per actor call (default 1 on CPUs, 4 on GPUs)")
    cluster.add_argument("--threads-per-worker", type=positive_int,
                         help="intra-op threads of each actor (default: a node's CPUs, or "
                         "the CPUs shared out among the GPU actors)")

    single = commands.add_parser("single", help="Run the single-image path on one mammogram",
                                 description="Crop, center, heatmaps and the two image-wise "
                                 "classifiers for one image; prints one JSON line per model.")
    single.add_argument("image", help="the mammogram (16-bit PNG)")
    single.add_argument("view", help="L-CC, R-CC, L-MLO or R-MLO")
    single.add_argument("--output-dir", default="sample_single_output")
    single.add_argument("--horizontal-flip", default="NO", choices=["NO", "YES"])
    single.add_argument("--proper-mirroring", action="store_true",
                        help="mirror right-side images for the heatmaps (the reference does "
                        "not: SPEC 9); changes the numbers")
    _common_flags(single, SingleSettings())

    for name, module in COMMANDS.items():
        commands.add_parser(name, add_help=False, help=summary(module))
    return parser


def _run(args):
    from .core.engine import EngineSettings
    from .core.pipeline import run_pipeline

    settings = EngineSettings.from_namespace(args)
    if args.dicom_out:  # exam list from bcc dicom, highdicom, output folder: before any work
        from .tools.dicom_results import check_dicom_output

        check_dicom_output(args.exam_list, args.dicom_out, args.overwrite)
    if args.calibration:  # checked against the weights before any work
        from .tools.calibration import calibrations_for_run

        calibrations = calibrations_for_run(args.calibration, settings.weight_paths())
    status = run_pipeline(args.exam_list, args.data_folder, args.output_dir, settings,
                          num_processes=args.num_processes, resume=args.resume,
                          overwrite=args.overwrite, exams=args.exams,
                          executor=_executor(args))
    if args.visualize and status in (0, 3) and not args.exams:
        status = max(status, _pictures(args.output_dir, args.note))
    if args.calibration and status in (0, 3) and not args.exams:
        from .core.pipeline import RunLayout
        from .tools.calibration import add_calibrated_columns

        for model, calibration in calibrations.items():
            add_calibrated_columns(RunLayout(args.output_dir).csvs[model], calibration)
    if args.dicom_out and status in (0, 3) and not args.exams:
        from .tools.dicom_results import write_dicom_results

        status = max(status, write_dicom_results(args.output_dir, args.dicom_out,
                                                 calibrations=args.calibration,
                                                 overwrite=args.overwrite))
    return status


def _executor(args):
    """None (this process) or the Ray executor; cluster flags without --engine ray are refused."""
    cluster_flags = {"--ray-address": args.ray_address, "--workers": args.workers,
                     "--batch-exams": args.batch_exams,
                     "--threads-per-worker": args.threads_per_worker}
    if args.engine != "ray":
        given = [flag for flag, value in cluster_flags.items() if value is not None]
        if given:
            raise SettingsError(f"{', '.join(given)} only apply with --engine ray")
        return None
    from .tools.cluster import RayExecutor

    return RayExecutor(args.ray_address, args.workers, args.batch_exams,
                       args.threads_per_worker)


def _pictures(output_dir, note):
    from .core.pipeline import RunLayout
    from .tools.visualize import visualize_exams

    layout = RunLayout(output_dir)
    return visualize_exams(layout.data_pkl, layout.cropped_dir, layout.root / "visualizations",
                           heatmaps_dir=layout.heatmaps_dir,
                           prediction_paths=list(layout.csvs.values()), note=note,
                           overwrite=True)


def _single(args):
    from .core.single import SingleSettings, run_single

    settings = SingleSettings.from_namespace(args)
    run_single(args.image, args.view, args.output_dir, settings, overwrite=args.overwrite)
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(f"{__package__}.commands.{COMMANDS[argv[0]]}")
        return module.main(argv[1:], prog=f"bcc {argv[0]}")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        sys.exit(2)
    run_cli(f"bcc {args.command}", lambda: (_run if args.command == "run" else _single)(args))


if __name__ == "__main__":
    main()
