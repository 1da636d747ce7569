"""benchmarks/winograd.py: its Winograd convolutions compute the convolution they are timed against."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.mark.parametrize(("m", "size"), [(2, 14), (4, 14), (2, 7), (4, 7)])
def test_winograd_equals_the_direct_convolution(load_script, m: int, size: int) -> None:
    """Odd sides (7) pad up to whole tiles and crop back; the error is far inside optimize()'s 1e-4."""
    winograd = load_script("winograd")
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 3, padding=1)
    x = torch.randn(2, 24, size, size)
    with torch.no_grad():
        expected = conv(x)
        got = winograd.WinogradConv3x3(conv, m, size)(x)
    assert got.shape == expected.shape
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-5


def test_only_the_two_written_tile_sizes(load_script) -> None:
    with pytest.raises(ValueError, match="m must be 2 or 4"):
        load_script("winograd").transforms(3)


def test_the_layers_are_the_stride_1_3x3_convolutions(load_script) -> None:
    layers = load_script("winograd").conv3x3_layers("torchvision", 224)
    assert len(layers) == 19  # conv3 and, in each of 9 modules, the 3x3 and the "5x5" branch's 3x3
    name, conv, side = layers[0]
    assert (name, conv.in_channels, conv.out_channels, side) == ("conv3", 64, 192, 56)
    assert {side for _, _, side in layers} == {56, 28, 14, 7}
