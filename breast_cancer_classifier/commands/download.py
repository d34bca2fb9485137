"""Download the official weights (and optionally the original sample exams), verified.

The files are those of the original repository at the commit pinned in the package's
``official_files.tsv``; each is checked against its git blob SHA-1 before it is moved into
place. Without ``--models-dir`` the weights go to the home folder's ``models/``
(``$BCC_HOME/models``, this checkout's ``models/``, or the user data folder: core/home.py),
which is printed.
"""

import argparse

from breast_cancer_classifier.cli import add_models_dir_flag, models_dir_of, run_cli
from breast_cancer_classifier.core.home import official_sample_dir
from breast_cancer_classifier.core.runtime import log
from breast_cancer_classifier.tools import download


def build_parser(prog=None):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fetch the official weights (and optionally the original sample exams), "
                    "verified by git blob SHA-1. Files already present and verified are "
                    "skipped.")
    add_models_dir_flag(parser, "where the five checkpoints go")
    parser.add_argument("--sample-images", action="store_true",
                        help="also fetch the original's 16 sample images and exam list")
    parser.add_argument("--no-weights", action="store_true",
                        help="do not fetch the checkpoints (use with --sample-images)")
    parser.add_argument("--sample-dir",
                        help="where the sample exams go: images/ and "
                             "exam_list_before_cropping.pkl (default: official_sample_data/ "
                             "of the home folder)")
    parser.add_argument("--base-url", default=None,
                        help="download from <base-url>/<commit>/<path> (default: "
                             f"${download.BASE_URL_ENV} if set, else {download.DEFAULT_BASE_URL})")
    parser.add_argument("--official-files", default=str(download.OFFICIAL_FILES_PATH),
                        help="list of the official files and their hashes (default: the "
                             "package's official_files.tsv)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the server (default: 60)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files of the same names that are not the "
                             "official ones (demo weights are replaced without it)")
    parser.add_argument("--check", action="store_true",
                        help="download nothing: report which files are present and verified, "
                             "exit 1 if any is missing")
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    weights, sample_data = not args.no_weights, args.sample_images

    def body():
        if not (weights or sample_data):
            log.error("%s: nothing selected (--no-weights without --sample-images)",
                      parser.prog)
            return 2
        folder = models_dir_of(args, parser.prog) if weights else None
        if sample_data and args.sample_dir is None:
            log.info("%s: sample exams folder %s", parser.prog, official_sample_dir())
        if args.check:
            verified, missing = download.check_official_files(
                weights, sample_data, folder, args.sample_dir, args.official_files)
            for path in missing:
                log.info("%s: missing or not the official file", path)
            log.info("%s: %d file(s) verified, %d missing", parser.prog, len(verified),
                     len(missing))
            return 1 if missing else 0
        downloaded, skipped = download.download_official_files(
            weights, sample_data, folder, args.sample_dir, args.base_url,
            args.official_files, args.timeout, args.overwrite)
        log.info("%s: %d file(s) downloaded, %d already present", parser.prog,
                 len(downloaded), len(skipped))
        return 0

    run_cli(parser.prog, body)
