"""The outputs of an ablation study: the tables, the effect plot and the gradient-flow plot.

    <out>/ablation.csv ablation.json ablation.md   each arm against its reference (see stats.summarise)
    <out>/ablation.png                              effect on top-1/top-5 error with 95% CIs
    <out>/gradflow.png                              trunk gradient norm by depth, full vs no-aux
    <out>/gradflow-split.{png,csv}                  the full arm's main vs auxiliary part, same steps
    <out>/study.json                                the plan, each run's status and errors

Training arms are compared with "full" (the averaged weights' single centre crop, as the training
engine evaluates them); test-time arms with "full-1crop", the same models through the evaluate
protocol's single crop, so every comparison is between numbers measured the same way.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from googlenet.ablate.stats import ALPHA, plot_effects, summarise, write_tables
from googlenet.ablate.study import (
    REFERENCE,
    TEST_BASE,
    TEST_TIME,
    StudyPlan,
    errors_of,
    read_results,
    test_time_errors,
)
from googlenet.io import atomic_open, json_text
from googlenet.train.gradflow import (
    geometric_mean,
    load_grad_norms,
    plot_grad_norms,
    plot_grad_split,
    stage_of,
    trunk_profile,
    write_split_table,
    write_stage_csv,
)

logger = logging.getLogger("googlenet.ablate")


def collect(plan: StudyPlan) -> tuple[dict[str, dict[int, dict[str, float]]], dict[str, Any]]:
    """(errors by arm and seed, per-run status) from the run folders, test-time arms evaluated."""
    errors: dict[str, dict[int, dict[str, float]]] = {}
    runs: dict[str, Any] = {}
    for arm in plan.arms:
        source = plan.arm(arm).raw_of
        for seed in plan.seeds:
            results = read_results(plan.run_dir(source or arm, seed))
            found = errors_of(results, raw=source is not None)
            status = (results or {}).get("status", "not run")
            runs[f"{arm}/seed-{seed}"] = {
                "status": status if source is None else f"{status} (raw weights of {source}/seed-{seed})",
                "errors": found,
                "wall_time_s": (results or {}).get("wall_time_s"),
                "epochs": (results or {}).get("epochs"),
            }
            if found is not None:
                errors.setdefault(arm, {})[seed] = found
    if plan.test_time:
        for seed in plan.seeds:
            views = test_time_errors(plan, seed)
            if views is None:
                continue
            for name, values in views.items():
                errors.setdefault(name, {})[seed] = values
    return errors, runs


def write_study(plan: StudyPlan, title: str = "") -> dict[str, Any]:
    """Collect, summarise and write every output; returns the JSON summary."""
    errors, runs = collect(plan)
    reference = {arm: REFERENCE for arm in plan.arms}
    reference.update({name: TEST_BASE for name in (TEST_BASE, *TEST_TIME)})
    reference[REFERENCE] = REFERENCE
    reference[TEST_BASE] = TEST_BASE
    descriptions = {a: plan.arm(a).description for a in plan.arms}
    descriptions.update(TEST_TIME)
    descriptions[TEST_BASE] = "the full recipe's final.pt through the evaluate protocol, 1 centre crop"
    kinds = {name: "test" for name in (TEST_BASE, *TEST_TIME)}
    ordered = {name: errors[name] for name in [*plan.arms, TEST_BASE, *TEST_TIME] if name in errors}
    rows = summarise(ordered, reference, descriptions, kinds)
    extra = {
        "plan": {"arms": list(plan.arms), "seeds": list(plan.seeds), "base": dict(plan.base),
                 "parallel": plan.parallel, "torchrun": plan.torchrun, "test_time": plan.test_time},
        "test": f"paired t-test by seed (scipy.stats.ttest_rel, two-sided); significant: p < {ALPHA} before correction; "
        "p_holm: Holm-adjusted over the rows of each metric (training and test-time arms together)",
        "errors": {arm: {str(s): v for s, v in by_seed.items()} for arm, by_seed in ordered.items()},
        "runs": runs,
    }  # fmt: skip
    out = plan.output_dir
    write_tables(out, rows, extra, title)
    plot_effects(rows, out / "ablation.png", title)
    flows = {}
    for arm, label in ((REFERENCE, "with auxiliary heads (full)"), ("no-aux", "without (no-aux)")):
        if arm not in plan.arms:  # runs/no-aux left by an earlier call with other --arms: not this study's
            continue
        rows_all: list[dict[str, Any]] = []
        for seed in plan.seeds:
            rows_all += load_grad_norms(plan.run_dir(arm, seed))
        if rows_all:
            flows[label] = rows_all
    if flows:
        plot_grad_norms(flows, out / "gradflow.png", "trunk gradient norm by depth, over all seeds")
        write_stage_table(flows, out / "gradflow.csv")
    full = flows.get("with auxiliary heads (full)", [])  # the split of the same steps, where recorded
    if plot_grad_split(
        full, out / "gradflow-split.png", "each loss's part of the gradient (full), all seeds"
    ):
        write_split_table(full, out / "gradflow-split.csv")
    summary = {**extra, "rows": len(rows), "outputs": sorted(p.name for p in out.glob("ablation.*"))}
    with atomic_open(out / "study.json", "w") as handle:
        handle.write(json_text(summary, indent=1))
    return {**extra, "rows": rows}


def write_stage_table(flows: dict[str, list[dict[str, Any]]], path: Path) -> list[dict[str, Any]]:
    """gradflow.csv: per trunk stage (conv1 ... fc), each run's geometric-mean gradient norm over its
    layers and recorded steps (step 1 left out), and the ratio of the first run to the second."""
    profiles = {label: trunk_profile(rows) for label, rows in flows.items()}
    labels = list(profiles)
    stages = list(dict.fromkeys(stage_of(layer) for layer in profiles[labels[0]]))
    table: list[dict[str, Any]] = []
    for stage in stages:
        row: dict[str, Any] = {"stage": stage}
        for label in labels:
            values = [v for layer, v in profiles[label].items() if stage_of(layer) == stage and v > 0]
            row[label] = geometric_mean(values) if values else math.nan
        if len(labels) == 2:
            row["ratio"] = row[labels[0]] / row[labels[1]] if row[labels[1]] else math.nan
        table.append(row)
    write_stage_csv(table, path)
    return table


__all__ = ["collect", "write_stage_table", "write_study"]
