"""Parameter groups: one group by default; Caffe's bias lr x2 / decay 0 and torchvision's norm decay; their description."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import googlenet
from googlenet.train.params import describe_groups, parameter_groups


def _ids(params: list[nn.Parameter]) -> list[int]:
    return [id(p) for p in params]


def test_default_is_one_group_in_parameters_order() -> None:
    # Section 6: one learning rate and one weight decay; the order keeps old optimiser states loadable.
    model = googlenet.build_model("bn", num_classes=10)
    groups = parameter_groups(model, lr=0.01, weight_decay=2e-4)
    assert len(groups) == 1
    assert _ids(groups[0]["params"]) == _ids(list(model.parameters()))
    assert (groups[0]["lr"], groups[0]["weight_decay"], groups[0]["name"]) == (0.01, 2e-4, "weights")


def test_caffe_biases_get_twice_the_lr_and_no_decay() -> None:
    # bvlc_googlenet's train_val.prototxt: every bias has lr_mult 2, decay_mult 0.
    model = googlenet.build_model("paper", num_classes=10)
    weights, biases = parameter_groups(
        model, lr=0.01, weight_decay=2e-4, bias_lr_mult=2.0, bias_weight_decay=0.0
    )
    named = dict(model.named_parameters())
    bias_names = {n for n in named if n.endswith(".bias")}
    assert set(_ids(biases["params"])) == {id(named[n]) for n in bias_names}
    assert set(_ids(weights["params"])) == {id(p) for n, p in named.items() if n not in bias_names}
    assert (biases["lr"], biases["weight_decay"]) == pytest.approx((0.02, 0.0))
    assert (weights["lr"], weights["weight_decay"]) == pytest.approx((0.01, 2e-4))
    assert len(biases["params"]) + len(weights["params"]) == len(named)


def test_bias_lr_mult_alone_keeps_the_decay() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    weights, biases = parameter_groups(model, lr=0.1, weight_decay=1e-3, bias_lr_mult=2.0)
    assert biases["weight_decay"] == 1e-3 and biases["lr"] == pytest.approx(0.2)
    assert weights["weight_decay"] == 1e-3 and weights["lr"] == 0.1
    assert _ids(biases["params"]) == [id(model[0].bias), id(model[2].bias)]


def test_norm_scales_get_their_own_decay_and_shifts_follow_the_bias_rule() -> None:
    model = googlenet.build_model("bn", num_classes=10)
    bn_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert bn_weights

    weights, norms = parameter_groups(model, lr=0.01, weight_decay=2e-4, norm_weight_decay=0.0)
    # Without a bias option, BatchNorm's shift is a norm parameter too (torchvision's rule).
    assert set(_ids(norms["params"])) == bn_weights | bn_biases
    assert norms["weight_decay"] == 0.0 and norms["name"] == "norms"

    weights, biases, norms = parameter_groups(
        model, lr=0.01, weight_decay=2e-4, norm_weight_decay=0.0, bias_weight_decay=0.0
    )
    # With one, every bias (BatchNorm's shift included) is a bias: the bias key wins, as in torchvision.
    assert set(_ids(norms["params"])) == bn_weights
    assert bn_biases <= set(_ids(biases["params"]))
    total = len(weights["params"]) + len(biases["params"]) + len(norms["params"])
    assert total == len(list(model.parameters()))


def test_frozen_and_shared_parameters() -> None:
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))
    model[3].weight.requires_grad_(False)
    weights, biases = parameter_groups(model, lr=0.1, weight_decay=0.0, bias_weight_decay=0.0)
    assert _ids(weights["params"]) == [id(shared.weight)]  # the frozen one is left out, the shared one once
    assert _ids(biases["params"]) == [id(shared.bias), id(model[3].bias)]


def test_sgd_applies_each_groups_lr() -> None:
    # One SGD step with no momentum or decay moves each parameter by lr x its gradient.
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(parameter_groups(model, lr=0.1, weight_decay=0.0, bias_lr_mult=2.0), lr=0.1)
    before = [p.detach().clone() for p in (model.weight, model.bias)]
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    assert torch.allclose(before[0] - model.weight, 0.1 * torch.ones(1, 3))
    assert torch.allclose(before[1] - model.bias, torch.tensor([0.2]))


def test_describe_groups_reads_the_built_groups() -> None:
    model = googlenet.build_model("bn", num_classes=10)
    assert describe_groups(parameter_groups(model, lr=0.01, weight_decay=2e-4)) == ""
    # An unset bias decay falls back to --wd; the text reports what the optimiser was given.
    groups = parameter_groups(model, lr=0.01, weight_decay=2e-4, bias_lr_mult=2.0, norm_weight_decay=0.0)
    assert describe_groups(groups) == ", biases lr x2.0 weight decay 0.0002, norm layers weight decay 0.0"
