"""Table 3 of the paper: top-5 error for 1 and N models with 1, 10 and 144 crops, ours beside the paper's.

All rows come from one pass over the data: each model's softmax over each image's 144 crops (which
contain the 1- and 10-crop sets) is computed once, and every row averages a subset of it (see
`googlenet.evaluate.protocol`). "1 model" is the first checkpoint given; "N models" all of them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from googlenet.data.crops import CROP_COUNTS, CropSpec
from googlenet.evaluate.metrics import ClassificationMeter
from googlenet.evaluate.protocol import View
from googlenet.io import atomic_open, json_safe
from googlenet.signals import signals_held


@dataclass(frozen=True)
class Table3Row:
    """One row: models, crops, cost (= models x crops forward passes per image), errors in percent."""

    models: int
    crops: int
    cost: int
    top5_error: float
    delta_top5: float | None  # top-5 error minus the 1-model 1-crop base's, in points; None for the base
    top1_error: float | None = None  # the paper reports no top-1 figure for GoogLeNet


# The paper's Table 3 (ILSVRC 2012 validation, top-5 error), as printed (FACTS.md section 4).
PAPER_TABLE3: tuple[Table3Row, ...] = (
    Table3Row(1, 1, 1, 10.07, None),
    Table3Row(1, 10, 10, 9.15, -0.92),
    Table3Row(1, 144, 144, 7.89, -2.18),
    Table3Row(7, 1, 7, 8.09, -1.98),
    Table3Row(7, 10, 70, 7.62, -2.45),
    Table3Row(7, 144, 1008, 6.67, -3.45),  # as printed (FACTS.md); 6.67 - 10.07 is -3.40
)

CSV_FIELDS: tuple[str, ...] = ("models", "crops", "cost", "top5_error", "delta_top5", "top1_error")


def table3_specs(crop_size: int, resize_size: int) -> tuple[CropSpec, ...]:
    """The three crop specs: 1 and 10 crops at the model's test resize, 144 at section 7's scales."""
    return (
        CropSpec(1, crop_size, (resize_size,)),
        CropSpec(10, crop_size, (resize_size,)),
        CropSpec(144, crop_size),
    )


def table3_views(num_models: int) -> list[View]:
    """Rows 1-3 use the first model; rows 4-6 (only with 2 or more models) average all of them."""
    every = tuple(range(num_models))
    views = [View(f"1 model, {c} crops", k, (0,)) for k, c in enumerate(CROP_COUNTS)]
    if num_models > 1:
        views += [View(f"{num_models} models, {c} crops", k, every) for k, c in enumerate(CROP_COUNTS)]
    return views


def table3_rows(
    specs: Sequence[CropSpec], views: Sequence[View], meters: Sequence[ClassificationMeter]
) -> list[Table3Row]:
    """Our rows from the meters of `views` over `specs`, the first row being the base."""
    rows: list[Table3Row] = []
    base: float | None = None
    for view, meter in zip(views, meters, strict=True):
        summary = meter.summary()
        top5 = summary["top5_error"]
        base = top5 if base is None else base
        models, crops = len(view.members), specs[view.spec].crops
        delta = None if not rows else top5 - base
        rows.append(Table3Row(models, crops, models * crops, top5, delta, summary["top1_error"]))
    return rows


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "base"
    return f"{value:+.2f}%" if signed else f"{value:.2f}%"


def format_table3(rows: Sequence[Table3Row], paper: Sequence[Table3Row] = PAPER_TABLE3) -> str:
    """Our table and the paper's side by side, in the paper's column order."""
    header = f"{'models':>6} {'crops':>5} {'cost':>5} {'top-5 err':>9} {'vs base':>8} {'top-1 err':>9}"
    paper_header = f"{'models':>6} {'crops':>5} {'cost':>5} {'top-5 err':>9} {'vs base':>8}"
    lines = [f"{'ours':<{len(header)}}   paper (Table 3, ILSVRC 2012 val)", f"{header}   {paper_header}"]
    for i in range(max(len(rows), len(paper))):
        left = " " * len(header)
        if i < len(rows):
            r = rows[i]
            left = (
                f"{r.models:>6} {r.crops:>5} {r.cost:>5} {_pct(r.top5_error):>9} "
                f"{_pct(r.delta_top5, signed=True):>8} {_pct(r.top1_error):>9}"
            )
        right = ""
        if i < len(paper):
            p = paper[i]
            right = f"{p.models:>6} {p.crops:>5} {p.cost:>5} {_pct(p.top5_error):>9} {_pct(p.delta_top5, True):>8}"
        lines.append(f"{left}   {right}".rstrip())
    return "\n".join(lines)


# What save_table3 writes in its folder, by kind.
TABLE3_FILES: dict[str, str] = {"json": "table3.json", "csv": "table3.csv", "png": "table3.png"}


def save_table3(
    output_dir: str | os.PathLike[str], rows: Sequence[Table3Row], info: dict[str, Any]
) -> dict[str, Path]:
    """Write table3.json (rows, the paper's rows and `info`), table3.csv and table3.png; returns the paths.

    The three are made in memory first and then written one after the other with Ctrl-C held
    (milliseconds), so an interruption leaves the earlier set or the new one, never a mix."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / name for kind, name in TABLE3_FILES.items()}
    payload = {
        "rows": [asdict(r) for r in rows],
        "paper": [asdict(r) for r in PAPER_TABLE3],
        **info,
    }
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    contents = {
        "json": (json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n").encode(),
        "csv": text.getvalue().encode(),
        "png": _table3_png(rows, PAPER_TABLE3, info),
    }
    with signals_held():
        for kind, data in contents.items():
            with atomic_open(paths[kind], "wb") as handle:
                handle.write(data)
    return paths


def _table3_png(
    rows: Sequence[Table3Row], paper: Sequence[Table3Row] = PAPER_TABLE3, info: dict[str, Any] | None = None
) -> bytes:
    """Top-5 error against cost (log scale), our rows and the paper's, one line per model count, as PNG
    bytes (`save_table3` writes them). With `info` (what `evaluate` records: dataset, images,
    classes), the title says what ours were measured on, beside the paper's 1000-class ILSVRC 2012
    validation set, and a dotted line marks our data's chance top-5 error."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = {True: "tab:blue", False: "tab:orange"}  # one model / an ensemble
    for label, table, style in (("ours", rows, "o-"), ("paper", paper, "s--")):
        for models in sorted({r.models for r in table}):
            line = [r for r in table if r.models == models]
            axes.plot(
                [r.cost for r in line],
                [r.top5_error for r in line],
                style,
                color=colours[models == 1],
                label=f"{label}: {models} model{'s' if models > 1 else ''}",
            )
            for r in line:
                axes.annotate(
                    f"{r.crops}",
                    (r.cost, r.top5_error),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
    axes.set_xscale("log")
    axes.set_xlabel("cost (forward passes per image = models x crops)")
    axes.set_ylabel("top-5 error (%)")
    on = ""
    if info:
        classes = info.get("classes")
        dataset = str(info.get("dataset", "?"))
        dataset = dataset if len(dataset) <= 50 else "\u2026" + dataset[-49:]  # a long path's end
        on = (
            f"\nours: {dataset}, {info.get('images', '?')} images"
            + (f", {classes} classes" if classes else "")
            + "; paper: ILSVRC 2012 val, 1000 classes"
        )
        if isinstance(classes, int) and classes > 5:
            chance = 100.0 * (1 - 5 / classes)
            axes.axhline(chance, color="0.4", linestyle=":", linewidth=1, label=f"ours: chance {chance:.3g}%")
    axes.set_title("Table 3: crops and models (labels: crops per image)" + on, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
