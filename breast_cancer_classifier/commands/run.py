"""Run the whole pipeline on an exam list, into one output folder.

Crop, centers, heatmaps and the exam classifiers in one process: run.sh's files and names,
plus a plan and a run record.

    bcc run --exam-list PATH --data-folder DIR --output-dir DIR [--continue] [--overwrite] ...

``--families`` picks the classifier families of the registry (``core.families``; default
``image,imageheatmaps``, the two CSVs of run.sh) and ``--weights FAMILY=PATH`` gives any
family's weights. Exit status: 0 done, 3 some items failed (the rest is complete), 1 nothing
could be done, 2 bad arguments, exam list, checkpoint or settings, or an existing output.
"""

import argparse

from breast_cancer_classifier.cli import (add_calibrations_flag, add_compute_flags, positive_int,
                                          run_cli)
from breast_cancer_classifier.core.errors import SettingsError

def build_parser(prog=None):
    from breast_cancer_classifier.core.engine import EngineSettings

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n    bcc")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exam-list", required=True,
                        help="exam list before cropping (pickle or .json)")
    parser.add_argument("--data-folder", required=True, help="folder of the input PNGs")
    parser.add_argument("--output-dir", required=True)
    add_compute_flags(parser, EngineSettings())
    parser.add_argument("--families", type=_names, default=EngineSettings().families,
                        help="classifier families to run, comma-separated (default: "
                        "image,imageheatmaps); each writes <family>_predictions.csv")
    parser.add_argument("--weights", action="append", default=[], type=_family_weights,
                        metavar="FAMILY=PATH", help="weights of a classifier family (any "
                        "registered one; for image and imageheatmaps, as --image-model-path "
                        "and --imageheatmaps-model-path); once per family")
    parser.add_argument("--num-processes", type=positive_int, default=10,
                        help="processes for stages 1-2 (default 10)")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="resume the run in --output-dir: finished exams whose files still "
                        "match the run manifest are kept, the rest is computed")
    parser.add_argument("--exams", help="run only these exams' heatmaps and classifiers, e.g. "
                        "'0,4-7' (0-based); the CSVs are written once every exam is done")
    parser.add_argument("--visualize", action="store_true",
                        help="also draw overlay pictures into OUTPUT/visualizations")
    parser.add_argument("--note", help="an extra warning line on every picture")
    add_calibrations_flag(parser, "adds *_calibrated columns to its model's CSV (raw columns "
                          "unchanged)")
    parser.add_argument("--dicom-out", metavar="DIR",
                        help="also write DICOM results into DIR (as bcc dicom-out does): a "
                        "Mammography CAD SR per exam, an overlay per image; the exam list must "
                        "come from bcc dicom")
    _add_cluster_flags(parser)
    return parser


def _add_cluster_flags(parser):
    cluster = parser.add_argument_group(
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


def _names(text):
    """argparse type: ``"a,b"`` → ``("a", "b")``."""
    names = tuple(filter(None, (name.strip() for name in text.split(","))))
    if not names:
        raise argparse.ArgumentTypeError("name at least one classifier family")
    return names


def _family_weights(text):
    """argparse type: ``FAMILY=PATH`` → ``(family, path)``."""
    family, sep, path = text.partition("=")
    if not (sep and family and path):
        raise argparse.ArgumentTypeError(f"expected FAMILY=PATH, got {text!r}")
    return family.strip(), path


def settings_from(args):
    """The run's :class:`core.engine.EngineSettings`; unknown families are refused here."""
    from breast_cancer_classifier.core.engine import EngineSettings
    from breast_cancer_classifier.core.families import get_family

    for family, path in args.weights:
        get_family(family)
        if family not in args.families:
            raise SettingsError(f"--weights {family}={path}: {family} is not among --families "
                                f"{','.join(args.families)}; add it there to run it")
    settings = EngineSettings.from_namespace(args, weights=tuple(args.weights))
    settings.weight_paths()  # every family has weights
    return settings


def run(args):
    from breast_cancer_classifier.core.pipeline import run_pipeline
    from breast_cancer_classifier.core.run_layout import RunLayout

    settings = settings_from(args)
    if args.dicom_out:  # exam list from bcc dicom, highdicom, output folder: before any work
        from breast_cancer_classifier.tools.dicom_results import check_dicom_output

        check_dicom_output(args.exam_list, args.dicom_out, args.overwrite)
    if args.calibration:  # checked against the weights before any work
        from breast_cancer_classifier.tools.calibration import calibrations_for_run

        calibrations = calibrations_for_run(args.calibration, settings.weight_paths())
    status = run_pipeline(args.exam_list, args.data_folder, args.output_dir, settings,
                          num_processes=args.num_processes, resume=args.resume,
                          overwrite=args.overwrite, exams=args.exams,
                          executor=_executor(args))
    layout = RunLayout(args.output_dir, settings.families)
    if args.visualize and status in (0, 3) and not args.exams:
        status = max(status, _pictures(layout, args.note))
    if args.calibration and status in (0, 3) and not args.exams:
        from breast_cancer_classifier.tools.calibration import add_calibrated_columns

        for model, calibration in calibrations.items():
            add_calibrated_columns(layout.csvs[model], calibration)
    if args.dicom_out and status in (0, 3) and not args.exams:
        from breast_cancer_classifier.tools.dicom_results import write_dicom_results

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
    from breast_cancer_classifier.tools.cluster import RayExecutor

    return RayExecutor(args.ray_address, args.workers, args.batch_exams,
                       args.threads_per_worker)


def _pictures(layout, note):
    from breast_cancer_classifier.tools.visualize import visualize_exams

    return visualize_exams(layout.data_pkl, layout.cropped_dir, layout.root / "visualizations",
                           heatmaps_dir=layout.heatmaps_dir,
                           prediction_paths=list(layout.csvs.values()), note=note,
                           overwrite=True)


def main(argv=None, prog="bcc run"):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run_cli(parser.prog, lambda: run(args))
