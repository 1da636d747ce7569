"""benchmarks/compile_train.py: the compiled training step computes what the eager one does."""

import pytest
import torch


@pytest.mark.slow  # compiling GoogLeNet's forward and backward takes about two minutes on 2 cores
def test_compiled_and_eager_steps_agree_from_the_same_weights(load_script) -> None:
    compile_train = load_script("compile_train")
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([3, 7])
    no_dropout = {"dropout": 0.0, "aux_dropout": 0.0}  # the two paths draw dropout masks differently
    eager = compile_train.build("torchvision", bf16=False, compiled=False, **no_dropout)
    compiled = compile_train.build("torchvision", bf16=False, compiled=True, **no_dropout)
    for _ in range(2):  # the first loss (same initial weights) and the one after an SGD step
        a, b = eager(x, y), compiled(x, y)
        assert torch.isfinite(a) and b.item() == pytest.approx(a.item(), rel=1e-4)
