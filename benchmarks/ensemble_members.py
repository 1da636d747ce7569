"""An ablation study's ensemble against its own members, from the per-seed errors in its ablation.json.

`googlenet ablate` compares `ensemble-1crop` with `full-1crop`; when the ensemble's members are
different recipes (full, no-photometric, no-random-interp, fixed-crop), part of that gain may be one
member being the better model. This prints, per metric, the ensemble's paired effect (95% t-interval,
two-sided paired t-test over seeds) against `full`, the mean of its members, the best member on
average, and each seed's best member.

    python benchmarks/ensemble_members.py benchmarks/results/ablation-cifar10-mini-bn12/ablation.json

Reads only; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from scipy import stats

MEMBERS = ("full", "no-photometric", "no-random-interp", "fixed-crop")


def paired(ensemble: list[float], other: list[float]) -> str:
    diffs = [a - b for a, b in zip(ensemble, other, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2 or max(diffs) - min(diffs) < 1e-9:
        return f"{mean:+.2f} (no interval)"
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    p = stats.ttest_rel(ensemble, other).pvalue
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}], p = {p:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ablation_json", type=Path)
    parser.add_argument("--ensemble", default="ensemble-1crop")
    args = parser.parse_args()
    errors = json.loads(args.ablation_json.read_text(encoding="utf-8"))["errors"]
    seeds = sorted(set.intersection(*(set(errors[a]) for a in (*MEMBERS, args.ensemble))), key=int)
    print(
        f"{args.ablation_json}: {args.ensemble} over seeds {', '.join(seeds)}, members {', '.join(MEMBERS)}"
    )
    for metric in ("top1", "top5"):
        ens = [errors[args.ensemble][s][metric] for s in seeds]
        member = {a: [errors[a][s][metric] for s in seeds] for a in MEMBERS}
        mean_member = [sum(member[a][i] for a in MEMBERS) / len(MEMBERS) for i in range(len(seeds))]
        best_arm = min(MEMBERS, key=lambda a: sum(member[a]))
        per_seed_best = [min(member[a][i] for a in MEMBERS) for i in range(len(seeds))]
        print(f"  {metric} error: ensemble {sum(ens) / len(ens):.2f}")
        print(f"    vs full:                 {paired(ens, member['full'])}")
        print(f"    vs the members' mean:    {paired(ens, mean_member)}")
        print(f"    vs the best on average ({best_arm}): {paired(ens, member[best_arm])}")
        print(f"    vs each seed's best:     {paired(ens, per_seed_best)}")


if __name__ == "__main__":
    main()
