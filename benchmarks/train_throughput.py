"""Training throughput: our GoogLeNet against torchvision's, same batch, same resolution, one run.

Measures full training steps (forward with auxiliary heads, the 0.3-weighted loss, backward, SGD step)
in img/s, fp32 and bf16 autocast, channels_last on and off, as the median of several timed repetitions
after warm-up. Prints a table with ratios to torchvision eager fp32 and writes JSON with --json.
Measures, never asserts.

    .venv/bin/python benchmarks/train_throughput.py --batch-size 32 --input-size 112
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

import googlenet


def torchvision_step(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model(x)  # torchvision returns GoogLeNetOutputs(logits, aux_logits2, aux_logits1) in train
        return nn.functional.cross_entropy(out.logits, y) + 0.3 * (
            nn.functional.cross_entropy(out.aux_logits1, y) + nn.functional.cross_entropy(out.aux_logits2, y)
        )

    return loss_fn


def our_step(model: googlenet.GoogLeNet) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model.forward_train(x)
        assert out.aux1 is not None and out.aux2 is not None
        return nn.functional.cross_entropy(out.logits, y) + 0.3 * (
            nn.functional.cross_entropy(out.aux1, y) + nn.functional.cross_entropy(out.aux2, y)
        )

    return loss_fn


def measure(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: int,
    size: int,
    bf16: bool,
    channels_last: bool,
    repeats: int,
    warmup: int,
    steps: int,
) -> float:
    """Median img/s over `repeats` timings of `steps` training steps each."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)
    x = torch.randn(batch, 3, size, size).to(memory_format=memory_format)
    y = torch.randint(0, 1000, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, nargs="+", default=[112])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variant", default="paper", choices=sorted(googlenet.VARIANTS))
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args()

    torch.manual_seed(0)
    results = []
    for size in args.input_size:
        for bf16 in (False, True):
            for channels_last in (False, True):
                tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
                ours = googlenet.build_model(args.variant, num_classes=1000)
                common = (args.batch_size, size, bf16, channels_last, args.repeats, args.warmup, args.steps)
                tv_rate = measure(tv, torchvision_step(tv), *common)
                our_rate = measure(ours, our_step(ours), *common)
                results.append(
                    {
                        "input_size": size,
                        "precision": "bf16" if bf16 else "fp32",
                        "channels_last": channels_last,
                        "torchvision_img_s": tv_rate,
                        "ours_img_s": our_rate,
                    }
                )
    baseline = {
        r["input_size"]: r["torchvision_img_s"]
        for r in results
        if r["precision"] == "fp32" and not r["channels_last"]
    }
    print(
        f"training throughput, batch {args.batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"ours = {args.variant!r} variant; median of {args.repeats} x {args.steps} steps"
    )
    print(
        f"{'size':>5} {'precision':>9} {'layout':>14} {'torchvision':>12} {'ours':>8} {'ours/tv':>8} {'ours/tv-fp32-NCHW':>18}"
    )
    for r in results:
        layout = "channels_last" if r["channels_last"] else "NCHW"
        print(
            f"{r['input_size']:>5} {r['precision']:>9} {layout:>14} {r['torchvision_img_s']:>10.1f}/s "
            f"{r['ours_img_s']:>6.1f}/s {r['ours_img_s'] / r['torchvision_img_s']:>7.2f}x "
            f"{r['ours_img_s'] / baseline[r['input_size']]:>17.2f}x"
        )
    if args.json:
        machine = {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
        }
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "machine": machine,
                    "torch": torch.__version__,
                    "batch_size": args.batch_size,
                    "results": results,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
