"""How fast this CPU runs each of GoogLeNet's convolutions, against a plain matrix product of the same size.

For every convolution of the inference network (`googlenet.infer.fuse`, BatchNorm folded) at the
given batch and input size, times in turns, in bf16 and fp32, channels_last:

- `conv`: the convolution as PyTorch runs it (oneDNN, the library OpenVINO's CPU plugin also builds on);
- `gemm`: `torch.mm` of the convolution's im2col size (M = batch x output pixels, K = input channels x
  kernel area, N = output channels) on random matrices: what the matrix units deliver to a GEMM of
  that shape, i.e. what a convolution kernel that ran at GEMM speed would reach.

It then adds the layers up: the convolutions alone at `conv` rates and at `gemm` rates, as images/s,
beside the whole network run by OpenVINO with its defaults (bf16 on AMX or AVX512-BF16) and by ONNX
Runtime (fp32) on the same function, timed in the same run when they are installed. This is the evidence
behind the bf16 target discussion in docs/performance.md: whether 1.5x OpenVINO's default run is within
what the machine's matrix units could give GoogLeNet's layers. Measures, never asserts.

    .venv/bin/python benchmarks/kernel_rates.py --json benchmarks/results/kernel_rates-intel.json
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import googlenet
from googlenet.bench.command import positive_int, save_run
from googlenet.bench.paths import conv_layers, peer_runner
from googlenet.infer.fused import fuse
from googlenet.infer.optimize import time_calls


def time_layer(layer: dict[str, Any], dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """Median ms of the convolution and of its im2col-sized GEMM, timed in turns."""
    conv: nn.Conv2d = layer["conv"]
    n, _, ho, wo = layer["output"]
    kh, kw = conv.kernel_size
    m, k, cout = n * ho * wo, conv.in_channels * kh * kw, conv.out_channels
    x = torch.randn(layer["input"], dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
    bias = conv.bias.detach().to(dtype) if conv.bias is not None else None
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, cout, dtype=dtype)

    def run_conv(_: Tensor) -> Tensor:
        return F.conv2d(x, weight, bias, conv.stride, conv.padding)

    def run_gemm(_: Tensor) -> Tensor:
        return torch.mm(a, b)

    with torch.inference_mode():
        ms = time_calls({"conv": run_conv, "gemm": run_gemm}, x, repeats=repeats, min_seconds=0.05)
    gflop = 2 * m * k * cout / 1e9
    return {
        "gflop": gflop,
        "conv_ms": ms["conv"],
        "gemm_ms": ms["gemm"],
        "conv_gflops": gflop / ms["conv"] * 1000,
        "gemm_gflops": gflop / ms["gemm"] * 1000,
    }


def whole_network_runs(size: int) -> dict[str, Any]:
    """torchvision's googlenet in OpenVINO (defaults) and ONNX Runtime (fp32), when installed: the
    benchmark suite's peers (`googlenet.bench.paths.peer_runner`)."""
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:  # both runtimes read the ONNX file while building
        if importlib.util.find_spec("openvino"):
            runs["torchvision OpenVINO default"] = peer_runner("torchvision-openvino", "bf16", size, folder)
        if importlib.util.find_spec("onnxruntime"):
            runs["torchvision ONNX Runtime fp32"] = peer_runner(
                "torchvision-onnxruntime", "fp32", size, folder
            )
    return runs


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant", default="torchvision", help="our network's layout (default: torchvision)"
    )
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    torch.manual_seed(0)
    net = fuse(googlenet.build_model(args.variant, num_classes=1000, aux_logits=False).eval(), fuse_1x1=False)
    layers = conv_layers(net, args.batch, args.size)
    results: dict[str, Any] = {"layers": {}, "totals": {}}
    for precision in args.precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        print(f"\n{precision}, batch {args.batch}, {args.size}x{args.size}: GFLOP/s of each convolution")
        print(
            f"{'layer':28s} {'kernel':>6s} {'M x K x N':>22s} {'GFLOP':>6s} {'conv':>6s} {'gemm':>6s} {'conv/gemm':>9s}"
        )
        rows = []
        for layer in layers:
            row = {"name": layer["name"], **time_layer(layer, dtype, args.repeats)}
            conv = layer["conv"]
            n, _, ho, wo = layer["output"]
            shape = f"{n * ho * wo}x{conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]}x{conv.out_channels}"
            print(
                f"{layer['name']:28s} {conv.kernel_size[0]:>4d}x{conv.kernel_size[1]:<1d} {shape:>22s} "
                f"{row['gflop']:6.2f} {row['conv_gflops']:6.0f} {row['gemm_gflops']:6.0f} "
                f"{row['conv_gflops'] / row['gemm_gflops']:9.2f}"
            )
            rows.append(row)
        conv_s = sum(r["conv_ms"] for r in rows) / 1000
        gemm_s = sum(r["gemm_ms"] for r in rows) / 1000
        gflop = sum(r["gflop"] for r in rows)
        totals = {
            "gflop_per_batch": gflop,
            "convolutions_at_conv_rates_img_s": args.batch / conv_s,
            "convolutions_at_gemm_rates_img_s": args.batch / gemm_s,
            "conv_gflops": gflop / conv_s,
            "gemm_gflops": gflop / gemm_s,
        }
        print(
            f"all convolutions: {gflop:.1f} GFLOP per batch; at the conv rates {totals['conv_gflops']:.0f} GFLOP/s "
            f"= {totals['convolutions_at_conv_rates_img_s']:.1f} img/s, at the GEMM rates {totals['gemm_gflops']:.0f} "
            f"GFLOP/s = {totals['convolutions_at_gemm_rates_img_s']:.1f} img/s (convolutions only, no pooling or concat)"
        )
        results["layers"][precision] = rows
        results["totals"][precision] = totals

    networks = whole_network_runs(args.size)
    if networks:
        x = torch.randn(args.batch, 3, args.size, args.size)
        ms = time_calls(networks, x, repeats=args.repeats)
        results["networks_img_s"] = {name: args.batch / value * 1000 for name, value in ms.items()}
        print("\nwhole network, same run:")
        for name, rate in results["networks_img_s"].items():
            print(f"  {name:32s} {rate:7.1f} img/s")
        if "torchvision OpenVINO default" in results["networks_img_s"] and "bf16" in results["totals"]:
            target = 1.5 * results["networks_img_s"]["torchvision OpenVINO default"]
            bound = results["totals"]["bf16"]["convolutions_at_gemm_rates_img_s"]
            print(
                f"  1.5x OpenVINO's default = {target:.1f} img/s; bf16 convolutions alone at GEMM rates: "
                f"{bound:.1f} img/s ({target / bound:.2f} of that bound)"
            )
    if args.json:
        save_run(args.json, args, results)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
