"""The TensorFlow single-image path against the parity kit: deviations and time per image.

Usage (from the repository root; needs the `tf` extra)::

    .venv/bin/python benchmarks/bench_tf_parity.py [--cases real_cc synth_a synth_c]
        [--skip-heatmaps]

For every ``single.json`` item of the cases: the kit's input cut to the kit's
``window_location`` (stage 1 as the reference did), heatmaps from
``run_producer_single_tf`` (``weights/patch.p``, batch 100, seed 0) compared with the kit's
``expected/single/<image>/`` maps, then ``run_model_single_tf`` with ``image_mode.p`` and
``imageheatmaps_mode.p`` (10 augmented epochs, seed 0; the latter fed with the kit's own
heatmaps, as ``single_predictions.json`` was made) compared with ``single_predictions.json``.
Tolerances (issue 16): 1e-5 per heatmap value, 1e-4 per probability. Times are wall seconds
of one process that already imported TensorFlow; on a shared machine they are noisy.
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from breast_cancer_classifier.core import formats  # noqa: E402
from breast_cancer_classifier.core.exam_list import load_metadata  # noqa: E402
from breast_cancer_classifier.core.stages.classify import ClassifierSettings  # noqa: E402
from breast_cancer_classifier.tools.tf_port.single import (run_model_single_tf,  # noqa: E402
                                                           run_producer_single_tf)

KIT = REPO.parent / "shared" / "parity"
MAP_TOL, PREDICTION_TOL = 1e-5, 1e-4


def run_image(case_dir, name, view, scratch, heatmaps=True):
    expected = case_dir / "expected" / "single" / name
    metadata_path = expected / "cropped_metadata.pkl"
    top, bottom, left, right = load_metadata(metadata_path)["window_location"]
    image = formats.read_mammogram_png(case_dir / "images" / f"{name}.png")[top:bottom, left:right]
    image_path = scratch / f"{name}.png"
    formats.write_png(image_path, image)
    row = {"image": f"{case_dir.name}/{name}", "shape": "x".join(map(str, image.shape))}
    if heatmaps:
        maps = {kind: scratch / f"{name}_{kind}.hdf5" for kind in ("malignant", "benign")}
        start = time.time()
        run_producer_single_tf(KIT / "weights" / "patch.p", image_path, metadata_path,
                               maps["malignant"], maps["benign"], overwrite=True)
        row["heatmaps s"] = time.time() - start
        row["map dev"] = max(float(np.abs(formats.read_hdf5(path).astype(np.float64)
                                          - formats.read_hdf5(expected / f"{kind}_heatmap.hdf5"))
                                   .max()) for kind, path in maps.items())
    want = next(e for e in json.loads((case_dir / "expected" / "single_predictions.json")
                                      .read_text()) if e["name"] == name)
    for variant, weights in (("image", "image_mode.p"), ("imageheatmaps", "imageheatmaps_mode.p")):
        settings = ClassifierSettings(model_mode="image", use_heatmaps=variant == "imageheatmaps",
                                      use_augmentation=True, num_epochs=10, seed=0)
        start = time.time()
        got = run_model_single_tf(KIT / "weights" / weights, view, image_path, metadata_path,
                                  settings, heatmap_paths=(expected / "malignant_heatmap.hdf5",
                                                           expected / "benign_heatmap.hdf5"))
        row[f"{variant} s"] = time.time() - start
        row[f"{variant} dev"] = max(abs(got[k] - want[variant][k]) for k in ("benign", "malignant"))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["synth_a", "real_cc", "synth_c"])
    parser.add_argument("--skip-heatmaps", action="store_true")
    args = parser.parse_args()
    import tensorflow as tf

    print(f"machine: {platform.machine()}, {platform.processor() or '?'}; TensorFlow "
          f"{tf.__version__}; tolerances: map {MAP_TOL:g}, probability {PREDICTION_TOL:g}",
          flush=True)
    columns = ["image", "shape", "map dev", "heatmaps s", "image dev", "image s",
               "imageheatmaps dev", "imageheatmaps s"]
    print(" | ".join(columns), flush=True)
    worst = {"map dev": 0.0, "image dev": 0.0, "imageheatmaps dev": 0.0}
    with tempfile.TemporaryDirectory() as scratch:
        for case in args.cases:
            case_dir = KIT / case
            for item in json.loads((case_dir / "single.json").read_text()):
                row = run_image(case_dir, item["image"], item["view"], Path(scratch),
                                heatmaps=not args.skip_heatmaps)
                for key in worst:
                    worst[key] = max(worst[key], row.get(key, 0.0))
                print(" | ".join(f"{row[c]:.2e}" if c.endswith("dev") and c in row else
                                 f"{row[c]:.1f}" if c in row and isinstance(row[c], float) else
                                 str(row.get(c, "-")) for c in columns), flush=True)
    ok = (worst["map dev"] <= MAP_TOL and max(worst["image dev"], worst["imageheatmaps dev"])
          <= PREDICTION_TOL)
    print(f"worst: map {worst['map dev']:.2e}, image {worst['image dev']:.2e}, image+heatmaps "
          f"{worst['imageheatmaps dev']:.2e}: {'within' if ok else 'OVER'} tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
