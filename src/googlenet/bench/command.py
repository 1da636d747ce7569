"""`googlenet benchmark`: our paths and the peers on the same inputs in one run, as ratios.

Measures, never asserts. Sections (choose with `--only`):

- `gemm`: the machine's fp32 and bf16 matrix-product GFLOP/s, the ceiling every path is compared with
  (fraction = images/s x 2 x multiply-adds per image / GEMM FLOP/s, multiply-adds from `summary`).
  Each inference path also times the same GEMM in its own process before each of its repetitions, and
  its "of GEMM" column is the median of those paired fractions (robust to a drifting machine; the
  fraction against this section's figure is kept in the JSON as `ceiling_fraction_section`);
- `infer`: images/s at batch 1 and 32, 224x224, fp32 and bf16: torchvision eager (NCHW and
  channels_last), torchvision + torch.compile (`--compile`, slow to build), ONNX Runtime and OpenVINO
  on the exported torchvision model, and `googlenet.optimize` on our `torchvision`-layout and `paper`
  networks with each backend (ONNX Runtime with its default streams; at batch > 1 also 1x1-fused and,
  for ONNX Runtime, as one stream);
- `versus`: the inference targets head to head: `googlenet.optimize(model, precision)` as a user gets it
  (backend and 1x1 fusion chosen by timing, default streams) against every peer of that precision, all
  in one process, taking turns with the GEMM ceiling; the ratio is the median over turns of ours against the fastest
  peer (the highest median rate) timed in the same turn (`--turns`);
- `train`: full training steps at batch 32, 224 and 112: torchvision eager fp32 NCHW (the baseline)
  against ours, fp32 and bf16; ours in bf16 is also compared with torchvision's bf16 step in
  channels_last (`ratio_to_peer_row`, "vs torchvision channels_last ... bf16" in the table);
- `data`: JPEG decoding + section-6 augmentation with 1 and 2 loader processes;
- `crops144`: section 7's 144-crop protocol against the same model's raw forward.

Every path runs in a fresh process (peak memory per path; no shared caches); the results are printed
as a table with ratios to each section's baseline and saved with `--json FILE`. A path that fails gets a
`failed:` row and the exit code 1; when every path fails nothing is saved. ONNX Runtime and OpenVINO
come with the optional `fast` extra; without them their peers and our paths in them are left out, and a
line (and `peers_left_out` in the JSON) says so.

On a shared or throttled machine the speed drifts over minutes, and a ratio between two paths timed
minutes apart carries that drift. `--rounds N` runs the whole list N times in turn; a row then shows the
median of its N values, and its ratio is the median of the N ratios to the baseline timed in the same
round (so each ratio compares paths timed close together); a label that differs between rounds (the
backend `auto` chose, the fastest peer) lists each value with its count (`combine_rounds`).
"""

from __future__ import annotations

import argparse
import collections
import getpass
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from googlenet.errors import ConfigError, UsageError, check_values
from googlenet.io import json_loads, json_text

SECTIONS: tuple[str, ...] = ("gemm", "infer", "versus", "train", "data", "crops144")

# The peers' runtimes, installed by the optional `fast` extra (pyproject.toml); `plan` leaves out a
# runtime that is missing, so "ours / the fastest peer" is then against the others (eager PyTorch alone
# when both are missing), which `run` says.
FAST_RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")
FAST_INSTALL = 'pip install "googlenet[fast]"'


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet benchmark`'s flags."""
    parser = subparsers.add_parser(
        "benchmark",
        help="our inference, training and data paths against torchvision, ONNX Runtime and OpenVINO",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                        help=f"sections to run: {', '.join(SECTIONS)} (default all)")  # fmt: skip
    parser.add_argument("--batch", type=int, nargs="+", help="inference batch sizes (default 1 32)")
    parser.add_argument("--train-size", type=int, nargs="+", help="training resolutions (default 224 112)")
    parser.add_argument(
        "--compile", action="store_true", help="include torch.compile paths (minutes to build)"
    )
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="timed repetitions N per path, median shown (default 5, 2 with --quick; "
                             "crops144: N, default 3, 2 with --quick; train: max(3, N // 2) repetitions, "
                             "each of 2 steps (1 with --quick))")  # fmt: skip
    parser.add_argument(
        "--turns", type=int, help="turns of the versus section, each timing every contender once (default 10)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every path this many times in turn; rows and ratios are medians over the rounds",
    )
    parser.add_argument(
        "--data-path",
        metavar="DIR",
        help="JPEG image folder for data/crops144 (default: the built-in images; data: 500x375 crops "
        "of scikit-image's sample photographs, made once)",
    )
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 repetitions (training 3), 3 turns, and in 'infer' only the baseline, the "
                             "runtimes' peers and our paper variant (no channels_last, torchvision-layout or "
                             "fused-1x1 rows)")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", nargs="?", const="-",
                        help="every result with the machine's description: saved to FILE (the table is "
                             "printed too), or without FILE printed as one JSON object instead of the table")  # fmt: skip
    parser.set_defaults(func=run)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = [f for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "amx"))]
    except OSError:
        pass
    versions: dict[str, str] = {"torch": str(torch.__version__)}
    for name in ("torchvision", "onnxruntime", "openvino"):
        if importlib.util.find_spec(name):
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "isa": sorted(set(flags)),
        "threads": torch.get_num_threads(),
        "versions": versions,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def rates_in_turns(
    paths: Mapping[str, Callable[[], object]], turns: int, images: int
) -> dict[str, list[float]]:
    """Images/s of each path per turn: every turn calls each path once, in order, so a machine whose
    speed drifts affects them alike (the scripts under `benchmarks/` that compare two versions use it).
    `images`: how many images one call of a path processes."""
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(turns):
        for name, work in paths.items():
            start = time.perf_counter()
            work()
            rates[name].append(images / (time.perf_counter() - start))
    return rates


BENCHMARK_JSON_KEYS = frozenset({"machine", "date", "rounds", "rows", "peers_left_out"})  # what --json writes


def is_benchmark_json(file: str | os.PathLike[str]) -> bool:
    """Whether `file` holds an earlier `googlenet benchmark --json` result (machine, date, rows, rounds
    since 2026-12-02 and peers_left_out since 2026-12-06), the only JSON a new one replaces: a run's
    results.json, or a benchmarks/ script's output with its own keys, given by mistake survives."""
    try:
        with open(file, encoding="utf-8") as handle:
            saved = json_loads(handle.read())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and {"machine", "date", "rows"} <= saved.keys() <= BENCHMARK_JSON_KEYS


def save_run(path: str | Path, args: argparse.Namespace, results: Any) -> None:
    """Write a benchmark script's results as JSON, atomically, with the machine, torch and the
    arguments that produced them (the scripts under `benchmarks/` use this)."""
    from googlenet.io import atomic_open

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine(),
        "torch": torch.__version__,
        "args": {key: str(value) for key, value in vars(args).items()},
        "results": results,
    }
    with atomic_open(path, "w") as handle:
        json.dump(payload, handle, indent=2)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def peers_left_out(args: argparse.Namespace) -> dict[str, str]:
    """The runtimes of `FAST_RUNTIMES` that `plan` leaves out of the chosen infer and versus sections
    (their peers and our paths in them), each with the reason."""
    if not {"infer", "versus"} & set(args.only):
        return {}
    return {name: f"not installed ({FAST_INSTALL})" for name in FAST_RUNTIMES if not _installed(name)}


def positive_int(text: str) -> int:
    """argparse type of the benchmark scripts' counts and sizes: an integer of at least 1 (a 0 let a
    script build its models, time nothing and end in a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def plan(args: argparse.Namespace, root: str, data_root: str | None = None) -> list[dict[str, Any]]:
    """The specs to run, in order, each with a `section`, a `name` and its `baseline` name. `root`: the
    image folder of crops144 (and of data, unless `data_root` is given)."""
    repeats = args.repeats  # given, or the default `_check_sections` filled in (2 with --quick)
    specs: list[dict[str, Any]] = []
    have_ort, have_ov = _installed("onnxruntime"), _installed("openvino")  # else `peers_left_out` names them
    if "gemm" in args.only:
        for precision in ("fp32", "bf16"):
            specs.append({"section": "gemm", "name": f"GEMM {precision}", "kind": "gemm", "precision": precision,
                          "repeats": repeats})  # fmt: skip
    if "infer" in args.only:
        for batch in args.batch:
            for precision in ("fp32", "bf16"):
                base = f"torchvision eager b{batch} {precision}"
                peers = ["torchvision-eager", "torchvision-eager-cl"]
                peers += ["torchvision-compile"] if args.compile else []
                peers += ["torchvision-onnxruntime"] if have_ort and precision == "fp32" else []
                if have_ov:
                    peers += ["torchvision-openvino"] if precision == "bf16" else ["torchvision-openvino-f32"]
                ours = [("torchvision", "eager"), ("paper", "eager")]
                if have_ort and precision == "fp32":
                    ours += [("torchvision", "onnxruntime"), ("paper", "onnxruntime")]
                if have_ov:
                    ours += [("torchvision", "openvino"), ("paper", "openvino")]
                if args.compile:
                    ours += [("torchvision", "compile"), ("paper", "compile")]
                common = {"section": "infer", "kind": "infer", "batch": batch, "size": 224, "precision": precision,
                          "repeats": repeats, "warmup": 2, "baseline": base,
                          "calls": max(1, 16 // batch)}  # a timing covers at least 16 images  # fmt: skip
                for impl in peers:
                    label = impl.replace("torchvision-", "torchvision ").replace("-cl", " channels_last")
                    name = base if impl == "torchvision-eager" else f"{label} b{batch} {precision}"
                    if impl == "torchvision-openvino":
                        name = f"torchvision openvino (default) b{batch} {precision}"
                    specs.append({**common, "name": name, "impl": impl, "variant": "torchvision"})
                for variant, backend in ours:
                    specs.append({**common, "name": f"ours {variant} {backend} b{batch} {precision}", "impl": "ours",
                                  "variant": variant, "backend": backend})  # fmt: skip
                if batch > 1:  # the 1x1 fusion, measured rather than assumed (torchvision layout)
                    for backend in sorted({b for v, b in ours if v == "torchvision" and b != "compile"}):
                        specs.append({**common, "name": f"ours torchvision {backend}+fused-1x1 b{batch} {precision}",
                                      "impl": "ours", "variant": "torchvision", "backend": backend,
                                      "fuse_1x1": True})  # fmt: skip
                    if ("torchvision", "onnxruntime") in ours:
                        specs.append({**common, "name": f"ours torchvision onnxruntime, 1 stream b{batch} {precision}",
                                      "impl": "ours", "variant": "torchvision", "backend": "onnxruntime",
                                      "streams": 1})  # fmt: skip
    if args.quick:  # the rows that answer "is ours the fastest?"; the rest explain how (docs/performance.md)
        specs = [
            spec for spec in specs
            if spec["section"] != "infer"
            or not (spec.get("impl") == "torchvision-eager-cl" or spec.get("fuse_1x1") or "streams" in spec
                    or (spec.get("impl") == "ours" and spec.get("variant") == "torchvision"))
        ]  # fmt: skip
    if "versus" in args.only:
        labels = {"torchvision-eager-cl": "torchvision eager channels_last", "torchvision-compile":
                  "torchvision compile", "torchvision-onnxruntime": "torchvision onnxruntime",
                  "torchvision-openvino": "torchvision openvino (default)",
                  "torchvision-openvino-f32": "torchvision openvino-f32"}  # fmt: skip
        for batch in args.batch:
            for precision in ("fp32", "bf16"):
                peers = ["torchvision-eager-cl"] + (["torchvision-compile"] if args.compile else [])
                peers += ["torchvision-onnxruntime"] if have_ort and precision == "fp32" else []
                if have_ov:
                    peers += ["torchvision-openvino" if precision == "bf16" else "torchvision-openvino-f32"]
                for variant in ("torchvision", "paper"):
                    specs.append({"section": "versus", "name": f"ours {variant} auto vs peers b{batch} {precision}",
                                  "kind": "versus", "batch": batch, "size": 224, "precision": precision,
                                  "turns": args.turns, "warmup": 2,
                                  "calls": max(1, 16 // batch),
                                  "ours": {"impl": "ours", "variant": variant, "backend": "auto", "fuse_1x1": None},
                                  "peers": [{"impl": peer, "label": labels[peer]} for peer in peers]})  # fmt: skip
    if "train" in args.only:
        for size in args.train_size:
            base = f"train torchvision eager {size} fp32"
            # A training repetition takes seconds where an inference one takes a fraction of one, so
            # training gets half the repetitions, at least 3, so that the median leaves one outlier out
            # (--help and docs/performance.md say so).
            common = {"section": "train", "kind": "train", "batch": 32, "size": size, "baseline": base,
                      "repeats": max(3, repeats // 2), "steps": 1 if args.quick else 2}  # fmt: skip
            specs.append({**common, "name": base, "impl": "torchvision", "precision": "fp32"})
            specs.append({**common, "name": f"train torchvision channels_last {size} bf16", "impl": "torchvision",
                          "precision": "bf16", "channels_last": True})  # fmt: skip
            for precision in ("fp32", "bf16"):
                for variant in ("torchvision", "paper"):
                    # bf16 rows are also compared with torchvision's own bf16 step (channels_last), the
                    # fair peer at that precision; the section's baseline stays torchvision eager fp32.
                    peer = (
                        {"peer": f"train torchvision channels_last {size} bf16"}
                        if precision == "bf16"
                        else {}
                    )
                    specs.append({**common, "name": f"train ours {variant} {size} {precision}", "impl": "ours",
                                  "variant": variant, "precision": precision, "channels_last": True,
                                  "fused_sgd": True, **peer})  # fmt: skip
    if "data" in args.only:
        for workers in (1, 2):
            specs.append({"section": "data", "name": f"data {workers} worker(s)", "kind": "data", "root": data_root or root,
                          "size": 224, "workers": workers, "repeats": repeats, "images": 256 if args.quick else 512,
                          "baseline": "data 1 worker(s)"})  # fmt: skip
    if "crops144" in args.only:
        for variant in ("torchvision", "paper"):
            for workers in (0, 1):  # decode and cut in the main process, or beside the model
                specs.append({"section": "crops144", "name": f"144 crops ours {variant} auto, {workers} worker(s)",
                              "kind": "crops144", "root": root, "size": 224, "images": 1 if args.quick else 3,
                              "variant": variant, "backend": "auto", "repeats": args.crops_repeats,
                              "workers": workers})  # fmt: skip
    return specs


def run_payload(spec: dict[str, Any]) -> dict[str, Any]:
    """What the path's process gets: the spec less the keys only the table uses."""
    return {k: v for k, v in spec.items() if k not in ("section", "name", "baseline", "peer")}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Run a spec in a fresh interpreter; its JSON result, or the error it printed."""
    payload = run_payload(spec)
    # The path's temporary files (its ONNX file, say) go in a folder this process removes: an
    # interrupted run kills the child (subprocess.run), which then cannot remove its own.
    with tempfile.TemporaryDirectory(prefix="googlenet-bench-") as scratch:
        proc = subprocess.run(
            [sys.executable, "-m", "googlenet.bench.paths", json.dumps(payload)],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "PYTHONWARNINGS": "ignore",
                "TMPDIR": scratch,
                "TMP": scratch,  # Windows reads these two, not TMPDIR
                "TEMP": scratch,
                "TORCHINDUCTOR_CACHE_DIR": _inductor_cache(),
            },
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:300]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _inductor_cache() -> str:
    """torch.compile's cache folder as the path's process would find it without our TMPDIR (the
    variable if set, else torch's default, `<tmp>/torchinductor_<user>`), so its builds are reused."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return os.environ["TORCHINDUCTOR_CACHE_DIR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid_{os.getuid()}"
    return os.path.join(tempfile.gettempdir(), "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))


def _unit(section: str) -> str:
    return {"gemm": "GFLOP/s", "crops144": "crops/s"}.get(section, "img/s")


def _tally(values: list[Any]) -> Any:
    """The value every round gave, or, where rounds differ, each value with its count, the most frequent
    first: "onnxruntime (2 of 3 rounds), openvino (1)"."""
    if all(value == values[0] for value in values):
        return values[0]
    (top, count), *rest = collections.Counter(map(str, values)).most_common()  # ties: first seen first
    return f"{top} ({count} of {len(values)} rounds)" + "".join(f", {v} ({n})" for v, n in rest)


def combine_rounds(specs: list[dict[str, Any]], rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One result per spec from several rounds.

    The combined row is not one round's: each number is the median over the rounds of that number
    (peak memory: the largest), taken field by field, so the rate, the ratio to the peer and a peer's
    rate may come from different rounds; `round_values` keeps every round's value and `round_ratios`
    its ratio to the baseline of the same round. A label (the backend `auto` chose, the fastest peer)
    is kept when every round gave the same one and otherwise lists each with its count (`_tally`), so a
    median ratio is never shown beside one round's peer or backend as if they went together; per-turn
    lists (`turn_ratios`) are the rounds' lists joined, every turn of every round. A path that failed in
    any round keeps that round's error."""
    if len(rounds) == 1:
        return rounds[0]
    index = {spec["name"]: i for i, spec in enumerate(specs)}
    combined = []
    for i, spec in enumerate(specs):
        runs = [results[i] for results in rounds]
        failed = next((run for run in runs if "error" in run), None)
        if failed is not None:
            combined.append(failed)
            continue
        result: dict[str, Any] = {}
        for key, first in runs[0].items():
            values = [run[key] for run in runs]
            if key.startswith("peak_"):  # None where the platform cannot say (no `resource`: Windows)
                known = [v for v in values if isinstance(v, int | float)]
                result[key] = max(known) if known else None
            elif isinstance(first, int | float) and not isinstance(first, bool):
                result[key] = statistics.median(values)
            elif isinstance(first, dict):  # the versus section's per-peer figures
                result[key] = {name: statistics.median(value[name] for value in values) for name in first}
            elif isinstance(first, list):
                result[key] = [item for value in values for item in value]
            else:
                result[key] = _tally(values)
        result["round_values"] = [run["value"] for run in runs]
        for key, other in (("round_ratios", "baseline"), ("round_peer_ratios", "peer")):
            base = index.get(spec.get(other, ""))
            if base is not None and all("value" in results[base] for results in rounds):
                result[key] = [
                    run["value"] / results[base]["value"] for run, results in zip(runs, rounds, strict=True)
                ]
        combined.append(result)
    return combined


def summarise(specs: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ratios to the section baseline and, for inference and training, to the GEMM ceiling."""
    from googlenet.model.googlenet import build_model
    from googlenet.model.summary import totals

    by_name = {spec["name"]: result for spec, result in zip(specs, results, strict=True)}
    macs = {
        v: totals(build_model(v, num_classes=1000, aux_logits=False))["macs"]
        for v in ("torchvision", "paper")
    }
    rows = []
    for spec, result in zip(specs, results, strict=True):
        row = {"section": spec["section"], "name": spec["name"], **result, "unit": _unit(spec["section"])}
        base = by_name.get(spec.get("baseline", ""), {})
        if "ratio_to_peer" in result:  # versus: ratios taken within the path's own turns
            row["ratio"] = result["ratio_to_peer"]
        elif "round_ratios" in result:  # several rounds: the median of the same-round ratios
            row["ratio"] = statistics.median(result["round_ratios"])
        elif "value" in result and base.get("value"):
            row["ratio"] = result["value"] / base["value"]
        peer = by_name.get(spec.get("peer", ""), {})
        if "round_peer_ratios" in result:
            row["ratio_to_peer_row"] = statistics.median(result["round_peer_ratios"])
        elif "value" in result and peer.get("value"):
            row["ratio_to_peer_row"] = result["value"] / peer["value"]
        if "ratio_to_peer_row" in row:
            row["peer_row"] = spec["peer"]
        if spec["section"] in ("infer", "versus") and "value" in result:
            gemm = by_name.get(f"GEMM {spec['precision']}", {}).get("value")
            variant = spec.get("variant") or spec.get("ours", {}).get("variant", "paper")
            if gemm:
                row["ceiling_fraction_section"] = result["value"] * 2 * macs[variant] / (gemm * 1e9)
            # the ceiling timed beside the path (paths.infer) when there is one, else the section's
            fraction = result.get("paired_fraction", row.get("ceiling_fraction_section"))
            if fraction is not None:
                row["ceiling_fraction"] = fraction
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """`summarise`'s rows as the printed table: a heading per section, a `failed:` line per failed path."""
    lines = [f"{'path':<48} {'rate':>14} {'x baseline':>10} {'of GEMM':>8} {'peak MiB':>9}"]
    section = None
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            note = " (x baseline: ours / the fastest peer, timed in turns)" if section == "versus" else ""
            lines.append(f"-- {section}{note}")
        if "error" in row:
            lines.append(f"{row['name']:<48} failed: {row['error']}")
            continue
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
        ceiling = f"{100 * row['ceiling_fraction']:.0f}%" if "ceiling_fraction" in row else ""
        extra = ""
        if "raw_crops_s" in row:
            extra = f"  (raw forward {row['raw_crops_s']:.1f} crops/s: {row['ratio_to_raw']:.2f}x)"
        if "peers" in row:
            extra = (
                f"  ({row['backend']}; "
                + ", ".join(
                    f"{label} {rate:.1f} ({row['ratios'][label]:.2f}x)"
                    for label, rate in row["peers"].items()
                )
                + ")"
            )
        if "mm" in row:
            extra = f"  (torch.mm {row['mm']:.0f}, 1x1 convolution {row['conv1x1']:.0f})"
        if "ratio_to_peer_row" in row:
            extra += f"  (vs {row['peer_row'].removeprefix('train ')}: {row['ratio_to_peer_row']:.2f}x)"
        if row.get("peak_worker_rss_mib") is not None:
            extra += f"  (peak of a loader process {row['peak_worker_rss_mib']:.0f} MiB)"
        peak = row.get("peak_rss_mib")
        peak_text = (
            f"{peak:>9.0f}" if isinstance(peak, int | float) else f"{'-':>9}"
        )  # no `resource` (Windows)
        lines.append(
            f"{row['name']:<48} {row['value']:>8.1f} {row['unit']:<7}{ratio:>8} {ceiling:>8} {peak_text}"
            + extra
        )
    return "\n".join(lines)


# Which sections each option is for: given without any of them, it would be silently ignored.
_OPTION_SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("batch", "--batch", ("infer", "versus")),
    ("compile", "--compile", ("infer", "versus")),
    ("turns", "--turns", ("versus",)),
    ("repeats", "--repeats", ("gemm", "infer", "train", "data", "crops144")),
    ("train_size", "--train-size", ("train",)),
    ("data_path", "--data-path", ("data", "crops144")),
)


def _check_sections(args: argparse.Namespace) -> None:
    """Refuse an option that no chosen section uses, then fill in the defaults of the rest."""
    for attr, flag, sections in _OPTION_SECTIONS:
        value = getattr(args, attr)
        if value is not None and value is not False and not set(sections) & set(args.only):
            raise ConfigError(
                f"{flag} applies to --only {' / '.join(sections)}, not to {' '.join(args.only)}"
            )
    args.batch = args.batch or [1, 32]
    args.train_size = args.train_size or [224, 112]
    # A value given on the command line wins over --quick's smaller defaults (it had been overridden).
    args.crops_repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    args.repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    args.turns = args.turns if args.turns is not None else (3 if args.quick else 10)


def run(args: argparse.Namespace) -> int:
    """Run `googlenet benchmark` from parsed flags: time every path, print the table, save it with `--json`;
    the exit code: 0, or 1 when a path failed (its row says why; saved all the same) or every path did
    (nothing saved, an earlier --json file left as it was). `ConfigError` for an option no chosen section
    uses, a value out of range, or a `--data-path` that is not an image folder; `UsageError` for an
    empty --json."""
    if args.json == "":  # an unset shell variable: the results would be printed nowhere
        raise UsageError("--json: empty file name (give FILE, or --json alone to print the JSON)")
    _check_sections(args)
    check_values(
        (args.repeats >= 1, "--repeats", args.repeats, "at least 1"),
        (args.rounds >= 1, "--rounds", args.rounds, "at least 1"),
        (args.turns >= 1, "--turns", args.turns, "at least 1"),
        (min(args.batch) >= 1, "--batch", " ".join(map(str, args.batch)), "at least 1 each"),
        (min(args.train_size) >= 64, "--train-size", " ".join(map(str, args.train_size)), "at least 64 each"),
    )
    root, data_root = args.data_path, None
    if root is None and {"data", "crops144"} & set(args.only):
        from googlenet.data.synthetic import ensure_builtin

        root = str(ensure_builtin()) if "crops144" in args.only else ""
        if "data" in args.only:  # photographs of ImageNet's usual size: the drawings are 96 px
            from googlenet.bench.photos import ensure_photo_jpegs

            data_root = str(ensure_photo_jpegs())
    elif root is not None and not Path(root).is_dir():
        raise ConfigError(f"--data-path {root}: not a directory")
    elif root is not None and {"data", "crops144"} & set(args.only):
        from googlenet.data.datasets import load_image_folder
        from googlenet.errors import DataError

        try:  # a wrong folder is one error now, not one per benchmark row later
            load_image_folder(root, None, None)
        except DataError as exc:
            raise ConfigError(f"--data-path: {exc}") from None
    to_stdout = args.json == "-"
    if args.json and not to_stdout:
        from googlenet.io import check_output

        check_output("--json", args.json, replaceable=is_benchmark_json, kind="an earlier benchmark JSON")
    left_out = peers_left_out(args)
    if left_out:
        print(f"googlenet benchmark: {' and '.join(left_out)} not installed ({FAST_INSTALL}): left out as "
              "peers and as backends of ours, so 'ours / the fastest peer' is against the other peers only",
              file=sys.stderr)  # fmt: skip
    specs = plan(args, root or "", data_root)
    started = time.perf_counter()
    rounds: list[list[dict[str, Any]]] = [[] for _ in range(args.rounds)]
    work = [(r, spec) for r in range(args.rounds) for spec in specs]
    bar = tqdm(work, unit="path", file=sys.stderr, disable=not sys.stderr.isatty(), dynamic_ncols=True)
    for index, (round_index, spec) in enumerate(bar):
        label = spec["name"] + (f" (round {round_index + 1}/{args.rounds})" if args.rounds > 1 else "")
        bar.set_postfix_str(label)
        rounds[round_index].append(run_one(spec))
        if bar.disable:  # no terminal: one line per path, so a log shows progress
            last = rounds[round_index][-1]
            value = last.get("value")
            shown = f"{value:.1f} {_unit(spec['section'])}" if value is not None else last.get("error", "")
            elapsed = time.perf_counter() - started
            eta = elapsed / (index + 1) * (len(work) - index - 1)
            print(
                f"[{index + 1}/{len(work)}] {label}: {shown} (ETA {eta:.0f} s)", file=sys.stderr, flush=True
            )
    rows = summarise(specs, combine_rounds(specs, rounds))
    payload = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "rows": rows,
               "peers_left_out": left_out}  # fmt: skip
    failed = sum(1 for row in rows if "error" in row)
    if to_stdout:
        print(json_text(payload))
        return _failures(failed, len(rows))
    print(
        f"googlenet benchmark: {machine()['cpu']}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(format_rows(rows))
    print(
        f"({time.perf_counter() - started:.0f} s; medians of the timed repetitions"
        + (f", then of {args.rounds} rounds (ratios: of the same-round ratios)" if args.rounds > 1 else "")
        + "; ratios within a section; inference 'of GEMM': against the GEMM timed beside each repetition,"
        + " a reference rather than a limit: a runtime's own kernels can beat torch.mm's and pass 100%)"
    )
    if args.json and failed < len(rows):  # error rows alone must not replace an earlier good file
        from googlenet.io import atomic_open

        with atomic_open(args.json, "w") as handle:
            json.dump(payload, handle, indent=2)
        print(f"saved {args.json}")
    return _failures(failed, len(rows), args.json if failed == len(rows) else None)


def _failures(failed: int, total: int, unsaved: str | None = None) -> int:
    """The exit code for `failed` of `total` paths failing, with one line on stderr when any did
    (`unsaved`: the --json file not written)."""
    if not failed:
        return 0
    if failed == total:
        kept = f"; {unsaved} not written" if unsaved else ""
        print(
            f"googlenet benchmark: error: all {total} paths failed (their rows say why){kept}",
            file=sys.stderr,
        )
    else:
        print(f"googlenet benchmark: {failed} of {total} paths failed (their rows say why)", file=sys.stderr)
    return 1
