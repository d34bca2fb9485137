"""Serve a PACS as a DICOM node: screening studies in, SR and overlay images back.

A PACS routes screening studies to it, and it sends the results back (docs/serve.md).

    bcc serve --destination PACS@10.0.0.5:104 --work-dir /var/lib/bcc-serve \\
        --allow-caller PACS --http-port 9110 [run settings of bcc run]
    bcc serve --reprocess STUDY --work-dir DIR

It answers C-ECHO and takes C-STORE of digital mammograms; a study with its four views
that has been quiet for --study-quiet-seconds is analysed, and its result objects are sent
by C-STORE to --destination, with retries while it is down. State lives in an SQLite
database in --work-dir: a restart after a crash loses nothing acknowledged and sends
nothing twice. Exit status: 0 stopped by SIGTERM/SIGINT (or study forgotten), 1 cannot
run, 2 bad arguments or settings.
"""

import argparse
import os

from breast_cancer_classifier.cli import (add_calibrations_flag, add_device_flags,
                                          add_runtime_flag, add_trust_flag, positive_int,
                                          run_cli)
from breast_cancer_classifier.core.errors import SettingsError

MODELS = ("patch", "image", "imageheatmaps")


def build_parser(prog=None):
    from breast_cancer_classifier.core.engine import EngineSettings

    defaults = EngineSettings()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    node = parser.add_argument_group("DICOM node")
    node.add_argument("--ae-title", default="BCC", help="our AE title (default BCC)")
    node.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only)")
    node.add_argument("--port", type=int, default=11112, help="DICOM port (default 11112)")
    node.add_argument("--destination", metavar="AE@HOST:PORT",
                      help="where the result objects go (C-STORE), e.g. PACS@10.0.0.5:104")
    node.add_argument("--work-dir", required=True, type=_path,
                      help="folder of the state database, received studies and results")
    node.add_argument("--allow-caller", action="append", default=[], metavar="AE",
                      help="accept associations only from this calling AE title (repeat "
                      "for several; default: any caller)")
    node.add_argument("--study-quiet-seconds", type=float, default=30.0,
                      help="a study with its four views is complete once nothing has "
                      "arrived for it for this long (default 30)")
    node.add_argument("--study-timeout-seconds", type=float, default=3600.0,
                      help="a study still missing a view this long after its first instance "
                      "fails, and a failure report is sent (default 3600)")
    node.add_argument("--max-queue", type=positive_int, default=50,
                      help="studies received, complete or running at once; an instance of "
                      "one more is refused with 0xA700, out of resources (default 50)")
    node.add_argument("--http-port", type=int,
                      help="serve /healthz and /metrics (Prometheus) on 127.0.0.1:PORT "
                      "(default: off)")
    tls = parser.add_argument_group("TLS", "DICOM over TLS (PS3.15 B.1) on --port")
    tls.add_argument("--tls-cert", type=_path, help="the server's certificate (PEM)")
    tls.add_argument("--tls-key", type=_path, help="its private key (PEM, unencrypted)")
    tls.add_argument("--tls-ca", type=_path, help="CA bundle (PEM): callers must present a "
                     "certificate signed by it")
    run = parser.add_argument_group("analysis", "the weights and settings of bcc run")
    for model in MODELS:
        run.add_argument(f"--{model}-model-path",
                         default=getattr(defaults, f"{model}_model_path"))
    add_device_flags(run)
    parser.set_defaults(device_type=defaults.device_type)
    run.add_argument("--num-epochs", type=positive_int, default=defaults.num_epochs,
                     help="augmented repetitions averaged by the classifiers (default 10)")
    run.add_argument("--seed", type=int, default=defaults.seed)
    add_runtime_flag(run)
    add_trust_flag(run)
    add_calibrations_flag(run, "calibrated probabilities go into the results too")
    parser.add_argument("--reprocess", metavar="STUDY",
                        help="forget the finished study STUDY (its hash in the log) in "
                        "--work-dir, so that it is analysed again the next time it arrives; "
                        "then exit")
    return parser


def _path(text):
    from pathlib import Path

    return Path(text).expanduser().absolute()


def config_from(args):
    from breast_cancer_classifier.tools.serve.config import Destination, ServeConfig

    if not args.destination:
        raise SettingsError("--destination AE@HOST:PORT is required (where results go)")
    return ServeConfig(
        work_dir=args.work_dir, destination=Destination.parse(args.destination),
        ae_title=args.ae_title, host=args.host, port=args.port,
        allow_callers=tuple(args.allow_caller), study_quiet_seconds=args.study_quiet_seconds,
        study_timeout_seconds=args.study_timeout_seconds, max_queue=args.max_queue,
        http_port=args.http_port, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_ca=args.tls_ca)


def serve(args):
    from breast_cancer_classifier.core.engine import EngineSettings
    from breast_cancer_classifier.tools.serve.processor import load_processor
    from breast_cancer_classifier.tools.serve.service import Service, reprocess

    if args.reprocess:
        return reprocess(args.work_dir, args.reprocess)
    config = config_from(args)
    # A service's stderr is its log: no progress bars in it (BCC_NO_PROGRESS=0 shows them).
    os.environ.setdefault("BCC_NO_PROGRESS", "1")
    processor = load_processor(lambda: EngineSettings.from_namespace(args), args.calibration)
    return Service(config, processor).run_forever()


def main(argv=None, prog="bcc serve"):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run_cli(parser.prog, lambda: serve(args))


if __name__ == "__main__":
    main()
