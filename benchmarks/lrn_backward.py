"""The `paper` network's training step with LRN's closed-form backward against autograd's, interleaved.

`googlenet.model.layers.LocalResponseNorm` trains through `_LRNFunction` (one band convolution and a few
element-wise passes for the gradient); before, autograd differentiated the forward's chain step by step
(`LocalResponseNorm.composed`). Both are built in one process from the same initial weights and timed in
alternating pairs, so a machine whose speed drifts affects both alike; the ratio per pair is reported.

    .venv/bin/python benchmarks/lrn_backward.py --json benchmarks/results/lrn_backward.json
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

import googlenet
from googlenet.bench.command import positive_int, rates_in_turns, save_run
from googlenet.model.layers import LocalResponseNorm
from googlenet.train.loop import head_losses, weighted_loss


class AutogradLRN(LocalResponseNorm):
    """The same LRN, differentiated by autograd through its composed forward."""

    def forward(self, x: Tensor) -> Tensor:
        return self.composed(x)


def build(autograd_lrn: bool) -> tuple[googlenet.GoogLeNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = googlenet.build_model("paper", num_classes=1000)
    if autograd_lrn:
        for name in ("lrn1", "lrn2"):
            lrn = getattr(model, name)
            setattr(model, name, AutogradLRN(lrn.size, lrn.alpha, lrn.beta, lrn.k))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4, fused=True)
    return model, optimizer


def step(
    model: googlenet.GoogLeNet, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, bf16: bool
) -> None:
    """One training step: forward with both heads, section 5's weighted loss, backward, SGD."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model.forward_train(x)
        loss = weighted_loss(head_losses((out.logits, out.aux1, out.aux2), y), aux_weight=0.3)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _repeat(
    model: googlenet.GoogLeNet, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, bf16: bool, steps: int
) -> Callable[[], None]:
    def work() -> None:
        for _ in range(steps):
            step(model, optimizer, x, y, bf16)

    return work


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[224, 112])
    parser.add_argument("-b", "--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--pairs", type=positive_int, default=10, help="timed (autograd, closed form) pairs per size"
    )
    parser.add_argument("--steps", type=positive_int, default=2, help="training steps per timing")
    parser.add_argument(
        "--fp32", action="store_true", help="no bf16 autocast (default: bf16, as benchmarked)"
    )
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    results = []
    for size in args.sizes:
        x = torch.randn(args.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (args.batch_size,))
        paths = {"autograd": build(True), "closed form": build(False)}
        for pair in paths.values():  # warm-up
            step(*pair, x, y, bf16=not args.fp32)
        bf16 = not args.fp32
        rates = rates_in_turns(
            {name: _repeat(*pair, x, y, bf16, args.steps) for name, pair in paths.items()},
            args.pairs,
            args.batch_size * args.steps,
        )
        ratios = [new / old for new, old in zip(rates["closed form"], rates["autograd"], strict=True)]
        row = {
            "size": size,
            "autograd_img_s": statistics.median(rates["autograd"]),
            "closed_form_img_s": statistics.median(rates["closed form"]),
            "ratio_median": statistics.median(ratios),
            "ratios": ratios,
            "rates": rates,
        }
        results.append(row)
        print(
            f"{size}x{size}, batch {args.batch_size}, {'fp32' if args.fp32 else 'bf16'}: autograd "
            f"{row['autograd_img_s']:.1f} img/s, closed form {row['closed_form_img_s']:.1f} img/s; "
            f"per-pair ratio median {row['ratio_median']:.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})",
            flush=True,
        )
    if args.json:
        save_run(args.json, args, results)


if __name__ == "__main__":
    main()
