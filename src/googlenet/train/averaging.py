"""Section 6: "Polyak averaging (Polyak & Juditsky, 1992) was used to create the final model used at
inference time" - built on `torch.optim.swa_utils`.

`method="polyak"` (default): the uniform Polyak-Ruppert average of the weights after every `every`-th
optimiser step from the start epoch on: `AveragedModel`'s running mean for the first `EXACT_AFTER`
snapshots, then a float64 one kept here and rounded into the averaged copy after each snapshot.
torch's running mean is float32, where a snapshot's share, 1/(n+1) of its difference from the mean,
falls below the mean's rounding step as n grows: over 100,000 snapshots of weights moving steadily,
one weight in a hundred had its mean off by half its movement, where float64 after 4,096 snapshots
keeps every weight within 0.1% of it (`benchmarks/polyak_precision.py`; ImageNet's second half at
batch 32 is about five million snapshots). The float64 mean costs a float64 copy of the weights (in
memory and in last.pt) and, on this 2-core CPU, about 25 ms a snapshot for the 10-million-parameter
network against 15-30 ms for torch's own update, so short runs keep torch's float32 mean (up to
4,096 snapshots the 99th percentile of that error is 1% of a weight's movement).
`method="ema"`: an exponential moving average (`get_ema_multi_avg_fn(decay)`) from the same start.
`method="none"`: evaluation and export use the raw weights.

BatchNorm statistics of the averaged model (the "bn" and "torchvision" variants; the paper's network
has none): running means and variances are not parameters, and the average of several networks'
statistics is not the statistics of the averaged network - its activations have a different
distribution. So by default (`bn_stats="recompute"`) we leave them out of the average and recompute
them before every evaluation of the averaged model with `update_bn` over `bn_batches` batches of
training data (the SWA recipe of Izmailov et al. 2018; its cost is a forward pass over those batches).
`bn_stats="average"` averages them with the weights instead (`use_buffers=True`, as torchvision's
reference does for EMA): free, and close enough when the average moves slowly (a long-horizon EMA),
but biased for a uniform average over a long stretch of training.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import (
    AveragedModel,
    get_ema_multi_avg_fn,
    get_swa_avg_fn,
    get_swa_multi_avg_fn,
    update_bn,
)

from googlenet.train.config import AverageSection
from googlenet.train.config import average_start_epoch as start_epoch
from googlenet.train.distributed import average_buffers


def has_batchnorm(model: nn.Module) -> bool:
    """Whether `model` has a BatchNorm layer (any kind)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class WeightAverager:
    """The averaged copy of a model and the rule for when to update it."""

    def __init__(self, model: nn.Module, section: AverageSection, epochs: int) -> None:
        self.method = section.method
        self.every = section.every
        self.start_epoch = start_epoch(section, epochs)
        self.bn_batches = section.bn_batches
        self.recompute_bn = section.bn_stats == "recompute" and has_batchnorm(model)
        self.averaged: AveragedModel | None = None
        self.exact: dict[str, Tensor] = {}  # Polyak's float64 running mean, once past EXACT_AFTER snapshots
        if self.method == "none":
            return
        # Polyak: torch's float32 running mean until the float64 one takes over (`_fold_exact`); from
        # then on torch's update only counts and syncs the buffers that are not averaged.
        multi_avg_fn = get_ema_multi_avg_fn(section.ema_decay) if self.method == "ema" else self._polyak_step
        # use_buffers=True averages BN statistics with the weights; False leaves them for update_bn.
        self.averaged = AveragedModel(model, multi_avg_fn=multi_avg_fn, use_buffers=not self.recompute_bn)
        self.averaged.requires_grad_(False)

    @property
    def updates(self) -> int:
        """How many weight snapshots the average holds (0: not started)."""
        return 0 if self.averaged is None else int(self.averaged.n_averaged.item())

    def maybe_update(self, model: nn.Module, epoch: int, global_step: int) -> bool:
        """Fold `model`'s current weights into the average when `epoch` and `global_step` call for it."""
        if self.averaged is None or epoch < self.start_epoch or global_step % self.every:
            return False
        self.averaged.update_parameters(model)
        if self.method == "polyak":
            self._fold_exact(model)
        return True

    def _polyak_step(self, averaged: Any, current: Any, count: Any) -> None:
        """`AveragedModel`'s update for Polyak: torch's running mean while the float64 one has not
        started, else nothing (`_fold_exact` folds the snapshot in)."""
        if self.exact:
            return
        if averaged and averaged[0].device.type in _FOREACH_DEVICES:  # as torch chooses (its lerp)
            _TORCH_MEAN(averaged, current, count)
        else:
            for mean, value in zip(averaged, current, strict=True):
                mean.copy_(_TORCH_AVG(mean, value, count))

    def _averaged_tensors(self, module: nn.Module) -> dict[str, Tensor]:
        """The floating tensors of `module` the average covers (its parameters, and its buffers when
        they are averaged too), by name."""
        named: dict[str, Tensor] = dict(module.named_parameters())
        if self.averaged is not None and self.averaged.use_buffers:
            named.update(module.named_buffers())
        return {name: t for name, t in named.items() if t.is_floating_point()}

    @torch.no_grad()
    def _fold_exact(self, model: nn.Module) -> None:
        """Past `EXACT_AFTER` snapshots, fold `model`'s weights (just counted by `update_parameters`)
        into the float64 running mean and round it into the averaged copy. The first time (or after a
        resume from a last.pt without it), the mean starts from the copy, which torch's update has
        just brought up to this snapshot."""
        assert self.averaged is not None
        n = self.updates  # snapshots including this one
        if n <= EXACT_AFTER:
            return
        targets = self._averaged_tensors(self.averaged.module)
        if not self.exact:
            self.exact = {name: t.detach().to(torch.float64, copy=True) for name, t in targets.items()}
            return
        names = list(self.exact)
        currents = self._averaged_tensors(model)
        means = [self.exact[name] for name in names]
        steps = torch._foreach_sub(
            [currents[name].detach().to(means[i].device, torch.float64) for i, name in enumerate(names)],
            means,
        )
        torch._foreach_add_(means, steps, alpha=1.0 / n)
        torch._foreach_copy_([targets[name] for name in names], means)

    def eval_model(self, bn_loader: Iterable[Any] | None, device: torch.device) -> nn.Module | None:
        """The averaged network ready for evaluation (BN statistics recomputed if asked), or None
        before the first update. The training RNG streams are left untouched (dropout runs here)."""
        if self.averaged is None or self.updates == 0:
            return None
        module = self.averaged.module
        if self.recompute_bn and bn_loader is not None:
            batches = bn_loader if self.bn_batches == 0 else itertools.islice(bn_loader, self.bn_batches)
            devices = [device.index] if device.type == "cuda" and device.index is not None else []
            with torch.random.fork_rng(devices=devices):
                update_bn((images for images, _ in batches), module, device=device)
            average_buffers(module)
        return module

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if self.averaged is not None and state:
            self.averaged.load_state_dict(state)

    def exact_state(self) -> dict[str, Tensor]:
        """Polyak's float64 running mean, for last.pt: a resume continues it exactly."""
        return {name: mean.clone() for name, mean in self.exact.items()}

    def load_exact_state(self, state: dict[str, Tensor] | None) -> None:
        """Polyak's float64 running mean from last.pt (read onto the CPU), on the averaged copy's device;
        without it (a last.pt written before it was kept), the mean goes on from the averaged copy's
        float32 values."""
        targets = self._averaged_tensors(self.averaged.module) if self.averaged is not None else {}
        self.exact = {
            name: mean.to(targets[name].device if name in targets else mean.device, torch.float64, copy=True)
            for name, mean in (state or {}).items()
        }


# Snapshots after which Polyak's mean is kept in float64 (see the module's docstring)
EXACT_AFTER = 4096
# AveragedModel's own uniform running mean: foreach lerp where torch has foreach kernels, else one
# tensor at a time (the CPU's), as `AveragedModel.update_parameters` picks
_TORCH_MEAN, _TORCH_AVG = get_swa_multi_avg_fn(), get_swa_avg_fn()
try:
    from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

    _FOREACH_DEVICES = frozenset(_get_foreach_kernels_supported_devices())
except ImportError:  # a torch without it: the tensor-at-a-time update, right everywhere
    _FOREACH_DEVICES = frozenset()
