"""Download the official checkpoints (and, with --sample-images, the original sample exams)
from the original repository at the commit pinned in models/official_files.tsv, verifying
each file's git blob SHA-1 before moving it into place.
"""

import argparse

from breast_cancer_classifier.tools import download
from breast_cancer_classifier.cli import run_cli
from breast_cancer_classifier.core.runtime import log


def build_parser():
    parser = argparse.ArgumentParser(
        prog="download_files",
        description="Fetch the official weights (and optionally the original sample exams), "
                    "verified by git blob SHA-1. Files already present and verified are "
                    "skipped.")
    parser.add_argument("--models-dir", default=str(download.DEFAULT_MODELS_DIR),
                        help="where the five checkpoints go (default: models/ of this repository)")
    parser.add_argument("--sample-images", action="store_true",
                        help="also fetch the original's 16 sample images and exam list")
    parser.add_argument("--no-weights", action="store_true",
                        help="do not fetch the checkpoints (use with --sample-images)")
    parser.add_argument("--sample-dir", default=str(download.DEFAULT_SAMPLE_DIR),
                        help="where the sample exams go: images/ and "
                             "exam_list_before_cropping.pkl (default: official_sample_data/ "
                             "of this repository)")
    parser.add_argument("--base-url", default=None,
                        help="download from <base-url>/<commit>/<path> (default: "
                             f"${download.BASE_URL_ENV} if set, else {download.DEFAULT_BASE_URL})")
    parser.add_argument("--manifest", default=str(download.MANIFEST_PATH),
                        help="list of official files and hashes (default: models/official_files.tsv)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the server (default: 60)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files of the same names that are not the "
                             "official ones (demo weights are replaced without it)")
    parser.add_argument("--check", action="store_true",
                        help="download nothing: report which files are present and verified, "
                             "exit 1 if any is missing")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    weights, sample_data = not args.no_weights, args.sample_images

    def body():
        if not (weights or sample_data):
            log.error("download_files: nothing selected (--no-weights without --sample-images)")
            return 2
        if args.check:
            verified, missing = download.check_official_files(
                weights, sample_data, args.models_dir, args.sample_dir, args.manifest)
            for path in missing:
                log.info("%s: missing or not the official file", path)
            log.info("download_files: %d file(s) verified, %d missing", len(verified),
                     len(missing))
            return 1 if missing else 0
        downloaded, skipped = download.download_official_files(
            weights, sample_data, args.models_dir, args.sample_dir, args.base_url,
            args.manifest, args.timeout, args.overwrite)
        log.info("download_files: %d file(s) downloaded, %d already present", len(downloaded),
                 len(skipped))
        return 0

    run_cli("download_files", body)


if __name__ == "__main__":
    main()
