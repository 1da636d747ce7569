"""Learning-rate schedules: section 6's "decreasing the learning rate by 4% every 8 epochs", warm-up, cosine.

Every schedule is a `torch.optim.lr_scheduler` stepped once per optimiser step (iteration), so a run
interrupted mid-epoch resumes on exactly the same curve, and its state is plain numbers.

- `step`, `lr_step_every="epoch"` (default): a staircase, lr = base x 0.96^floor(epoch / 8), the
  learning rate changing only at the first iteration of epochs 8, 16, ... (`StepLR` with its step
  size counted in iterations; the same as stepping a `StepLR` once per epoch).
- `step`, `lr_step_every="iter"`: the same decay spread smoothly over the iterations,
  lr = base x 0.96^(iteration / iterations-per-8-epochs) (`ExponentialLR` stepped every iteration); it
  equals the staircase at every 8-epoch boundary and is never below it.
- `cosine`: `CosineAnnealingLR` from base to `lr_min` over the iterations after warm-up.
- warm-up: `LinearLR` from base x `lr_warmup_start` to base over `lr_warmup_epochs` (which may be
  fractional), or with `lr_warmup_method="constant"` `ConstantLR` at base x `lr_warmup_start`
  throughout (torchvision's reference script's default), chained before the main schedule with
  `SequentialLR`; the main schedule starts when warm-up ends (as in torchvision's reference train.py),
  so a step schedule is shifted by the warm-up.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
    StepLR,
)

from googlenet.train.config import ScheduleSection


def warmup_iters(schedule: ScheduleSection, steps_per_epoch: int) -> int:
    """Warm-up length in optimiser steps."""
    return round(schedule.lr_warmup_epochs * steps_per_epoch)


def build_scheduler(
    optimizer: Optimizer, schedule: ScheduleSection, steps_per_epoch: int, epochs: int
) -> LRScheduler:
    """The per-iteration scheduler for `schedule`; call `.step()` after every optimiser step."""
    steps_per_epoch = max(1, steps_per_epoch)
    warmup = warmup_iters(schedule, steps_per_epoch)
    main: LRScheduler
    if schedule.lr_scheduler == "cosine":
        total = max(1, epochs * steps_per_epoch - warmup)
        main = CosineAnnealingLR(optimizer, T_max=total, eta_min=schedule.lr_min)
    elif schedule.lr_step_every == "epoch":
        step_iters = max(1, round(schedule.lr_step_size * steps_per_epoch))
        main = StepLR(optimizer, step_size=step_iters, gamma=schedule.lr_gamma)
    else:
        per_iter = schedule.lr_gamma ** (1.0 / (schedule.lr_step_size * steps_per_epoch))
        main = ExponentialLR(optimizer, gamma=per_iter)
    if warmup == 0:
        return main
    ramp: LRScheduler
    if schedule.lr_warmup_method == "constant":
        ramp = ConstantLR(optimizer, factor=schedule.lr_warmup_start, total_iters=warmup)
    else:
        ramp = LinearLR(optimizer, start_factor=schedule.lr_warmup_start, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, schedulers=[ramp, main], milestones=[warmup])


def lr_at(schedule: ScheduleSection, base_lr: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The closed form of `build_scheduler`'s curve at optimiser step `step` (for tests and plots)."""
    steps_per_epoch = max(1, steps_per_epoch)
    warmup = warmup_iters(schedule, steps_per_epoch)
    if step < warmup:
        if schedule.lr_warmup_method == "constant":
            return base_lr * schedule.lr_warmup_start
        factor = schedule.lr_warmup_start + (1.0 - schedule.lr_warmup_start) * step / warmup
        return base_lr * factor
    t = step - warmup
    if schedule.lr_scheduler == "cosine":
        total = max(1, epochs * steps_per_epoch - warmup)
        return schedule.lr_min + (base_lr - schedule.lr_min) * (1 + math.cos(math.pi * t / total)) / 2
    if schedule.lr_step_every == "epoch":
        step_iters = max(1, round(schedule.lr_step_size * steps_per_epoch))
        return base_lr * schedule.lr_gamma ** (t // step_iters)
    return base_lr * schedule.lr_gamma ** (t / (schedule.lr_step_size * steps_per_epoch))
