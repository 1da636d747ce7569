"""Table 1 reproduced from the model itself: `googlenet summary`.

Parameters, multiply-adds and output shapes are measured on the built network (forward hooks on every
convolution and linear layer during one forward pass), never copied from a second hand-written list;
only the paper's printed "params" and "ops" columns come from `table1.PAPER_ROWS`, to be shown beside
them. Rows where computed and printed values disagree are flagged (FACTS.md s.1: conv1 and 5a ops,
several params rows); Table 1 itself is not exactly self-consistent.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from googlenet.errors import ConfigError
from googlenet.io import json_text
from googlenet.model import table1
from googlenet.model.googlenet import (
    MAX_INPUT_SIZE,
    MAX_NUM_CLASSES,
    MIN_INPUT_SIZE,
    MIN_INPUT_SIZE_AUX,
    VARIANTS,
    GoogLeNet,
    build_model,
)
from googlenet.model.inception import Inception, NaiveInception

# A computed value is flagged when it differs from the printed one by more than this fraction under
# both readings of the paper's "K" (1000 and 1024: FACTS.md s.1 notes some rows read as K = 1024).
FLAG_TOLERANCE = 0.03

# Modules whose measurements make up each printed row of Table 1 (Figure 3's LRNs get rows of their own).
ROW_MODULES: dict[str, tuple[str, ...]] = {
    "conv1": ("conv1",),
    "maxpool1": ("maxpool1",),
    "lrn1": ("lrn1",),
    "conv2+conv3": ("conv2", "conv3"),
    "lrn2": ("lrn2",),
    "maxpool2": ("maxpool2",),
    "maxpool3": ("maxpool3",),
    "maxpool4": ("maxpool4",),
    "avgpool": ("avgpool",),
    "dropout": ("dropout",),
    "fc": ("fc",),
    "softmax": ("fc",),
}


@dataclass
class Row:
    """One line of the reproduced Table 1."""

    name: str
    type: str
    patch: str
    output_shape: tuple[int, ...]  # H, W, C as Table 1 writes it
    depth: int
    branches: dict[str, int] = field(default_factory=dict)
    params: int = 0
    macs: int = 0
    paper_params: float | None = None
    paper_ops: float | None = None
    flags: list[str] = field(default_factory=list)


def count_macs(model: nn.Module, x: torch.Tensor, call: str = "forward") -> tuple[dict[str, int], dict]:
    """Multiply-adds of every Conv2d and Linear (by qualified name), and each module's output shape.

    Convolution: H_out x W_out x C_out x (C_in / groups) x kH x kW; linear: in x out. Biases, pooling,
    normalisation and ReLU are not multiply-adds and are not counted, as in the paper's "ops".

    Only `x`'s shape is used: the pass runs on a copy of the model on PyTorch's meta device, which
    computes every output's shape and no values, so `summary --input-size 4096` costs what 224 does
    (a real pass at 4096 px needed several GB and a minute or more). `model` itself is not touched.
    """
    model = copy.deepcopy(model).to(device="meta")
    x = torch.empty(x.shape, device="meta")
    macs: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                per_output = (module.in_channels // module.groups) * kh * kw
                macs[name] = macs.get(name, 0) + output[0].numel() * per_output
            elif isinstance(module, nn.Linear):
                macs[name] = macs.get(name, 0) + module.in_features * module.out_features

        return record

    for name, module in model.named_modules():
        if name or not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(x) if call == "forward" else getattr(model, call)(x)
    finally:
        for handle in hooks:
            handle.remove()
    return macs, shapes


def _sum_under(values: dict[str, int], prefixes: Iterable[str]) -> int:
    prefixes = tuple(prefixes)
    return sum(v for k, v in values.items() if any(k == p or k.startswith(p + ".") for p in prefixes))


def _params_under(model: nn.Module, prefixes: Iterable[str]) -> int:
    prefixes = tuple(prefixes)
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if any(n.startswith(prefix + ".") for prefix in prefixes)
    )


def _patch(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        k = module.kernel_size
        s = module.stride
        k = k[0] if isinstance(k, tuple) else k
        s = s[0] if isinstance(s, tuple) else s
        return f"{k}x{k}/{s}"
    conv = getattr(module, "conv", None)
    if isinstance(conv, nn.Module):
        return _patch(conv)
    return ""


def _depth(module: nn.Module) -> int:
    """Layers with parameters on the longest path through `module` (Table 1's depth column)."""
    if isinstance(module, Inception):
        return max(
            sum(isinstance(m, nn.Conv2d) for m in branch.modules())
            for branch in (module.branch1, module.branch2, module.branch3, module.branch4)
        )
    return sum(isinstance(m, nn.Conv2d | nn.Linear) for m in module.modules())


def _flag(computed: float, printed: float | None, what: str) -> str | None:
    if printed is None:
        return None
    readings = [printed]
    if what == "params":
        readings.append(printed * 1.024)  # "K" read as 1024
    error = min(abs(computed - r) / r for r in readings)
    if error > FLAG_TOLERANCE:
        unit, scale = ("K", 1e3) if what == "params" else ("M", 1e6)
        return f"{what} computed {computed / scale:,.1f}{unit}, printed {printed / scale:,.1f}{unit}"
    return None


def table_rows(model: GoogLeNet, input_size: int = 224) -> list[Row]:
    """Table 1's rows measured on `model` at `input_size` (main path; aux heads excluded)."""
    was_training = model.training
    model.eval()
    macs, shapes = count_macs(model, torch.zeros(1, 3, input_size, input_size))
    model.train(was_training)
    modules = dict(model.named_modules())
    rows: list[Row] = []
    for paper in table1.PAPER_ROWS:
        names = ROW_MODULES.get(paper.name, (paper.name,))
        rows.append(_row(model, modules, macs, shapes, paper.name, paper.type, names, paper))
        if paper.name == "maxpool1" and model.config.lrn:
            rows.append(_row(model, modules, macs, shapes, "lrn1", "LRN (Figure 3 only)", ("lrn1",), None))
        if paper.name == "conv2+conv3" and model.config.lrn:
            rows.append(_row(model, modules, macs, shapes, "lrn2", "LRN (Figure 3 only)", ("lrn2",), None))
    if input_size != 224:
        # The printed ops are for 224x224 input; at other sizes there is nothing to compare against.
        for row in rows:
            row.paper_ops = None
            row.flags = [f for f in row.flags if not f.startswith("ops")]
    return rows


def _row(
    model: GoogLeNet,
    modules: dict[str, nn.Module],
    macs: dict[str, int],
    shapes: dict[str, tuple[int, ...]],
    name: str,
    type_: str,
    names: tuple[str, ...],
    paper: table1.PaperRow | None,
) -> Row:
    last = names[-1]
    c, h, w = shapes[last] if len(shapes[last]) == 3 else (shapes[last][0], 1, 1)
    module = modules[names[0]]
    row = Row(
        name=name,
        type=type_ if name != "dropout" else f"dropout ({model.config.dropout:.0%})",
        patch=_patch(module) if not isinstance(module, Inception) else "",
        output_shape=(h, w, c),
        depth=0 if name == "softmax" else sum(_depth(modules[n]) for n in names),
        params=0 if name == "softmax" else _params_under(model, names),
        macs=0 if name == "softmax" else _sum_under(macs, names),
    )
    if isinstance(module, Inception):
        row.branches = asdict(module.spec)
    elif name == "conv2+conv3":  # Table 1 prints the stem's 1x1 and 3x3 widths in these two columns
        row.branches = {"n3x3red": model.conv2.conv.out_channels, "n3x3": model.conv3.conv.out_channels}
    if paper is not None:
        row.paper_params = table1.parse_printed(paper.params)
        row.paper_ops = table1.parse_printed(paper.ops)
        if name == "conv2+conv3":
            row.patch = _patch(modules["conv3"])
        # Table 1's classifier is ImageNet's 1000-way one: another number of classes differs by design
        compared = name != "fc" or model.config.num_classes == table1.PAPER_NUM_CLASSES
        for flag in (_flag(row.params, row.paper_params, "params"), _flag(row.macs, row.paper_ops, "ops")):
            if flag and compared:
                row.flags.append(flag)
    if name == "avgpool" and isinstance(module, nn.AdaptiveAvgPool2d):
        side = shapes["inception5b"][-1]
        row.patch = f"{side}x{side}/1"  # global average over the final map: 7x7/1 at 224 input
    return row


def totals(model: GoogLeNet, input_size: int = 224) -> dict[str, Any]:
    """Whole-network figures: parameters with and without aux heads, multiply-adds, depth."""
    rows = table_rows(model, input_size)
    main_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("aux1.", "aux2.")))
    all_params = sum(p.numel() for p in model.parameters())
    main_weights = sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith(("aux1.", "aux2.")) and p.dim() > 1
    )
    result: dict[str, Any] = {
        "params": main_params,
        "weights": main_weights,
        "params_with_aux": all_params,
        "macs": sum(r.macs for r in rows),
        "depth": sum(r.depth for r in rows),
        "depth_with_pooling": sum(r.depth for r in rows)
        + sum(1 for r in rows if r.type in ("max pool", "avg pool")),
    }
    if model.aux1 is not None:
        was_training = model.training
        model.eval()
        x = torch.zeros(1, 3, input_size, input_size)
        macs, _ = count_macs(model, x, call="forward_train")
        model.train(was_training)
        result["macs_with_aux"] = sum(macs.values())
        result["aux1_params"] = _params_under(model, ("aux1",))
        result["aux2_params"] = _params_under(model, ("aux2",))
    return result


@dataclass
class NaiveRow:
    """One Inception module with and without its 1x1 reductions, on the same input (Figure 2a vs 2b)."""

    name: str
    input_shape: tuple[int, int, int]
    reduced_params: int
    reduced_macs: int
    reduced_out: int
    naive_params: int
    naive_macs: int
    naive_out: int


def naive_rows(model: GoogLeNet, input_size: int = 224) -> list[NaiveRow]:
    """Cost of every Inception module against its naive form fed the same input (section 4)."""
    # Both forms in eval mode (the model given back as it came): BatchNorm in training refuses the 1x1
    # maps of inception 5a/5b at 32-62 px (a traceback from `summary --variant bn --input-size 32
    # --naive`) and would move the model's running statistics.
    was_training = model.training
    model.eval()
    try:
        return _naive_rows(model, input_size)
    finally:
        model.train(was_training)


def _naive_rows(model: GoogLeNet, input_size: int) -> list[NaiveRow]:
    _, shapes = count_macs(model, torch.zeros(1, 3, input_size, input_size))
    previous = {
        "inception3a": "maxpool2", "inception3b": "inception3a", "inception4a": "maxpool3",
        "inception4b": "inception4a", "inception4c": "inception4b", "inception4d": "inception4c",
        "inception4e": "inception4d", "inception5a": "maxpool4", "inception5b": "inception5a",
    }  # fmt: skip
    rows = []
    for name, source in previous.items():
        module = getattr(model, name)
        c, h, w = shapes[source]
        naive = NaiveInception(c, module.spec, bn_eps=model.config.bn_eps).eval()
        x = torch.zeros(1, c, h, w)
        reduced_macs, _ = count_macs(module, x)
        naive_macs, _ = count_macs(naive, x)
        rows.append(
            NaiveRow(
                name=name,
                input_shape=(h, w, c),
                reduced_params=sum(p.numel() for p in module.parameters()),
                reduced_macs=sum(reduced_macs.values()),
                reduced_out=module.out_channels,
                naive_params=sum(p.numel() for p in naive.parameters()),
                naive_macs=sum(naive_macs.values()),
                naive_out=naive.out_channels,
            )
        )
    return rows


def reduction_example() -> dict[str, int]:
    """The study note's example of section 4's dimension reduction (the paper gives no numbers for it):
    32 5x5 filters on a 28x28x192 input, directly, against a 1x1 reduction to 16 channels first
    (inception 3a's third branch, Table 1)."""
    x = torch.zeros(1, 192, 28, 28)
    direct = nn.Conv2d(192, 32, 5, padding=2)
    reduced = nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding=2))
    reduce_only = nn.Conv2d(192, 32, 1)
    return {
        "direct_5x5_macs": sum(count_macs(direct, x)[0].values()),
        "reduced_5x5_macs": sum(count_macs(reduced, x)[0].values()),
        "reduce_192_to_32_macs": sum(count_macs(reduce_only, x)[0].values()),
    }


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if value >= 1e9:
        return f"{value / 1e9:.2f}G{unit}"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M{unit}"
    if value >= 1e3:
        return f"{value / 1e3:.1f}K{unit}"
    return f"{value:.0f}{unit}"


def _kilo(value: float | None) -> str:
    return "" if value is None else f"{value / 1e3:,.1f}K"


def _mega(value: float | None) -> str:
    return "" if value is None else f"{value / 1e6:,.1f}M"


def format_table(model: GoogLeNet, input_size: int) -> str:
    """The network as Table 1 at `input_size`: a line per row with params and ops beside the paper's, the
    totals, and the rows whose values differ from the paper's by more than `FLAG_TOLERANCE`."""
    rows = table_rows(model, input_size)
    total = totals(model, input_size)
    cols = ("n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj")
    header = (
        f"{'type':<20} {'patch':>7} {'output':>13} {'depth':>5} "
        f"{'#1x1':>5} {'#3x3r':>5} {'#3x3':>5} {'#5x5r':>5} {'#5x5':>5} {'pool':>5} "
        f"{'params':>9} {'(paper)':>8} {'ops':>8} {'(paper)':>8}  flag"
    )
    lines = [
        f"GoogLeNet, variant {model.config.variant!r}, {model.config.num_classes} classes, "
        f"{input_size}x{input_size} input (Table 1; params and ops measured on the model)",
        header,
        "-" * len(header),
    ]
    for r in rows:
        h, w, c = r.output_shape
        widths = " ".join(f"{r.branches[k]:>5}" if k in r.branches else f"{'':>5}" for k in cols)
        lines.append(
            f"{r.type:<20} {r.patch:>7} {f'{h}x{w}x{c}':>13} {r.depth:>5} {widths} "
            f"{_kilo(r.params) if r.params else '':>9} {_kilo(r.paper_params):>8} "
            f"{_mega(r.macs) if r.macs else '':>8} {_mega(r.paper_ops):>8}  {'*' if r.flags else ''}"
        )
    lines.append("-" * len(header))
    heads = (
        f"{total['params_with_aux']:,} with them"
        if total["params_with_aux"] != total["params"]
        else "and this model has none (aux_logits=False, as summary builds it below 64x64)"
    )
    lines.append(
        f"total: {total['params']:,} parameters ({total['weights']:,} weights + "
        f"{total['params'] - total['weights']:,} biases/norm parameters) without auxiliary heads, {heads}; "
        f"{total['macs'] / 1e9:.3f} G multiply-adds; "
        f"depth {total['depth']} ({total['depth_with_pooling']} with pooling)"
    )
    if model.config.num_classes != table1.PAPER_NUM_CLASSES:
        lines.append(
            f"linear: Table 1's printed params and ops are for ImageNet's {table1.PAPER_NUM_CLASSES} classes; "
            f"this network has {model.config.num_classes} (not compared)"
        )
    flagged = [(r.type, f) for r in rows for f in r.flags]
    if flagged:
        lines.append(
            f"* computed and printed values differ by more than {FLAG_TOLERANCE:.0%} "
            "(params: under both readings of K, 1000 and 1024):"
        )
        lines.extend(f"    {t}: {f}" for t, f in flagged)
    return "\n".join(lines)


def format_naive(model: GoogLeNet, input_size: int) -> str:
    """Each Inception module's cost with and without its 1x1 reductions (Figure 2b against 2a), then
    `reduction_example`'s figures."""
    lines = [
        "Cost of each Inception module with the 1x1 reductions (Figure 2b) and without (Figure 2a, naive),",
        "on the same input. The naive module's pooling branch passes its input through, so its output",
        "widens and the next module would cost even more; here each is fed the real network's input.",
        f"{'module':<13} {'input':>11} {'params':>9} {'naive':>9} {'x':>6} {'MACs':>8} {'naive':>8} "
        f"{'x':>6} {'out':>5} {'naive out':>9}",
    ]
    for r in naive_rows(model, input_size):
        h, w, c = r.input_shape
        lines.append(
            f"{r.name:<13} {f'{h}x{w}x{c}':>11} {_fmt(r.reduced_params):>9} {_fmt(r.naive_params):>9} "
            f"{r.naive_params / r.reduced_params:>5.1f}x {_fmt(r.reduced_macs):>8} {_fmt(r.naive_macs):>8} "
            f"{r.naive_macs / r.reduced_macs:>5.1f}x {r.reduced_out:>5} {r.naive_out:>9}"
        )
    ex = reduction_example()
    lines.append(
        "Inception (3a)'s 5x5 branch (Table 1; the paper gives no cost for it), 28x28x192 input: 32 filters of 5x5 directly cost "
        f"{ex['direct_5x5_macs'] / 1e6:.1f}M multiply-adds; after a 1x1 reduction to 16 channels "
        f"{ex['reduced_5x5_macs'] / 1e6:.1f}M ({ex['direct_5x5_macs'] / ex['reduced_5x5_macs']:.1f}x less). "
        f"Reducing 192 to 32 channels with 32 filters of 1x1x192 costs {ex['reduce_192_to_32_macs'] / 1e6:.1f}M."
    )
    return "\n".join(lines)


def summary_json(model: GoogLeNet, input_size: int, naive: bool = False) -> dict[str, Any]:
    """`googlenet summary --json`'s object: Table 1's rows and the totals; with `naive`, also each module's
    cost without reductions and `reduction_example`."""
    rows = []
    for r in table_rows(model, input_size):
        d = asdict(r)
        d["output_shape"] = list(r.output_shape)
        rows.append(d)
    out: dict[str, Any] = {
        "variant": model.config.variant,
        "input_size": input_size,
        "num_classes": model.config.num_classes,
        "rows": rows,
        "total": totals(model, input_size),
    }
    if naive:
        out["naive"] = [asdict(r) for r in naive_rows(model, input_size)]
        out["reduction_example"] = reduction_example()
    return out


MAX_SUMMARY_CLASSES = MAX_NUM_CLASSES  # the model's own limit (googlenet.model.googlenet)


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet summary`'s flags."""
    parser = subparsers.add_parser(
        "summary",
        help="print the network as Table 1 (params and multiply-adds measured on the model)",
        description="Print GoogLeNet as the paper's Table 1, computed from the model, beside the printed values.",
    )
    parser.add_argument(
        "--variant", default="paper", choices=sorted(VARIANTS), help="the network (default paper)"
    )
    parser.add_argument("--input-size", type=int, default=224, help="square input side in pixels (224)")
    parser.add_argument(
        "--num-classes", type=int, default=1000, help="classifier outputs (default 1000, Table 1)"
    )
    parser.add_argument("--naive", action="store_true", help="also show each module without 1x1 reductions")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `googlenet summary` from parsed flags: print Table 1 (or JSON); the exit code. `ConfigError` for an
    input size outside `MIN_INPUT_SIZE`..`MAX_INPUT_SIZE` (as `train`) or fewer than one class."""
    if args.input_size < MIN_INPUT_SIZE:
        raise ConfigError(f"--input-size must be at least {MIN_INPUT_SIZE}, got {args.input_size}")
    if args.input_size > MAX_INPUT_SIZE:
        raise ConfigError(f"--input-size must be at most {MAX_INPUT_SIZE}, got {args.input_size}")
    if args.num_classes < 1:
        raise ConfigError(f"--num-classes must be at least 1, got {args.num_classes}")
    if args.num_classes > MAX_SUMMARY_CLASSES:
        raise ConfigError(f"--num-classes must be at most {MAX_SUMMARY_CLASSES:,}, got {args.num_classes:,}")
    # Below 64 px the auxiliary heads cannot pool to 4x4 (MIN_INPUT_SIZE_AUX), so the model has none.
    model = build_model(
        args.variant, num_classes=args.num_classes, aux_logits=args.input_size >= MIN_INPUT_SIZE_AUX
    )
    if args.json:
        print(json_text(summary_json(model, args.input_size, naive=args.naive)))
        return 0
    print(format_table(model, args.input_size))
    if args.naive:
        print()
        print(format_naive(model, args.input_size))
    return 0
