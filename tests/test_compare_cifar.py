"""benchmarks/compare_cifar.py: model names (VARIANT, VARIANT+INIT, VARIANT+FIELD=NUMBER) and schedules."""

import pytest


@pytest.fixture(scope="module")
def compare_cifar(load_script):
    return load_script("compare_cifar")


def test_a_plain_variant_keeps_its_defaults(compare_cifar):
    _, model = compare_cifar.build("paper", 10)
    assert (model.config.init, model.config.dropout, model.fc.out_features) == ("he", 0.4, 10)


def test_plus_names_an_init_or_sets_a_config_field(compare_cifar):
    _, model = compare_cifar.build("paper+truncnormal+dropout=0.2+aux_dropout=0.5", 10)
    assert model.config.init == "truncnormal"
    assert (model.config.dropout, model.config.aux_dropout) == (0.2, 0.5)
    assert model.dropout.p == 0.2


def test_torchvision_is_torchvisions_own_model(compare_cifar):
    trained, evaluated = compare_cifar.build("torchvision", 10)
    assert trained is evaluated and type(trained).__module__.startswith("torchvision")


def test_a_field_that_is_not_a_number_is_named(compare_cifar):
    with pytest.raises(ValueError, match=r"--models paper\+dropout=x: dropout='x' is not a number"):
        compare_cifar.parse_name("paper+dropout=x")


def test_the_two_schedules(compare_cifar):
    f = compare_cifar.lr_factor  # 10 steps per epoch, 12 epochs, 1 epoch of warm-up
    assert f(0, "cosine", 10, 120, 10) == pytest.approx(0.01) and f(5, "paper", 10, 120, 10) == pytest.approx(
        0.505
    )
    assert f(10, "cosine", 10, 120, 10) == 1.0 and f(120, "cosine", 10, 120, 10) == pytest.approx(0.0)
    assert [f(s, "paper", 0, 120, 10) for s in (0, 79, 80, 119)] == [1.0, 1.0, 0.96, 0.96]


def test_unitwise_clipping_caps_each_units_gradient_at_its_ratio_of_the_weights_norm(compare_cifar):
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3))  # the last one: the classifier (3 classes)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))  # unit norms 5 and 1
        model[0].bias.copy_(torch.tensor([2.0, 0.0]))  # norms 2 and 0 (counted as 1e-3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    compare_cifar.clip_unitwise(model, optimizer, 0.1, classes=3)
    grads = {
        "0.weight": torch.tensor([[6.0, 8.0], [0.01, 0.0]]),  # norm 10 > 0.5: scaled; 0.01 < 0.1 kept
        "0.bias": torch.tensor([-1.0, 1.0]),  # each element its own unit: capped at 0.2 and 1e-4
        "1.weight": torch.full((3, 2), 100.0),  # the classifier: never clipped
        "1.bias": torch.full((3,), 100.0),
    }
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = grads[name].clone()
    optimizer.step()
    step = {name: before[name] - p.detach() for name, p in model.named_parameters()}  # lr 1: the gradient
    assert torch.allclose(step["0.weight"], torch.tensor([[0.3, 0.4], [0.01, 0.0]]))
    assert torch.allclose(step["0.bias"], torch.tensor([-0.2, 1e-4]))
    assert torch.equal(step["1.weight"], grads["1.weight"]) and torch.equal(step["1.bias"], grads["1.bias"])
