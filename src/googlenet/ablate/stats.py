"""The statistics of an ablation study: each ingredient's effect over seeds, with confidence intervals.

Pure functions over a table of errors `{arm: {seed: {"top1": err, "top5": err}}}` (percent):

    summarise     per arm and metric: mean error, its 95% CI, the effect against the reference arm
                  (mean of the per-seed differences, paired by seed) with its 95% CI, and a paired
                  t-test (scipy.stats.ttest_rel, two-sided): `p` as it comes, `significant` when
                  p < ALPHA before any correction, and `p_holm`, Holm's adjustment over the rows of
                  one metric (training and test-time arms together; top-1 and top-5 separately)
    write_tables  ablation.csv, ablation.json, ablation.md
    plot_effects  ablation.png: effect on top-1 and top-5 error with the 95% CIs

The CIs use Student's t with n - 1 degrees of freedom: with 3 seeds the half-width is 4.30 standard
errors, so only large effects come out significant; the tables print n beside every number.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from googlenet.io import atomic_open

logger = logging.getLogger("googlenet.ablate")

METRICS: tuple[str, ...] = ("top1", "top5")
CONFIDENCE = 0.95
ALPHA = 0.05
CSV_FIELDS: tuple[str, ...] = (
    "arm", "kind", "metric", "n", "mean_error", "ci_low", "ci_high", "effect", "effect_ci_low",
    "effect_ci_high", "t", "p", "p_holm", "significant", "reference", "description",
)  # fmt: skip

Errors = Mapping[str, Mapping[int, Mapping[str, float]]]


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the t-distribution interval of the mean; (mean, nan, nan) for one value."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_t(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of a against b; nan where it is undefined (n < 2, or
    identical differences, whose variance is 0)."""
    from scipy import stats

    if len(a) < 2:
        return math.nan, math.nan
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    # Equal differences in decimal (100 - accuracy) differ in their last bits: scipy then returns
    # t ~ 1e14, p ~ 1e-28. A spread at rounding level is no spread.
    if max(diffs) - min(diffs) <= 1e-9 * max(1.0, *(abs(d) for d in diffs)):
        return math.nan, math.nan
    result = stats.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan stays nan and is not counted)."""
    valid = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(valid)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(valid):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def summarise(
    errors: Errors,
    reference: Mapping[str, str],
    descriptions: Mapping[str, str] | None = None,
    kinds: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per (arm, metric). `reference[arm]` names the arm it is compared with (paired by seed,
    over the seeds both have); an arm that is its own reference gets no effect or test."""
    rows: list[dict[str, Any]] = []
    for arm, by_seed in errors.items():
        ref = reference.get(arm, arm)
        for metric in METRICS:
            values = [float(v[metric]) for _, v in sorted(by_seed.items())]
            mean, low, high = mean_ci(values)
            # An error rate lies in [0, 100]: with 2-3 seeds the t-interval can reach past it; cut it there.
            low, high = max(low, 0.0), min(high, 100.0)
            row: dict[str, Any] = {
                "arm": arm, "kind": (kinds or {}).get(arm, "train"), "metric": metric, "n": len(values),
                "mean_error": mean, "ci_low": low, "ci_high": high, "effect": math.nan,
                "effect_ci_low": math.nan, "effect_ci_high": math.nan, "t": math.nan, "p": math.nan,
                "p_holm": math.nan, "significant": False, "reference": ref,
                "description": (descriptions or {}).get(arm, ""),
            }  # fmt: skip
            if ref != arm and ref in errors:
                seeds = sorted(set(by_seed) & set(errors[ref]))
                unpaired = sorted(set(by_seed) - set(errors[ref]))
                if unpaired and metric == METRICS[0]:
                    logger.warning("ablation: %s's seed(s) %s left out of its row: %s has no result for them",
                                   arm, ", ".join(map(str, unpaired)), ref)  # fmt: skip
                mine = [float(by_seed[s][metric]) for s in seeds]
                theirs = [float(errors[ref][s][metric]) for s in seeds]
                effect, elow, ehigh = mean_ci([x - y for x, y in zip(mine, theirs, strict=True)])
                t, p = paired_t(mine, theirs)
                # The row's mean error over the same seeds as its effect, so that n describes both.
                mean, low, high = mean_ci(mine)
                row.update(n=len(seeds), mean_error=mean, ci_low=max(low, 0.0), ci_high=min(high, 100.0),
                           effect=effect, effect_ci_low=elow, effect_ci_high=ehigh, t=t, p=p)  # fmt: skip
            rows.append(row)
    for metric in METRICS:
        chosen = [r for r in rows if r["metric"] == metric]
        for row, adjusted in zip(chosen, holm([r["p"] for r in chosen]), strict=True):
            row["p_holm"] = adjusted
            row["significant"] = not math.isnan(row["p"]) and row["p"] < ALPHA
    return rows


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _signed(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}"


def format_markdown(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """A markdown table: per arm, mean error and effect (95% CI) on top-1 and top-5, paired t-test."""
    by_arm: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_arm.setdefault(str(row["arm"]), {})[str(row["metric"])] = row
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| arm | vs | n | top-1 error | effect on top-1 [95% CI] | p | top-5 error | effect on top-5 [95% CI] | p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, metrics in by_arm.items():
        cells = [f"`{arm}`", "-" if metrics["top1"]["reference"] == arm else f"`{metrics['top1']['reference']}`",
                 str(metrics["top1"]["n"])]  # fmt: skip
        for metric in METRICS:
            r = metrics[metric]
            error = f"{_num(r['mean_error'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
            if math.isnan(r["effect"]):
                effect, p = "-", "-"
            else:
                effect = (
                    f"{_signed(r['effect'])} [{_signed(r['effect_ci_low'])}, {_signed(r['effect_ci_high'])}]"
                )
                p = _num(r["p"], 3) + (" *" if r["significant"] else "")
            cells += [error, effect, p]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Errors in percent, mean over seeds with the 95% t-interval (cut to [0, 100]; a compared arm's over the n seeds "
        "it shares with its reference); effect = arm minus reference, paired by "
        "seed (positive: more error than the reference; for an arm that removes an ingredient, removing it "
        "hurts); p: two-sided paired t-test "
        f"(scipy.stats.ttest_rel), * where p < {ALPHA} before correction (Holm-adjusted p in the CSV/JSON); "
        'p "-" where the test is undefined: fewer than 2 seeds, or the same difference on every seed '
        "(no spread to test it against).",
    ]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_tables(
    folder: str | Path, rows: Sequence[Mapping[str, Any]], extra: Mapping[str, Any], title: str
) -> None:
    """ablation.csv, ablation.json (rows plus `extra`: the plan, the per-seed errors) and ablation.md."""
    folder = Path(folder)
    with atomic_open(folder / "ablation.csv", "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    data = {**extra, "rows": [{k: _plain(v) for k, v in row.items()} for row in rows]}
    with atomic_open(folder / "ablation.json", "w") as handle:
        json.dump(data, handle, indent=1, default=str)
    with atomic_open(folder / "ablation.md", "w") as handle:
        handle.write(format_markdown(rows, title))


def plot_effects(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    """A forest plot: each arm's effect on top-1 and top-5 error (points) with its 95% CI (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compared = [r for r in rows if not math.isnan(r["effect"])]
    arms = list(dict.fromkeys(str(r["arm"]) for r in compared))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(arms) + 1.6), sharey=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        for y, arm in enumerate(arms):
            r = next((r for r in compared if r["arm"] == arm and r["metric"] == metric), None)
            if r is None:
                continue
            low, high = r["effect_ci_low"], r["effect_ci_high"]
            # Okabe and Ito's vermillion and blue, told apart by marker too: red and green were the pair
            # most readers with a colour-vision deficiency cannot tell apart
            color, marker = ("#D55E00", "^") if r["significant"] and r["effect"] > 0 else (
                ("#0072B2", "v") if r["significant"] else ("0.55", "o"))  # fmt: skip
            if not math.isnan(low):
                ax.plot([low, high], [y, y], color=color, linewidth=2)
            ax.plot([r["effect"]], [y], marker, color=color)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(arms)), arms)
        ax.set_xlabel(f"change in {metric.replace('top', 'top-')} error (points), 95% CI")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].invert_yaxis()  # the table's order from the top (the axes share y: invert once, not per axis)
    reference = "effect of each change against its reference (full; test-time rows: full-1crop)"
    fig.suptitle(f"{title}\n{reference}" if title else f"ablation: {reference}", fontsize=11)
    fig.text(0.5, 0.005, f"vermillion \u25b2: more error, blue \u25bc: less, p < {ALPHA} before correction "
             "(Holm-adjusted p in ablation.csv); grey \u25cf: not significant", ha="center", fontsize=8)  # fmt: skip
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:  # an earlier call's plot stays whole if this write fails
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


__all__ = ["format_markdown", "holm", "mean_ci", "paired_t", "plot_effects", "summarise", "write_tables"]
