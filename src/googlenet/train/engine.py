"""`fit(config)`: a whole training run (or an ensemble of them) from a `TrainConfig`, returning its results.

One run: build the data (section 6 sampling), the model (same initial weights for a given seed), SGD
with momentum, the schedule, the Polyak average; then per epoch `train_one_epoch`, evaluation of the raw
and averaged weights, metrics, plots and a `last.pt` checkpoint; at the end `final.pt` (the averaged
model with its metadata) and `results.json`. SIGINT/SIGTERM finish the current step, save `last.pt` and
return; `fit(config, resume=path)` continues exactly where it stopped.

Around it: `googlenet.train.ensemble` (section 7's N members), `googlenet.train.evaluation`
(`--test-only`), `googlenet.train.epochs` (the end of each epoch) and `googlenet.train.checkpoint`
(last.pt and the resume rules). Works the same in one process or many under `torchrun` (see `googlenet.train.distributed`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from googlenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, default_resize_size
from googlenet.errors import CheckpointError, ConfigError, GoogLeNetError
from googlenet.model.googlenet import GoogLeNet, build_model
from googlenet.model.weights import save_checkpoint
from googlenet.train import distributed as ddp
from googlenet.train.averaging import WeightAverager
from googlenet.train.checkpoint import (
    RESUME_MUTABLE,
    StopSignals,
    check_resume_config,
    check_same_classes,
    gather_rng_states,
    load_training_state,
    resolve_resume_path,
    restore_rng_state,
    save_training_state,
)
from googlenet.train.config import TrainConfig, dump_yaml, from_dict, validate
from googlenet.train.ensemble import fit_ensemble
from googlenet.train.epochs import end_of_epoch, log_epoch, mean
from googlenet.train.evaluation import evaluate_checkpoint
from googlenet.train.finetune import init_from
from googlenet.train.gradflow import GradNormRecorder, load_grad_norms
from googlenet.train.inputs import TrainData, build_data, loader_workers, make_loader
from googlenet.train.loop import (
    EpochMeter,
    NonFiniteLossError,
    StepResult,
    autocast_for,
    train_one_epoch,
)
from googlenet.train.params import describe_groups, parameter_groups
from googlenet.train.runs import RunFolder, default_output_dir
from googlenet.train.sampling import (
    SeededSamples,
    ShardedBatchSampler,
    ShardedIndices,
    epoch_permutation,
    mix_seed,
)
from googlenet.train.schedule import build_scheduler

logger = logging.getLogger("googlenet.train")

# The PNG curves are redrawn at most this often (and at the end of the run).
PLOT_EVERY_S = 30.0

# Augmentation keys for the batches that recompute BN statistics, distinct from any training epoch.
_BN_EPOCH_TAG = 1 << 40


def fit(config: TrainConfig, resume: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Train (or, with `run.test_only`, evaluate) as `config` says; returns the results dict.

    `resume`: a `last.pt` (or its run folder) to continue exactly; for an ensemble, the ensemble's
    folder. The results hold "status" ("completed", "interrupted" or "stopped"), the final raw and
    averaged validation top-1/top-5, epochs, wall time, throughput, skipped bad files and the paths
    of the run folder and checkpoints. Under torchrun every process returns the same results.
    """
    config = config.copy()
    validate(config)
    env = ddp.from_environment()
    device = ddp.resolve_device(config.run.device, env)
    owns_group = env.distributed and not dist.is_initialized()
    ddp.init_process_group(env, device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        if config.run.seed is None:
            drawn = int.from_bytes(os.urandom(8), "little") >> 2  # 62 bits: room for seed + k
            config.run.seed = ddp.broadcast_object(drawn)
        if config.run.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if config.run.test_only:
            if resume is None:
                raise ConfigError("--test-only needs --resume PATH (a last.pt or final.pt)")
            return evaluate_checkpoint(config, resume, env, device)
        if config.run.ensemble > 1:
            root = Path(resume) if resume is not None else _resolve_output_dir(config, env)
            return fit_ensemble(
                config,
                root,
                resume is not None,
                env,
                lambda member, last: _fit_one(member, last, env, device),
            )
        return _fit_one(config, resume, env, device)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        if owns_group:
            ddp.destroy_process_group()


def _resolve_output_dir(config: TrainConfig, env: ddp.DistEnv) -> Path:
    path = Path(config.run.output_dir) if config.run.output_dir else default_output_dir(config.model.variant)
    return Path(ddp.broadcast_object(str(path)))


def _fit_one(
    config: TrainConfig, resume: str | os.PathLike[str] | None, env: ddp.DistEnv, device: torch.device
) -> dict[str, Any]:
    """One training run."""
    started_wall = time.perf_counter()
    checkpoint: dict[str, Any] | None = None
    if resume is not None:
        resume_path = resolve_resume_path(resume)
        checkpoint = load_training_state(resume_path)
        stored = from_dict(checkpoint["train_state"]["config"], str(resume_path))
        check_resume_config(stored, config, resume_path)
        config.run.output_dir = str(resume_path.parent)
    run_dir = _resolve_output_dir(config, env)
    config.run.output_dir = str(run_dir)
    if checkpoint is None and (run_dir / "last.pt").exists():
        raise ConfigError(
            f"{run_dir} already holds a run (last.pt); pass --resume {run_dir} to continue or pick another "
            "--output-dir"
        )
    run = RunFolder(run_dir, enabled=env.is_main)
    run.attach_log()
    try:
        return _train(config, checkpoint, env, device, run, started_wall)
    except GoogLeNetError as exc:
        run.log_to_file(logging.ERROR, f"stopped: {exc}")
        run.close()
        run.discard_if_unused()
        raise
    finally:
        run.close()


@dataclass
class _Position:
    """Where a run stands; a resumed run restores it from last.pt's training state."""

    epoch: int = 0
    step: int = 0  # the first step of `epoch` still to run
    global_step: int = 0  # optimiser steps taken since the start of the run
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv rows so far
    wall_before: float = 0.0  # seconds the run had trained before this process took over
    meter_state: dict[str, Any] | None = None  # the interrupted epoch's running sums
    rng_states: list[dict[str, Any]] | None = None  # one per process that saved last.pt


def _train(
    config: TrainConfig,
    checkpoint: dict[str, Any] | None,
    env: ddp.DistEnv,
    device: torch.device,
    run: RunFolder,
    started_wall: float,
) -> dict[str, Any]:
    m, o, r = config.model, config.optim, config.run
    assert r.seed is not None
    data_seed = r.data_seed if r.data_seed is not None else r.seed
    if o.batch_size % env.world_size:
        raise ConfigError(f"batch size {o.batch_size} is not divisible by {env.world_size} processes")
    data = build_data(config, env)
    if checkpoint is not None:  # a resumed run keeps its classes; checked before its files change
        check_same_classes(checkpoint.get("meta") or {}, data.classes, r.output_dir)
    run.write_text("config.yaml", dump_yaml(config, "googlenet train: resolved configuration"))
    logger.info("run folder %s (%d process(es), device %s)", run.path, env.world_size, device)
    steps_per_epoch = ShardedBatchSampler.steps_per_epoch(len(data.train), o.batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(f"batch size {o.batch_size} is larger than the training set ({len(data.train)})")
    logger.info(
        "data: %s, %d classes, %d training / %d validation images, %d bad file(s) skipped, %d steps per epoch",
        config.data.dataset, len(data.classes), len(data.train), len(data.val), len(data.bad_files),
        steps_per_epoch,
    )  # fmt: skip

    model, init_sha = _build_model(config, len(data.classes), device)
    groups = parameter_groups(
        model, o.lr, o.weight_decay, bias_weight_decay=o.bias_weight_decay,
        norm_weight_decay=o.norm_weight_decay, bias_lr_mult=o.bias_lr_mult,
    )  # fmt: skip
    optimizer = torch.optim.SGD(
        groups,
        lr=o.lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        nesterov=o.nesterov,
        fused=device.type in ("cpu", "cuda"),  # one kernel updates every parameter (same update rule)
    )
    scheduler = build_scheduler(optimizer, config.schedule, steps_per_epoch, r.epochs)
    averager = WeightAverager(model, config.average, r.epochs)
    autocast_dtype, use_scaler = autocast_for(device, r.amp, r.amp_dtype)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    forward: nn.Module = _TrainForward(model)
    if env.distributed:
        forward = DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    meta: dict[str, Any] = {
        "class_names": data.classes,
        "input_size": m.input_size,
        "resize_size": m.resize_size or default_resize_size(m.input_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
        "variant": m.variant,
        "recipe": _recipe(config, groups),
    }

    at = _Position()
    if checkpoint is not None:
        at = _restore(checkpoint, model, optimizer, scheduler, scaler, averager, env)
        logger.info("resumed from %s at epoch %d step %d", run.last, at.epoch, at.step)
    run.open_tensorboard(purge_step=at.global_step if checkpoint is not None else None)
    grad_norms = None
    if r.grad_norms_every > 0 and env.is_main:  # rank 0's local gradients, see googlenet.train.gradflow
        grad_norms = GradNormRecorder(model, r.grad_norms_every, load_grad_norms(run.path))
        grad_norms.truncate(at.global_step)
        grad_norms.arm(at.global_step + 1)

    # Training streams (dropout; anything else random in the training process), per process.
    if at.rng_states is not None and len(at.rng_states) == env.world_size:
        restore_rng_state(at.rng_states[env.rank])
    else:
        if at.rng_states is not None:
            logger.warning("resuming on %d processes (saved on %d): new RNG streams, not bit-exact",
                           env.world_size, len(at.rng_states))  # fmt: skip
        _seed_streams(data_seed, env.rank, salt=at.global_step)

    train_samples = SeededSamples(data.train, data_seed)
    balance = _balance_flags(config, data)
    eval_batch = max(1, o.batch_size // env.world_size)
    val_loader = make_loader(
        data.val, env, loader_workers(config), device, batch_size=eval_batch,
        sampler=ShardedIndices(range(len(data.val)), env.rank, env.world_size),
    )  # fmt: skip
    train_eval_loader = None
    if config.data.train_eval_samples > 0:  # a fixed subset, evaluated without augmentation
        subset = sorted(
            epoch_permutation(len(data.train), r.seed, -1)[: config.data.train_eval_samples].tolist()
        )
        train_eval_loader = make_loader(
            data.train_eval, env, loader_workers(config), device, batch_size=eval_batch,
            sampler=ShardedIndices(subset, env.rank, env.world_size),
        )  # fmt: skip

    def batches(epoch: int, start_step: int = 0) -> DataLoader:
        """Training batches of `epoch` (section 6 sampling), from its step `start_step` on."""
        sampler = ShardedBatchSampler(
            len(data.train), o.batch_size, data_seed, epoch, env.rank, env.world_size, start_step,
            flagged=balance, flagged_share=config.data.balance_share,
        )  # fmt: skip
        return make_loader(train_samples, env, loader_workers(config), device, batch_sampler=sampler)

    def save_last(next_epoch: int, next_step: int, meter: EpochMeter | None) -> None:
        rng = gather_rng_states()
        reduced = meter.reduced(device).state_dict() if meter is not None else None
        if env.is_main:
            train_state = {
                "config": config.as_dict(),
                "epoch": next_epoch,
                "step": next_step,
                "global_step": at.global_step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "averaged_updates": averager.updates,
                "rng": rng,
                "meter": reduced,
                "history": at.history,
                "seed": r.seed,
                "world_size": env.world_size,
                "wall_time": at.wall_before + time.perf_counter() - started_wall,
                "skipped_files": data.bad_files,
            }
            averaged = averager.averaged.module.state_dict() if averager.averaged is not None else None
            try:
                sha = save_training_state(
                    run.last, model, meta, averaged, train_state, run.pending_checkpoint(run.last)
                )
            except CheckpointError as exc:
                kept = "the previous last.pt is intact" if run.last.exists() else "no last.pt was written"
                raise CheckpointError(f"{exc}; {kept}") from None
            run.record_checkpoint(run.last, sha)
        ddp.barrier()

    stop_after = r.stop_after_steps

    def stop_requested(step_number: int) -> bool:
        return signals.received is not None or (stop_after is not None and step_number >= stop_after)

    def after_step(result: StepResult) -> None:
        at.global_step = result.global_step
        averager.maybe_update(model, result.epoch, result.global_step)
        if grad_norms is not None:
            grad_norms.commit(result.global_step)
            grad_norms.arm(result.global_step + 1)
        if result.global_step % r.log_every == 0:
            run.scalar("step/loss_total", result.loss, result.global_step)
            run.scalar("step/lr", result.lr, result.global_step)

    show_bar = r.progress and env.is_main and _stderr_is_tty()
    status = "completed"
    epoch_times: list[float] = []
    last_plot = -math.inf
    run.started = True  # from here a failure keeps the folder: its log tells what happened
    with StopSignals() as signals:
        while at.epoch < r.epochs:
            epoch_started = time.perf_counter()
            meter = EpochMeter()
            if at.meter_state is not None:
                meter.load_state_dict(at.meter_state)
                at.meter_state = None
            try:
                meter, stopped = train_one_epoch(
                    forward, batches(at.epoch, at.step), optimizer, device=device, epoch=at.epoch,
                    aux_weight=o.aux_weight, label_smoothing=o.label_smoothing, scheduler=scheduler,
                    scaler=scaler, autocast_dtype=autocast_dtype, channels_last=m.channels_last,
                    clip_grad_norm=o.clip_grad_norm, skip_nonfinite=o.skip_nonfinite,
                    start_step=at.step, global_step=at.global_step, meter=meter,
                    stop_requested=stop_requested, after_step=after_step, progress=show_bar,
                    total_steps=steps_per_epoch,
                )  # fmt: skip
            except NonFiniteLossError as exc:
                kept = (
                    f"last good checkpoint {run.last}"
                    if run.last.exists()
                    else "no checkpoint was written yet"
                )
                raise NonFiniteLossError(
                    f"{exc}; stopped ({kept}); lower --lr, add --lr-warmup-epochs, or pass --skip-nonfinite",
                    exc.epoch, exc.step, exc.global_step,
                ) from None  # fmt: skip
            if stopped:
                step_in_epoch = at.global_step - at.epoch * steps_per_epoch  # every epoch has the same length
                # A stop on the epoch's last step falls through to the end-of-epoch work and checkpoint.
                if step_in_epoch < steps_per_epoch:
                    save_last(at.epoch, step_in_epoch, meter)
                    status = "interrupted" if signals.received is not None else "stopped"
                    logger.info("%s at epoch %d step %d (global step %d); resume with --resume %s",
                                status, at.epoch, step_in_epoch, at.global_step, run.path)  # fmt: skip
                    break
            at.step = 0
            row = end_of_epoch(
                epoch=at.epoch, global_step=at.global_step, meter=meter, model=model, averager=averager,
                val_loader=val_loader, train_eval_loader=train_eval_loader,
                bn_batches=lambda: batches(_BN_EPOCH_TAG + at.epoch), lr=optimizer.param_groups[0]["lr"],
                device=device, autocast_dtype=autocast_dtype, channels_last=m.channels_last,
                epoch_started=epoch_started,
            )  # fmt: skip
            at.history.append(row)
            run.write_metrics(at.history)
            if grad_norms is not None:
                grad_norms.write(run.path)
            run.epoch_scalars(row)
            if (
                time.perf_counter() - last_plot >= PLOT_EVERY_S
            ):  # matplotlib costs ~1 s; not every short epoch
                run.plot(at.history)
                last_plot = time.perf_counter()
            epoch_times.append(row["epoch_time_s"])
            log_epoch(row, r.epochs, (r.epochs - at.epoch - 1) * sum(epoch_times) / len(epoch_times))
            at.epoch += 1
            save_last(at.epoch, 0, None)
            halt = ddp.any_process(
                signals.received is not None or (stop_after is not None and at.global_step >= stop_after),
                device,
            )
            if halt and at.epoch < r.epochs:
                status = "interrupted" if signals.received is not None else "stopped"
                logger.info("%s after epoch %d; resume with --resume %s", status, at.epoch - 1, run.path)
                break

    run.plot(at.history)
    if grad_norms is not None:
        grad_norms.write(run.path)
        grad_norms.close()
    last = at.history[-1] if at.history else {}
    results: dict[str, Any] = {
        "status": status,
        "output_dir": str(run.path),
        "epochs": len(at.history),
        "global_step": at.global_step,
        **{key: last.get(key) for key in ("val_top1_raw", "val_top5_raw", "val_top1_avg", "val_top5_avg")},
        "train_top1": last.get("train_top1"),
        "averaged_steps": averager.updates,
        "wall_time_s": at.wall_before + time.perf_counter() - started_wall,
        "img_per_s": mean(row.get("img_per_s") for row in at.history),
        "skipped_bad_files": len(data.bad_files),
        "skipped_steps": int(sum(row.get("skipped_steps", 0) or 0 for row in at.history)),
        "processes": env.world_size,
        "device": str(device),
        "seed": r.seed,
        "init_sha256": init_sha,
        "last_checkpoint": str(run.last),
    }
    if signals.received is not None:
        results["signal"] = signal.Signals(signals.received).name
    if status == "completed":
        results["final_checkpoint"] = str(run.final)
        _save_final(run, model, averager, meta, results, env)
    run.write_results(results)
    return results


class _TrainForward(nn.Module):
    """The training forward as `forward`, so DistributedDataParallel sees the auxiliary heads run."""

    def __init__(self, model: GoogLeNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return tuple(self.model.forward_train(x))


def _build_model(config: TrainConfig, classes: int, device: torch.device) -> tuple[GoogLeNet, str]:
    """The network on `device` and the fingerprint of its initial weights.

    Same initial weights for a given seed, whatever the process, device or ensemble member (section 7's
    members start from the same weights).
    """
    m = config.model
    assert config.run.seed is not None
    torch.manual_seed(config.run.seed)
    overrides = {
        k: v
        for k, v in (("dropout", m.dropout), ("aux_dropout", m.aux_dropout), ("lrn", m.lrn), ("init", m.init))
        if v is not None
    }
    model = build_model(m.variant, num_classes=classes, aux_logits=m.aux_logits, **overrides)
    if m.init_from:
        init_from(model, m.init_from)
    init_sha = _fingerprint(model)
    if m.sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync-bn needs GPUs (SyncBatchNorm does not run on CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if m.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, init_sha


def _fingerprint(model: nn.Module) -> str:
    """SHA-256 of the state dict's tensors (key order); equal initial weights give equal fingerprints."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _restore(
    checkpoint: dict[str, Any],
    model: GoogLeNet,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    averager: WeightAverager,
    env: ddp.DistEnv,
) -> _Position:
    """Load a last.pt's weights and training state into the run's objects; where the run stood."""
    state = checkpoint["train_state"]
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if averager.averaged is not None and "averaged_state_dict" in checkpoint:
        averager.averaged.module.load_state_dict(checkpoint["averaged_state_dict"])
        averager.averaged.n_averaged.fill_(int(state.get("averaged_updates", 0)))
    return _Position(
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        global_step=int(state["global_step"]),
        history=[dict(row) for row in state.get("history", [])],
        wall_before=float(state.get("wall_time", 0.0)),
        meter_state=state.get("meter") if env.is_main else None,
        rng_states=state["rng"],
    )


def _seed_streams(data_seed: int, rank: int, salt: int = 0) -> None:
    """Seed this process's torch/NumPy/Python streams (dropout etc.) from (data seed, rank)."""
    seed = mix_seed(data_seed, rank, salt)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _balance_flags(config: TrainConfig, data: TrainData) -> list[bool] | None:
    """Per training image, whether it is of `data.balance_class` (None: sampling is not balanced)."""
    wanted = config.data.balance_class
    if wanted is None:
        return None
    if wanted not in data.classes:
        raise ConfigError(
            f"data.balance_class: no class {wanted!r} in the training set "
            f"({', '.join(data.classes[:5])}{', ...' if len(data.classes) > 5 else ''})"
        )
    flagged_index = data.classes.index(wanted)
    flags = [t == flagged_index for t in data.train.targets]
    if all(flags) or not any(flags):
        raise ConfigError(f"data.balance_class {wanted!r}: every or no image is of it")
    return flags


def _recipe(config: TrainConfig, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A short summary of the training recipe for final.pt's metadata."""
    o, s, a = config.optim, config.schedule, config.average
    return {
        "optimizer": f"SGD momentum {o.momentum}, weight decay {o.weight_decay}, global batch {o.batch_size}"
        + describe_groups(groups),
        "lr": o.lr,
        "schedule": (
            f"cosine to {s.lr_min}"
            if s.lr_scheduler == "cosine"
            else f"x{s.lr_gamma} every {s.lr_step_size} epochs (per {s.lr_step_every})"
        )
        + (f", {s.lr_warmup_epochs} warm-up epochs" if s.lr_warmup_epochs else ""),
        "epochs": config.run.epochs,
        "aux_weight": o.aux_weight,
        "averaging": a.method
        if a.method == "none"
        else f"{a.method} from {a.start}, every {a.every} step(s)",
        "augment": dict(vars(config.augment)),
        "amp": config.run.amp,
        "seed": config.run.seed,
        "data_seed": config.run.data_seed,
        "dataset": config.data.dataset,
    }


def _save_final(
    run: RunFolder,
    model: GoogLeNet,
    averager: WeightAverager,
    meta: dict[str, Any],
    results: dict[str, Any],
    env: ddp.DistEnv,
) -> None:
    """final.pt: the averaged weights (the raw ones when nothing was averaged) with their metadata."""
    averaged = averager.averaged if averager.updates > 0 else None
    final_state = (averaged.module if averaged is not None else model).state_dict()
    final_meta = {
        **meta,
        "weights": (
            f"{averager.method} average of {averager.updates} snapshots from epoch {averager.start_epoch}"
            if averaged is not None
            else "raw (no averaging)"
        ),
        "metrics": {
            key: results[key] for key in ("val_top1_raw", "val_top5_raw", "val_top1_avg", "val_top5_avg")
        },
        "epochs": results["epochs"],
    }
    if env.is_main:
        sha = save_checkpoint(
            run.final,
            model,
            final_meta,
            state_dict=final_state,
            before_replace=run.pending_checkpoint(run.final),
        )
        run.record_checkpoint(run.final, sha)
    ddp.barrier()


def _stderr_is_tty() -> bool:
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["RESUME_MUTABLE", "evaluate_checkpoint", "fit"]
