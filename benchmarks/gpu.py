"""GPU: our training step and inference against torchvision's googlenet with AMP, same device, one run.

Training: full steps (aux heads, 0.3-weighted loss, backward, SGD with momentum), batch 128 at 224,
fp32 and AMP (bf16 where supported, else fp16 with a GradScaler), channels_last for ours.
Inference: images/s at batch 1 and 128: torchvision eager + AMP against `googlenet.optimize` (eager and
compile backends). Medians of several timed repetitions after warm-up, CUDA-synchronised. Without a
CUDA device it says so and exits 0. Measures, never asserts.

    .venv/bin/python benchmarks/gpu.py --json benchmarks/results/gpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

import googlenet
from googlenet.train.loop import head_losses, weighted_loss


def timed(work: Callable[[], object], items: int, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        work()
    torch.cuda.synchronize()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        torch.cuda.synchronize()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def train_rate(kind: str, amp: bool, batch: int, size: int, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "torchvision":
        model: nn.Module = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
        fmt = torch.contiguous_format
    else:
        model = googlenet.build_model(kind, num_classes=1000)
        fmt = torch.channels_last
    model = model.cuda().to(memory_format=fmt).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4, fused=kind != "torchvision"
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)
    x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=amp):
            if kind == "torchvision":
                out = model(x)
                main, aux1, aux2 = out.logits, out.aux_logits1, out.aux_logits2
            else:
                main, aux1, aux2 = model.forward_train(x)  # type: ignore[operator]
            loss = weighted_loss(head_losses((main, aux1, aux2), y), aux_weight=0.3)  # section 5
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return timed(step, batch, args.repeats, args.warmup)


def infer_rate(kind: str, precision: str, batch: int, args: argparse.Namespace) -> float:
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    if kind == "torchvision":
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).cuda().eval()

        def run() -> object:
            with (
                torch.inference_mode(),
                torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"),
            ):
                return model(x)

        return timed(run, batch, args.repeats, args.warmup)
    variant, backend = kind.split(":")
    ours = googlenet.build_model(variant, num_classes=1000, aux_logits=False).cuda()
    fast = googlenet.optimize(ours, precision, backend, device="cuda")
    return timed(lambda: fast(x), batch, args.repeats, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="include the compile backend")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return
    card = torch.cuda.get_device_name(0)
    results: dict[str, float] = {}
    for amp in (False, True):
        for kind in ("torchvision", "paper", "bn"):
            results[f"train {kind} {'amp' if amp else 'fp32'}"] = train_rate(kind, amp, args.batch, 224, args)
    backends = ["eager"] + (["compile"] if args.compile else [])
    for batch in (1, args.batch):
        for precision in ("fp32", "bf16"):
            results[f"infer torchvision b{batch} {precision}"] = infer_rate(
                "torchvision", precision, batch, args
            )
            for variant in ("torchvision", "paper"):
                for backend in backends:
                    name = f"infer ours {variant} {backend} b{batch} {precision}"
                    results[name] = infer_rate(f"{variant}:{backend}", precision, batch, args)
    print(f"{card}, torch {torch.__version__}")
    for name, rate in results.items():
        if name.startswith("train"):
            base = results[f"train torchvision {name.split()[-1]}"]
        else:
            base = results[f"infer torchvision {' '.join(name.split()[-2:])}"]
        print(f"{name:<44} {rate:>9.1f} img/s  {rate / base:5.2f}x torchvision")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"card": card, "torch": torch.__version__, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
