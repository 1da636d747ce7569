"""Would Winograd convolutions, written as ONNX operators, beat ONNX Runtime's own 3x3 convolutions here?

Issue 5 asks for fp32 inference at least as fast as the fastest fp32 peer, which is torchvision's
network in ONNX Runtime, running at 86-98% of this machine's GEMM rate (docs/performance.md). Doing the
same multiply-adds faster is not possible there; doing fewer is. Winograd's minimal filtering
F(m x m, 3 x 3) computes an m x m output tile of a 3x3 convolution from an (m+2) x (m+2) input tile with
(m+2)^2 multiplications per input-output channel pair instead of 9 m^2: 2.25x fewer for F(2,3), 4x
for F(4,3). 3x3 convolutions are about two thirds of GoogLeNet's multiply-adds.

ONNX Runtime's CPU provider has no Winograd kernel and PyTorch asks oneDNN for direct convolutions, so
this script writes Winograd from standard operators, each layer as its own small ONNX model:

- input transform B^T d B of every overlapping tile: a depthwise convolution with (m+2)^2 fixed
  (m+2) x (m+2) filters at stride m;
- the (m+2)^2 independent products with the transformed weights G g G^T: one batched MatMul;
- output transform A^T M A: a depthwise transposed convolution at stride m, then the bias.

Each of GoogLeNet's 3x3 convolutions (torchvision layout, BatchNorm folded, batch and size as given)
is timed in ONNX Runtime (all graph optimisations, one intra-op thread per core) directly and in both
Winograd forms, in turns (`time_calls`), with the largest error relative to the direct output's
largest magnitude. Written for the record of what was tried, not used by `optimize()`: it measured
1.40x slower over the 19 layers on the Zen 4 machine, faster at none beyond noise (docs/performance.md). Measures,
never asserts.

    .venv/bin/python benchmarks/winograd.py --json benchmarks/results/winograd-zen4.json
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import googlenet
from googlenet.bench.command import positive_int, save_run
from googlenet.bench.paths import conv_layers
from googlenet.infer.fused import fuse
from googlenet.infer.optimize import ONNX_OPSET, onnxruntime_session, time_calls


def transforms(m: int) -> tuple[Tensor, Tensor, Tensor]:
    """B^T, G and A^T of F(m x m, 3 x 3) (Lavin and Gray, 2016), in float64.

    F(2,3) interpolates at 0, 1, -1 and infinity; F(4,3) at 0, +-1, +-2 and infinity.
    """
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]  # fmt: skip
        g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]  # fmt: skip
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    else:
        raise ValueError(f"F({m},3) is not written here; m must be 2 or 4")
    return tuple(torch.tensor(a, dtype=torch.float64) for a in (bt, g, at))  # type: ignore[return-value]


class WinogradConv3x3(nn.Module):
    """A stride-1, padding-1 3x3 convolution of a `size` x `size` input as F(m x m, 3 x 3)."""

    def __init__(self, conv: nn.Conv2d, m: int, size: int) -> None:
        super().__init__()
        bt, g, at = transforms(m)
        t = m + 2
        out_c, in_c = conv.weight.shape[:2]
        self.m, self.t, self.size, self.in_c, self.out_c = m, t, size, in_c, out_c
        self.tiles = -(-size // m)  # per side; the input is padded up to whole tiles
        weight = conv.weight.detach().double()
        self.register_buffer(
            "u", torch.einsum("ar,kcrs,bs->abkc", g, weight, g).reshape(t * t, out_c, in_c).float()
        )
        data = torch.einsum("ar,bs->abrs", bt, bt).reshape(t * t, 1, t, t).float()
        self.register_buffer("input_filters", data.repeat(in_c, 1, 1, 1))
        back = torch.einsum("ua,vb->abuv", at, at).reshape(t * t, 1, m, m).float()
        self.register_buffer("output_filters", back.repeat(out_c, 1, 1, 1))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(out_c)
        self.register_buffer("bias", bias.float().view(1, out_c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        n, m, t, tiles = x.shape[0], self.m, self.t, self.tiles
        end = tiles * m + 1 - self.size
        x = F.pad(x, (1, end, 1, end))
        v = F.conv2d(x, self.input_filters, stride=m, groups=self.in_c)  # N, C*t*t, tiles, tiles
        v = v.reshape(n, self.in_c, t * t, tiles * tiles).transpose(1, 2)  # N, t*t, C, tiles^2
        products = torch.matmul(self.u, v)  # N, t*t, K, tiles^2
        products = products.transpose(1, 2).reshape(n, self.out_c * t * t, tiles, tiles)
        y = F.conv_transpose2d(products, self.output_filters, stride=m, groups=self.out_c)
        return y[:, :, : self.size, : self.size] + self.bias


def session(module: nn.Module, shape: tuple[int, ...]) -> Any:
    """One module as an ONNX model in an ONNX Runtime session set up as `optimize()`'s backend is."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*shape),), buffer, dynamo=True, opset_version=ONNX_OPSET,
                          input_names=["x"], output_names=["y"], optimize=True, verbose=False)  # fmt: skip
    return onnxruntime_session(buffer.getvalue(), torch.device("cpu"))


def conv3x3_layers(variant: str, size: int) -> list[tuple[str, nn.Conv2d, int]]:
    """(name, convolution, input side) of every stride-1 3x3 convolution of the inference network."""
    net = fuse(googlenet.build_model(variant, num_classes=1000, aux_logits=False).eval(), fuse_1x1=False)
    return [
        (layer["name"], layer["conv"], layer["input"][2])
        for layer in conv_layers(net, 1, size)
        if layer["conv"].kernel_size == (3, 3) and layer["conv"].stride == (1, 1)
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant", default="torchvision", help="our network's layout (default: torchvision)"
    )
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--size", type=positive_int, default=224)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.manual_seed(0)
    rows = []
    print(f"3x3 convolutions, batch {args.batch}, {args.size}x{args.size}, fp32, ONNX Runtime: median ms")
    print(f"{'layer':26s} {'input':>12s} {'out':>4s} {'direct':>7s} {'F(2,3)':>7s} {'F(4,3)':>7s} "
          f"{'best/direct':>11s} {'err F(2,3)':>10s} {'err F(4,3)':>10s}")  # fmt: skip
    for name, conv, side in conv3x3_layers(args.variant, args.size):
        shape = (args.batch, conv.in_channels, side, side)
        x = torch.randn(*shape)
        with torch.no_grad():
            reference = conv(x).numpy()
        runs, errors = {"direct": session(conv, shape)}, {}
        for m in (2, 4):
            runs[f"F({m},3)"] = session(WinogradConv3x3(conv, m, side), shape)
        feed = {"x": x.numpy()}
        for key, sess in runs.items():
            out = sess.run(None, feed)[0]
            errors[key] = float(np.abs(out - reference).max() / np.abs(reference).max())
        ms = time_calls(
            {k: (lambda _x, s=s, f=feed: s.run(None, f)) for k, s in runs.items()}, x, repeats=args.repeats
        )
        best = min(ms["F(2,3)"], ms["F(4,3)"])
        row = {"layer": name, "input": [conv.in_channels, side, side], "out_channels": conv.out_channels,
               "ms": ms, "relative_error": errors, "best_winograd_over_direct": best / ms["direct"]}  # fmt: skip
        rows.append(row)
        print(f"{name:26s} {conv.in_channels:>4d}x{side:>3d}x{side:<3d} {conv.out_channels:>4d} "
              f"{ms['direct']:7.1f} {ms['F(2,3)']:7.1f} {ms['F(4,3)']:7.1f} {best / ms['direct']:10.2f}x "
              f"{errors['F(2,3)']:10.1e} {errors['F(4,3)']:10.1e}")  # fmt: skip
    direct = sum(r["ms"]["direct"] for r in rows)
    best = sum(min(r["ms"]["F(2,3)"], r["ms"]["F(4,3)"]) for r in rows)
    faster = [r["layer"] for r in rows if r["best_winograd_over_direct"] < 1]
    totals = {"direct_ms": direct, "best_winograd_ms": best, "layers_faster_with_winograd": faster}
    print(f"all {len(rows)} layers: direct {direct:.0f} ms, the better Winograd form of each {best:.0f} ms "
          f"({best / direct:.2f}x); faster with Winograd: {', '.join(faster) or 'none'}")  # fmt: skip
    if args.json:
        save_run(args.json, args, {"layers": rows, "totals": totals})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
