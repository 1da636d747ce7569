"""`fit(config)`: a whole training run (or an ensemble of them) from a `TrainConfig`, returning its results.

One run: build the data (section 6 sampling), the model (same initial weights for a given seed), SGD
with momentum, the schedule, the Polyak average; then per epoch `train_one_epoch`, evaluation of the raw
and averaged weights, metrics, plots and a `last.pt` checkpoint; at the end `final.pt` (the averaged
model with its metadata) and `results.json`. SIGINT/SIGTERM finish the current step, save `last.pt` and
return; `fit(config, resume=path)` continues exactly where it stopped.

Works the same in one process or many under `torchrun` (see `googlenet.train.distributed`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from googlenet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    default_resize_size,
)
from googlenet.errors import CheckpointError, ConfigError, GoogLeNetError
from googlenet.model.googlenet import GoogLeNet, build_from_config, build_model
from googlenet.model.weights import read_checkpoint, save_checkpoint
from googlenet.train import distributed as ddp
from googlenet.train.averaging import WeightAverager
from googlenet.train.checkpoint import (
    StopSignals,
    gather_rng_states,
    load_training_state,
    resolve_resume_path,
    restore_rng_state,
    save_training_state,
)
from googlenet.train.config import TrainConfig, dump_yaml, ensemble_member, from_dict, validate
from googlenet.train.finetune import init_from
from googlenet.train.gradflow import GradNormRecorder, load_grad_norms
from googlenet.train.inputs import build_data, loader_workers, make_loader
from googlenet.train.loop import (
    EpochMeter,
    NonFiniteLossError,
    StepResult,
    evaluate,
    evaluate_models,
    train_one_epoch,
)
from googlenet.train.params import describe_groups, parameter_groups
from googlenet.train.runs import RunFolder, default_output_dir, write_ensemble
from googlenet.train.sampling import (
    SeededSamples,
    ShardedBatchSampler,
    ShardedIndices,
    epoch_permutation,
    mix_seed,
)
from googlenet.train.schedule import build_scheduler

logger = logging.getLogger("googlenet.train")

# Settings that may differ between a checkpoint and the run resuming it; everything else must match,
# or the continuation would not be the same run.
RESUME_MUTABLE: frozenset[str] = frozenset(
    {"run.epochs", "run.device", "run.progress", "run.log_every", "run.stop_after_steps", "run.output_dir",
     "run.test_only", "data.workers", "data.data_path", "data.scan_bad_files"}
)  # fmt: skip

# The PNG curves are redrawn at most this often (and at the end of the run).
PLOT_EVERY_S = 30.0

# Augmentation keys for the batches that recompute BN statistics, distinct from any training epoch.
_BN_EPOCH_TAG = 1 << 40


class _TrainForward(nn.Module):
    """The training forward as `forward`, so DistributedDataParallel sees the auxiliary heads run."""

    def __init__(self, model: GoogLeNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return tuple(self.model.forward_train(x))


def _fingerprint(model: nn.Module) -> str:
    """SHA-256 of the state dict's tensors (key order); equal initial weights give equal fingerprints."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _autocast_dtype(config: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler). `--amp` on CPU is bf16 autocast."""
    if not config.run.amp:
        return None, False
    choice = config.run.amp_dtype
    if device.type == "cpu":
        if choice == "fp16":
            raise ConfigError("fp16 autocast is for GPUs; on CPU --amp uses bf16 (--amp-dtype bf16)")
        return torch.bfloat16, False
    if choice == "auto":
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return (torch.bfloat16, False) if choice == "bf16" else (torch.float16, True)


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


def _check_resume_config(stored: TrainConfig, wanted: TrainConfig, path: Path) -> None:
    old, new = _flat(stored), _flat(wanted)
    for key, value in new.items():
        if key not in RESUME_MUTABLE and old.get(key) != value:
            raise ConfigError(
                f"{path}: cannot resume with {key}={value!r}; the run was started with {old.get(key)!r}"
            )
    if stored.run.epochs != wanted.run.epochs and stored.schedule.lr_scheduler == "cosine":
        raise ConfigError(f"{path}: a cosine schedule's length is fixed; cannot change run.epochs on resume")


def _flat(config: TrainConfig) -> dict[str, Any]:
    return {f"{section}.{k}": v for section, values in config.as_dict().items() for k, v in values.items()}


def _nan_metrics() -> dict[str, float]:
    return {"loss": math.nan, "top1": math.nan, "top5": math.nan, "samples": 0.0}


def _seed_streams(data_seed: int, rank: int, salt: int = 0) -> None:
    """Seed this process's torch/NumPy/Python streams (dropout etc.) from (data seed, rank)."""
    seed = mix_seed(data_seed, rank, salt)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


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
            return _fit_ensemble(config, resume, env, device)
        return _fit_one(config, resume, env, device)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        if owns_group:
            ddp.destroy_process_group()


def _resolve_output_dir(config: TrainConfig, env: ddp.DistEnv) -> Path:
    path = Path(config.run.output_dir) if config.run.output_dir else default_output_dir(config.model.variant)
    return Path(ddp.broadcast_object(str(path)))


def _fit_ensemble(
    config: TrainConfig, resume: str | os.PathLike[str] | None, env: ddp.DistEnv, device: torch.device
) -> dict[str, Any]:
    """Section 7: N members from the same initial weights, differing in sampling and image order."""
    root = Path(resume) if resume is not None else _resolve_output_dir(config, env)
    if resume is None and root.is_dir() and any(root.glob("member-*")):
        raise ConfigError(f"{root} already holds an ensemble; pass --resume {root} to continue it")
    config.run.output_dir = str(root)
    folder = RunFolder(root, enabled=env.is_main)
    folder.write_text("config.yaml", dump_yaml(config, "googlenet train: ensemble configuration"))
    try:
        return _fit_members(config, root, env, device)
    except GoogLeNetError:
        folder.discard_if_unused()  # a bad input stopped member 0 before it wrote anything
        raise


def _fit_members(config: TrainConfig, root: Path, env: ddp.DistEnv, device: torch.device) -> dict[str, Any]:
    members: list[dict[str, Any]] = []
    status = "completed"
    for k in range(config.run.ensemble):
        member, overrides = ensemble_member(config, k)
        folder = root / f"member-{k}"
        member.run.output_dir = str(folder)
        done = folder / "results.json"
        result: dict[str, Any] | None = None
        if done.is_file() and (folder / "final.pt").is_file():
            import json

            previous = json.loads(done.read_text(encoding="utf-8"))
            if previous.get("status") == "completed":
                result = previous
                logger.info("ensemble member %d already trained (%s)", k, folder)
        if result is None:
            resume_k = folder / "last.pt" if (folder / "last.pt").is_file() else None
            if resume_k is not None:
                member = from_dict(load_training_state(resume_k)["train_state"]["config"])
                for key in RESUME_MUTABLE - {"run.output_dir"}:  # what the continuation may change
                    section, name = key.split(".")
                    setattr(getattr(member, section), name, config.get(key))
            logger.info("ensemble member %d/%d: sampling %s, data seed %s", k + 1, config.run.ensemble,
                        overrides or "as configured", member.run.data_seed)  # fmt: skip
            result = _fit_one(member, resume_k, env, device)
        members.append(
            {
                "member": k,
                "folder": folder.name,
                "final": f"{folder.name}/final.pt" if result.get("status") == "completed" else None,
                "sampling": overrides,
                "data_seed": member.run.data_seed,
                "init_sha256": result.get("init_sha256"),
                "status": result.get("status"),
                "val_top1_avg": result.get("val_top1_avg"),
                "val_top5_avg": result.get("val_top5_avg"),
                "val_top1_raw": result.get("val_top1_raw"),
                "val_top5_raw": result.get("val_top5_raw"),
            }
        )
        if result.get("status") != "completed":
            status = str(result.get("status"))
            break
    summary = {
        "status": status,
        "ensemble": config.run.ensemble,
        "seed": config.run.seed,
        "note": "section 7: same initial weights (init_sha256), different sampling and image order",
    }
    if env.is_main:
        write_ensemble(root, members, summary)
    return {**summary, "output_dir": str(root), "members": members}


def _check_same_classes(meta: dict[str, Any], classes: list[str], where: Any) -> None:
    """A checkpoint's weights only fit data with the classes it was trained on (one-line error)."""
    names = meta.get("class_names")
    if names is not None and list(names) != classes:
        other = "" if len(names) != len(classes) else " with other names"
        raise CheckpointError(
            f"{where}: trained on {len(names)} classes, the data has {len(classes)}{other} (--data-path)"
        )


def evaluate_checkpoint(
    config: TrainConfig, path: str | os.PathLike[str], env: ddp.DistEnv, device: torch.device
) -> dict[str, Any]:
    """`--test-only`: validation loss and top-1/top-5 of a checkpoint's weights.

    A training checkpoint (`last.pt`) gives "val_*_raw" and, once averaging has started, "val_*_avg"; a
    final checkpoint (`final.pt`, whose weights are the averaged model) gives "val_*" and "weights". A
    run folder means its last.pt, or its final.pt when only that is there (a copied or exported run).
    """
    file = Path(path)
    if file.is_dir():  # a run folder: its last.pt (raw and averaged weights), else its final.pt
        found = [file / name for name in ("last.pt", "final.pt") if (file / name).is_file()]
        if not found:
            raise CheckpointError(f"{path}: no last.pt or final.pt to evaluate (--resume with --test-only)")
        file = found[0]
    checkpoint = read_checkpoint(file)
    meta = dict(checkpoint.get("meta") or {})
    model_config = dict(checkpoint["model_config"])
    config.model.input_size = int(meta.get("input_size", config.model.input_size))
    config.model.resize_size = meta.get("resize_size", config.model.resize_size)
    data = build_data(config, env, training=False)
    _check_same_classes(meta, data.classes, file)
    model = build_from_config(model_config).to(device)
    sampler = ShardedIndices(range(len(data.val)), env.rank, env.world_size)
    loader = make_loader(data.val, env, loader_workers(config), device, batch_size=64, sampler=sampler)
    autocast_dtype, _ = _autocast_dtype(config, device)
    results: dict[str, Any] = {"checkpoint": str(file), "samples": len(data.val)}
    training = "train_state" in checkpoint
    if not training:
        results["weights"] = meta.get("weights", "unknown")
    averaged_updates = int(checkpoint.get("train_state", {}).get("averaged_updates", 0))
    for key, suffix in (("state_dict", "_raw" if training else ""), ("averaged_state_dict", "_avg")):
        if key not in checkpoint or (key == "averaged_state_dict" and averaged_updates == 0):
            continue
        model.load_state_dict(checkpoint[key])
        metrics = evaluate(model, loader, device=device, autocast_dtype=autocast_dtype)
        results.update({f"val_{name}{suffix}": metrics[name] for name in ("loss", "top1", "top5")})
    return results


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
        _check_resume_config(stored, config, resume_path)
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
        _check_same_classes(checkpoint.get("meta") or {}, data.classes, r.output_dir)
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

    # Same initial weights for a given seed, whatever the process, device or ensemble member.
    torch.manual_seed(r.seed)
    overrides = {
        k: v
        for k, v in (("dropout", m.dropout), ("aux_dropout", m.aux_dropout), ("lrn", m.lrn), ("init", m.init))
        if v is not None
    }
    model = build_model(m.variant, num_classes=len(data.classes), aux_logits=m.aux_logits, **overrides)
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

    # fused: one kernel updates every parameter (same update rule as the per-tensor loop)
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
        fused=device.type in ("cpu", "cuda"),
    )
    scheduler = build_scheduler(optimizer, config.schedule, steps_per_epoch, r.epochs)
    averager = WeightAverager(model, config.average, r.epochs)
    autocast_dtype, use_scaler = _autocast_dtype(config, device)
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

    epoch, start_step, global_step = 0, 0, 0
    history: list[dict[str, Any]] = []
    wall_before = 0.0
    meter_state: dict[str, Any] | None = None
    rng_states: list[dict[str, Any]] | None = None
    if checkpoint is not None:
        state = checkpoint["train_state"]
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if averager.averaged is not None and "averaged_state_dict" in checkpoint:
            averager.averaged.module.load_state_dict(checkpoint["averaged_state_dict"])
            averager.averaged.n_averaged.fill_(int(state.get("averaged_updates", 0)))
        epoch, start_step, global_step = int(state["epoch"]), int(state["step"]), int(state["global_step"])
        history = [dict(row) for row in state.get("history", [])]
        wall_before = float(state.get("wall_time", 0.0))
        meter_state = state.get("meter") if env.is_main else None
        rng_states = state["rng"]
        logger.info("resumed from %s at epoch %d step %d", run.last, epoch, start_step)
    run.open_tensorboard(purge_step=global_step if checkpoint is not None else None)
    grad_norms = None
    if r.grad_norms_every > 0 and env.is_main:  # rank 0's local gradients, see googlenet.train.gradflow
        grad_norms = GradNormRecorder(model, r.grad_norms_every, load_grad_norms(run.path))
        grad_norms.truncate(global_step)
        grad_norms.arm(global_step + 1)

    # Training streams (dropout; anything else random in the training process), per process.
    if rng_states is not None and len(rng_states) == env.world_size:
        restore_rng_state(rng_states[env.rank])
    else:
        if rng_states is not None:
            logger.warning("resuming on %d processes (saved on %d): new RNG streams, not bit-exact",
                           env.world_size, len(rng_states))  # fmt: skip
        _seed_streams(data_seed, env.rank, salt=global_step)

    train_samples = SeededSamples(data.train, data_seed)
    balance: list[bool] | None = None
    if config.data.balance_class is not None:
        if config.data.balance_class not in data.classes:
            raise ConfigError(
                f"data.balance_class: no class {config.data.balance_class!r} in the training set "
                f"({', '.join(data.classes[:5])}{', ...' if len(data.classes) > 5 else ''})"
            )
        flagged_index = data.classes.index(config.data.balance_class)
        balance = [t == flagged_index for t in data.train.targets]
        if all(balance) or not any(balance):
            raise ConfigError(f"data.balance_class {config.data.balance_class!r}: every or no image is of it")
    val_loader = make_loader(
        data.val, env, loader_workers(config), device, batch_size=max(1, o.batch_size // env.world_size),
        sampler=ShardedIndices(range(len(data.val)), env.rank, env.world_size),
    )  # fmt: skip
    subset = sorted(epoch_permutation(len(data.train), r.seed, -1)[: config.data.train_eval_samples].tolist())
    train_eval_loader = make_loader(
        data.train_eval, env, loader_workers(config), device, batch_size=max(1, o.batch_size // env.world_size),
        sampler=ShardedIndices(subset, env.rank, env.world_size),
    )  # fmt: skip

    def bn_batches() -> Iterator[Any]:
        sampler = ShardedBatchSampler(
            len(data.train), o.batch_size, data_seed, _BN_EPOCH_TAG + epoch, env.rank, env.world_size,
            flagged=balance, flagged_share=config.data.balance_share,
        )  # fmt: skip
        yield from make_loader(train_samples, env, loader_workers(config), device, batch_sampler=sampler)

    def save_last(next_epoch: int, next_step: int, meter: EpochMeter | None) -> None:
        rng = gather_rng_states()
        reduced = meter.reduced(device).state_dict() if meter is not None else None
        if env.is_main:
            train_state = {
                "config": config.as_dict(),
                "epoch": next_epoch,
                "step": next_step,
                "global_step": global_step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "averaged_updates": averager.updates,
                "rng": rng,
                "meter": reduced,
                "history": history,
                "seed": r.seed,
                "world_size": env.world_size,
                "wall_time": wall_before + time.perf_counter() - started_wall,
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
        nonlocal global_step
        global_step = result.global_step
        averager.maybe_update(model, result.epoch, result.global_step)
        if grad_norms is not None:
            grad_norms.commit(result.global_step)
            grad_norms.arm(result.global_step + 1)
        if result.global_step % r.log_every == 0:
            run.scalar("step/loss_total", result.loss, result.global_step)
            run.scalar("step/lr", result.lr, result.global_step)

    progress = r.progress and env.is_main and _stderr_is_tty()
    status = "completed"
    epoch_times: list[float] = []
    last_plot = -math.inf
    run.started = True  # from here a failure keeps the folder: its log tells what happened
    with StopSignals() as signals:
        while epoch < r.epochs:
            epoch_started = time.perf_counter()
            meter = EpochMeter()
            if meter_state is not None:
                meter.load_state_dict(meter_state)
                meter_state = None
            sampler = ShardedBatchSampler(
                len(data.train), o.batch_size, data_seed, epoch, env.rank, env.world_size, start_step,
                flagged=balance, flagged_share=config.data.balance_share,
            )  # fmt: skip
            loader = make_loader(train_samples, env, loader_workers(config), device, batch_sampler=sampler)
            try:
                meter, stopped = train_one_epoch(
                    forward, loader, optimizer, device=device, epoch=epoch, aux_weight=o.aux_weight,
                    label_smoothing=o.label_smoothing, scheduler=scheduler, scaler=scaler,
                    autocast_dtype=autocast_dtype, channels_last=m.channels_last,
                    clip_grad_norm=o.clip_grad_norm, skip_nonfinite=o.skip_nonfinite,
                    start_step=start_step, global_step=global_step, meter=meter,
                    stop_requested=stop_requested, after_step=after_step, progress=progress,
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
                step_in_epoch = _steps_done(global_step, epoch, steps_per_epoch)
                # A stop on the epoch's last step falls through to the end-of-epoch work and checkpoint.
                if step_in_epoch < steps_per_epoch:
                    save_last(epoch, step_in_epoch, meter)
                    status = "interrupted" if signals.received is not None else "stopped"
                    logger.info("%s at epoch %d step %d (global step %d); resume with --resume %s",
                                status, epoch, step_in_epoch, global_step, run.path)  # fmt: skip
                    break
            start_step = 0
            row = _end_of_epoch(
                config, epoch, global_step, meter, model, averager, val_loader, train_eval_loader,
                bn_batches, optimizer, device, autocast_dtype, epoch_started, env,
            )  # fmt: skip
            history.append(row)
            run.write_metrics(history)
            if grad_norms is not None:
                grad_norms.write(run.path)
            run.epoch_scalars(row)
            if (
                time.perf_counter() - last_plot >= PLOT_EVERY_S
            ):  # matplotlib costs ~1 s; not every short epoch
                run.plot(history)
                last_plot = time.perf_counter()
            epoch_times.append(row["epoch_time_s"])
            _log_epoch(row, r.epochs, (r.epochs - epoch - 1) * sum(epoch_times) / len(epoch_times))
            epoch += 1
            save_last(epoch, 0, None)
            halt = ddp.any_process(
                signals.received is not None or (stop_after is not None and global_step >= stop_after), device
            )
            if halt and epoch < r.epochs:
                status = "interrupted" if signals.received is not None else "stopped"
                logger.info("%s after epoch %d; resume with --resume %s", status, epoch - 1, run.path)
                break

    run.plot(history)
    if grad_norms is not None:
        grad_norms.write(run.path)
        grad_norms.close()
    wall = wall_before + time.perf_counter() - started_wall
    last = history[-1] if history else {}
    results: dict[str, Any] = {
        "status": status,
        "output_dir": str(run.path),
        "epochs": len(history),
        "global_step": global_step,
        "val_top1_raw": last.get("val_top1_raw"),
        "val_top5_raw": last.get("val_top5_raw"),
        "val_top1_avg": last.get("val_top1_avg"),
        "val_top5_avg": last.get("val_top5_avg"),
        "train_top1": last.get("train_top1"),
        "averaged_steps": averager.updates,
        "wall_time_s": wall,
        "img_per_s": _mean([row.get("img_per_s") for row in history]),
        "skipped_bad_files": len(data.bad_files),
        "skipped_steps": int(sum(row.get("skipped_steps", 0) or 0 for row in history)),
        "processes": env.world_size,
        "device": str(device),
        "seed": r.seed,
        "init_sha256": init_sha,
        "last_checkpoint": str(run.last),
    }
    if signals.received is not None:
        results["signal"] = signal.Signals(signals.received).name
    if status == "completed":
        use_avg = averager.updates > 0
        final_state = (
            averager.averaged.module.state_dict() if use_avg and averager.averaged else model.state_dict()
        )
        final_meta = {
            **meta,
            "weights": (
                f"{averager.method} average of {averager.updates} snapshots from epoch {averager.start_epoch}"
                if use_avg
                else "raw (no averaging)"
            ),
            "metrics": {
                key: results[key] for key in ("val_top1_raw", "val_top5_raw", "val_top1_avg", "val_top5_avg")
            },
            "epochs": len(history),
        }
        results["final_checkpoint"] = str(run.final)
        if env.is_main:
            sha = save_checkpoint(
                run.final, model, final_meta, state_dict=final_state,
                before_replace=run.pending_checkpoint(run.final),
            )  # fmt: skip
            run.record_checkpoint(run.final, sha)
        ddp.barrier()
    run.write_results(results)
    return results


def _steps_done(global_step: int, epoch: int, steps_per_epoch: int) -> int:
    """Position within `epoch` after `global_step` optimiser steps (every epoch has the same length)."""
    return global_step - epoch * steps_per_epoch


def _stderr_is_tty() -> bool:
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return sum(numbers) / len(numbers) if numbers else None


def _end_of_epoch(
    config: TrainConfig,
    epoch: int,
    global_step: int,
    meter: EpochMeter,
    model: GoogLeNet,
    averager: WeightAverager,
    val_loader: DataLoader,
    train_eval_loader: DataLoader,
    bn_batches: Any,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    epoch_started: float,
    env: ddp.DistEnv,
) -> dict[str, Any]:
    """Evaluate raw and averaged weights; the metrics.csv row of this epoch."""
    summary = meter.reduced(device).summary()
    kwargs: dict[str, Any] = {"device": device, "autocast_dtype": autocast_dtype,
                              "channels_last": config.model.channels_last}  # fmt: skip
    averaged = averager.eval_model(bn_batches(), device)
    models = [model] if averaged is None else [model, averaged]  # one pass over each loader for both
    val_raw, val_avg = [*evaluate_models(models, val_loader, **kwargs), _nan_metrics()][:2]
    train_raw = train_avg = _nan_metrics()
    if config.data.train_eval_samples > 0:
        train_raw, train_avg = [*evaluate_models(models, train_eval_loader, **kwargs), _nan_metrics()][:2]
    seconds = meter.seconds
    return {
        "epoch": epoch,
        "global_step": global_step,
        "lr": optimizer.param_groups[0]["lr"],
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


def _log_epoch(row: dict[str, Any], epochs: int, eta_s: float) -> None:
    def pct(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"

    aux = ""
    if row.get("loss_aux1") is not None:
        aux = f" aux {row['loss_aux1']:.3f}/{row['loss_aux2']:.3f}"
    logger.info(
        "epoch %d/%d: loss %.3f (main %.3f%s) | train top-1 %s | val top-1 raw %s avg %s, top-5 raw %s avg %s"
        " | lr %.3g | %.0f img/s | %.1fs, ETA %s",
        row["epoch"] + 1, epochs, row["loss_total"] if row["loss_total"] is not None else math.nan,
        row["loss_main"] if row["loss_main"] is not None else math.nan, aux, pct(row["train_top1"]),
        pct(row["val_top1_raw"]), pct(row["val_top1_avg"]), pct(row["val_top5_raw"]), pct(row["val_top5_avg"]),
        row["lr"], row["img_per_s"], row["epoch_time_s"], _duration(eta_s),
    )  # fmt: skip


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


__all__ = ["RESUME_MUTABLE", "evaluate_checkpoint", "fit"]
