"""ONNX Runtime's thread spinning, on or off, timed in turns: the check behind our ONNX Runtime backend
keeping ONNX Runtime's default (docs/performance.md, "A third machine").

Three sessions of the same network (our `torchvision`-layout model, BatchNorm folded, exported by
`googlenet.infer.optimize.export_onnx`), differing only in spinning: ONNX Runtime's default (worker
threads busy-wait between operators), spinning stopped when `run` returns
(`session.force_spinning_stop`), and no spinning (`session.intra_op.allow_spinning = 0`). Each turn
times, in a rotating order, a batch-1 series of back-to-back calls, one batch-32 call series, and the
144-crop protocol (`googlenet.evaluate.protocol.evaluate_views`, decoding in this process, so the
protocol's PyTorch work between calls competes with spinning threads). Medians over the turns, and the
per-turn ratio to the default. Measures, never asserts.

    .venv/bin/python benchmarks/ort_spinning.py --json benchmarks/results/ort_spinning-zen4.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

import googlenet
from googlenet.bench.command import machine, positive_int
from googlenet.data.crops import CropSpec
from googlenet.data.datasets import load_image_folder
from googlenet.data.synthetic import ensure_builtin
from googlenet.evaluate.models import Member
from googlenet.evaluate.protocol import View, evaluate_views
from googlenet.infer.fused import fuse
from googlenet.infer.optimize import export_onnx, onnxruntime_session

SETTINGS: dict[str, dict[str, str]] = {
    "spinning (default)": {},
    "spinning, stopped after run": {"session.force_spinning_stop": "1"},
    "no spinning": {"session.intra_op.allow_spinning": "0"},
}


def logits_of(sess: ort.InferenceSession) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        (logits,) = sess.run(["logits"], {"images": x.float().contiguous().numpy()})
        return torch.from_numpy(np.asarray(logits))

    return run


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=positive_int, default=8)
    parser.add_argument(
        "--calls", type=positive_int, default=20, help="back-to-back batch-1 calls per sample"
    )
    parser.add_argument("--images", type=positive_int, default=3, help="images through the 144-crop protocol")
    parser.add_argument("--data-path", help="image folder for the protocol (default: the built-in data)")
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    root = args.data_path or str(ensure_builtin())
    _, val = load_image_folder(root, None, None)
    step = max(1, len(val.samples) // args.images)
    samples = [(str(p), label) for p, label in val.samples[::step][: args.images]]
    torch.manual_seed(0)
    model = googlenet.build_model("torchvision", num_classes=len(val.classes), aux_logits=False).eval()
    onnx = export_onnx(fuse(model), 224)
    cpu = torch.device("cpu")
    runs = {name: logits_of(onnxruntime_session(onnx, cpu, entries)) for name, entries in SETTINGS.items()}
    one, batch = torch.randn(1, 3, 224, 224), torch.randn(32, 3, 224, 224)
    spec, views = CropSpec(144, 224), [View("1 model", 0, (0,))]

    def batch1(run: Callable[[torch.Tensor], torch.Tensor]) -> float:
        start = time.perf_counter()
        for _ in range(args.calls):
            run(one)
        return args.calls / (time.perf_counter() - start)

    def batch32(run: Callable[[torch.Tensor], torch.Tensor]) -> float:
        start = time.perf_counter()
        run(batch)
        return len(batch) / (time.perf_counter() - start)

    def crops(run: Callable[[torch.Tensor], torch.Tensor]) -> float:
        result = evaluate_views(
            [Member(forward=run)], samples, [spec], views, len(val.classes), batch_size=144
        )
        return result["forward_passes"] / result["seconds"]

    tasks: dict[str, Callable[[Callable[[torch.Tensor], torch.Tensor]], float]] = {
        f"batch 1, {args.calls} calls back to back (img/s)": batch1,
        "batch 32 (img/s)": batch32,
        f"144-crop protocol, {len(samples)} images (crops/s)": crops,
    }
    rates: dict[str, dict[str, list[float]]] = {task: {name: [] for name in runs} for task in tasks}
    for run in runs.values():  # warm-up
        for measure in tasks.values():
            measure(run)
    names = list(runs)
    for turn in range(args.turns):
        for task, measure in tasks.items():
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                time.sleep(0.05)
                rates[task][name].append(measure(runs[name]))
        print(f"turn {turn + 1}/{args.turns} done", flush=True)
    table: dict[str, Any] = {}
    default = names[0]
    for task in tasks:
        table[task] = {
            name: {
                "median": statistics.median(values),
                "ratio_to_default": statistics.median(
                    v / d for v, d in zip(values, rates[task][default], strict=True)
                ),
                "values": values,
            }
            for name, values in rates[task].items()
        }
        cells = ", ".join(
            f"{n} {r['median']:.1f} ({r['ratio_to_default']:.2f}x)" for n, r in table[task].items()
        )
        print(f"{task}: {cells}")
    if args.json:
        info = {"machine": machine(), "onnxruntime": ort.__version__, "turns": args.turns, "data": root,
                "date": time.strftime("%Y-%m-%d")}  # fmt: skip
        args.json.write_text(json.dumps({**info, "rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
