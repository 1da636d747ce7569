"""The end of every training epoch: evaluate the raw and the averaged weights in one pass over each
loader, build the epoch's `metrics.csv` row, and log its one summary line (with the run's ETA)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader

from googlenet.console import duration
from googlenet.model.googlenet import GoogLeNet
from googlenet.train.averaging import WeightAverager
from googlenet.train.loop import EpochMeter, evaluate_models

logger = logging.getLogger("googlenet.train")


def nan_metrics() -> dict[str, float]:
    """The metrics of an evaluation that did not happen (no averaged model yet, no train-eval subset)."""
    return {"loss": math.nan, "top1": math.nan, "top5": math.nan, "samples": 0.0}


def end_of_epoch(
    *,
    epoch: int,
    global_step: int,
    meter: EpochMeter,
    model: GoogLeNet,
    averager: WeightAverager,
    val_loader: DataLoader,
    train_eval_loader: DataLoader | None,
    bn_batches: Callable[[], Iterable[Any]],
    lr: float,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
    epoch_started: float,
    stop_requested: Callable[[], bool] | None = None,
    progress: bool = False,
    progress_every_s: float | None = None,
) -> dict[str, Any]:
    """Evaluate raw and averaged weights; the metrics.csv row of this epoch (`EvaluationInterrupted`
    when `stop_requested()` says yes during an evaluation). `progress`, `progress_every_s`: as for
    `evaluate_models`.

    `bn_batches()` yields training batches for recomputing the averaged model's BatchNorm statistics;
    `train_eval_loader` (None: not measured) a fixed subset of training images, evaluated without
    augmentation.
    """
    summary = meter.reduced(device).summary()
    kwargs: dict[str, Any] = {
        "device": device,
        "autocast_dtype": autocast_dtype,
        "channels_last": channels_last,
        "stop_requested": stop_requested,
        "progress": progress,
        "progress_every_s": progress_every_s,
    }
    averaged = averager.eval_model(bn_batches(), device)
    models = [model] if averaged is None else [model, averaged]  # one pass over each loader for both
    val_raw, val_avg = [*evaluate_models(models, val_loader, desc=f"epoch {epoch + 1} validation", **kwargs),
                        nan_metrics()][:2]  # fmt: skip
    train_raw = train_avg = nan_metrics()
    if train_eval_loader is not None:
        desc = f"epoch {epoch + 1} train subset"
        train_raw, train_avg = [
            *evaluate_models(models, train_eval_loader, desc=desc, **kwargs),
            nan_metrics(),
        ][:2]
    seconds = meter.seconds
    return {
        "epoch": epoch,
        "global_step": global_step,
        "lr": lr,
        "loss_main": summary.get("loss_main"),
        "loss_aux1": summary.get("loss_aux1"),
        "loss_aux2": summary.get("loss_aux2"),
        "loss_total": summary.get("loss_total"),
        "train_top1": summary["top1"],
        "train_top5": summary["top5"],
        "train_eval_top1_raw": train_raw["top1"],
        "train_eval_top5_raw": train_raw["top5"],
        "train_eval_top1_avg": train_avg["top1"],
        "train_eval_top5_avg": train_avg["top5"],
        "val_loss_raw": val_raw["loss"],
        "val_top1_raw": val_raw["top1"],
        "val_top5_raw": val_raw["top5"],
        "val_loss_avg": val_avg["loss"],
        "val_top1_avg": val_avg["top1"],
        "val_top5_avg": val_avg["top5"],
        "averaged_steps": averager.updates,
        "skipped_steps": int(summary["skipped_steps"]),
        "img_per_s": summary["samples"] / seconds if seconds > 0 else math.nan,
        "epoch_time_s": time.perf_counter() - epoch_started,
    }


def log_epoch(row: dict[str, Any], epochs: int, eta_s: float) -> None:
    """One summary line per epoch: losses per head, top-1/top-5 raw and averaged, lr, the training steps'
    img/s, the epoch's seconds including its validation, ETA."""

    def pct(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"

    aux = ""
    skipped = row.get("skipped_steps") or 0
    if skipped and row.get("loss_main") is None:  # no step counted: no loss to give
        aux = f"; all {skipped} steps skipped, non-finite"
    if row.get("loss_aux1") is not None:
        aux = f" aux {row['loss_aux1']:.3f}/{row['loss_aux2']:.3f}"
    logger.info(
        "epoch %d/%d: loss %.3f (main %.3f%s) | train top-1 %s | val top-1 raw %s avg %s, top-5 raw %s avg %s"
        " | lr %.3g | train %s img/s | epoch %.1fs with val, ETA %s",
        row["epoch"] + 1, epochs, row["loss_total"] if row["loss_total"] is not None else math.nan,
        row["loss_main"] if row["loss_main"] is not None else math.nan, aux, pct(row["train_top1"]),
        pct(row["val_top1_raw"]), pct(row["val_top1_avg"]), pct(row["val_top5_raw"]), pct(row["val_top5_avg"]),
        row["lr"], rate_text(row["img_per_s"]), row["epoch_time_s"], duration(eta_s),
    )  # fmt: skip


def rate_text(value: float) -> str:
    """An img/s figure: whole numbers from 10 on, two figures below ("%.0f" printed 0.4 img/s as 0)."""
    return f"{value:.0f}" if not math.isfinite(value) or value >= 10 else f"{value:.2g}"


def overall_rate(rates: Iterable[Any]) -> float | None:
    """A run's images per second from its epochs' rates: all images over all training seconds, which
    for epochs of equal size is the rates' harmonic mean (their plain mean gave a fast epoch's few
    seconds the weight of a slow one's many: 27.0 img/s for epochs at 14.5, 27.4 and 39.2, which took
    22.9 img/s overall). None when no epoch has a positive rate."""
    numbers = [float(v) for v in rates if isinstance(v, int | float) and math.isfinite(v) and v > 0]
    return len(numbers) / sum(1 / v for v in numbers) if numbers else None
