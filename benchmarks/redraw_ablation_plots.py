"""Redraw a saved ablation study's plots with the current plotting code, from what the study saved.

`googlenet ablate --report-only` redraws them from the study's runs, which needs their checkpoints;
the studies kept under benchmarks/results/ keep only each run's metrics, results, config and gradient
norms. Their numbers are unchanged: ablation.png comes from ablation.json's rows (the same rows as
ablation.md and .csv), gradflow.png from the runs' grad_norms.csv, with the title `ablate` gives.

    python benchmarks/redraw_ablation_plots.py benchmarks/results/ablation-cifar10-mini-bn12
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from googlenet.ablate.command import study_title
from googlenet.ablate.stats import plot_effects
from googlenet.train.gradflow import load_grad_norms, plot_grad_norms


def redraw(folder: Path) -> list[Path]:
    data = json.loads((folder / "ablation.json").read_text())
    rows = [{k: math.nan if v is None else v for k, v in row.items()} for row in data["rows"]]
    seeds = max((int(r["n"]) for r in rows if isinstance(r.get("n"), int)), default=0)
    title = study_title(data["plan"].get("base", {}), seeds)
    written = [folder / "ablation.png"]
    plot_effects(rows, written[0], title)
    flows = {}
    for arm, label in (("full", "with auxiliary heads (full)"), ("no-aux", "without (no-aux)")):
        found: list[dict[str, Any]] = []
        for run in sorted((folder / "runs" / arm).glob("seed-*")):
            found += load_grad_norms(run)
        if found:
            flows[label] = found
    if flows and (folder / "gradflow.png").exists():
        plot_grad_norms(flows, folder / "gradflow.png", "trunk gradient norm by depth, over all seeds")
        written.append(folder / "gradflow.png")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="saved study folders (with ablation.json)")
    for folder in parser.parse_args().folders:
        for path in redraw(folder):
            print(f"redrew {path}")


if __name__ == "__main__":
    main()
