"""Section 6's Polyak averaging (uniform), EMA, the start rule and BatchNorm statistics of the average."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from googlenet.train.averaging import WeightAverager, start_epoch
from googlenet.train.config import AverageSection

CPU = torch.device("cpu")


def _train_steps(model: nn.Module, steps: int) -> list[dict[str, torch.Tensor]]:
    """SGD steps on random data; the parameters after each step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(3)
    snapshots = []
    for _ in range(steps):
        x = torch.randn(8, 3, generator=generator)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
    return snapshots


def test_polyak_is_the_uniform_average_of_the_iterates() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    averager = WeightAverager(model, AverageSection(method="polyak", start=0, every=1), epochs=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(3)
    snapshots = []
    for step in range(1, 8):
        loss = model(torch.randn(8, 3, generator=generator)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
        assert averager.maybe_update(model, epoch=0, global_step=step)
    assert averager.updates == 7
    averaged = averager.eval_model(None, CPU)
    assert averaged is not None
    for name, value in averaged.named_parameters():
        hand = sum(s[name] for s in snapshots) / len(snapshots)
        torch.testing.assert_close(value, hand, rtol=1e-6, atol=1e-7)


def test_polyak_start_and_every() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    averager = WeightAverager(model, AverageSection(method="polyak", start=2, every=2), epochs=10)
    assert averager.eval_model(None, CPU) is None  # nothing averaged yet
    assert not averager.maybe_update(model, epoch=1, global_step=4)  # before the start epoch
    assert not averager.maybe_update(model, epoch=2, global_step=5)  # not a multiple of `every`
    taken = []
    for step in (6, 8):
        with torch.no_grad():
            model.weight.add_(1.0)
        taken.append(model.weight.detach().clone())
        assert averager.maybe_update(model, epoch=2, global_step=step)
    averaged = averager.eval_model(None, CPU)
    assert averaged is not None
    torch.testing.assert_close(averaged.weight, (taken[0] + taken[1]) / 2)


def test_start_as_fraction_or_epoch() -> None:
    assert start_epoch(AverageSection(start=0.5), 24) == 12
    assert start_epoch(AverageSection(start=0.25), 10) == 2  # round(2.5) -> 2 (banker's rounding)
    assert start_epoch(AverageSection(start=0), 24) == 0
    assert start_epoch(AverageSection(start=3), 24) == 3


def test_ema_matches_hand_recursion() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    decay = 0.8
    averager = WeightAverager(model, AverageSection(method="ema", start=0, ema_decay=decay), epochs=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(5)
    hand: dict[str, torch.Tensor] | None = None
    for step in range(1, 6):
        loss = model(torch.randn(8, 3, generator=generator)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        averager.maybe_update(model, 0, step)
        current = {k: v.detach().clone() for k, v in model.named_parameters()}
        # The first update copies the weights; later ones: ema = decay * ema + (1 - decay) * w.
        hand = current if hand is None else {k: decay * hand[k] + (1 - decay) * current[k] for k in current}
    averaged = averager.eval_model(None, CPU)
    assert averaged is not None and hand is not None
    for name, value in averaged.named_parameters():
        torch.testing.assert_close(value, hand[name], rtol=1e-5, atol=1e-6)


def test_none_uses_no_average() -> None:
    averager = WeightAverager(nn.Linear(2, 2), AverageSection(method="none"), epochs=1)
    assert averager.averaged is None
    assert not averager.maybe_update(nn.Linear(2, 2), 0, 1)
    assert averager.eval_model(None, CPU) is None


def _bn_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_bn_statistics_are_recomputed_for_the_average() -> None:
    torch.manual_seed(0)
    model = _bn_model()
    averager = WeightAverager(model, AverageSection(method="polyak", start=0, bn_stats="recompute"), epochs=1)
    assert averager.recompute_bn
    _train_steps(model, 3)
    averager.maybe_update(model, 0, 1)
    generator = torch.Generator().manual_seed(9)
    batches = [(torch.randn(16, 3, generator=generator) * 2 + 1, torch.zeros(16)) for _ in range(4)]
    rng_before = torch.get_rng_state()
    averaged = averager.eval_model(batches, CPU)
    assert torch.equal(torch.get_rng_state(), rng_before)  # training streams untouched
    assert averaged is not None
    # The recomputed statistics are those of the averaged network on the data: the mean over batches
    # of the first layer's outputs (update_bn uses a cumulative average).
    with torch.no_grad():
        first = averaged[0]
        means = torch.stack([first(x).mean(0) for x, _ in batches]).mean(0)
        # and the variance: the mean over batches of each batch's unbiased variance (BatchNorm's
        # running_var is unbiased), the same cumulative average
        variances = torch.stack([first(x).var(0, unbiased=True) for x, _ in batches]).mean(0)
    torch.testing.assert_close(averaged[1].running_mean, means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(averaged[1].running_var, variances, rtol=1e-5, atol=1e-6)


def test_bn_statistics_averaged_with_the_weights() -> None:
    torch.manual_seed(0)
    model = _bn_model()
    averager = WeightAverager(model, AverageSection(method="polyak", start=0, bn_stats="average"), epochs=1)
    assert not averager.recompute_bn
    means = []
    for step in range(1, 4):
        _train_steps(model, 1)  # BN running stats move in train mode
        means.append(model[1].running_mean.clone())
        averager.maybe_update(model, 0, step)
    averaged = averager.eval_model(None, CPU)
    assert averaged is not None
    torch.testing.assert_close(averaged[1].running_mean, sum(means) / 3, rtol=1e-5, atol=1e-6)


def test_state_round_trip() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    averager = WeightAverager(model, AverageSection(start=0), epochs=1)
    for step in range(1, 4):
        with torch.no_grad():
            model.weight.mul_(1.5)
        averager.maybe_update(model, 0, step)
    other = WeightAverager(nn.Linear(3, 2), AverageSection(start=0), epochs=1)
    other.load_state_dict(averager.state_dict())
    assert other.updates == 3
    assert other.averaged is not None and averager.averaged is not None
    assert torch.equal(other.averaged.module.weight, averager.averaged.module.weight)


@pytest.mark.parametrize("method", ["polyak", "ema"])
def test_averaged_copy_is_not_trained(method: str) -> None:
    model = nn.Linear(3, 2)
    averager = WeightAverager(model, AverageSection(method=method, start=0), epochs=1)
    assert averager.averaged is not None
    assert all(not p.requires_grad for p in averager.averaged.parameters())


def test_the_recipe_names_the_ema_decay_and_an_ensemble_members_flags() -> None:
    # final.pt's recipe said "ema from 0.0, every 1 step(s)" without the decay; the log printed a dict
    from googlenet.train.config import resolve
    from googlenet.train.engine import _recipe
    from googlenet.train.ensemble import _as_flags
    from googlenet.train.params import parameter_groups

    config = resolve({}, {"average.method": "ema", "average.ema_decay": 0.9, "average.start": 0})
    groups = parameter_groups(nn.Linear(2, 2), 0.01, 2e-4)
    assert _recipe(config, groups)["averaging"] == "ema from 0.0, every 1 step(s), decay 0.9"
    assert _as_flags({"augment.random_interpolation": False, "augment.scale_min": 0.35}) == (
        "--no-random-interpolation --scale-min 0.35"
    )


def test_polyak_keeps_counting_late_snapshots() -> None:
    """Ten million snapshots in: a snapshot's share of the mean is below float32's rounding step at the
    mean, so a float32 running mean (torch's) never moves again; the float64 one, which takes over
    after EXACT_AFTER snapshots, does."""
    from googlenet.train.averaging import EXACT_AFTER

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.034)
    averager = WeightAverager(model, AverageSection(method="polyak", start=0, every=1), epochs=1)
    assert averager.maybe_update(model, 0, 1) and averager.averaged is not None
    assert not averager.exact  # float32 (torch's) for the first EXACT_AFTER snapshots
    before, later = 10_000_000, 1000
    averager.averaged.n_averaged.fill_(before)  # as if ten million snapshots of 0.034 had been taken
    assert before > EXACT_AFTER
    with torch.no_grad():
        model.weight.fill_(0.044)
    averager.maybe_update(model, 0, 2)  # torch's float32 update, then the float64 mean starts from it
    assert averager.exact and averager.exact["weight"].dtype == torch.float64
    start = averager.exact["weight"].item()
    for step in range(3, 3 + later):
        averager.maybe_update(model, 0, step)
    counted = before + 1
    exact = (counted * start + later * float(torch.tensor(0.044))) / (counted + later)
    assert averager.exact["weight"].item() == pytest.approx(exact, abs=1e-12)
    got = averager.averaged.module.weight.item()
    assert got == pytest.approx(exact, abs=4e-9) and got - float(torch.tensor(0.034)) > 9e-7
    # last.pt keeps the float64 mean: a resume goes on from it, not from the rounded copy
    other = WeightAverager(nn.Linear(1, 1, bias=False), AverageSection(method="polyak", start=0), epochs=1)
    other.load_state_dict(averager.state_dict())
    other.load_exact_state(averager.exact_state())
    assert torch.equal(other.exact["weight"], averager.exact["weight"])


def test_the_precision_benchmark_shows_float32_drift_and_the_float64_mean_keeping_up() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "polyak_precision.py"
    spec = importlib.util.spec_from_file_location("polyak_precision", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    float32 = bench.simulate(20_000, None)
    ours = bench.simulate(20_000, 4096)
    assert ours["p99"] < float32["p99"] / 10 and ours["max"] < 0.05 < float32["max"]
