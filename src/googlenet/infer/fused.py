"""An inference-only GoogLeNet: BatchNorm folded, the three parallel 1x1 convolutions fused, no heads.

`fuse(model)` rewrites a trained `GoogLeNet` (any variant) into `FusedGoogLeNet`, which computes the
same main logits as `model.eval()` with fewer, larger operations:

- BatchNorm folding (bn and torchvision variants): in evaluation mode BatchNorm is an affine map per
  channel, so it is folded into the preceding convolution's weight and bias
  (`torch.nn.utils.fusion.fuse_conv_bn_eval`).
- 1x1 fusion: in every Inception module (Figure 2b) the 1x1 branch and the 1x1 reductions in front of
  the 3x3 and 5x5 branches read the same input; their weights are stacked into one 1x1 convolution whose
  output is split by channels. One GEMM of width n1x1 + n3x3red + n5x5red replaces three narrow ones;
  ReLU commutes with the split, so the result is unchanged. Whether it pays depends on the backend: on
  the project's 2-core AVX-512/AMX CPU it did not (copying the split channels out of a channels_last
  tensor costs more than the wider GEMM saves; docs/performance.md), so `optimize` keeps it off unless
  asked or measured faster.
- What only training needs is dropped: the auxiliary heads (section 5 discards them at inference) and
  dropout (the identity in evaluation mode).

The parameters are copies; the original model is not modified.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from googlenet.model.googlenet import GoogLeNet
from googlenet.model.inception import Inception
from googlenet.model.layers import ConvBlock, LocalResponseNorm


def fold(block: nn.Module) -> nn.Conv2d:
    """The `ConvBlock`'s convolution with its BatchNorm (if any) folded in; always with a bias."""
    if not isinstance(block, ConvBlock):
        raise TypeError(f"expected a ConvBlock, got {type(block).__name__}")
    conv = copy.deepcopy(block.conv).eval()
    if block.bn is not None:
        conv = fuse_conv_bn_eval(conv, copy.deepcopy(block.bn).eval())
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype))
    return conv


def _lrn(module: nn.Module) -> nn.Module:
    """The model's LRN as our `LocalResponseNorm` (float32 normaliser, bf16-safe), or nothing."""
    if isinstance(module, nn.LocalResponseNorm):
        return LocalResponseNorm(module.size, module.alpha, module.beta, module.k)
    return nn.Identity()


class FusedInception(nn.Module):
    """Figure 2b with BatchNorm folded and, with `fuse_1x1`, the branch-1 1x1 and the two 1x1
    reductions computed as one convolution whose output is split by channels."""

    def __init__(self, module: Inception, fuse_1x1: bool = True) -> None:
        super().__init__()
        parts = [fold(module.branch1), fold(module.branch2[0]), fold(module.branch3[0])]
        self.splits = [conv.out_channels for conv in parts]
        self.reduce: nn.Conv2d | None = None
        self.separate = nn.ModuleList()
        if fuse_1x1:
            self.reduce = nn.Conv2d(parts[0].in_channels, sum(self.splits), 1)
            with torch.no_grad():
                self.reduce.weight.copy_(torch.cat([conv.weight for conv in parts]))
                assert self.reduce.bias is not None
                self.reduce.bias.copy_(torch.cat([conv.bias for conv in parts if conv.bias is not None]))
        else:
            self.separate.extend(parts)
        self.conv3x3 = fold(module.branch2[1])
        self.conv5x5 = fold(module.branch3[1])  # 3x3 in the torchvision layout
        self.pool = copy.deepcopy(module.branch4[0])
        self.pool_proj = fold(module.branch4[1])

    def forward(self, x: Tensor) -> Tensor:
        """The module's output: the four branches concatenated along channels, as `Inception.forward`."""
        if self.reduce is not None:
            branch1, reduce3, reduce5 = F.relu(self.reduce(x)).split(self.splits, dim=1)
        else:
            branch1, reduce3, reduce5 = (F.relu(conv(x)) for conv in self.separate)
        return torch.cat(
            [
                branch1,
                F.relu(self.conv3x3(reduce3)),
                F.relu(self.conv5x5(reduce5)),
                F.relu(self.pool_proj(self.pool(x))),
            ],
            1,
        )


class FusedGoogLeNet(nn.Module):
    """Main-logits-only GoogLeNet for inference (see the module docstring); build it with `fuse`."""

    def __init__(self, model: GoogLeNet, fuse_1x1: bool = True) -> None:
        super().__init__()
        self.transform_input = model.config.transform_input
        self.conv1 = fold(model.conv1)
        self.maxpool1 = copy.deepcopy(model.maxpool1)
        self.lrn1 = _lrn(model.lrn1)
        self.conv2 = fold(model.conv2)
        self.conv3 = fold(model.conv3)
        self.lrn2 = _lrn(model.lrn2)
        self.maxpool2 = copy.deepcopy(model.maxpool2)
        self.inception3a = FusedInception(model.inception3a, fuse_1x1)
        self.inception3b = FusedInception(model.inception3b, fuse_1x1)
        self.maxpool3 = copy.deepcopy(model.maxpool3)
        self.inception4a = FusedInception(model.inception4a, fuse_1x1)
        self.inception4b = FusedInception(model.inception4b, fuse_1x1)
        self.inception4c = FusedInception(model.inception4c, fuse_1x1)
        self.inception4d = FusedInception(model.inception4d, fuse_1x1)
        self.inception4e = FusedInception(model.inception4e, fuse_1x1)
        self.maxpool4 = copy.deepcopy(model.maxpool4)
        self.inception5a = FusedInception(model.inception5a, fuse_1x1)
        self.inception5b = FusedInception(model.inception5b, fuse_1x1)
        self.fc = copy.deepcopy(model.fc)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        """Main logits, as the original model's `forward` in evaluation mode."""
        if self.transform_input:  # torchvision layout: ImageNet-normalised input -> [-1, 1]
            scale = x.new_tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5]).view(1, 3, 1, 1)
            shift = x.new_tensor([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5]).view(
                1, 3, 1, 1
            )
            x = x * scale + shift
        x = self.maxpool1(F.relu(self.conv1(x)))  # N x 64 x 56 x 56
        x = self.lrn1(x)
        x = F.relu(self.conv3(F.relu(self.conv2(x))))  # N x 192 x 56 x 56
        x = self.maxpool2(self.lrn2(x))  # N x 192 x 28 x 28
        x = self.inception3b(self.inception3a(x))  # N x 480 x 28 x 28
        x = self.maxpool3(x)  # N x 480 x 14 x 14
        x = self.inception4a(x)
        x = self.inception4e(self.inception4d(self.inception4c(self.inception4b(x))))  # N x 832 x 14 x 14
        x = self.maxpool4(x)  # N x 832 x 7 x 7
        x = self.inception5b(self.inception5a(x))  # N x 1024 x 7 x 7
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # N x 1024
        return self.fc(x)


def fuse(model: GoogLeNet, fuse_1x1: bool = True) -> FusedGoogLeNet:
    """An inference copy of `model` with BatchNorm folded and (`fuse_1x1`) the 1x1 convolutions fused."""
    if not isinstance(model, GoogLeNet):
        raise TypeError(f"fuse expects a googlenet.GoogLeNet, got {type(model).__name__}")
    return FusedGoogLeNet(model, fuse_1x1)
