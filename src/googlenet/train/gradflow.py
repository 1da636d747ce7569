"""Gradient flow: the gradient norm of every conv and linear layer at chosen training steps.

Section 5 adds the auxiliary classifiers "expecting to encourage discrimination in the lower stages
... increase the gradient signal that gets propagated back, and provide additional regularization".
`GradNormRecorder` measures the first claim: every `every` optimiser steps (and the first step) it
records, per layer, the L2 norm of the gradient of the layer's weight and bias together, as the
backward pass leaves it, before any clipping. Within a step clipping rescales every layer alike, but
not across runs: a run with the heads has the larger gradient and is clipped more, so the update it
received may be no larger (benchmarks/gradflow_clipping.py reads the clip factors back). The layers are
listed in definition order, which for GoogLeNet's trunk is depth order (stem, 3a ... 5b, fc); the
auxiliary heads' layers are flagged "aux" and left out of the depth profile.

Comparing a run with heads against one without (`plot_grad_norms`) mixes the heads' signal with two
different trajectories. `split` answers the question on one run, one batch and one set of weights:
at a recorded step it takes the gradient of the auxiliary part of the loss, 0.3 x (aux1 + aux2),
alone (`torch.autograd.grad`, one extra backward pass through the heads and the layers below 4d), and
the main loss's part is the rest of the full gradient, so every layer gets `norm_main` and `norm_aux`
beside `norm` (`plot_grad_split`). Off under torchrun.

Written to the run folder as `grad_norms.csv` (step, layer, depth, norm, and the split when taken;
appended after every epoch) and `grad_norms.json` (when the run ends), and the split per stage as `grad_split.csv` and `grad_split.png`; `plot_grad_norms`
draws norm against depth for one or several runs (with and without the heads). Under torchrun the
norms are rank 0's local gradients (before DDP's all-reduce averages them).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from googlenet.errors import DataError
from googlenet.io import atomic_open

CSV_NAME = "grad_norms.csv"
JSON_NAME = "grad_norms.json"
FIELDS = ("step", "depth", "layer", "aux", "norm", "norm_main", "norm_aux")


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d and Linear layer, in definition (depth) order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def is_aux(name: str) -> bool:
    """A layer of an auxiliary head (section 5: aux1 on 4a, aux2 on 4d)."""
    return name.split(".", 1)[0] in ("aux1", "aux2")


class GradNormRecorder:
    """Per-layer gradient norms at steps 1, every, 2 x every, ... (optimiser steps, 1-based).

    Uses post-accumulate-grad hooks on the layers' parameters, so it sees the gradient exactly as the
    backward pass produced it, whatever the training loop does afterwards (clipping, unscaling).
    `loss_scale`: the current fp16 loss scale (`GradScaler.get_scale`), which the backward pass's
    gradients carry and the recorded norms do not; a step whose gradients overflowed (the scaler skips
    it) is not recorded. `arm(step)` before a step decides whether that step is recorded; `commit(step)`
    after it stores it.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int,
        rows: Sequence[Mapping[str, Any]] = (),
        loss_scale: Callable[[], float] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        self._on_disk: int | None = None  # how many of `rows` grad_norms.csv holds (None: not known)
        self._armed = False
        self._loss_scale = loss_scale
        self._sq: dict[str, float] = {}
        self._aux_grads: dict[int, torch.Tensor] = {}  # the armed step's auxiliary-loss gradient, by id
        self._main_sq: dict[str, float] = {}
        self._aux_sq: dict[str, float] = {}
        self._layers = measured_layers(model)
        self._params: list[tuple[str, torch.Tensor]] = []
        self._handles: list[Any] = []
        for name, module in self._layers:
            for param in module.parameters(recurse=False):
                if param.requires_grad:
                    self._params.append((name, param))
                    self._handles.append(param.register_post_accumulate_grad_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def record(param: torch.Tensor) -> None:
            if self._armed and param.grad is not None:
                grad = param.grad.detach().float()
                if self._loss_scale is not None:
                    grad = grad / float(self._loss_scale())
                self._sq[name] = self._sq.get(name, 0.0) + float(grad.pow(2).sum())
                aux = self._aux_grads.pop(id(param), None)
                if aux is not None:  # the main loss's part: the whole gradient less the auxiliary part
                    self._main_sq[name] = self._main_sq.get(name, 0.0) + float((grad - aux).pow(2).sum())

        return record

    @property
    def armed(self) -> bool:
        """Whether the coming step is recorded."""
        return self._armed

    def split(self, aux_loss: torch.Tensor) -> None:
        """Before the armed step's backward pass: take the gradient of `aux_loss` (the weighted
        auxiliary part of the step's loss, unscaled) alone, so that its commit records each layer's
        main and auxiliary parts. Keeps the graph for the backward pass that follows."""
        if not self._armed or not self._params:
            return
        # Under an fp16 GradScaler the whole gradient comes from the scaled loss: the auxiliary part is
        # taken the same way (scaled, then divided back in fp32), or fp16 underflow would bias it
        # against the whole (1.45% at conv1 in an fp16 test) and the main part, their difference.
        scale = float(self._loss_scale()) if self._loss_scale is not None else 1.0
        grads = torch.autograd.grad(
            aux_loss * scale if scale != 1.0 else aux_loss,
            [param for _, param in self._params],
            retain_graph=True,
            allow_unused=True,
        )
        for (name, param), grad in zip(self._params, grads, strict=True):
            part = (
                torch.zeros_like(param, dtype=torch.float32)
                if grad is None
                else grad.detach().float() / scale
            )
            self._aux_grads[id(param)] = part
            self._aux_sq[name] = self._aux_sq.get(name, 0.0) + float(part.pow(2).sum())

    def wanted(self, step: int) -> bool:
        return step == 1 or step % self.every == 0

    def arm(self, step: int) -> None:
        """Record the coming optimiser step `step` (1-based) if it is one of the chosen ones."""
        self._armed = self.wanted(step)
        self._sq, self._main_sq, self._aux_sq, self._aux_grads = {}, {}, {}, {}

    def commit(self, step: int) -> None:
        """Store what the step just taken recorded (nothing if it was not armed or was skipped)."""
        if self._armed and self._sq and all(math.isfinite(v) for v in self._sq.values()):
            # Rows come in step order: only the newest can be this step's (taken again). Filtering the
            # whole list here made a long run's recording quadratic (193 ms a step at 10,000 steps).
            while self.rows and int(self.rows[-1]["step"]) >= step:
                self.rows.pop()
                if self._on_disk is not None and len(self.rows) < self._on_disk:
                    self._on_disk = None
            split = bool(self._main_sq)
            for depth, (name, _) in enumerate(self._layers):
                if name in self._sq:
                    self.rows.append(
                        {"step": step, "depth": depth, "layer": name, "aux": is_aux(name),
                         "norm": math.sqrt(self._sq[name]),
                         "norm_main": math.sqrt(self._main_sq.get(name, 0.0)) if split else None,
                         "norm_aux": math.sqrt(self._aux_sq.get(name, 0.0)) if split else None}
                    )  # fmt: skip
        self._armed = False
        self._sq, self._main_sq, self._aux_sq, self._aux_grads = {}, {}, {}, {}

    def truncate(self, step: int) -> None:
        """Forget rows after `step` (a resumed run recomputes them)."""
        self.rows = [r for r in self.rows if int(r["step"]) <= step]
        self._on_disk = None

    def write(self, folder: str | Path, final: bool = True) -> None:
        """grad_norms.csv, and with `final` grad_norms.json. The CSV is rewritten whole once, then
        each call appends the rows since the last: rewriting it every epoch cost a long run O(rows) per
        epoch (11 s at 10,000 recorded steps). The JSON, which is one object, is written at the end."""
        path = Path(folder) / CSV_NAME
        if self._on_disk is not None and path.is_file():
            with open(path, "a", newline="", encoding="utf-8") as handle:
                _write_rows(handle, self.rows[self._on_disk :])
                handle.flush()
                os.fsync(handle.fileno())
        else:
            save_grad_norms_csv(path, self.rows)
        self._on_disk = len(self.rows)
        if final:
            save_grad_norms_json(Path(folder) / JSON_NAME, self.rows, self.every)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def save_grad_norms(folder: str | Path, rows: Sequence[Mapping[str, Any]], every: int) -> None:
    """grad_norms.csv (one row per step and layer) and grad_norms.json ({"steps": {step: {layer: norm}}})."""
    save_grad_norms_csv(Path(folder) / CSV_NAME, rows)
    save_grad_norms_json(Path(folder) / JSON_NAME, rows, every)


def save_grad_norms_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_open(path, "w") as handle:
        csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n").writeheader()
        _write_rows(handle, rows)


def _write_rows(handle: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) if k.startswith("norm") else row[k] for k in FIELDS})


def save_grad_norms_json(path: Path, rows: Sequence[Mapping[str, Any]], every: int) -> None:
    steps: dict[str, dict[str, float]] = {}
    layers: dict[
        str, None
    ] = {}  # in order of first appearance (a dict: a list's lookups were O(rows x layers))
    for row in rows:
        steps.setdefault(str(row["step"]), {})[str(row["layer"])] = float(row["norm"])
        layers.setdefault(str(row["layer"]))
    data = {
        "every": every,
        "what": "L2 norm of each conv/linear layer's weight+bias gradient, before clipping",
        "layers": list(layers),
        "steps": steps,
    }
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=1)


def load_grad_norms(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a run folder's grad_norms.csv ([] if it has none); a `DataError` naming the file if
    it is not one this module wrote."""
    path = Path(folder) / CSV_NAME
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            raw = list(csv.DictReader(handle))
    except (ValueError, csv.Error) as exc:  # ValueError: also UnicodeDecodeError
        raise DataError(
            f"{path}: not a gradient-norm file of googlenet train ({type(exc).__name__}: {exc})"
        ) from None
    rows = []
    for index, r in enumerate(raw):
        try:
            rows.append(
                {"step": int(r["step"]), "depth": int(r["depth"]), "layer": r["layer"],
                 "aux": r["aux"] == "True", "norm": float(r["norm"]),
                 "norm_main": _number(r.get("norm_main")), "norm_aux": _number(r.get("norm_aux"))}
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            if index == len(raw) - 1 and index > 0:  # an append cut short (a kill): its steps come again
                break
            raise DataError(
                f"{path}: not a gradient-norm file of googlenet train ({type(exc).__name__}: {exc})"
            ) from None
    return rows


def _cell(value: Any) -> str:
    return "" if value is None else f"{float(value):.6g}"


def _number(text: str | None) -> float | None:
    """A norm column of grad_norms.csv: empty (no split at that step, or a file from before the split
    columns) is None."""
    return float(text) if text else None


def split_profile(
    rows: Sequence[Mapping[str, Any]], skip_first: bool = True
) -> dict[str, tuple[float, float]]:
    """Per trunk layer, the geometric mean over the split steps of the main and the auxiliary parts'
    norms (as `trunk_profile`; a layer above 4d, which no auxiliary loss reaches, has aux 0 and is
    left out of the auxiliary mean). {} when no step was split."""
    split = _split_rows(rows, skip_first)
    parts: dict[str, tuple[list[float], list[float]]] = {}
    for row in split:
        main, aux = parts.setdefault(str(row["layer"]), ([], []))
        main.append(float(row["norm_main"]))
        aux.append(float(row["norm_aux"]))
    return {layer: (geometric_mean(main), geometric_mean(aux)) for layer, (main, aux) in parts.items()}


def _split_rows(rows: Sequence[Mapping[str, Any]], skip_first: bool = True) -> list[Mapping[str, Any]]:
    """The trunk rows of the split steps (`_later_steps` of them)."""
    return _later_steps([r for r in rows if r.get("norm_main") is not None and not r["aux"]], skip_first)


def _later_steps(rows: Sequence[Mapping[str, Any]], skip_first: bool = True) -> list[Mapping[str, Any]]:
    """`rows` without step 1 (the untrained network) when `skip_first` and later steps exist."""
    steps = sorted({int(r["step"]) for r in rows})
    if not (skip_first and len(steps) > 1):
        return list(rows)
    return [r for r in rows if int(r["step"]) != steps[0]]


def split_stage_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per trunk stage (stem layers each, inception3a ... fc), the geometric mean over its layers of
    `split_profile`'s main and auxiliary norms, their ratio aux/main, the mean cosine between the two
    parts (from |g|^2 = |main|^2 + |aux|^2 + 2 main.aux, per layer and split step after the first;
    empty where no auxiliary loss reaches) and the geometric mean of |g| / |main|, how much larger
    the layer's gradient is with the heads' part than without it; [] when no step was split."""
    profile = split_profile(rows)
    cosines: dict[str, list[float]] = {}
    gains: dict[str, list[float]] = {}  # |whole| / |main|: what the heads add, on the same weights and batch
    for r in _split_rows(rows):
        main, aux, whole = float(r["norm_main"]), float(r["norm_aux"]), float(r["norm"])
        if main > 0:
            gains.setdefault(stage_of(str(r["layer"])), []).append(whole / main)
            if aux > 0:
                cosine = (whole**2 - main**2 - aux**2) / (2 * main * aux)
                cosines.setdefault(stage_of(str(r["layer"])), []).append(cosine)
    table: list[dict[str, Any]] = []
    for stage in dict.fromkeys(stage_of(layer) for layer in profile):
        parts = [value for layer, value in profile.items() if stage_of(layer) == stage]
        main = geometric_mean([m for m, _ in parts])
        aux = geometric_mean([a for _, a in parts])
        cos = cosines.get(stage)
        table.append({"stage": stage, "main": main, "aux": aux, "aux/main": aux / main if main else math.nan,
                      "cosine": sum(cos) / len(cos) if cos else "",
                      "whole/main": geometric_mean(gains.get(stage, []))})  # fmt: skip
    return table


def write_split_table(rows: Sequence[Mapping[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """`split_stage_table` as a CSV at `path` (nothing written when no step was split)."""
    table = split_stage_table(rows)
    if table:
        write_stage_csv(table, path)
    return table


def write_stage_csv(table: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """A per-stage table (`split_stage_table`, ablate's gradflow.csv) as CSV, numbers to 4 digits."""
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        for row in table:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})


def geometric_mean(values: Sequence[float]) -> float:
    """exp(mean(log v)) over the positive values; 0.0 when there are none."""
    positive = [v for v in values if v > 0]
    return math.exp(sum(map(math.log, positive)) / len(positive)) if positive else 0.0


def trunk_profile(rows: Sequence[Mapping[str, Any]], skip_first: bool = True) -> dict[str, float]:
    """Per trunk layer (not the auxiliary heads), the geometric mean norm over the recorded steps.

    `skip_first` leaves out step 1 (the untrained network) when later steps exist.
    """
    norms: dict[str, list[float]] = {}
    for row in _later_steps(rows, skip_first):
        if not row["aux"] and float(row["norm"]) > 0:
            norms.setdefault(str(row["layer"]), []).append(float(row["norm"]))
    return {layer: geometric_mean(values) for layer, values in norms.items()}


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
    _finish_depth_plot(fig, ax, order, title or "gradient flow by depth", path)


def _finish_depth_plot(fig: Any, ax: Any, layers: Sequence[str], title: str, path: str | Path) -> None:
    """Stage names under the trunk layers (conv1-3 as one "stem"), log norms, legend; saved to `path`."""
    import matplotlib.pyplot as plt

    ticks: list[int] = []
    names: list[str] = []
    for i, layer in enumerate(layers):
        stage = "stem" if stage_of(layer).startswith("conv") else stage_of(layer)
        if not names or stage != names[-1]:
            ticks.append(i)
            names.append(stage)
    ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("trunk conv/linear layer, input (left) to classifier (right)")
    ax.set_ylabel("gradient L2 norm, before clipping\n(geometric mean over steps, the first left out)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def plot_grad_split(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> bool:
    """The main loss's and the auxiliary losses' part of each trunk layer's gradient by depth, from one
    run's split steps (`GradNormRecorder.split`); False (nothing drawn) when no step was split."""
    profile = split_profile(rows)
    if not profile:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(profile)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(range(len(layers)), [profile[layer][0] for layer in layers], marker=".", label="main loss")
    reached = [i for i, layer in enumerate(layers) if profile[layer][1] > 0]
    ax.plot(
        reached, [profile[layers[i]][1] for i in reached], marker=".", label="auxiliary losses (weighted)"
    )
    _finish_depth_plot(
        fig, ax, layers, title or "each loss's part of the gradient, same steps and weights", path
    )
    return True


__all__ = [
    "CSV_NAME",
    "JSON_NAME",
    "GradNormRecorder",
    "geometric_mean",
    "load_grad_norms",
    "measured_layers",
    "plot_grad_norms",
    "plot_grad_split",
    "save_grad_norms",
    "split_profile",
    "split_stage_table",
    "trunk_profile",
    "write_split_table",
]
