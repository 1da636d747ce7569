"""Streams against one engine, timed in turns: the check behind `optimize`'s default of one stream per
thread for ONNX Runtime on the CPU (docs/performance.md, "Streams").

Our `torchvision`-layout network (BatchNorm folded) through `googlenet.optimize` in ONNX Runtime, once
as one engine on every thread (`streams=1`) and once as one single-threaded engine per thread
(`streams=None`, the default), and in OpenVINO as one engine (its streams were dropped), beside
torchvision's network in the same runtimes as its users run it (the `versus` section's peers). Each turn times one call of every contender at each batch size, in an
order rotated every turn; medians over the turns, and the median per-turn ratio of each contender to
ours as one engine and to the fastest peer of its precision. Measures, never asserts.

    .venv/bin/python benchmarks/streams.py --json benchmarks/results/streams-zen4.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import googlenet
from googlenet.bench.command import machine, positive_int
from googlenet.bench.paths import peer_runner
from googlenet.infer import available_backends

PEERS = {"fp32": ["torchvision-onnxruntime", "torchvision-openvino-f32"], "bf16": ["torchvision-openvino"]}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batch", type=positive_int, nargs="+", default=[1, 7, 32], help="batch sizes (default 1 7 32)"
    )
    parser.add_argument("--turns", type=positive_int, default=10)
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--json", type=Path)
    return parser


def contenders(precision: str, folder: str) -> dict[str, Callable[[torch.Tensor], Any]]:
    """Ours with each runtime as one engine and as streams, and the peers of `precision`."""
    torch.manual_seed(0)
    model = googlenet.build_model("torchvision", num_classes=1000, aux_logits=False).eval()
    runs: dict[str, Callable[[torch.Tensor], Any]] = {}
    backends = available_backends(precision)
    for backend in [b for b in ("onnxruntime", "openvino") if b in backends]:
        for streams in (1, None) if backend == "onnxruntime" else (1,):
            fast = googlenet.optimize(model, precision, backend, streams=streams)
            runs[f"ours {backend}, {fast.streams} stream{'s' if fast.streams > 1 else ''}"] = fast
    for peer in PEERS[precision]:
        module = "onnxruntime" if "onnxruntime" in peer else "openvino"
        if importlib.util.find_spec(module):
            runs[peer.replace("-", " ", 1)] = peer_runner(peer, precision, 224, folder)
    return runs


def main() -> None:
    args = build_parser().parse_args()
    results: dict[str, Any] = {"machine": machine(), "turns": args.turns, "threads": torch.get_num_threads()}
    for precision in args.precision:
        with tempfile.TemporaryDirectory() as folder:
            runs = contenders(precision, folder)
            names = list(runs)
            inputs = {batch: torch.randn(batch, 3, 224, 224) for batch in args.batch}
            for x in inputs.values():  # warm-up
                for run in runs.values():
                    run(x)
            rates: dict[int, dict[str, list[float]]] = {b: {n: [] for n in names} for b in args.batch}
            for turn in range(args.turns):
                for batch, x in inputs.items():
                    for name in names[turn % len(names) :] + names[: turn % len(names)]:
                        time.sleep(0.05)
                        start = time.perf_counter()
                        runs[name](x)
                        rates[batch][name].append(batch / (time.perf_counter() - start))
                print(f"{precision}: turn {turn + 1}/{args.turns} done", flush=True)
        peers = [n for n in names if not n.startswith("ours")]
        table: dict[str, Any] = {}
        for batch in args.batch:
            row = rates[batch]
            fastest = max(peers, key=lambda n: statistics.median(row[n]))

            def ratio(name: str, other: str, row: dict[str, list[float]] = row) -> float:
                return statistics.median(a / b for a, b in zip(row[name], row[other], strict=True))

            table[f"batch {batch}"] = {
                name: {
                    "median_img_s": statistics.median(row[name]),
                    "ratio_to_one_engine": ratio(name, name.split(",")[0] + ", 1 stream")
                    if name.startswith("ours")
                    else None,
                    f"ratio_to_fastest_peer ({fastest})": ratio(name, fastest),
                }
                for name in names
            }
            print(f"\n{precision}, batch {batch} (median img/s; per-turn ratios)")
            for name, entry in table[f"batch {batch}"].items():
                one = entry["ratio_to_one_engine"]
                print(
                    f"  {name:38s} {entry['median_img_s']:7.1f}"
                    + (f"  {one:.3f}x one engine" if one is not None else "")
                    + f"  {entry[f'ratio_to_fastest_peer ({fastest})']:.3f}x {fastest}"
                )
        results[precision] = table
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
