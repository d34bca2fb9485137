"""Stages 1 and 2: seconds per image on the parity kit's four real CC images.

Prints one table: stage 1 with the literal iterated morphology (scipy, 100 erosions and
100 dilations) beside the exact distance-transform masks we use, and stage 2. Median of
``--repeats`` runs per image, in one process, so the ratio is what to compare across
machines. Usage: ``.venv/bin/python benchmarks/bench_preprocess.py [--images DIR]``.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from breast_cancer_classifier.core import formats
from breast_cancer_classifier.core.stages.centers import get_optimal_center  # noqa: E402
from breast_cancer_classifier.core.stages.cropping import crop_mammogram_array  # noqa: E402
from breast_cancer_classifier.core.views import flip_for_model  # noqa: E402

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared/parity/real_cc/images"


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = sorted(args.images.glob("*.png"))
    if not paths:
        sys.exit(f"no PNG images in {args.images}")
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores; median of {args.repeats}")
    print("| image | size | read PNG s | stage 1 iterative s | stage 1 distance s | speed-up "
          "| same result | stage 2 s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = [0.0, 0.0, 0.0]
    for path in paths:
        name = path.stem
        view = f"{name.split('_')[1]}-{name.split('_')[2]}"
        t_read, image = timed(lambda: formats.read_mammogram_png(path), args.repeats)
        t_iter, (crop_a, res_a) = timed(
            lambda: crop_mammogram_array(image, view, "NO", method="iterative"), args.repeats)
        t_dist, (crop_b, res_b) = timed(
            lambda: crop_mammogram_array(image, view, "NO", method="distance"), args.repeats)
        flipped = flip_for_model(crop_b, view, "NO")
        t_center, _ = timed(lambda: get_optimal_center(
            flipped, view, res_b.rightmost_points, res_b.bottommost_points), args.repeats)
        same = res_a == res_b and (crop_a == crop_b).all()
        totals = [totals[0] + t_iter, totals[1] + t_dist, totals[2] + t_center]
        print(f"| {name} | {image.shape[0]}x{image.shape[1]} | {t_read:.3f} | {t_iter:.3f} "
              f"| {t_dist:.3f} | {t_iter / t_dist:.1f}x | {same} | {t_center:.3f} |")
    n = len(paths)
    print(f"| mean | | | {totals[0] / n:.3f} | {totals[1] / n:.3f} | "
          f"{totals[0] / totals[1]:.1f}x | | {totals[2] / n:.3f} |")


if __name__ == "__main__":
    main()
