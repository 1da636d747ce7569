"""Small building blocks: a convolution followed by ReLU (paper) or by BatchNorm and ReLU (variants).

Every convolution in GoogLeNet, "including those inside the Inception modules, uses rectified linear
activation" (section 5). The module keeps the names `conv` and `bn` so the `state_dict` keys match
torchvision's `BasicConv2d` (`conv1.conv.weight`, `conv1.bn.running_mean`), which makes loading
torchvision's weight files a key-for-key copy.
"""

from __future__ import annotations

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
