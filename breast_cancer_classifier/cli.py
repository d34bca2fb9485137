"""What every command-line script shares: error-to-exit-code mapping and common flags."""

import sys
from pathlib import Path

from .core.errors import (CheckpointError, ExamListError, InputImageError, OutputExistsError,
                           PipelineError, SettingsError)
from .core.failures import EXIT_BAD_INPUT, EXIT_NOTHING_DONE
from .core.home import describe_models_dir, models_dir
from .core.patch_runtime import RUNTIMES
from .core.runtime import PRECISIONS, log, setup_logging


def run_cli(prog, body, argv=None):
    """Run ``body()`` (which returns an exit status) and turn our errors into exit codes.

    Unreadable exam lists, unusable checkpoints, options that do not fit together and
    existing outputs exit 2; any other pipeline error (nothing could be done) exits 1.
    The message names the script.
    """
    setup_logging()
    try:
        status = body()
    except (ExamListError, CheckpointError, OutputExistsError, SettingsError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        status = EXIT_BAD_INPUT
    except (InputImageError, PipelineError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        status = EXIT_NOTHING_DONE
    sys.exit(status or 0)


def add_overwrite_flag(parser):
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (default: refuse and exit 2)")


def add_device_flags(parser):
    parser.add_argument("--device-type", default="cpu", choices=["gpu", "cpu"],
                        help="'gpu' uses CUDA/MPS when present, else the CPU with a message")
    parser.add_argument("--gpu-number", type=int, default=0)


def add_trust_flag(parser):
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a weight file that needs full pickle loading (only for "
                             "files from a source you trust: loading can run code)")


def add_runtime_flag(parser):
    parser.add_argument("--runtime", default="auto",
                        choices=RUNTIMES,
                        help="engine for the patch classifier: 'auto' (default) is 'compiled' on "
                             "the CPU at fp32 where its kernels build, else 'torch'; 'torch' runs "
                             "PyTorch eager, bit-identical to the reference; 'compiled' (CPU, "
                             "fp32) is about 3x faster in less memory and within 1e-6 of eager "
                             "(C kernels, compiled once per machine: needs a C compiler); "
                             "'onnxruntime' (CPU, fp32) is fast and differs by up to about 1e-5. "
                             "See docs/stage3_runtime.md")


def positive_int(text):
    """argparse type: an integer >= 1."""
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_precision_flag(parser):
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="'fp32' (default) matches the reference; 'bf16' (autocast, CPU "
                             "or GPU) and 'tf32' (NVIDIA GPUs) trade accuracy for speed: see "
                             "README for their measured deviations")


def add_models_dir_flag(parser, what):
    parser.add_argument("--models-dir",
                        help=f"{what} (default: models/ of the home folder: $BCC_HOME, this "
                             "checkout, or the user data folder)")


def models_dir_of(args, prog):
    """``--models-dir``, or else the home folder's ``models/`` (core.home), said on stderr."""
    if args.models_dir is not None:
        return Path(args.models_dir)
    log.info("%s: models folder %s", prog, describe_models_dir())
    return models_dir()


def add_calibrations_flag(parser, effect):
    """``--calibration FILE``, once per model (a list): ``effect`` says what it adds."""
    parser.add_argument("--calibration", action="append", default=[], metavar="FILE",
                        help=f"calibration.json of bcc calibrate: {effect}; once per model")


def add_compute_flags(parser, defaults):
    """The flags ``bcc run`` and ``bcc single`` share; ``defaults`` (their settings) gives
    the model paths and the repetitions."""
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
