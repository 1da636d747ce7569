"""Section 7's 144-crop evaluation against the model's raw forward, same model, same batches, one run.

Raw forward: the eval-mode network on ready-made normalised batches of `--batch-size` crops (what a
model costs with nothing around it). Protocol: `googlenet.evaluate.protocol.evaluate_views` on real
JPEG files, 144 crops per image: decoding, resizing to the four scales, cutting, mirroring,
normalising, the same network in batches of `--batch-size` crops, softmax, averaging and scoring.
Both are reported in crops per second; the ratio is the protocol's overhead (goal: within 10%).

Each figure is the median of `--repeats` timings after one warm-up. Measures, never asserts.

    .venv/bin/python benchmarks/eval_throughput.py --input-size 224 --images 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import googlenet
from googlenet.data.crops import CropSpec
from googlenet.data.datasets import load_image_folder
from googlenet.data.synthetic import ensure_builtin
from googlenet.evaluate.models import Member
from googlenet.evaluate.protocol import View, evaluate_views


def raw_crops_per_second(model: torch.nn.Module, crops: int, batch: int, size: int, repeats: int) -> float:
    """Median crops/s of the bare network over `crops` crops in batches of `batch`."""
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    calls = max(1, round(crops / batch))
    timings = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                model(x)
            timings.append(calls * batch / (time.perf_counter() - start))
    return statistics.median(timings)


def protocol_crops_per_second(
    model: torch.nn.Module,
    samples: list[tuple[str, int]],
    classes: int,
    spec: CropSpec,
    batch: int,
    workers: int,
    repeats: int,
) -> tuple[float, float]:
    """Median (crops/s over the whole protocol, fraction of its time spent in the model)."""
    member = Member(forward=model)
    views = [View("1 model", 0, (0,))]
    evaluate_views(
        [member], samples[:1], [spec], views, classes, batch_size=batch, workers=workers
    )  # warm-up
    rates, shares = [], []
    for _ in range(repeats):
        result = evaluate_views([member], samples, [spec], views, classes, batch_size=batch, workers=workers)
        rates.append(result["forward_passes"] / result["seconds"])
        shares.append(result["model_seconds"] / result["seconds"])
    return statistics.median(rates), statistics.median(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="paper", choices=sorted(googlenet.VARIANTS))
    parser.add_argument(
        "--input-size", type=int, default=224, help="crop size; scales follow section 7's rule"
    )
    parser.add_argument("--images", type=int, default=4, help="images per timed protocol run")
    parser.add_argument("-b", "--batch-size", type=int, default=144, help="crops per model call")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="decode/cut processes to try")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-path", type=Path, help="an image folder (default: the built-in data's val)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    root = args.data_path or ensure_builtin()
    _, val = load_image_folder(root, None, None)
    step = max(1, len(val.samples) // args.images)
    samples = [(str(path), label) for path, label in val.samples[::step][: args.images]]
    classes = len(val.classes)
    model = googlenet.build_model(args.variant, num_classes=classes).eval()
    model = model.to(memory_format=torch.channels_last)
    spec = CropSpec(144, args.input_size)
    crops = len(samples) * spec.crops

    raw = raw_crops_per_second(model, crops, args.batch_size, args.input_size, args.repeats)
    rows = []
    for workers in args.workers:
        rate, share = protocol_crops_per_second(
            model, samples, classes, spec, args.batch_size, workers, args.repeats
        )
        rows.append(
            {"workers": workers, "protocol_crops_s": rate, "model_share": share, "ratio_to_raw": rate / raw}
        )

    print(
        f"{args.variant}, {args.input_size}x{args.input_size} crops, batch {args.batch_size}, {len(samples)} images "
        f"x 144 crops, {torch.get_num_threads()} threads; raw forward {raw:.1f} crops/s"
    )
    print(f"{'workers':>7} {'144-crop crops/s':>17} {'/ raw':>7} {'time in model':>14}")
    for row in rows:
        print(
            f"{row['workers']:>7} {row['protocol_crops_s']:>17.1f} {row['ratio_to_raw']:>6.2f}x "
            f"{100 * row['model_share']:>13.1f}%"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
            "torch": torch.__version__,
            "args": {k: str(v) for k, v in vars(args).items()},
            "raw_crops_s": raw,
            "results": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
