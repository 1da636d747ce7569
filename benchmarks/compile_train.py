"""Does `torch.compile` pay for the training step on this CPU? Eager against compiled, timed in turns.

Issue 5 asks for torch.compile in training "where it pays". This builds the step `googlenet train` runs
(channels_last, fused SGD, forward with both auxiliary heads, section 5's 0.3-weighted loss, backward,
SGD; bf16 autocast for bf16) twice from the same initial weights, once eager and once with the forward
and loss under `torch.compile` (Inductor compiles the backward with it), and times them in alternating
turns, so a machine whose speed drifts affects both alike. It reports the compile time and the median
per-turn ratio.

    .venv/bin/python benchmarks/compile_train.py --json benchmarks/results/compile_train.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import googlenet
from googlenet.bench.command import positive_int, rates_in_turns, save_run
from googlenet.train.loop import head_losses, weighted_loss

Step = Callable[[Tensor, Tensor], Tensor]


def build(variant: str, bf16: bool, compiled: bool, **overrides: Any) -> Step:
    """One training step of a fresh model (seed 0), eager or with the forward + loss compiled;
    `overrides` go to `build_model` (the test turns dropout off to compare the two paths' losses)."""
    torch.manual_seed(0)
    model = googlenet.build_model(variant, num_classes=1000, **overrides)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4, fused=True)

    def forward_loss(x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model.forward_train(x)
            return weighted_loss(head_losses((out.logits, out.aux1, out.aux2), y), aux_weight=0.3)

    loss_fn = torch.compile(forward_loss) if compiled else forward_loss

    def step(x: Tensor, y: Tensor) -> Tensor:
        loss = loss_fn(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _repeat(step: Step, x: Tensor, y: Tensor, steps: int) -> Callable[[], None]:
    def work() -> None:
        for _ in range(steps):
            step(x, y)

    return work


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["paper:112:fp32", "torchvision:112:fp32",
                        "paper:112:bf16", "torchvision:224:fp32", "paper:224:bf16"],
                        help="VARIANT:SIZE:fp32|bf16 (default: five cases)")  # fmt: skip
    parser.add_argument("-b", "--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--turns", type=positive_int, default=5, help="timed (eager, compiled) turns per case"
    )
    parser.add_argument("--steps", type=positive_int, default=2, help="training steps per timing")
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    results = []
    for case in args.cases:
        variant, size_text, precision = case.split(":")
        size, bf16 = int(size_text), precision == "bf16"
        x = torch.randn(args.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (args.batch_size,))
        eager, compiled = build(variant, bf16, False), build(variant, bf16, True)
        start = time.perf_counter()
        compiled(x, y)  # compiles forward and backward
        compile_s = time.perf_counter() - start
        compiled(x, y)
        eager(x, y)  # warm-up
        rates = rates_in_turns(
            {
                name: _repeat(step, x, y, args.steps)
                for name, step in (("eager", eager), ("compiled", compiled))
            },
            args.turns,
            args.batch_size * args.steps,
        )
        ratios = [c / e for c, e in zip(rates["compiled"], rates["eager"], strict=True)]
        row = {
            "variant": variant,
            "size": size,
            "precision": precision,
            "compile_s": compile_s,
            "eager_img_s": statistics.median(rates["eager"]),
            "compiled_img_s": statistics.median(rates["compiled"]),
            "ratio_median": statistics.median(ratios),
            "ratios": ratios,
            "rates": rates,
        }
        results.append(row)
        print(
            f"{variant} {size}x{size} {precision}, batch {args.batch_size}: eager {row['eager_img_s']:.1f} "
            f"img/s, compiled {row['compiled_img_s']:.1f} img/s; per-turn ratio median "
            f"{row['ratio_median']:.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}); compile {compile_s:.0f} s",
            flush=True,
        )
    if args.json:
        save_run(args.json, args, results)


if __name__ == "__main__":
    main()
