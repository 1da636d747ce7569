"""The model: Table 1 shapes, auxiliary heads, variants, gradients, frozen keys, bad arguments."""

from __future__ import annotations

import contextlib
import doctest
import itertools
import math
import os
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import googlenet
from extras import require
from googlenet.model import googlenet as googlenet_module
from googlenet.model import table1
from googlenet.model.googlenet import STAGES, GoogLeNetOutputs
from googlenet.model.inception import AuxHead, Inception, NaiveInception, aux_pool_geometry

FIXTURES = Path(__file__).parent / "fixtures"
VARIANT_NAMES = ("paper", "bn", "torchvision")

# Table 1's output column, H x W x C, for the trunk at 224 input.
TABLE1_SHAPES = {
    "conv1": (64, 112, 112),
    "maxpool1": (64, 56, 56),
    "conv3": (192, 56, 56),
    "maxpool2": (192, 28, 28),
    "inception3a": (256, 28, 28),
    "inception3b": (480, 28, 28),
    "maxpool3": (480, 14, 14),
    "inception4a": (512, 14, 14),
    "inception4b": (512, 14, 14),
    "inception4c": (512, 14, 14),
    "inception4d": (528, 14, 14),
    "inception4e": (832, 14, 14),
    "maxpool4": (832, 7, 7),
    "inception5a": (832, 7, 7),
    "inception5b": (1024, 7, 7),
}


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_stage_shapes_match_table1(variant: str) -> None:
    model = googlenet.build_model(variant, aux_logits=False).eval()
    with torch.no_grad():
        stages = model.forward_stages(torch.zeros(1, 3, 224, 224))
    assert list(stages) == list(STAGES)
    assert {k: tuple(v.shape[1:]) for k, v in stages.items()} == TABLE1_SHAPES


@pytest.mark.parametrize(("size", "aux"), [(32, False), (64, True), (96, True), (137, True), (224, True)])
def test_output_shapes_at_several_sizes(size: int, aux: bool) -> None:
    model = googlenet.build_model("paper", num_classes=7, aux_logits=aux).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert model.forward_features(x).shape == (2, 1024)
        out = model.forward_train(x)
    assert out.logits.shape == (2, 7)
    if aux:
        assert out.aux1 is not None and out.aux1.shape == (2, 7)
        assert out.aux2 is not None and out.aux2.shape == (2, 7)


def test_non_square_input() -> None:
    model = googlenet.build_model("paper", num_classes=3).eval()
    with torch.no_grad():
        out = model.forward_train(torch.randn(1, 3, 224, 320))
    assert out.logits.shape == (1, 3) and out.aux1 is not None and out.aux1.shape == (1, 3)


def test_paper_stem_layers() -> None:
    model = googlenet.build_model("paper")
    conv1 = model.conv1.conv
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((7, 7), (2, 2), (3, 3))
    assert conv1.bias is not None and model.conv1.bn is None
    for pool in (model.maxpool1, model.maxpool2, model.maxpool3, model.maxpool4):
        assert (pool.kernel_size, pool.stride, pool.ceil_mode) == (3, 2, True)
    for lrn in (model.lrn1, model.lrn2):
        assert isinstance(lrn, nn.LocalResponseNorm)
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)
    assert model.conv2.conv.kernel_size == (1, 1) and model.conv3.conv.kernel_size == (3, 3)
    assert model.dropout.p == 0.4
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(relus) == len(convs)  # ReLU after every convolution


def test_inception_branches_follow_figure_2b() -> None:
    model = googlenet.build_model("paper")
    module = model.inception3a
    assert isinstance(module, Inception)
    assert module.branch1.conv.kernel_size == (1, 1)
    assert [b.conv.kernel_size for b in module.branch2] == [(1, 1), (3, 3)]
    assert [b.conv.kernel_size for b in module.branch3] == [(1, 1), (5, 5)]
    assert module.branch3[1].conv.padding == (2, 2)
    pool = module.branch4[0]
    assert isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding) == (3, 1, 1)
    widths = (
        module.branch1.conv.out_channels,
        module.branch2[0].conv.out_channels,
        module.branch2[1].conv.out_channels,
        module.branch3[0].conv.out_channels,
        module.branch3[1].conv.out_channels,
        module.branch4[1].conv.out_channels,
    )
    assert widths == (64, 96, 128, 16, 32, 32)


def test_naive_module_figure_2a() -> None:
    spec = googlenet.model.table1.INCEPTION["3a"]
    naive = NaiveInception(192, spec)
    out = naive(torch.randn(1, 192, 28, 28))
    assert out.shape == (1, 64 + 128 + 32 + 192, 28, 28)
    assert naive.branch3.conv.kernel_size == (5, 5)


def test_aux_heads_section5_structure() -> None:
    model = googlenet.build_model("paper", num_classes=10)
    for head, channels in ((model.aux1, 512), (model.aux2, 528)):
        assert isinstance(head, AuxHead)
        assert head.conv.conv.in_channels == channels and head.conv.conv.out_channels == 128
        assert head.conv.conv.kernel_size == (1, 1)
        assert (head.fc1.in_features, head.fc1.out_features) == (128 * 4 * 4, 1024)
        assert head.dropout.p == 0.7
        assert (head.fc2.in_features, head.fc2.out_features) == (1024, 10)
    pooled = model.aux1.pool(torch.randn(1, 512, 14, 14))
    expected = nn.functional.avg_pool2d(torch.randn(1, 512, 14, 14), 5, 3)
    assert pooled.shape == expected.shape == (1, 512, 4, 4)


def test_aux_pool_is_exactly_5x5_stride_3_at_224() -> None:
    model = googlenet.build_model("paper").eval()
    x = torch.randn(1, 512, 14, 14)
    assert torch.equal(model.aux1.pool(x), nn.functional.avg_pool2d(x, 5, 3))
    assert aux_pool_geometry(14) == (5, 3) == (table1.AUX_POOL_KERNEL, table1.AUX_POOL_STRIDE)  # section 5


@pytest.mark.parametrize(("size", "geometry"), [(4, (1, 1)), (7, (4, 1)), (8, (2, 2)), (28, (7, 7))])
def test_aux_pool_gives_4x4_at_other_sizes(size: int, geometry: tuple[int, int]) -> None:
    assert aux_pool_geometry(size) == geometry
    kernel, stride = geometry
    assert (size - kernel) // stride + 1 == 4


def test_aux_logits_false_builds_no_heads() -> None:
    model = googlenet.build_model("paper", aux_logits=False)
    assert model.aux1 is None and model.aux2 is None
    assert not any(k.startswith(("aux1", "aux2")) for k in model.state_dict())
    out = model.forward_train(torch.randn(1, 3, 64, 64))
    assert out.aux1 is None and out.aux2 is None


@pytest.mark.parametrize("variant", ["paper", "bn", "torchvision"])
def test_same_initial_trunk_and_classifier_with_and_without_heads(variant: str) -> None:
    # The no-aux ablation arm and --grad-norms-every compare a seed's runs with and without heads.
    torch.manual_seed(0)
    with_heads = googlenet.build_model(variant, num_classes=10, aux_logits=True).state_dict()
    torch.manual_seed(0)
    without = googlenet.build_model(variant, num_classes=10, aux_logits=False).state_dict()
    assert set(without) < set(with_heads)
    assert all(torch.equal(tensor, with_heads[name]) for name, tensor in without.items())


def test_return_type_does_not_depend_on_mode() -> None:
    model = googlenet.build_model("paper", num_classes=4)
    x = torch.randn(2, 3, 64, 64)
    for mode in (True, False):
        model.train(mode)
        assert isinstance(model(x), torch.Tensor)
        out = model.forward_train(x)
        assert isinstance(out, GoogLeNetOutputs)
        assert out._fields == ("logits", "aux1", "aux2")


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_every_parameter_receives_a_gradient(variant: str) -> None:
    model = googlenet.build_model(variant, num_classes=5).train()
    out = model.forward_train(torch.randn(4, 3, 64, 64))
    loss = sum(t.square().mean() for t in out)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_state_dict_keys_are_frozen(variant: str) -> None:
    keys = sorted(googlenet.build_model(variant).state_dict())
    expected = (FIXTURES / f"state_dict_keys_{variant}.txt").read_text().split()
    assert keys == expected


def test_variants_differ_where_documented() -> None:
    paper = googlenet.build_model("paper")
    bn = googlenet.build_model("bn")
    tv = googlenet.build_model("torchvision")
    assert bn.conv1.bn is not None and bn.conv1.conv.bias is None and isinstance(bn.lrn1, nn.Identity)
    assert bn.conv1.bn.eps == 1e-5 and tv.conv1.bn.eps == 1e-3
    assert tv.inception3a.branch3[1].conv.kernel_size == (3, 3)
    assert paper.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert tv.maxpool4.kernel_size == 2 and paper.maxpool4.kernel_size == 3
    assert tv.dropout.p == 0.2
    assert tv.aux1.adaptive_pool and not paper.aux1.adaptive_pool


def test_any_number_of_classes() -> None:
    for classes in (1, 2, 37, 1000):
        model = googlenet.build_model("paper", num_classes=classes).eval()
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, classes)


def _photo_crops() -> tuple[torch.Tensor, Callable[[int], tuple[torch.Tensor, torch.Tensor]]]:
    """Ten real photographs shipped inside scikit-image's wheel, one class each, as random 64x64 crops."""
    import numpy as np
    from PIL import Image
    from skimage import data

    names = ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "moon", "page", "text", "horse")
    images = []
    for name in names:
        array = getattr(data, name)()
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        image = Image.fromarray(array).convert("RGB").resize((80, 80))
        images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1))
    stack = (torch.stack(images) - 0.45) / 0.25
    generator = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, len(names), (n,), generator=generator)
        crops = []
        for label in y:
            top, left = torch.randint(0, 17, (2,), generator=generator).tolist()
            crops.append(stack[label, :, top : top + 64, left : left + 64])
        return torch.stack(crops), y

    return stack, batch


def test_initial_loss_is_ln_classes_and_paper_variant_learns() -> None:
    """The BN-free network must not stall at ln(C) (FACTS s.3): from He initialisation, SGD with the
    recipe's lr 0.01 and momentum 0.9 after a short linear warm-up learns to tell ten real photos apart."""
    torch.manual_seed(0)
    classes = 10
    _, batch = _photo_crops()
    model = googlenet.build_model("paper", num_classes=classes, dropout=0.0, aux_dropout=0.0).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for step in range(30):
        for group in optimizer.param_groups:
            group["lr"] = 0.01 * min(1.0, (step + 1) / 10)  # warm-up, as the training recipe does
        x, y = batch(20)
        out = model.forward_train(x)
        loss = nn.functional.cross_entropy(out.logits, y) + 0.3 * sum(
            nn.functional.cross_entropy(a, y) for a in (out.aux1, out.aux2)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(nn.functional.cross_entropy(out.logits, y).item())
    assert abs(losses[0] - math.log(classes)) < 0.05
    assert sum(losses[-5:]) / 5 < 0.8 * math.log(classes), losses


def test_reset_classifier() -> None:
    model = googlenet.build_model("paper", num_classes=1000)
    model.reset_classifier(3)
    assert model.fc.out_features == 3 and model.aux1.fc2.out_features == 3
    assert model.config.num_classes == 3


@pytest.mark.parametrize(
    ("variant", "options", "std"),
    [("paper", {}, 0.001), ("bn", {}, 0.01), ("paper", {"init": "caffe"}, 1024**-0.5)],
)
def test_reset_classifier_starts_as_the_variants_classifiers_in_the_old_ones_dtype(
    variant: str, options: dict, std: float
) -> None:
    model = googlenet.build_model(variant, num_classes=2, **options).to(torch.float64)
    model.reset_classifier(300)
    for layer in (model.fc, model.aux1.fc2, model.aux2.fc2):
        assert layer.weight.dtype == torch.float64 and layer.weight.shape == (300, 1024)
        assert layer.weight.std().item() == pytest.approx(std, rel=0.05)
        assert torch.all(layer.bias == 0)
    on_meta = googlenet.build_model(variant, num_classes=2, aux_logits=False).to("meta")
    on_meta.reset_classifier(5)
    assert on_meta.fc.weight.device.type == "meta"


@pytest.mark.parametrize("bad", [0, 2.5, True, "3", None])
def test_reset_classifier_refuses_a_bad_count_and_changes_nothing(bad: object) -> None:
    model = googlenet.build_model("paper", num_classes=4, aux_logits=False)
    fc = model.fc
    with pytest.raises(googlenet.ConfigError, match="num_classes must be a whole number >= 1") as info:
        model.reset_classifier(bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert model.fc is fc and model.config.num_classes == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "alexnet"}, "unknown variant"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"dropout": 1.5}, "dropout"),
        ({"colour": "red"}, "unknown model option"),
        ({"init": "xavier"}, "unknown init"),
        # each of these failed in torch or in a comparison, or was taken
        ({"dropout": "0.5"}, r"dropout must be a number in \[0, 1\), got '0.5'"),
        ({"aux_dropout": None}, "aux_dropout must be a number"),
        ({"branch3_kernel": 3.0}, "branch3_kernel must be 5 .* got 3.0"),
        ({"maxpool4_kernel": True}, "maxpool4_kernel must be 3 .* got True"),
        ({"bn_eps": True}, "bn_eps must be None .* got True"),
        ({"num_classes": True}, "num_classes must be a whole number >= 1, got True"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(googlenet.ConfigError, match=message) as info:
        googlenet.build_model(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"variant": "foo"}, "unknown variant 'foo'; choose from paper, bn, torchvision"),
        ({"num_classes": "10"}, "num_classes must be a whole number >= 1, got '10'"),
        ({"bn_eps": 0}, "bn_eps must be None"),
        ({"lrn": 1}, "lrn must be True or False"),
        ({"init": "xavier"}, "unknown init 'xavier'; choose from he, caffe, truncnormal"),
    ],
)
def test_build_from_config_checks_every_field(config: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(googlenet.ConfigError, match=message) as info:
        googlenet.build_from_config(config)
    assert "\n" not in str(info.value)
    # A checkpoint that stores such a config is refused as a checkpoint, named.
    path = tmp_path / "odd.pt"
    torch.save({"format": "googlenet", "model_config": config, "state_dict": {}}, path)
    with pytest.raises(googlenet.CheckpointError, match=f"odd.pt: invalid model config \\({message}"):
        googlenet.load_checkpoint_model(path)


def test_bad_inputs() -> None:
    model = googlenet.build_model("paper").eval()
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="at least 64"):
        model.forward_train(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="unknown stage"):
        model.forward_stages(torch.randn(1, 3, 64, 64), ["inception6a"])


def test_inputs_other_than_a_floating_point_tensor_are_refused_in_words() -> None:
    import numpy as np

    model = googlenet.build_model("bn", num_classes=3).eval()
    calls = (model, model.forward_features, model.forward_train, model.forward_stages)
    for call in calls:
        for pixels in (
            torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
            torch.zeros(1, 3, 64, 64, dtype=torch.long),
        ):
            # torchvision.io.read_image gives uint8 pixels: this was "expected scalar type Byte but found Float"
            with pytest.raises(
                ValueError, match=r"normalised floating-point N x 3 x H x W tensor, got torch\.(uint8|int64)"
            ):
                call(pixels)
        for other, name in (
            (np.zeros((1, 3, 64, 64), np.float32), "numpy.ndarray"),
            ([[0.0]], "list"),
            (None, "NoneType"),
        ):
            with pytest.raises(TypeError, match=f"floating-point N x 3 x H x W tensor, got a {name}$"):
                call(other)
    with torch.no_grad():  # every floating-point dtype still runs
        assert model.double()(torch.zeros(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64


def test_forward_stages_stops_early() -> None:
    model = googlenet.build_model("paper").eval()
    with torch.no_grad():
        out = model.forward_stages(torch.randn(1, 3, 224, 224), ["inception4e", "conv1"])
    assert list(out) == ["conv1", "inception4e"]


def test_build_model_docstring_example_runs() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(googlenet_module.build_model, globs={"googlenet": googlenet}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


@pytest.mark.parametrize("channels_last", [False, True])
def test_local_response_norm_equals_torchs(channels_last: bool) -> None:
    from googlenet.model.layers import LocalResponseNorm

    torch.manual_seed(0)
    x = torch.randn(2, 67, 9, 9) * 30  # large values: the normaliser is far from 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for size in (5, 4):  # odd (the paper's) and even windows
        reference = torch.nn.LocalResponseNorm(size, 1e-4, 0.75, 1.0)
        ours = LocalResponseNorm(size, 1e-4, 0.75, 1.0)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        expected, got = reference(a), ours(b)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        expected.square().sum().backward()
        got.square().sum().backward()
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = ours(x.to(torch.bfloat16))
    torch.testing.assert_close(low.float(), reference(x), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("size", [5, 4])
def test_local_response_norm_backward_is_the_exact_gradient(size: int) -> None:
    """The hand-written backward (`_LRNFunction`) against finite differences in float64, and against
    autograd through torch's LRN under bf16 autocast (the training setting)."""
    from googlenet.model.layers import LocalResponseNorm

    torch.manual_seed(0)
    ours = LocalResponseNorm(size, 1e-2, 0.75, 1.0)  # alpha large enough that the cross terms matter
    x = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 5).requires_grad_(True)
    assert torch.autograd.gradcheck(ours, (x,))
    assert ours(x).grad_fn is not None and "LRNFunction" in type(ours(x).grad_fn).__name__

    x = (torch.randn(4, 64, 6, 6) * 30).contiguous(memory_format=torch.channels_last)
    reference = torch.nn.LocalResponseNorm(size, 1e-4, 0.75, 1.0)
    ours = LocalResponseNorm(size, 1e-4, 0.75, 1.0)
    weights = torch.randn(4, 64, 6, 6)
    a = x.clone().requires_grad_(True)
    (reference(a) * weights).sum().backward()
    b = x.to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ours(b)
    (out.float() * weights).sum().backward()
    assert b.grad is not None and a.grad is not None
    scale = a.grad.abs().max()
    torch.testing.assert_close(b.grad.float() / scale, a.grad / scale, rtol=0, atol=2e-2)


def test_local_response_norm_under_fp16_keeps_activations_above_256() -> None:
    """GPU `--amp` where bf16 is not native is fp16 autocast: x^2 of an activation above 256 (Caffe's
    0-255 input scaling gives conv1 such values) was inf in fp16, and the band convolution's zeros made
    the whole pixel NaN, forward and backward. The sums of squares are formed in float32 there. (CPU fp16
    autocast and fp16 tensors stand in for the GPU's.)"""
    from googlenet.model.layers import LocalResponseNorm

    torch.manual_seed(0)
    x = torch.rand(2, 64, 6, 6) * 400
    reference = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(x)
    ours = LocalResponseNorm(5, 1e-4, 0.75, 1.0)
    with torch.autocast("cpu", dtype=torch.float16):
        torch.testing.assert_close(ours(x).float(), reference, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ours(x.half()).float(), reference, rtol=2e-3, atol=1.0)  # inference
    half = x.half().requires_grad_(True)  # the closed-form training path
    out = ours(half)
    torch.testing.assert_close(out.float(), reference, rtol=2e-3, atol=1.0)
    out.float().sum().backward()
    assert half.grad is not None and bool(torch.isfinite(half.grad).all())


def test_local_response_norm_higher_derivatives_are_right_or_refused() -> None:
    """The closed form gives first derivatives only: a second one through it is refused in words
    (it was silently wrong: its saved normaliser carried no graph); `closed_form_backward = False` and
    torch.func's transforms differentiate the plain forward, to any order."""
    from googlenet.model.layers import LocalResponseNorm

    torch.manual_seed(0)
    layer = LocalResponseNorm(5, 1e-2, 0.75, 1.0)
    x = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 5).requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"first derivatives only.*closed_form_backward = False"):
        torch.autograd.gradgradcheck(layer, (x,))
    layer.closed_form_backward = False
    assert torch.autograd.gradgradcheck(layer, (x,))  # float64 end to end (the plain forward too)

    model = googlenet.build_model("paper", num_classes=5).eval()
    params = dict(model.named_parameters())
    images = torch.randn(2, 3, 64, 64)
    grads = torch.func.grad(lambda p: torch.func.functional_call(model, p, (images,)).sum())(params)
    model(images).sum().backward()
    for name, param in params.items():
        if param.grad is not None:  # the auxiliary heads take no part in the eval-mode output
            torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-6 * param.grad.abs().max())
    exported = torch.export.export(model, (images,))  # with gradients enabled, as torch.export traces
    torch.testing.assert_close(exported.module()(images), model(images))


def _onnx_export_is_visible() -> bool:
    """Whether `torch.onnx.is_in_onnx_export()` is true inside this torch's dynamo-based ONNX export."""
    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.onnx.is_in_onnx_export())
            return x + 1

    torch.onnx.export(Probe(), (torch.zeros(1),), dynamo=True, verbose=False)
    return any(seen)


def test_local_response_norm_exports_without_a_fractional_pow() -> None:
    """In ONNX, beta = 0.75 is written with Sqrt and Div (OpenVINO runs a fractional Pow far slower),
    whether or not the input requires a gradient (the training path must not be what is exported), and
    ONNX Runtime computes the same values as torch's LRN; other betas keep Pow."""
    require("onnxscript")
    ort = require("onnxruntime")

    from googlenet.model.layers import LocalResponseNorm, onnx_export

    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 5) * 30
    # Marked as our exporter marks it (`onnx_export`): torch before about 2.7 does not report its
    # dynamo-based export through `torch.onnx.is_in_onnx_export()`; later ones do, and are checked bare.
    marks = (onnx_export, contextlib.nullcontext) if _onnx_export_is_visible() else (onnx_export,)
    cases = itertools.product(((0.75, {"Sqrt", "Div"}), (0.6, {"Pow"})), (False, True), marks)
    for (beta, ops), grad, mark in cases:
        module = LocalResponseNorm(5, 1e-4, beta, 1.0)
        with mark():
            program = torch.onnx.export(module, (x.clone().requires_grad_(grad),), dynamo=True, verbose=False)
        assert program is not None
        proto = program.model_proto
        kinds = {node.op_type for node in proto.graph.node}
        assert ops <= kinds and ("Pow" in kinds) == (beta != 0.75), kinds
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {proto.graph.input[0].name: x.numpy()})
        expected = torch.nn.LocalResponseNorm(5, 1e-4, beta, 1.0)(x)
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5)


def test_caffe_init_is_bvlc_googlenets_xavier_with_bias_0_2() -> None:
    """`init="caffe"`: uniform weights of variance 1/fan_in, bias 0.2 except the three classifiers' 0."""
    torch.manual_seed(0)
    model = googlenet.build_model("paper", num_classes=10, init="caffe")
    classifiers = {model.fc, model.aux1.fc2, model.aux2.fc2}
    checked = 0
    for module in model.modules():
        if not isinstance(module, nn.Conv2d | nn.Linear):
            continue
        fan_in = module.weight[0].numel()
        bound = math.sqrt(3.0 / fan_in)
        assert module.weight.abs().max() <= bound
        if module.weight.numel() > 10_000:  # enough draws for the variance to be close
            assert module.weight.var().item() == pytest.approx(1.0 / fan_in, rel=0.05)
        assert torch.all(module.bias == (0.0 if module in classifiers else 0.2))
        checked += 1
    assert checked == 57 + 2 * 3 + 1  # 57 convolutions, two heads of conv + fc1 + fc2, the classifier


def test_the_lazy_public_names_are_all_there() -> None:
    exports = googlenet._EXPORTS
    assert set(googlenet.__all__) == {"__version__", *exports}
    for name in exports:  # each resolves to the object its module defines
        assert getattr(googlenet, name) is getattr(__import__(exports[name], fromlist=[name]), name)
    assert set(googlenet.__all__) <= set(dir(googlenet))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        googlenet.nope  # noqa: B018


def test_subpackages_are_attributes_after_a_plain_import_googlenet() -> None:
    # Found in a fresh interpreter: this one has imported them (which sets the attributes) already.
    probe = (
        "import sys, googlenet; light = 'torch' not in sys.modules; "
        "print(light, googlenet.train.fit is googlenet.fit, googlenet.infer.optimize is googlenet.optimize, "
        "'train' in dir(googlenet), googlenet.model.__name__ == 'googlenet.model')"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(googlenet.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True"] * 5, done.stdout + done.stderr
    found = {module.name for module in pkgutil.iter_modules(googlenet.__path__)} - {"__main__"}
    assert set(googlenet._SUBMODULES) == found  # every one of them
