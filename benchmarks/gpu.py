"""GPU: our training step and inference against torchvision's googlenet with AMP, same device, one run.

Training: full steps (aux heads, 0.3-weighted loss, backward, SGD with momentum), batch 128 at 224,
fp32 and AMP (bf16 where supported, else fp16 with a GradScaler), channels_last for ours.
Inference: images/s at batch 1 and 128: torchvision eager (+ AMP for bf16) against
`googlenet.optimize` with the eager backend, `auto` (which also times ONNX Runtime's CUDA provider when
onnxruntime-gpu is installed) and, with `--compile`, torch.compile. Medians of several timed
repetitions after warm-up, synchronised with the device; each row also records the peak device memory
of that path. Without a CUDA device it says so and exits 0. Measures, never asserts.

    .venv/bin/python benchmarks/gpu.py --json benchmarks/results/gpu.json

`--device cpu` runs the same code on the CPU (bf16 autocast for AMP), as a smoke check of this script
on machines without a GPU: `--device cpu --batch 2 --size 64 --repeats 1 --warmup 1 --backends eager`
takes seconds (tests/test_bench.py runs it). Its figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

import googlenet
from googlenet.bench.command import positive_int, save_run
from googlenet.bench.paths import train
from googlenet.train.config import gpu_bf16


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """Peak device memory since `reset_peak`, in MiB (None on the CPU: no per-path counter there)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def timed(work: Callable[[], object], items: int, args: argparse.Namespace) -> float:
    """Median images/s of `work` over `args.repeats` timed calls after `args.warmup` untimed ones."""
    for _ in range(args.warmup):
        work()
    synchronize(args.device)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        work()
        synchronize(args.device)
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not gpu_bf16(device):  # emulated bf16 (T4, V100): fp16
        return torch.float16
    return torch.bfloat16


def train_rate(kind: str, amp: bool, args: argparse.Namespace) -> float:
    """The benchmark suite's training step (`googlenet.bench.paths.train`) on `args.device`: torchvision
    as it ships (NCHW, foreach SGD), ours in channels_last with the fused SGD, one step per timing."""
    ours = kind != "torchvision"
    spec = {"impl": "ours" if ours else "torchvision", "variant": kind, "size": args.size,
            "batch": args.batch, "precision": "amp" if amp else "fp32", "channels_last": ours,
            "fused_sgd": ours, "device": str(args.device), "steps": 1, "repeats": args.repeats,
            "warmup": args.warmup}  # fmt: skip
    return train(spec)


def infer_rate(kind: str, precision: str, batch: int, args: argparse.Namespace) -> tuple[float, str]:
    """Images/s of one inference path, and the backend that ran it."""
    device = args.device
    x = torch.randn(batch, 3, args.size, args.size, device=device)
    if kind == "torchvision":
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
        model = model.to(device).eval()

        def run() -> object:
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=amp_dtype(device), enabled=precision == "bf16"),
            ):
                return model(x)

        return timed(run, batch, args), "eager + autocast" if precision == "bf16" else "eager"
    variant, backend = kind.split(":")
    ours = googlenet.build_model(variant, num_classes=1000, aux_logits=False).to(device)
    fast = googlenet.optimize(ours, precision, backend, input_size=args.size, batch_size=batch, device=device)
    return timed(lambda: fast(x), batch, args), fast.backend


def measure(name: str, work: Callable[[], float | tuple[float, str]], args: argparse.Namespace) -> dict:
    reset_peak(args.device)
    start = time.perf_counter()
    out = work()
    rate, backend = out if isinstance(out, tuple) else (out, "")
    row = {"rate": rate, "backend": backend, "peak_mib": peak_mib(args.device)}
    print(f"  {name:<44} {rate:>9.1f} img/s  ({time.perf_counter() - start:.0f} s)", flush=True)
    return row


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda", help="cuda (default) or cpu (a smoke check of the script)"
    )
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["eager", "auto"],
        choices=["eager", "auto", "compile"],
        help="optimize() backends for our inference rows (default: eager auto)",
    )
    parser.add_argument("--compile", action="store_true", help="add the compile backend")
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    try:
        args.device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device: not a device: {args.device!r}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return
    card = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU (smoke check)"
    print(f"{card}, torch {torch.__version__}", flush=True)
    results: dict[str, dict] = {}
    for amp in (False, True):
        for kind in ("torchvision", "paper", "bn"):
            name = f"train {kind} {'amp' if amp else 'fp32'}"
            results[name] = measure(name, lambda: train_rate(kind, amp, args), args)  # noqa: B023
    backends = list(dict.fromkeys(args.backends + (["compile"] if args.compile else [])))
    for batch in sorted({1, args.batch}):
        for precision in ("fp32", "bf16"):
            name = f"infer torchvision b{batch} {precision}"
            results[name] = measure(name, lambda: infer_rate("torchvision", precision, batch, args), args)  # noqa: B023
            for variant in ("torchvision", "paper"):
                for backend in backends:
                    name = f"infer ours {variant} {backend} b{batch} {precision}"
                    kind = f"{variant}:{backend}"
                    results[name] = measure(name, lambda: infer_rate(kind, precision, batch, args), args)  # noqa: B023
    print(f"\n{card}, torch {torch.__version__}")
    for name, row in results.items():
        if name.startswith("train"):
            base = results[f"train torchvision {name.split()[-1]}"]["rate"]
        else:
            base = results[f"infer torchvision {' '.join(name.split()[-2:])}"]["rate"]
        memory = f"{row['peak_mib']:8.0f} MiB" if row["peak_mib"] is not None else ""
        chosen = (
            f"  ({row['backend']})" if row["backend"] and not name.startswith("infer torchvision") else ""
        )
        print(
            f"{name:<44} {row['rate']:>9.1f} img/s  {row['rate'] / base:5.2f}x torchvision {memory}{chosen}"
        )
    if args.json:
        save_run(args.json, args, {"card": card, "rows": results})
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
