"""Small building blocks: a convolution followed by ReLU (paper) or by BatchNorm and ReLU (variants).

Every convolution in GoogLeNet, "including those inside the Inception modules, uses rectified linear
activation" (section 5). The module keeps the names `conv` and `bn` so the `state_dict` keys match
torchvision's `BasicConv2d` (`conv1.conv.weight`, `conv1.bn.running_mean`), which makes loading
torchvision's weight files a key-for-key copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Convolution -> [BatchNorm] -> ReLU.

    `bn_eps=None` gives the paper's block: a biased convolution and ReLU. A number gives the
    BatchNorm variants' block: an unbiased convolution, BatchNorm with that epsilon, ReLU (BatchNorm
    came in 2015, after the paper; see `googlenet.model.googlenet.VARIANTS`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bn_eps: float | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2  # "same" padding: 7x7 pad 3, 5x5 pad 2, 3x3 pad 1 (FACTS s.1)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bn_eps is None
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps) if bn_eps is not None else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x)


class LocalResponseNorm(nn.LocalResponseNorm):
    """Across-channel local response normalisation (Table 1's "LocalRespNorm"), computed faster.

    The same function as `torch.nn.LocalResponseNorm` (tested to float rounding):
    y_c = x_c * (k + alpha / n * sum of x^2 over the n channels around c) ** -beta.
    PyTorch's CPU kernel builds a 5-D view and runs a 3-D average pool, slow in both directions and with
    no bfloat16 kernel. Here the channel-window sum of squares is a 1x1 convolution with a fixed 0/1 band
    matrix, one GEMM per pixel block on oneDNN's kernels (AMX under bf16 autocast); the normaliser is
    then formed in float32, because under bf16 the term alpha / n * sum (about 1e-3) would vanish next
    to k = 1. No library offers a faster LRN, so we write this one.
    """

    def _band(self, channels: int, like: Tensor) -> Tensor:
        index = torch.arange(channels, device=like.device)
        offset = index[None, :] - index[:, None]  # [out, in]: in - out
        inside = (offset >= -(self.size // 2)) & (offset <= (self.size - 1) // 2)  # torch's window
        return inside.to(like.dtype).view(channels, channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return super().forward(x)
        squares = x * x
        window = F.conv2d(squares, self._band(x.shape[1], squares))
        scale = (self.k + (self.alpha / self.size) * window.float()).pow(-self.beta)
        return x * scale.to(x.dtype)
