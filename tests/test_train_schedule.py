"""Learning-rate schedules: section 6's x0.96 every 8 epochs (per epoch and per iteration), warm-up, cosine."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from googlenet.train.config import ScheduleSection
from googlenet.train.schedule import build_scheduler, lr_at


def _curve(schedule: ScheduleSection, steps_per_epoch: int, epochs: int, base: float = 0.01) -> list[float]:
    """The learning rate used at every optimiser step of the run."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = build_scheduler(optimizer, schedule, steps_per_epoch, epochs)
    lrs = []
    for _ in range(steps_per_epoch * epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_paper_step_schedule_per_epoch_is_a_staircase() -> None:
    spe = 10
    lrs = _curve(ScheduleSection(), spe, 40)  # defaults: step, x0.96 every 8 epochs, per epoch
    for epoch in range(40):
        expected = 0.01 * 0.96 ** (epoch // 8)  # section 6
        for i in range(spe):
            assert lrs[epoch * spe + i] == pytest.approx(expected, rel=1e-12)
    assert lrs[8 * spe - 1] == pytest.approx(0.01) and lrs[8 * spe] == pytest.approx(0.0096)


def test_step_schedule_per_iteration_is_smooth_and_meets_the_staircase() -> None:
    spe = 10
    lrs = _curve(ScheduleSection(lr_step_every="iter"), spe, 24)
    for step, lr in enumerate(lrs):
        assert lr == pytest.approx(0.01 * 0.96 ** (step / (8 * spe)), rel=1e-9)
    assert lrs[8 * spe] == pytest.approx(0.0096, rel=1e-9)  # equals the staircase at 8-epoch boundaries
    assert lrs[16 * spe] == pytest.approx(0.01 * 0.96**2, rel=1e-9)
    assert all(a > b for a, b in itertools.pairwise(lrs))  # decreases at every iteration


def test_linear_warmup_then_step() -> None:
    spe = 10
    schedule = ScheduleSection(lr_warmup_epochs=2, lr_warmup_start=0.1)
    lrs = _curve(schedule, spe, 12)
    for step in range(20):
        assert lrs[step] == pytest.approx(0.01 * (0.1 + 0.9 * step / 20), rel=1e-9)
    # The main schedule starts when warm-up ends: x0.96 after 8 more epochs.
    assert lrs[20] == pytest.approx(0.01, rel=1e-9)
    assert lrs[20 + 8 * spe - 1] == pytest.approx(0.01, rel=1e-9)
    assert lrs[20 + 8 * spe] == pytest.approx(0.0096, rel=1e-9)


def test_constant_warmup_then_step_as_torchvisions_default() -> None:
    # torchvision's reference script warms up at lr x decay throughout by default; only a linear ramp was offered
    spe = 10
    schedule = ScheduleSection(lr_warmup_epochs=2, lr_warmup_start=0.1, lr_warmup_method="constant")
    lrs = _curve(schedule, spe, 12)
    assert lrs[:20] == pytest.approx([0.001] * 20, rel=1e-9)
    assert lrs[20] == pytest.approx(0.01, rel=1e-9) and lrs[20 + 8 * spe] == pytest.approx(0.0096, rel=1e-9)


def test_cosine_with_warmup() -> None:
    spe, epochs = 5, 10
    schedule = ScheduleSection(lr_scheduler="cosine", lr_warmup_epochs=1, lr_min=0.001)
    lrs = _curve(schedule, spe, epochs)
    total = epochs * spe - spe
    for step in range(spe, epochs * spe):
        t = step - spe
        expected = 0.001 + (0.01 - 0.001) * (1 + math.cos(math.pi * t / total)) / 2
        assert lrs[step] == pytest.approx(expected, rel=1e-6)
    assert lrs[spe] == pytest.approx(0.01)
    assert 0.001 < lrs[-1] < 0.00102  # one step before the end of the cosine


@pytest.mark.parametrize(
    "schedule",
    [
        ScheduleSection(),
        ScheduleSection(lr_step_every="iter"),
        ScheduleSection(lr_warmup_epochs=1.5),
        ScheduleSection(lr_scheduler="cosine", lr_warmup_epochs=0.5),
        ScheduleSection(lr_warmup_epochs=1.5, lr_warmup_method="constant"),
    ],
)
def test_closed_form_matches_the_scheduler(schedule: ScheduleSection) -> None:
    spe, epochs = 7, 20
    lrs = _curve(schedule, spe, epochs)
    for step, lr in enumerate(lrs):
        assert lr == pytest.approx(lr_at(schedule, 0.01, step, spe, epochs), rel=1e-6)


def test_scheduler_state_resumes_mid_run() -> None:
    spe, epochs = 6, 20
    schedule = ScheduleSection(lr_scheduler="cosine", lr_warmup_epochs=1)
    straight = _curve(schedule, spe, epochs)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = build_scheduler(optimizer, schedule, spe, epochs)
    for _ in range(17):
        optimizer.step()
        scheduler.step()
    saved_opt, saved_sched = optimizer.state_dict(), scheduler.state_dict()
    optimizer2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler2 = build_scheduler(optimizer2, schedule, spe, epochs)
    optimizer2.load_state_dict(saved_opt)
    scheduler2.load_state_dict(saved_sched)
    rest = []
    for _ in range(17, spe * epochs):
        rest.append(optimizer2.param_groups[0]["lr"])
        optimizer2.step()
        scheduler2.step()
    assert rest == straight[17:]


def test_the_recipe_line_says_the_global_batch_the_schedule_and_the_precision() -> None:
    # A user of torchvision's script, whose -b is per process and whose gamma is 0.1, read nothing at a
    # run's start that said -b is the global batch or what a partly given schedule resolves to.
    import torch

    from googlenet.train import resolve
    from googlenet.train.engine import _recipe_line

    config = resolve(
        {}, {"optim.lr": 0.1, "schedule.lr_step_size": 30, "run.epochs": 90, "optim.batch_size": 32}
    )
    line = _recipe_line(config, 2, 100, torch.bfloat16)
    assert line.startswith(
        "batch 32 (2 processes x 16), SGD lr 0.1 x0.96 every 30 epochs (0.0922 at the end)"
    )
    assert line.endswith("momentum 0.9, weight decay 0.0002, bf16 autocast")
    cosine = resolve(
        {}, {"schedule.lr_scheduler": "cosine", "schedule.lr_warmup_epochs": 2, "run.epochs": 10}
    )
    assert "cosine to 0 over 10 epochs, 2 warm-up epochs from x0.01" in _recipe_line(cosine, 1, 10, None)
    assert _recipe_line(cosine, 1, 10, None).endswith(", fp32")
    cosine.schedule.lr_warmup_method = "constant"
    assert "2 warm-up epochs at x0.01" in _recipe_line(cosine, 1, 10, None)
