"""The Inception module (Figure 2b), its naive form (Figure 2a) and the auxiliary classifier (section 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from googlenet.model import table1
from googlenet.model.layers import ConvBlock
from googlenet.model.table1 import InceptionSpec


class Inception(nn.Module):
    """Figure 2b: four parallel branches concatenated along channels.

    branch1: 1x1 | branch2: 1x1 reduce -> 3x3 | branch3: 1x1 reduce -> 5x5 |
    branch4: 3x3 max pool stride 1 -> 1x1 projection. Every convolution is followed by ReLU.

    `branch3_kernel=3` reproduces torchvision's layout, whose "5x5" branch uses a 3x3 kernel
    (a known bug kept there for weight compatibility, vision #906); the paper uses 5.
    """

    def __init__(
        self,
        in_channels: int,
        spec: InceptionSpec,
        bn_eps: float | None = None,
        branch3_kernel: int = 5,
        pool_ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.branch1 = ConvBlock(in_channels, spec.n1x1, 1, bn_eps=bn_eps)
        self.branch2 = nn.Sequential(
            ConvBlock(in_channels, spec.n3x3red, 1, bn_eps=bn_eps),
            ConvBlock(spec.n3x3red, spec.n3x3, 3, bn_eps=bn_eps),
        )
        self.branch3 = nn.Sequential(
            ConvBlock(in_channels, spec.n5x5red, 1, bn_eps=bn_eps),
            ConvBlock(spec.n5x5red, spec.n5x5, branch3_kernel, bn_eps=bn_eps),
        )
        self.branch4 = nn.Sequential(
            # stride 1 with padding 1 keeps the size, so ceil mode changes nothing but is kept
            # settable to mirror torchvision's module exactly.
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=pool_ceil_mode),
            ConvBlock(in_channels, spec.pool_proj, 1, bn_eps=bn_eps),
        )

    @property
    def out_channels(self) -> int:
        return self.spec.out_channels

    def forward(self, x: Tensor) -> Tensor:
        # N x C_in x H x W -> N x (n1x1 + n3x3 + n5x5 + pool_proj) x H x W
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class NaiveInception(nn.Module):
    """Figure 2a: 1x1 | 3x3 | 5x5 convolutions and a 3x3 max pool, with no 1x1 reductions.

    The pooling branch passes the input channels through, so the output grows with every module;
    this is the cost the paper's 1x1 reductions avoid (section 4). Used by `summary --naive`.
    """

    def __init__(self, in_channels: int, spec: InceptionSpec, bn_eps: float | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.branch1 = ConvBlock(in_channels, spec.n1x1, 1, bn_eps=bn_eps)
        self.branch2 = ConvBlock(in_channels, spec.n3x3, 3, bn_eps=bn_eps)
        self.branch3 = ConvBlock(in_channels, spec.n5x5, 5, bn_eps=bn_eps)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)

    @property
    def out_channels(self) -> int:
        return self.spec.n1x1 + self.spec.n3x3 + self.spec.n5x5 + self.in_channels

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def aux_pool_geometry(size: int) -> tuple[int, int]:
    """Kernel and stride of the auxiliary average pool that turn a `size` x `size` map into 4x4.

    Section 5 gives 5x5 stride 3 for the 14x14 map of a 224 input. For other inputs we generalise it
    (our rule, not the paper's): 4 windows, the last ending at the border, stride = size // 4 and
    kernel = size - 3 * stride, which gives exactly (5, 3) at 14, (7, 7) at 28 (448 input),
    (2, 2) at 8 (128 input) and (1, 1) at 4 (64 input, the smallest size with aux heads).
    """
    if size < table1.AUX_POOL_OUTPUT:
        raise ValueError(
            f"auxiliary heads need a feature map of at least 4x4 after inception 4a, got {size}x{size}"
        )
    stride = size // table1.AUX_POOL_OUTPUT
    return size - (table1.AUX_POOL_OUTPUT - 1) * stride, stride


class AuxHead(nn.Module):
    """Section 5 auxiliary classifier: avg pool 5x5/3 -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU ->
    dropout 70% -> linear to the classes.

    `adaptive_pool=True` reproduces torchvision's head, which pools with `adaptive_avg_pool2d(4)`
    (overlapping windows of 4 at 14x14, not 5x5/3). Its conv block gets BatchNorm when the network does.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        bn_eps: float | None = None,
        dropout: float = table1.AUX_DROPOUT,
        adaptive_pool: bool = False,
    ) -> None:
        super().__init__()
        self.adaptive_pool = adaptive_pool
        self.conv = ConvBlock(in_channels, table1.AUX_CONV, 1, bn_eps=bn_eps)
        self.fc1 = nn.Linear(table1.AUX_CONV * table1.AUX_POOL_OUTPUT**2, table1.AUX_FC)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(table1.AUX_FC, num_classes)

    def pool(self, x: Tensor) -> Tensor:
        """Section 5's average pool to 4x4 (5x5 stride 3 at 14x14, `aux_pool_geometry` per axis at other
        sizes), or with `adaptive_pool` torchvision's `adaptive_avg_pool2d(4)`."""
        if self.adaptive_pool:
            return F.adaptive_avg_pool2d(x, table1.AUX_POOL_OUTPUT)
        if x.shape[-1] != x.shape[-2]:
            # Non-square inputs: the same rule per axis.
            (kh, sh), (kw, sw) = aux_pool_geometry(x.shape[-2]), aux_pool_geometry(x.shape[-1])
            return F.avg_pool2d(x, (kh, kw), (sh, sw))
        kernel, stride = aux_pool_geometry(x.shape[-1])
        return F.avg_pool2d(x, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        """Auxiliary logits from the feature map of inception 4a (aux1) or 4d (aux2)."""
        x = self.pool(x)  # N x 512 x 14 x 14 -> N x 512 x 4 x 4 (aux1; aux2 has 528 channels)
        x = self.conv(x)  # N x 128 x 4 x 4
        x = torch.flatten(x, 1)  # N x 2048
        x = F.relu(self.fc1(x), inplace=True)  # N x 1024
        x = self.dropout(x)
        return self.fc2(x)  # N x num_classes
