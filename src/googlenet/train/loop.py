"""`train_one_epoch` and `evaluate`: a training loop that knows nothing about GoogLeNet beyond the
weighting of auxiliary losses (section 5: total = main + 0.3 x (aux1 + aux2)).

A model given to `train_one_epoch` returns either a logits tensor or a sequence
`(main, aux_1, ..., aux_k)` whose entries may be None (heads that are absent); a model given to
`evaluate` returns logits. Everything else (the optimiser, schedule, mixed precision, checkpoints,
averaging) is passed in by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from googlenet.console import ProgressLines
from googlenet.errors import ConfigError, GoogLeNetError
from googlenet.evaluate.metrics import topk_correct
from googlenet.model import table1
from googlenet.train.config import gpu_bf16
from googlenet.train.distributed import all_reduce_sum

logger = logging.getLogger("googlenet.train")


class NonFiniteLossError(GoogLeNetError):
    """The loss became NaN or infinite; the message names the step."""

    def __init__(self, message: str, epoch: int, step: int, global_step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.global_step = global_step


def split_heads(outputs: Tensor | Sequence[Tensor | None]) -> tuple[Tensor, list[Tensor]]:
    """(main logits, present auxiliary logits) from a model's output."""
    if isinstance(outputs, Tensor):
        return outputs, []
    main, *aux = outputs
    if main is None:
        raise ValueError("the model returned no main logits")
    return main, [a for a in aux if a is not None]


def head_losses(
    outputs: Tensor | Sequence[Tensor | None], target: Tensor, label_smoothing: float = 0.0
) -> list[Tensor]:
    """Cross-entropy of every head: [main, aux1, aux2, ...] (batch means)."""
    main, aux = split_heads(outputs)
    return [
        F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing) for logits in (main, *aux)
    ]


def weighted_loss(losses: Sequence[Tensor], aux_weight: float) -> Tensor:
    """Section 5: main loss + aux_weight x (sum of auxiliary losses); aux_weight is 0.3 in the paper."""
    total = losses[0]
    for aux in losses[1:]:
        total = total + aux_weight * aux
    return total


def correct_topk(logits: Tensor, target: Tensor, ks: Sequence[int] = (1, 5)) -> list[float]:
    """How many rows have the target among their k highest logits, for each k (k capped at classes).

    Counted as `evaluate` counts (`googlenet.evaluate.metrics.topk_correct`): a target tied with other
    classes across the k-th place earns the chance that a random order puts it inside, not whatever
    order `torch.topk` picks, so a collapsed model's val top-1 here equals `evaluate`'s."""
    return topk_correct(logits, target, ks).sum(dim=1).tolist()


@dataclass
class EpochMeter:
    """Running sums over an epoch's training steps; plain numbers so a mid-epoch checkpoint keeps them."""

    heads: int = 0  # number of loss heads seen (main + aux)
    loss_sums: list[float] = field(default_factory=list)  # per head, sum of batch-mean x batch size
    total_sum: float = 0.0
    correct1: float = 0.0
    correct5: float = 0.0
    samples: float = 0.0
    steps: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def add(self, losses: Sequence[float], total: float, correct: Sequence[float], batch: int) -> None:
        """Count one training step: `losses` (per head) and `total` are batch means, summed weighted by
        `batch`; `correct` holds the step's top-1 and top-5 hits."""
        if not self.loss_sums:
            self.heads = len(losses)
            self.loss_sums = [0.0] * len(losses)
        for i, value in enumerate(losses):
            self.loss_sums[i] += value * batch
        self.total_sum += total * batch
        self.correct1 += correct[0]
        self.correct5 += correct[1]
        self.samples += batch
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, list(value) if isinstance(value, list) else value)

    def reduced(self, device: torch.device) -> EpochMeter:
        """The sums over all processes (the same meter when not distributed)."""
        heads = len(self.loss_sums)
        values = [*self.loss_sums, self.total_sum, self.correct1, self.correct5, self.samples]
        summed = all_reduce_sum(values, device)
        return EpochMeter(
            heads=heads,
            loss_sums=summed[:heads],
            total_sum=summed[heads],
            correct1=summed[heads + 1],
            correct5=summed[heads + 2],
            samples=summed[heads + 3],
            steps=self.steps,
            skipped=self.skipped,
            seconds=self.seconds,
        )

    def summary(self) -> dict[str, float]:
        """Mean losses per head ("loss_main", "loss_aux1", ...), "loss_total", top-1/top-5 (%); NaN
        (not 0, which read as a perfect loss) for an epoch in which every step was skipped."""
        n = self.samples if self.samples > 0 else math.nan
        out: dict[str, float] = {}
        for i, value in enumerate(self.loss_sums):
            out["loss_main" if i == 0 else f"loss_aux{i}"] = value / n
        out["loss_total"] = self.total_sum / n
        out["top1"] = 100.0 * self.correct1 / n
        out["top5"] = 100.0 * self.correct5 / n
        out["samples"] = self.samples
        out["steps"] = float(self.steps)
        out["skipped_steps"] = float(self.skipped)
        return out


@dataclass
class StepResult:
    """What `after_step` learns about the optimiser step just taken."""

    epoch: int
    step: int  # index of the step within the epoch (0-based)
    global_step: int  # optimiser steps since the start of training, this one included
    loss: float
    lr: float
    skipped: bool


def autocast_for(device: torch.device, amp: bool, amp_dtype: str = "auto") -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed) for `--amp` / `--amp-dtype` on `device`.

    On CPU `--amp` is bf16 autocast; on a GPU bf16 where native ("auto": `gpu_bf16`), else fp16 with a scaler.
    """
    if not amp:
        return None, False
    if device.type == "cpu":
        if amp_dtype == "fp16":
            raise ConfigError("fp16 autocast is for GPUs; on CPU --amp uses bf16 (--amp-dtype bf16)")
        return torch.bfloat16, False
    if amp_dtype == "auto":
        amp_dtype = "bf16" if gpu_bf16(device) else "fp16"
    return (torch.bfloat16, False) if amp_dtype == "bf16" else (torch.float16, True)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    epoch: int,
    aux_weight: float = table1.AUX_LOSS_WEIGHT,  # section 5
    label_smoothing: float = 0.0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    clip_grad_norm: float | None = None,
    skip_nonfinite: bool = False,
    start_step: int = 0,
    global_step: int = 0,
    meter: EpochMeter | None = None,
    stop_requested: Callable[[int], bool] | None = None,
    after_step: Callable[[StepResult], None] | None = None,
    before_backward: Callable[[list[Tensor]], None] | None = None,
    progress: bool = False,
    total_steps: int | None = None,
    progress_every_s: float | None = None,
) -> tuple[EpochMeter, bool]:
    """Train for one pass over `loader` (which may start mid-epoch at `start_step`).

    Per step: forward under autocast, per-head cross-entropy, weighted sum, a finiteness check
    (agreed over all processes before backward, so no process waits for a gradient that will never
    come), backward, optional clipping, optimiser and scheduler step, then `after_step`.

    `stop_requested(global_step)` is asked once per step, before backward; when it (or any process)
    says stop, that step is finished and the loop returns early. Returns (meter, stopped_early).
    `before_backward(losses)` sees each finite step's per-head losses (main, aux1, aux2) before its
    backward pass, with the graph still there (the gradient-flow split uses it).

    A NaN/Inf loss raises `NonFiniteLossError` naming the step, before the weights are touched;
    with `skip_nonfinite` the step is skipped (no update, the schedule still advances) and counted.

    `progress` draws a tqdm bar (a terminal); `progress_every_s` logs a plain line every so many seconds
    instead (a log file or `nohup.out`, where a bar is not drawn and an ImageNet epoch would otherwise
    be hours without a line): step, loss, lr, img/s and the epoch's ETA.
    """
    model.train()
    meter = meter if meter is not None else EpochMeter()
    steps = total_steps if total_steps is not None else start_step + len(loader)  # type: ignore[arg-type]
    bar = tqdm(
        total=steps,
        initial=start_step,
        desc=f"epoch {epoch + 1}",  # from 1, as the log's lines
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    started = time.perf_counter()
    lines = ProgressLines(None if progress else progress_every_s)  # a bar, or else lines
    stopped = False
    step = start_step - 1
    try:
        for step, (images, target) in enumerate(loader, start=start_step):
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            global_step += 1
            with _autocast(device, autocast_dtype):
                outputs = model(images)
            losses = head_losses(outputs, target, label_smoothing)
            loss = weighted_loss(losses, aux_weight)
            finite = bool(torch.isfinite(loss).item())
            want_stop = stop_requested(global_step) if stop_requested is not None else False
            flags = all_reduce_sum([0.0 if finite else 1.0, 1.0 if want_stop else 0.0], device)
            all_finite, stopped = flags[0] == 0, flags[1] > 0
            if not all_finite and not skip_nonfinite:
                value = loss.item() if not finite else "finite here, not on another process"
                raise NonFiniteLossError(
                    # counted from 1, as the log's "epoch 2/12" lines (the exception keeps 0-based numbers)
                    f"non-finite loss ({value}) at step {step + 1} of epoch {epoch + 1} (global step {global_step})",
                    epoch,
                    step,
                    global_step,
                )
            optimizer.zero_grad(set_to_none=True)
            if all_finite:
                if before_backward is not None:
                    before_backward(losses)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if clip_grad_norm is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if clip_grad_norm is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                    optimizer.step()
                main, _ = split_heads(outputs)
                meter.add(
                    [x.item() for x in losses], loss.item(), correct_topk(main.detach(), target), len(target)
                )
            else:
                meter.skipped += 1
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            if after_step is not None:
                after_step(StepResult(epoch, step, global_step, loss.item(), lr, not all_finite))
            elapsed = meter.seconds + time.perf_counter() - started
            bar.update(1)
            if progress:
                rate = meter.samples / elapsed if elapsed > 0 else math.nan
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False)
            elif lines.due():
                done = step + 1 - start_step  # steps of this call, timed since it started
                distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
                processes = torch.distributed.get_world_size() if distributed else 1  # the run's img/s
                logger.info(
                    "epoch %d step %d/%d (%.0f%%) | loss %.3f | lr %.3g | %.1f img/s | epoch ETA %s",
                    epoch + 1, step + 1, steps, 100.0 * (step + 1) / max(steps, 1), loss.item(), lr,
                    processes * meter.samples / elapsed if elapsed > 0 else math.nan,
                    lines.eta(done, steps - start_step),
                )  # fmt: skip
            if stopped:
                break
    finally:
        bar.close()
        meter.seconds += time.perf_counter() - started
    return meter, stopped


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Mean cross-entropy and top-1/top-5 accuracy (%) of `model`'s logits over `loader`.

    Under torchrun each process passes its own shard; the sums are added over all processes, so every
    process returns the metrics of the whole set. Returns {"loss", "top1", "top5", "samples"}.
    """
    (metrics,) = evaluate_models(
        [model], loader, device=device, autocast_dtype=autocast_dtype, channels_last=channels_last
    )
    return metrics


class EvaluationInterrupted(Exception):
    """`evaluate_models` stopped before its last batch because a stop was requested."""


@torch.no_grad()  # `evaluate` and the end-of-epoch evaluation both come here: no autograd graph
def evaluate_models(
    models: Sequence[nn.Module],
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    stop_requested: Callable[[], bool] | None = None,
    progress: bool = False,
    progress_every_s: float | None = None,
    desc: str = "validation",
) -> list[dict[str, float]]:
    """`evaluate` for several models in one pass over `loader`: each batch is decoded and transformed
    once and given to every model (the raw and the averaged weights at the end of an epoch), where
    separate calls would load the data once per model. The same figures as separate calls.

    `stop_requested()` is asked before each batch: when it says yes in any process, every process
    raises `EvaluationInterrupted` (after the one all-reduce the processes share either way), so a
    signal need not wait out a long validation: torchrun, like Slurm, kills 30 s after its SIGTERM.

    `progress` draws a tqdm bar named `desc`; else `progress_every_s` logs a plain line every so many
    seconds, as `train_one_epoch` does (an ImageNet validation is minutes without one)."""
    modes = [model.training for model in models]
    sums = [[0.0, 0.0, 0.0] for _ in models]  # loss, top-1 hits, top-5 hits
    samples = 0.0
    stopped = 0.0
    batches = len(loader) if isinstance(loader, Sized) else None
    bar = tqdm(total=batches, desc=desc, unit="batch", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=False)  # fmt: skip
    lines = ProgressLines(None if progress else progress_every_s)  # a bar, or else lines
    for model in models:
        model.eval()
    try:
        for done, (images, target) in enumerate(loader, start=1):
            if lines.due():  # said before batch `done`: done - 1 finished
                left = f" | ETA {lines.eta(done - 1, batches)}" if batches else ""
                logger.info(
                    "%s batch %d/%s | %.1f img/s%s", desc, done, batches or "?", samples / lines.elapsed, left
                )
            bar.update(1)
            if stop_requested is not None and stop_requested():
                stopped = 1.0
                break
            if not len(target):  # a batch whose files could not be decoded (`collate_decoded`)
                continue
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            for model, total in zip(models, sums, strict=True):
                with _autocast(device, autocast_dtype):
                    logits = model(images)
                logits = logits.float()
                c1, c5 = correct_topk(logits, target)
                total[0] += F.cross_entropy(logits, target, reduction="sum").item()
                total[1] += c1
                total[2] += c5
            samples += len(target)
    finally:
        bar.close()
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
    reduced = all_reduce_sum([value for total in sums for value in total] + [samples, stopped], device)
    if reduced.pop() > 0:
        raise EvaluationInterrupted("evaluation stopped by a signal")
    samples = reduced[-1]
    n = max(samples, 1.0)
    return [
        {
            "loss": loss_sum / n if samples else math.nan,
            "top1": 100.0 * correct1 / n if samples else math.nan,
            "top5": 100.0 * correct5 / n if samples else math.nan,
            "samples": samples,
        }
        for loss_sum, correct1, correct5 in zip(
            reduced[0:-1:3], reduced[1:-1:3], reduced[2:-1:3], strict=True
        )
    ]
