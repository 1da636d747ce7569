"""How far a float32 running mean (torch's `AveragedModel`) drifts from the exact uniform average, and
what `googlenet.train.averaging` keeps instead (float32 for the first EXACT_AFTER snapshots, float64
after), over N snapshots of weights that move steadily.

4,096 weights drawn at GoogLeNet's scale (standard deviation 0.034) each move by a drawn amount
(standard deviation 0.01) in a straight line over the N snapshots. The error of each weight's mean is
given as a fraction of its own movement: median, 99th percentile and largest over the weights.

    python benchmarks/polyak_precision.py --json benchmarks/results/polyak-precision.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from googlenet.train.averaging import EXACT_AFTER


def simulate(snapshots: int, exact_after: int | None, seed: int = 0) -> dict[str, float]:
    """Errors of the running mean over `snapshots` (`exact_after`: float64 past that many; None: never)."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(4096, generator=generator, dtype=torch.float64) * 0.034
    move = torch.randn(4096, generator=generator, dtype=torch.float64) * 0.01
    mean32 = start.float().clone()
    mean64: torch.Tensor | None = None
    truth = start.float().double().clone()
    for k in range(1, snapshots):
        current = (start + move * k / (snapshots - 1)).float()
        truth += (current.double() - truth) / (k + 1)
        if mean64 is not None:
            mean64 += (current.double() - mean64) / (k + 1)
        else:
            mean32 = mean32 + (current - mean32) / (k + 1)  # torch's update, in float32
            if exact_after is not None and k + 1 >= exact_after:
                mean64 = mean32.double().clone()
    got = mean64 if mean64 is not None else mean32.double()
    error = (got - truth).abs() / move.abs()
    return {
        "median": float(error.median()),
        "p99": float(error.quantile(0.99)),
        "max": float(error.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, nargs="+", default=[1024, EXACT_AFTER, 100_000])
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(
        f"{'snapshots':>10} {'mean kept':<30} {'median':>9} {'99th pct':>9} {'largest':>9}  (of the movement)"
    )
    for n in args.snapshots:
        for label, after in (("float32 (torch)", None), (f"float64 after {EXACT_AFTER} (ours)", EXACT_AFTER)):
            if after is not None and n <= after:
                continue  # the same as float32 up to there
            errors = simulate(n, after)
            rows.append({"snapshots": n, "mean": label, **errors})
            print(f"{n:>10} {label:<30} {errors['median']:>9.2e} {errors['p99']:>9.2e} {errors['max']:>9.2e}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"exact_after": EXACT_AFTER, "rows": rows}, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
