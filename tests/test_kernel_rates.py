"""benchmarks/kernel_rates.py: each convolution found with its shapes, and timed against its GEMM."""

import pytest
import torch

import googlenet
from googlenet.infer.fused import fuse


@pytest.fixture(scope="module")
def kernel_rates(load_script):
    return load_script("kernel_rates")


def test_every_convolution_is_found_with_its_shapes(kernel_rates):
    net = fuse(googlenet.build_model("torchvision", num_classes=10, aux_logits=False).eval(), fuse_1x1=False)
    layers = kernel_rates.conv_layers(net, batch=2, size=64)
    assert len(layers) == 57  # conv1-3 and six per Inception module, nine modules
    first = layers[0]
    assert (first["name"], first["input"], first["output"]) == ("conv1", (2, 3, 64, 64), (2, 64, 32, 32))
    assert layers[-1]["name"] == "inception5b.pool_proj"


def test_a_layer_is_timed_as_a_convolution_and_as_its_im2col_gemm(kernel_rates):
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    layer = {"name": "c", "conv": conv, "input": (2, 8, 10, 10), "output": (2, 16, 10, 10)}
    row = kernel_rates.time_layer(layer, torch.float32, repeats=1)
    assert row["gflop"] == pytest.approx(2 * (2 * 10 * 10) * (8 * 9) * 16 / 1e9)
    assert row["conv_ms"] > 0 and row["gemm_ms"] > 0
    assert row["conv_gflops"] == pytest.approx(row["gflop"] / row["conv_ms"] * 1000)
