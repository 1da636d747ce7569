"""The gradient-flow figures of docs/ablation.md as the updates received them: after gradient clipping.

`grad_norms.csv` records each layer's gradient as the backward pass leaves it, before clipping. Within
one step clipping scales every layer alike, but across runs it does not: a run whose gradient is larger
(with the auxiliary heads) is scaled down more. This script reads the saved studies and split runs under
benchmarks/results/ and prints, per run kind:

- how often the recorded steps were clipped, and the geometric mean of the clip factor min(1, c / |g|)
  (|g| over the recorded conv and linear layers, the heads' included; BatchNorm's parameters are not
  recorded, so for `bn` the true |g| is a little larger and the factor a little smaller);
- the full / no-aux ratio per stage before clipping (as gradflow.csv gives it) and after;
- per seed, the full / no-aux ratio at conv1 and fc, with a 95% t-interval on the log ratio;
- for the one-run split (grad_split.csv), the whole / main-part ratio before and after clipping, the
  main part clipped as it would have been alone.

    python benchmarks/gradflow_clipping.py [--results benchmarks/results]

Reads only; nothing is written. Needs the package importable (`pip install -e .`, as `make venv` does).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import yaml
from scipy import stats

from googlenet.train.gradflow import geometric_mean, load_grad_norms, stage_of

STUDIES = (
    "ablation-builtin",
    "ablation-cifar10-mini",
    "ablation-cifar10-mini-bn12",
    "ablation-cifar10-mini-paper12",
)
SPLITS = ("gradsplit-builtin-20261204", "gradsplit-cifar10-mini-paper12-20261204")
SHOWN = ("conv1", "conv2", "conv3", "inception3a", "inception4a", "inception4d", "inception5b", "fc")


def clip_of(run: Path) -> float | None:
    """The run's `optim.clip_grad_norm` from its config.yaml (None: clipping off)."""
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    value = (config.get("optim") or {}).get("clip_grad_norm")
    return float(value) if value is not None else None


def step_norms(rows: list[dict], key: str = "norm") -> dict[int, float]:
    """|g| of each recorded step over every recorded layer."""
    squares: dict[int, float] = {}
    for row in rows:
        if row.get(key) is not None:
            squares[row["step"]] = squares.get(row["step"], 0.0) + float(row[key]) ** 2
    return {step: math.sqrt(total) for step, total in squares.items()}


def factor(norm: float, clip: float | None) -> float:
    return 1.0 if clip is None or norm <= clip else clip / norm


def stage_profile(rows: list[dict], clip: float | None, applied: bool) -> dict[str, float]:
    """Per trunk stage: the geometric mean over its layers of each layer's geometric mean over the
    recorded steps after the first (as gradflow.csv), optionally scaled by each step's clip factor."""
    totals = step_norms(rows)
    first = min(totals)
    per_layer: dict[str, list[float]] = {}
    for row in rows:
        if row["aux"] or row["step"] == first or row["norm"] <= 0:
            continue
        scale = factor(totals[row["step"]], clip) if applied else 1.0
        per_layer.setdefault(row["layer"], []).append(row["norm"] * scale)
    stages: dict[str, list[float]] = {}
    for layer, values in per_layer.items():
        stages.setdefault(stage_of(layer), []).append(geometric_mean(values))
    return {stage: geometric_mean(values) for stage, values in stages.items()}


def interval(ratios: list[float]) -> str:
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    mean = sum(logs) / n
    if n < 2:
        return f"{math.exp(mean):.3f}"
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return f"{math.exp(mean):.3f} [{math.exp(mean - half):.2f}, {math.exp(mean + half):.2f}]"


def study(folder: Path) -> None:
    runs = {arm: sorted((folder / "runs" / arm).glob("seed-*")) for arm in ("full", "no-aux")}
    seeds = sorted({p.name for p in runs["full"]} & {p.name for p in runs["no-aux"]})
    clip = clip_of(runs["full"][0])
    print(f"== {folder.name}: {len(seeds)} seed(s), clip_grad_norm {clip}")
    rows = {arm: {s: load_grad_norms(folder / "runs" / arm / s) for s in seeds} for arm in runs}
    for arm in runs:
        norms = [n for s in seeds for step, n in sorted(step_norms(rows[arm][s]).items())[1:]]
        clipped = sum(1 for n in norms if clip is not None and n > clip) / len(norms)
        mean_factor = math.exp(sum(math.log(factor(n, clip)) for n in norms) / len(norms))
        print(f"  {arm:7s} {len(norms)} recorded steps: clipped {100 * clipped:.0f}%, "
              f"geometric-mean clip factor {mean_factor:.3f}")  # fmt: skip
    every = {arm: [r for s in seeds for r in rows[arm][s]] for arm in runs}
    print(f"  {'stage':12s} {'before clipping':>16s} {'as applied':>11s}   per seed, before clipping")
    for stage in SHOWN:
        before = (
            stage_profile(every["full"], clip, False)[stage]
            / stage_profile(every["no-aux"], clip, False)[stage]
        )
        after = (
            stage_profile(every["full"], clip, True)[stage]
            / stage_profile(every["no-aux"], clip, True)[stage]
        )
        per_seed = [
            stage_profile(rows["full"][s], clip, False)[stage]
            / stage_profile(rows["no-aux"][s], clip, False)[stage]
            for s in seeds
        ]
        shown = ", ".join(f"{r:.2f}" for r in per_seed)
        print(f"  {stage:12s} {before:16.3f} {after:11.3f}   {shown}; {interval(per_seed)}")


def split(folder: Path) -> None:
    rows = [r for r in load_grad_norms(folder) if r.get("norm_main") is not None]
    clip = clip_of(folder)
    whole, main = step_norms(rows), step_norms(rows, "norm_main")
    first = min(whole)
    steps = [s for s in whole if s != first]
    share = lambda totals: sum(1 for s in steps if clip is not None and totals[s] > clip) / len(steps)  # noqa: E731
    print(f"== {folder.name}: clip_grad_norm {clip}, {len(steps)} recorded steps; clipped {100 * share(whole):.0f}% "
          f"(the main part alone: {100 * share(main):.0f}%)")  # fmt: skip
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}
    for row in rows:
        if row["aux"] or row["step"] == first or row["norm_main"] <= 0:
            continue
        s, stage = row["step"], stage_of(row["layer"])
        before.setdefault(stage, []).append(row["norm"] / row["norm_main"])
        applied = row["norm"] * factor(whole[s], clip) / (row["norm_main"] * factor(main[s], clip))
        after.setdefault(stage, []).append(applied)
    print(f"  {'stage':12s} {'whole/main before':>18s} {'as applied':>11s}")
    for stage in SHOWN:
        if stage in before:
            print(f"  {stage:12s} {geometric_mean(before[stage]):18.3f} {geometric_mean(after[stage]):11.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    root = Path(args.results)
    for name in STUDIES:
        study(root / name)
    for name in SPLITS:
        split(root / name)


if __name__ == "__main__":
    main()
