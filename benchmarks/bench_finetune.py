"""Fine-tuning benchmark: seconds per training step at full input size, and peak memory.

    .venv/bin/python benchmarks/bench_finetune.py [--repeats 3] [--device-type cpu]
        [--models view_split image] [--channels 1 3]

One training step is one exam as ``bcc finetune`` takes it: the four views' windows at the
model's input size (2677x1942 CC, 2974x1748 MLO), forward in train mode with BatchNorm
frozen, the loss on every head, backward and an AdamW step. Each configuration (model x
channels x columns frozen or training) runs in its own process, so its peak memory (the
process's peak RSS on a CPU, ``max_memory_allocated`` on a GPU) is its own. Inputs and
weights are random: timings only. The median of ``--repeats`` steps after one warm-up step.
Not collected by pytest.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one(model_mode, channels, frozen, repeats, device_type):
    import numpy as np
    import torch

    from breast_cancer_classifier.core.checkpoints.classifier import _BUILDERS
    from breast_cancer_classifier.core.runtime import resolve_device, use_full_fp32
    from breast_cancer_classifier.core.views import INPUT_SIZE, VIEWS, view_angle
    from breast_cancer_classifier.tools.finetune.train import (FinetuneSettings, exam_loss,
                                                               make_optimizer,
                                                               set_columns_trainable,
                                                               training_mode)

    use_full_fp32()
    device = resolve_device(device_type)
    torch.manual_seed(0)
    settings = FinetuneSettings(model_mode=model_mode, use_heatmaps=channels == 3)
    model = _BUILDERS[model_mode](channels).to(device)
    optimizer, _ = make_optimizer(model, settings, 100)
    set_columns_trainable(model, not frozen)
    training_mode(model, False)
    views = {v: torch.randn(1, channels, *INPUT_SIZE[view_angle(v)], device=device)
             for v in VIEWS}
    labels = np.array([0.0, 1.0, 0.0, 1.0])
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = exam_loss(model(views), labels, settings)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": float(np.median(times[1:])), "peak_gib": peak,
            "threads": torch.get_num_threads(), "device": str(device)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device-type", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--models", nargs="+", default=["view_split", "image"])
    parser.add_argument("--channels", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        mode, channels, frozen = args.one.split(",")
        print(json.dumps(one(mode, int(channels), frozen == "frozen", args.repeats,
                             args.device_type)))
        return
    print("| model | inputs | columns | s / step | peak memory (GiB) |")
    print("| --- | --- | --- | --- | --- |")
    for mode in args.models:
        for channels in args.channels:
            for frozen in ("frozen", "training"):
                out = subprocess.run(
                    [sys.executable, __file__, "--one", f"{mode},{channels},{frozen}",
                     "--repeats", str(args.repeats), "--device-type", args.device_type],
                    capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                inputs = "image + heatmaps" if channels == 3 else "image"
                print(f"| {mode} | {inputs} | {frozen} | {r['seconds']:.2f} | "
                      f"{r['peak_gib']:.2f} |", flush=True)
    print(f"\n{r['device']}, {r['threads']} threads, median of {args.repeats} steps")


if __name__ == "__main__":
    main()
