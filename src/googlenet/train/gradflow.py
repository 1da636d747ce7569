"""Gradient flow: the gradient norm of every conv and linear layer at chosen training steps.

Section 5 adds the auxiliary classifiers "expecting to encourage discrimination in the lower stages
... increase the gradient signal that gets propagated back, and provide additional regularization".
`GradNormRecorder` measures the first claim: every `every` optimiser steps (and the first step) it
records, per layer, the L2 norm of the gradient of the layer's weight and bias together, as the
backward pass leaves it (before any clipping, which would rescale every layer alike). The layers are
listed in definition order, which for GoogLeNet's trunk is depth order (stem, 3a ... 5b, fc); the
auxiliary heads' layers are flagged "aux" and left out of the depth profile.

Written to the run folder as `grad_norms.csv` (step, layer, depth, norm) and `grad_norms.json`;
`plot_grad_norms` draws norm against depth for one or several runs (with and without the heads).
Under torchrun the norms are rank 0's local gradients (before DDP's all-reduce averages them).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from googlenet.io import atomic_open

CSV_NAME = "grad_norms.csv"
JSON_NAME = "grad_norms.json"
FIELDS = ("step", "depth", "layer", "aux", "norm")


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d and Linear layer, in definition (depth) order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def is_aux(name: str) -> bool:
    """A layer of an auxiliary head (section 5: aux1 on 4a, aux2 on 4d)."""
    return name.split(".", 1)[0] in ("aux1", "aux2")


class GradNormRecorder:
    """Per-layer gradient norms at steps 1, every, 2 x every, ... (optimiser steps, 1-based).

    Uses post-accumulate-grad hooks on the layers' parameters, so it sees the gradient exactly as the
    backward pass produced it, whatever the training loop does afterwards (clipping, scaling).
    `arm(step)` before a step decides whether that step is recorded; `commit(step)` after it stores it.
    """

    def __init__(self, model: nn.Module, every: int, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        self._armed = False
        self._sq: dict[str, float] = {}
        self._layers = measured_layers(model)
        self._handles: list[Any] = []
        for name, module in self._layers:
            for param in module.parameters(recurse=False):
                if param.requires_grad:
                    self._handles.append(param.register_post_accumulate_grad_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def record(param: torch.Tensor) -> None:
            if self._armed and param.grad is not None:
                value = float(param.grad.detach().float().pow(2).sum())
                self._sq[name] = self._sq.get(name, 0.0) + value

        return record

    def wanted(self, step: int) -> bool:
        return step == 1 or step % self.every == 0

    def arm(self, step: int) -> None:
        """Record the coming optimiser step `step` (1-based) if it is one of the chosen ones."""
        self._armed = self.wanted(step)
        self._sq = {}

    def commit(self, step: int) -> None:
        """Store what the step just taken recorded (nothing if it was not armed or was skipped)."""
        if self._armed and self._sq:
            self.rows = [r for r in self.rows if int(r["step"]) != step]
            for depth, (name, _) in enumerate(self._layers):
                if name in self._sq:
                    self.rows.append(
                        {"step": step, "depth": depth, "layer": name, "aux": is_aux(name),
                         "norm": math.sqrt(self._sq[name])}
                    )  # fmt: skip
        self._armed = False
        self._sq = {}

    def truncate(self, step: int) -> None:
        """Forget rows after `step` (a resumed run recomputes them)."""
        self.rows = [r for r in self.rows if int(r["step"]) <= step]

    def write(self, folder: str | Path) -> None:
        save_grad_norms(folder, self.rows, self.every)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def save_grad_norms(folder: str | Path, rows: Sequence[Mapping[str, Any]], every: int) -> None:
    """grad_norms.csv (one row per step and layer) and grad_norms.json ({"steps": {step: {layer: norm}}})."""
    folder = Path(folder)
    with atomic_open(folder / CSV_NAME, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if k == "norm" else row[k]) for k in FIELDS})
    steps: dict[str, dict[str, float]] = {}
    layers: list[str] = []
    for row in rows:
        steps.setdefault(str(row["step"]), {})[str(row["layer"])] = float(row["norm"])
        if row["layer"] not in layers:
            layers.append(str(row["layer"]))
    data = {
        "every": every,
        "what": "L2 norm of each conv/linear layer's weight+bias gradient, before clipping",
        "layers": layers,
        "steps": steps,
    }
    with atomic_open(folder / JSON_NAME, "w") as handle:
        json.dump(data, handle, indent=1)


def load_grad_norms(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a run folder's grad_norms.csv ([] if it has none)."""
    path = Path(folder) / CSV_NAME
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {"step": int(r["step"]), "depth": int(r["depth"]), "layer": r["layer"],
             "aux": r["aux"] == "True", "norm": float(r["norm"])}
            for r in csv.DictReader(handle)
        ]  # fmt: skip


def trunk_profile(rows: Sequence[Mapping[str, Any]], skip_first: bool = True) -> dict[str, float]:
    """Per trunk layer (not the auxiliary heads), the geometric mean norm over the recorded steps.

    `skip_first` leaves out step 1 (the untrained network) when later steps exist.
    """
    steps = sorted({int(r["step"]) for r in rows})
    if skip_first and len(steps) > 1:
        steps = steps[1:]
    logs: dict[str, list[float]] = {}
    for row in rows:
        if int(row["step"]) in steps and not row["aux"] and float(row["norm"]) > 0:
            logs.setdefault(str(row["layer"]), []).append(math.log(float(row["norm"])))
    return {layer: math.exp(sum(v) / len(v)) for layer, v in logs.items()}


def stage_of(layer: str) -> str:
    """'inception4a.branch2.0.conv' -> 'inception4a'."""
    return layer.split(".", 1)[0]


def plot_grad_norms(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = ""
) -> None:
    """Trunk gradient norm by depth for each labelled run (log scale), stage names on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    order: list[str] = []
    for label, rows in runs.items():
        profile = trunk_profile(rows)
        if not order:
            order = list(profile)
        xs = [order.index(layer) for layer in profile if layer in order]
        ax.plot(xs, [profile[layer] for layer in profile if layer in order], marker=".", label=label)
    ticks: list[int] = []
    names: list[str] = []
    for i, layer in enumerate(order):
        stage = "stem" if stage_of(layer).startswith("conv") else stage_of(layer)  # conv1-3: one label
        if not names or stage != names[-1]:
            ticks.append(i)
            names.append(stage)
    ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("trunk conv/linear layer, input (left) to classifier (right)")
    ax.set_ylabel("gradient L2 norm (geometric mean over steps)")
    ax.set_title(title or "gradient flow by depth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = [
    "CSV_NAME",
    "JSON_NAME",
    "GradNormRecorder",
    "load_grad_norms",
    "measured_layers",
    "plot_grad_norms",
    "save_grad_norms",
    "trunk_profile",
]
