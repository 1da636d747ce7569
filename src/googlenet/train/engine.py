"""`fit(config)`: a whole training run (or an ensemble of them) from a `TrainConfig`, returning its results.

One run: build the data (section 6 sampling), the model (same initial weights for a given seed), SGD
with momentum, the schedule, the Polyak average; then per epoch `train_one_epoch`, evaluation of the raw
and averaged weights, metrics, plots and a `last.pt` checkpoint; at the end `final.pt` (the averaged
model with its metadata) and `results.json`. SIGINT/SIGTERM finish the current step, save `last.pt` and
return; `fit(config, resume=path)` continues exactly where it stopped.

A run is a `_Trainer`: its constructor builds (or restores) every object, `train()` is the epoch loop.
Around it: `googlenet.train.ensemble` (section 7's N members), `googlenet.train.evaluation`
(`--test-only`), `googlenet.train.epochs` (the end of each epoch) and `googlenet.train.checkpoint`
(last.pt and the resume rules). Works the same in one process or many under `torchrun` (see
`googlenet.train.distributed`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from googlenet import __version__
from googlenet.console import PROGRESS_LINE_EVERY_S, is_launched, leave_resume_hint, shell_path, stderr_is_tty
from googlenet.data.datasets import read_skipped, record_skipped
from googlenet.data.loading import StoppingLoader
from googlenet.data.transforms import default_resize_size
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
from googlenet.train.config import (
    TrainConfig,
    average_start_epoch,
    builtin_settings,
    cpu_bf16,
    dump_yaml,
    flatten,
    from_dict,
    validate,
)
from googlenet.train.ensemble import fit_ensemble
from googlenet.train.epochs import end_of_epoch, log_epoch, overall_rate
from googlenet.train.evaluation import evaluate_checkpoint
from googlenet.train.finetune import freeze_batchnorm, init_from
from googlenet.train.gradflow import GradNormRecorder, load_grad_norms, plot_grad_split, write_split_table
from googlenet.train.inputs import (
    TrainData,
    build_data,
    keeps_workers,
    loader_workers,
    make_eval_loader,
    make_loader,
)
from googlenet.train.loop import (
    EpochMeter,
    EvaluationInterrupted,
    NonFiniteLossError,
    StepResult,
    autocast_for,
    train_one_epoch,
)
from googlenet.train.memory import check_run_memory
from googlenet.train.params import describe_groups, parameter_groups
from googlenet.train.runs import (
    SKIPPED_FILES,
    RunFolder,
    check_before_locking,
    check_new_run_folder,
    check_resume_folder,
    class_balance,
    default_output_dir,
    finished_results,
    is_detection_run,
    summary_line,
)
from googlenet.train.sampling import (
    CurrentBatches,
    SeededSamples,
    ShardedBatchSampler,
    ShardedIndices,
    epoch_permutation,
    mix_seed,
)
from googlenet.train.schedule import build_scheduler, lr_at

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
    of the run folder and checkpoints. With `run.test_only` they hold only what was evaluated: the
    checkpoint, the image count and the val_* figures (no "status"). Under torchrun every process
    returns the same results.

    Errors: `ConfigError` (settings), `DataError` (the data), `CheckpointError` (a file to resume or
    initialise from). Global state it leaves changed, as any seeded training does: the torch, NumPy
    and `random` generators are seeded from `run.seed`, and on CUDA `torch.backends.cudnn.benchmark`
    is on unless `run.deterministic`; the "googlenet" logger's level is given back.
    """
    config = config.copy()
    validate(config, resuming=resume is not None)
    if (
        config.data.data_path is not None
    ):  # stored absolute: --resume, --test-only and report work from anywhere
        config.data.data_path = os.path.abspath(os.path.expanduser(config.data.data_path))
    if config.model.init_from is not None and resume is None:  # recorded absolute, like the data
        config.model.init_from = os.path.abspath(os.path.expanduser(config.model.init_from))
    if config.run.output_dir is not None:  # a config file's "~/runs/x" made a folder named "~" here
        config.run.output_dir = os.path.expanduser(config.run.output_dir)
    env = ddp.from_environment()
    device = ddp.resolve_device(config.run.device, env)
    owns_group = env.distributed and not dist.is_initialized()
    ddp.init_process_group(env, device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        ddp.same_everywhere(_agreed_settings(config, resume), flag_names())
        if config.run.seed is None:
            # 52 bits: seed + k (an ensemble's members) stays below 2**53, the integers that JSON
            # readers (jq, JavaScript) hold exactly, so the seed in results.json reruns the run
            drawn = int.from_bytes(os.urandom(8), "little") >> 12
            config.run.seed = ddp.broadcast_object(drawn)
        if config.run.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if config.run.test_only:
            if resume is None:
                raise ConfigError(
                    "--test-only needs --resume PATH (a last.pt or final.pt); other weights (a torchvision "
                    ".pth, a .caffemodel, ONNX): googlenet evaluate --weights FILE --data-path DIR"
                )
            return evaluate_checkpoint(config, resume, env, device)
        if config.run.ensemble > 1:
            root = Path(resume) if resume is not None else _resolve_output_dir(config, env)
            return fit_ensemble(
                config,
                root,
                resume is not None,
                env,
                lambda member, last: _fit_one(member, last, env, device, resume_with=root),
            )
        return _fit_one(config, resume, env, device)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        if owns_group:
            ddp.destroy_process_group()


# Settings each process may have of its own: where its copy of the data and of the --init-from file
# are (their contents are compared, or DDP copies the first process's weights), how many loader
# processes its machine runs, and whether it draws a progress bar.
_OWN_SETTINGS = ("data.data_path", "model.init_from", "data.workers", "run.progress")


def _agreed_settings(config: TrainConfig, resume: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What every process of a run must share: its resolved configuration but `_OWN_SETTINGS`, and the
    checkpoint it resumes."""
    values = {k: v for k, v in flatten(config.as_dict()).items() if k not in _OWN_SETTINGS}
    values["resume"] = os.path.abspath(resume) if resume is not None else None
    return values


def flag_names() -> dict[str, str]:
    """Each config key's flag, e.g. {"optim.lr": "--lr"} (and --resume), for messages; of a --X /
    --no-X pair, --X."""
    import argparse

    from googlenet.train.command import add_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    names = {"resume": "--resume"}
    for action in parser._actions:
        options = action.option_strings
        if options and "." in action.dest:
            pair = [name for name in options if f"--no-{name[2:]}" in options]
            names[action.dest] = pair[0] if pair else max(options, key=len)
    return names


def _data_fingerprint(data: TrainData) -> dict[str, Any]:
    """The classes and the images of each split (count, and a digest of their paths inside the data
    folder), which every process must share: a node's own copy of the data may sit elsewhere."""

    def images(dataset: Any) -> tuple[int, str]:
        digest = hashlib.sha256()
        root = Path(dataset.root)
        for path, target in getattr(dataset, "samples", []):
            relative = os.path.relpath(path, root)
            digest.update(f"{relative}\t{target}\n".encode("utf-8", "surrogateescape"))
        return len(dataset), digest.hexdigest()[:12]

    return {"classes": list(data.classes), "train": images(data.train), "val": images(data.val)}


_DATA_NAMES = {
    "classes": "--data-path (its class folders)",
    "train": "--data-path (its training images: count, digest of their names)",
    "val": "--data-path (its validation images: count, digest of their names)",
}


def _recipe_line(
    config: TrainConfig, processes: int, steps_per_epoch: int, autocast: torch.dtype | None
) -> str:
    """The run's batch, schedule and precision in words, logged as it starts: a user of torchvision's
    script reads there that -b is the global batch and what a partly given schedule resolves to
    ("batch 32 (2 processes x 16), SGD lr 0.1 x0.96 every 30 epochs (0.0922 at the end), ..." over 90
    epochs)."""
    o, s, epochs = config.optim, config.schedule, config.run.epochs
    batch = f"batch {o.batch_size}" + (
        f" ({processes} processes x {o.batch_size // processes})" if processes > 1 else ""
    )
    if s.lr_scheduler == "cosine":
        shape = f"cosine to {s.lr_min:g} over {epochs} epochs"
    else:
        shape = f"x{s.lr_gamma:g} every {s.lr_step_size:g} epochs" + (
            ", smoothly" if s.lr_step_every == "iter" else ""
        )
        last = lr_at(s, o.lr, max(0, epochs * steps_per_epoch - 1), steps_per_epoch, epochs)
        shape += f" ({last:.3g} at the end)"
    how = "at" if s.lr_warmup_method == "constant" else "from"
    warmup = (
        f", {s.lr_warmup_epochs:g} warm-up epochs {how} x{s.lr_warmup_start:g}" if s.lr_warmup_epochs else ""
    )
    momentum = f"{'Nesterov ' if o.nesterov else ''}momentum {o.momentum:g}"
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[autocast]
    return (f"{batch}, SGD lr {o.lr:g} {shape}{warmup}, {momentum}, weight decay {o.weight_decay:g}, "
            f"{precision}")  # fmt: skip


def _processes(count: int) -> str:
    """ "1 process", "2 processes"."""
    return f"{count} process" + ("es" if count != 1 else "")


def _meter_share(saved: dict[str, Any] | None, is_main: bool) -> dict[str, Any] | None:
    """The interrupted epoch's running sums for this process: all of them (summed over processes when
    saved) on the first, none on the others but as many loss heads, so that every process adds up the
    same numbers at the epoch's end even when it resumes after the epoch's last step."""
    if saved is None or is_main:
        return saved
    heads = int(saved.get("heads", len(saved.get("loss_sums", []))))
    return EpochMeter(heads=heads, loss_sums=[0.0] * heads).state_dict()


def _resolve_output_dir(config: TrainConfig, env: ddp.DistEnv) -> Path:
    if config.run.output_dir:
        return Path(config.run.output_dir)
    # made and named by the first process alone; the others learn its name
    path = default_output_dir(config.model.variant, claim=True) if env.is_main else None
    return Path(ddp.broadcast_object(str(path)))


def _fit_one(
    config: TrainConfig,
    resume: str | os.PathLike[str] | None,
    env: ddp.DistEnv,
    device: torch.device,
    resume_with: Path | None = None,
) -> dict[str, Any]:
    """One training run; `resume_with`: the folder a stop message tells the user to resume (an ensemble
    member's is the ensemble's, which continues every member, not the member's own)."""
    started_wall = time.perf_counter()
    checkpoint: dict[str, Any] | None = None
    resume_path = resolve_resume_path(resume) if resume is not None else None
    run_dir = _resolve_output_dir(config, env) if resume_path is None else resume_path.parent
    # a new run's folder is checked again under the lock below: a run may start there in between
    check_before_locking(run_dir, first=env.is_main, new=resume_path is None)
    if resume_path is not None and run_dir.is_dir():
        check_resume_folder(run_dir, resume_path)
    run = RunFolder(
        run_dir, enabled=env.is_main, rank=env.rank
    )  # locked from here: the checks below cannot race
    try:
        if resume_path is not None:
            checkpoint = load_training_state(resume_path)
            stored = from_dict(checkpoint["train_state"]["config"], str(resume_path))
            check_resume_config(stored, config, resume_path)
            done, stop = int(checkpoint["train_state"].get("global_step", 0)), config.run.stop_after_steps
            if stop is not None and stop <= done:  # the loop checks after a step: it would take one more
                raise ConfigError(f"--stop-after-steps {stop}: {resume_path} is already at step {done}")
            finished, epochs_done = finished_results(run_dir), int(checkpoint["train_state"]["epoch"])
            if finished is not None and epochs_done >= config.run.epochs:
                # Nothing left to train: keep its final.pt and results.json as they are (a larger
                # --epochs continues the run instead).
                logger.info("%s: %d of %d epoch(s) done; nothing left to train: give --epochs above %d to "
                            "train on", run_dir, epochs_done, config.run.epochs, epochs_done)  # fmt: skip
                run.close()
                # Its paths as this call names the folder (the stored ones are as the run was started).
                return {**finished, "output_dir": str(run_dir), "last_checkpoint": str(run_dir / "last.pt"),
                        "final_checkpoint": str(run_dir / "final.pt")}  # fmt: skip
        else:
            check_new_run_folder(run_dir)
    except BaseException:
        run.close()
        run.discard_if_unused()  # only a folder this call created, and nothing is in it yet
        raise
    config.run.output_dir = str(run_dir)
    run.attach_log()
    try:
        return _Trainer(config, checkpoint, env, device, run, started_wall, resume_with).train()
    except (
        GoogLeNetError,
        OSError,
        RuntimeError,
        MemoryError,
    ) as exc:  # ours, or the machine's (memory, a disk)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        why = str(exc) if isinstance(exc, GoogLeNetError) else f"{type(exc).__name__}: {first}"
        run.log_to_file(logging.ERROR, f"stopped: {why}")
        run.close()
        run.discard_if_unused()
        raise
    except KeyboardInterrupt:  # a signal while setting up (reading the data, say): nothing trained yet
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
    last_lr: float | None = None  # the rate the last step trained at (the schedule has moved on since)


class _Trainer:
    """One training run: its data, model, optimiser, schedule and average, and the epoch loop.

    Built fresh or from a last.pt (`checkpoint`), which restores every object and the position, so the
    continuation is the run that stopped.
    """

    def __init__(
        self,
        config: TrainConfig,
        checkpoint: dict[str, Any] | None,
        env: ddp.DistEnv,
        device: torch.device,
        folder: RunFolder,
        started_wall: float,
        resume_with: Path | None = None,
    ) -> None:
        self.config, self.env, self.device, self.folder = config, env, device, folder
        self.started_wall = started_wall
        where = Path(resume_with if resume_with is not None else folder.path)
        # What the launcher parses (the folder, then its own flags) and the command a stop line gives,
        # ready to paste: the folder quoted, and `detect train` for its own runs, which detect again.
        self.resume_hint = str(where)
        if is_launched() and env.world_size > 1:  # `--resume X` alone would resume on one process
            self.resume_hint += f" --nproc-per-node {env.world_size}"
        command = "googlenet detect train" if is_detection_run(where) else "googlenet train"
        self.resume_with = f"{command} --resume {shell_path(where)}" + self.resume_hint[len(str(where)) :]
        m, o, r = config.model, config.optim, config.run
        assert r.seed is not None
        self.data_seed = r.data_seed if r.data_seed is not None else r.seed
        if o.batch_size % env.world_size:
            raise ConfigError(f"batch size {o.batch_size} is not divisible by {env.world_size} processes")
        warning = check_run_memory(config, env.world_size, device)
        if warning and env.is_main:
            logger.warning("%s", warning)
        self.data = data = build_data(config, env)
        ddp.same_everywhere(_data_fingerprint(data), _DATA_NAMES)
        if checkpoint is not None:  # a resumed run keeps its classes; checked before its files change
            check_same_classes(checkpoint.get("meta") or {}, data.classes, r.output_dir, data.wnids)
            trained_on = checkpoint["train_state"].get("train_images")
            if trained_on is not None and int(trained_on) != len(data.train):
                # Image order and epoch length follow the set's size: another size is another run.
                raise ConfigError(
                    f"{r.output_dir}: the run trained on {trained_on} images and the data now holds "
                    f"{len(data.train)}; resume on the same training images (--data-path, --scan-bad-files)"
                )
        # Every file skipped, in one list: what the scan found, and what the loader processes meet
        # later (a file deleted or a disk gone during the run), which the main process cannot see.
        self.skip_record = folder.path / SKIPPED_FILES
        for dataset in (data.train, data.val, data.train_eval):
            dataset.skip_record = str(self.skip_record)
        if env.is_main:
            if checkpoint is None:  # a new run in a folder an attempt killed before its first checkpoint left
                self.skip_record.unlink(missing_ok=True)
            known = read_skipped(self.skip_record)  # a resumed run's scan finds them again
            for path in data.bad_files:
                if path not in known:
                    reason = (
                        data.train.bad_reasons.get(path)
                        or data.val.bad_reasons.get(path)
                        or "cannot be decoded"
                    )
                    record_skipped(self.skip_record, path, reason)
        logger.info("run folder %s (%s, device %s)", folder.path, _processes(env.world_size), device)
        leave_resume_hint(self.resume_hint)  # for the launcher of `--nproc-per-node`, should a process die
        self.steps_per_epoch = ShardedBatchSampler.steps_per_epoch(len(data.train), o.batch_size)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch size {o.batch_size} is larger than the training set ({len(data.train)})"
            )
        bad = (
            f"{len(data.bad_files)} bad file(s) skipped"
            if config.data.scan_bad_files
            else "bad files not scanned for (each is named when met)"
        )
        left_out = len(data.train) - self.steps_per_epoch * o.batch_size  # the last incomplete batch
        steps = f"{self.steps_per_epoch} step{'s' if self.steps_per_epoch != 1 else ''} per epoch" + (
            f" ({left_out} image(s) left out of each epoch, other ones each time)" if left_out else ""
        )
        top5 = "; top-5 is always 100% with 5 classes or fewer" if len(data.classes) <= 5 else ""
        logger.info(
            "data: %s, %d classes, %d training / %d validation images, %s, %s%s",
            config.data.dataset, len(data.classes), len(data.train), len(data.val), bad, steps, top5,
        )  # fmt: skip

        # A resumed run's weights come from last.pt: its --init-from file is not read again (it may
        # have moved), and the fingerprint of the initial weights is the one last.pt recorded.
        self.model, self.init_sha, self.init_copied = _build_model(
            config, data.classes, device, load_init=checkpoint is None, wnids=data.wnids
        )
        if checkpoint is not None:
            self.init_sha = checkpoint["train_state"].get("init_sha256", self.init_sha)
            self.init_copied = list(checkpoint["train_state"].get("init_copied") or [])
        if o.init_lr_mult == 0.0:  # frozen: no gradient computed, no update, no momentum
            copied = set(self.init_copied)
            for name, param in self.model.named_parameters():
                if name in copied:
                    param.requires_grad_(False)
            if not any(param.requires_grad for param in self.model.parameters()):
                raise ConfigError(
                    f"--init-lr-mult 0 freezes every layer: {config.model.init_from} gave them all (the "
                    "classifiers too, its classes being the run's); nothing would train"
                )
            frozen_bn = freeze_batchnorm(self.model, copied)
            if frozen_bn:
                logger.info("fine-tuning: %d BatchNorm layers frozen with their statistics", len(frozen_bn))
        groups = parameter_groups(
            self.model, o.lr, o.weight_decay, bias_weight_decay=o.bias_weight_decay,
            norm_weight_decay=o.norm_weight_decay, bias_lr_mult=o.bias_lr_mult,
            scaled=self.init_copied, scaled_lr_mult=o.init_lr_mult,
        )  # fmt: skip
        if o.init_lr_mult != 1.0:
            trained = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            logger.info("fine-tuning: %d parameter tensors from %s at lr x%g%s; %d parameters train",
                        len(self.init_copied), config.model.init_from, o.init_lr_mult,
                        " (frozen)" if o.init_lr_mult == 0 else "", trained)  # fmt: skip
        self.optimizer = torch.optim.SGD(
            groups,
            lr=o.lr,
            momentum=o.momentum,
            weight_decay=o.weight_decay,
            nesterov=o.nesterov,
            fused=device.type in ("cpu", "cuda"),  # one kernel updates every parameter (same update rule)
        )
        self.scheduler = build_scheduler(self.optimizer, config.schedule, self.steps_per_epoch, r.epochs)
        self.averager = WeightAverager(self.model, config.average, r.epochs)
        self.autocast_dtype, use_scaler = autocast_for(device, r.amp, r.amp_dtype)
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        logger.info(
            "recipe: %s", _recipe_line(config, env.world_size, self.steps_per_epoch, self.autocast_dtype)
        )
        if device.type == "cpu" and self.autocast_dtype is not None and env.is_main and cpu_bf16() is False:
            logger.warning("--amp: this CPU has no bf16 instructions (AVX512-BF16, AMX or Arm's BF16); bf16 "
                           "autocast is emulated here, and slower than fp32 (--no-amp)")  # fmt: skip
        self.forward: nn.Module = _TrainForward(self.model)
        if env.distributed:
            self.forward = DistributedDataParallel(
                self.forward, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.meta: dict[str, Any] = {
            "class_names": data.classes,
            "input_size": m.input_size,
            "resize_size": m.resize_size or default_resize_size(m.input_size),
            "mean": list(config.augment.mean),
            "std": list(config.augment.std),
            "interpolation": "bilinear",
            "variant": m.variant,
            "recipe": _recipe(config, groups),
        }
        if data.wnids:  # ImageNet: evaluate matches a val folder named by WordNet id through them
            self.meta["wnids"] = data.wnids

        self.at = at = _Position()
        if checkpoint is not None:
            self.at = at = _restore(
                checkpoint, self.model, self.optimizer, self.scheduler, self.scaler, self.averager, env
            )
            into = f", {at.step} step(s) into epoch {at.epoch + 1}" if at.step else ""
            logger.info("resumed from %s: %d of %d epoch(s) done%s", folder.last, at.epoch, r.epochs, into)
            kept = self.averager.start_epoch
            if self.averager.updates > 0 and kept != average_start_epoch(config.average, r.epochs):
                # The average under way keeps its start (see `_restore`); config.yaml and last.pt say so
                # as a whole epoch number, so that the resolved configuration given back reproduces
                # this run (it said 0.5, which a fresh run of the new --epochs starts elsewhere).
                logger.info(
                    "the average under way keeps its start, epoch %d (average.start %g of %d epochs would "
                    "be epoch %d): recorded as average.start %d",
                    kept + 1, config.average.start, r.epochs, average_start_epoch(config.average, r.epochs) + 1, kept,
                )  # fmt: skip
                config.average.start = float(kept)
            if env.is_main and at.epoch < r.epochs:
                for note in older_run_notes(checkpoint["train_state"], config):
                    logger.warning("%s: %s", folder.last, note)
            if at.epoch >= r.epochs:
                logger.info("nothing left to train: give --epochs above %d to train on", at.epoch)
        # Written once the checkpoint is restored; a resume with nothing to train leaves the folder as is.
        if checkpoint is None or at.epoch < r.epochs:
            folder.write_text("config.yaml", dump_yaml(config, "googlenet train: resolved configuration"))
        folder.open_tensorboard(purge_step=at.global_step if checkpoint is not None else None)
        self.grad_norms = None
        if r.grad_norms_every > 0 and env.is_main:  # rank 0's local gradients, see googlenet.train.gradflow
            scale = self.scaler.get_scale if self.scaler is not None else None  # fp16 on a GPU
            self.grad_norms = GradNormRecorder(
                self.model, r.grad_norms_every, load_grad_norms(folder.path), loss_scale=scale
            )
            self.grad_norms.truncate(at.global_step)
            self.grad_norms.arm(at.global_step + 1)
        # The main/auxiliary split of the recorded gradients (see googlenet.train.gradflow); one process only.
        self._split = self.grad_norms is not None and m.aux_logits and not env.distributed

        # Training streams (dropout; anything else random in the training process), per process.
        if at.rng_states is not None and len(at.rng_states) == env.world_size:
            restore_rng_state(at.rng_states[env.rank])
        else:
            if at.rng_states is not None:
                logger.log(logging.WARNING if env.is_main else logging.INFO,  # said once, by the first
                           "resuming on %s (saved on %d): new RNG streams, not bit-exact",
                           _processes(env.world_size), len(at.rng_states))  # fmt: skip
            _seed_streams(self.data_seed, env.rank, salt=at.global_step)

        self.train_samples = SeededSamples(data.train, self.data_seed)
        self.balance = _balance_flags(config, data)
        eval_batch = max(1, o.batch_size // env.world_size)
        keep = keeps_workers(loader_workers(config))  # the loaders' processes kept between epochs
        self.train_loader: StoppingLoader | None = None  # kept, where `keep`: `_batches` sets its epoch
        self.val_loader = make_eval_loader(
            data.val, loader_workers(config), device, batch_size=eval_batch,
            sampler=ShardedIndices(range(len(data.val)), env.rank, env.world_size), persistent_workers=keep,
        )  # fmt: skip
        self.train_eval_loader = None
        if config.data.train_eval_samples > 0:  # a fixed subset, evaluated without augmentation
            subset = sorted(
                epoch_permutation(len(data.train), r.seed, -1)[: config.data.train_eval_samples].tolist()
            )
            self.train_eval_loader = make_eval_loader(
                data.train_eval, loader_workers(config), device, batch_size=eval_batch,
                sampler=ShardedIndices(subset, env.rank, env.world_size), persistent_workers=keep,
            )  # fmt: skip
        self.signals = StopSignals()

    def train(self) -> dict[str, Any]:
        """Run the remaining epochs (or until a signal or `run.stop_after_steps`); the run's results."""
        r, at, folder = self.config.run, self.at, self.folder
        status = "completed"
        epoch_times: list[float] = []
        last_plot = -math.inf
        folder.started = True  # from here a failure keeps the folder: its log tells what happened
        with self.signals, contextlib.closing(self):  # `close`: the loader processes kept
            while at.epoch < r.epochs:
                # an epoch resumed mid-way counts its training time before the stop, as its img/s does
                carried = float(at.meter_state.get("seconds", 0.0)) if at.meter_state is not None else 0.0
                epoch_started = time.perf_counter() - carried
                meter, stopped = self._train_epoch()
                if stopped:
                    step_in_epoch = at.global_step - at.epoch * self.steps_per_epoch  # epochs have one length
                    # A stop on the epoch's last step falls through to the end-of-epoch work and checkpoint.
                    if step_in_epoch < self.steps_per_epoch:
                        self._save_last(at.epoch, step_in_epoch, meter)
                        status = self._stop_status()
                        logger.info("%s in epoch %d/%d after %d of its %d steps; resume with %s",
                                    status, at.epoch + 1, r.epochs, step_in_epoch, self.steps_per_epoch,
                                    self.resume_with)  # fmt: skip
                        break
                try:
                    row = self._end_epoch(meter, epoch_started)
                except EvaluationInterrupted:  # a signal in the evaluation: keep the epoch's training
                    self._save_last(at.epoch, self.steps_per_epoch, meter)  # resumes into the evaluation
                    status = self._stop_status()
                    logger.info("%s in epoch %d/%d's evaluation (its %d steps are done); resume with %s",
                                status, at.epoch + 1, r.epochs, self.steps_per_epoch, self.resume_with)  # fmt: skip
                    break
                at.step = 0
                if time.perf_counter() - last_plot >= PLOT_EVERY_S:  # matplotlib costs ~1 s a plot
                    folder.plot(
                        at.history, len(self.meta["class_names"]), self._val_balance(), self._aux_weight()
                    )
                    last_plot = time.perf_counter()
                epoch_times.append(row["epoch_time_s"])
                log_epoch(row, r.epochs, (r.epochs - at.epoch - 1) * sum(epoch_times) / len(epoch_times))
                at.epoch += 1
                self._save_last(at.epoch, 0, None)
                if ddp.any_process(self._stop_requested(at.global_step), self.device) and at.epoch < r.epochs:
                    status = self._stop_status()
                    logger.info(
                        "%s after epoch %d/%d; resume with %s",
                        status,
                        at.epoch,
                        r.epochs,
                        self.resume_with,
                    )
                    break
        try:
            folder.plot(at.history, len(self.meta["class_names"]), self._val_balance(), self._aux_weight())
            if self.grad_norms is not None:
                self.grad_norms.write(folder.path)
                self.grad_norms.close()
                if plot_grad_split(self.grad_norms.rows, folder.path / "grad_split.png"):
                    write_split_table(self.grad_norms.rows, folder.path / "grad_split.csv")
            results = self._results(status)
            if status == "completed":
                results["final_checkpoint"] = str(folder.final)
                _save_final(folder, self.model, self.averager, self.meta, results, self.env)
            folder.write_results(results)
            folder.log_to_file(
                logging.INFO, summary_line(results)
            )  # the console's last line, printed by the CLI
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the closing files were written: last.pt holds all
            logger.info("interrupted while writing the run's closing files (final.pt, results.json, plots); "
                        "last.pt holds every step trained; resume with %s to write them", self.resume_with)  # fmt: skip
            raise
        ddp.barrier()  # the others leave with the first: torch's launcher stops whoever is left when one
        return results  # process exits with a signal's code, and the first may still be writing

    def _train_epoch(self) -> tuple[EpochMeter, bool]:
        """`train_one_epoch` from the current position; (the epoch's meter, whether a stop came)."""
        m, o, at = self.config.model, self.config.optim, self.at
        meter = EpochMeter()
        if at.meter_state is not None:  # an epoch resumed mid-way keeps its running sums
            meter.load_state_dict(at.meter_state)
            at.meter_state = None
        try:
            return train_one_epoch(
                self.forward, self._batches(at.epoch, at.step), self.optimizer, device=self.device,
                epoch=at.epoch, aux_weight=o.aux_weight, label_smoothing=o.label_smoothing,
                scheduler=self.scheduler, scaler=self.scaler, autocast_dtype=self.autocast_dtype,
                channels_last=m.channels_last, clip_grad_norm=o.clip_grad_norm,
                skip_nonfinite=o.skip_nonfinite, start_step=at.step, global_step=at.global_step, meter=meter,
                stop_requested=self._stop_requested, after_step=self._after_step,
                before_backward=self._split_gradient if self._split else None,
                progress=self.config.run.progress and self.env.is_main and stderr_is_tty(),
                total_steps=self.steps_per_epoch,
                progress_every_s=PROGRESS_LINE_EVERY_S if self.config.run.progress and self.env.is_main else None,
            )  # fmt: skip
        except NonFiniteLossError as exc:
            last = self.folder.last
            kept = f"last good checkpoint {last}" if last.exists() else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"{exc}; stopped ({kept}); lower --lr, add --lr-warmup-epochs, or pass --skip-nonfinite",
                exc.epoch, exc.step, exc.global_step,
            ) from None  # fmt: skip

    def _end_epoch(self, meter: EpochMeter, epoch_started: float) -> dict[str, Any]:
        """Evaluate raw and averaged weights, append the metrics.csv row and write it; the row."""
        at = self.at
        row = end_of_epoch(
            epoch=at.epoch, global_step=at.global_step, meter=meter, model=self.model, averager=self.averager,
            val_loader=self.val_loader, train_eval_loader=self.train_eval_loader,
            bn_batches=lambda: self._batches(_BN_EPOCH_TAG + at.epoch),
            lr=self.optimizer.param_groups[0]["lr"] if at.last_lr is None else at.last_lr,  # as it trained
            device=self.device, autocast_dtype=self.autocast_dtype,
            channels_last=self.config.model.channels_last, epoch_started=epoch_started,
            stop_requested=lambda: self.signals.received is not None,
            progress=self.config.run.progress and self.env.is_main and stderr_is_tty(),
            progress_every_s=PROGRESS_LINE_EVERY_S if self.config.run.progress and self.env.is_main else None,
        )  # fmt: skip
        at.history.append(row)
        self.folder.write_metrics(at.history)
        if self.grad_norms is not None:
            self.grad_norms.write(self.folder.path, final=False)  # the CSV; the JSON at the run's end
        self.folder.epoch_scalars(row)
        return row

    def _aux_weight(self) -> float | None:
        """The auxiliary losses' weight for the plots (None: no heads)."""
        return self.config.optim.aux_weight if self.config.model.aux_logits else None

    def _batches(self, epoch: int, start_step: int = 0) -> StoppingLoader:
        """Training batches of `epoch` (section 6 sampling), from its step `start_step` on. Where the loader
        processes are kept (`keeps_workers`) this is one loader, its sampler moved to `epoch`: iterate it
        before asking for another epoch's. Each sample's augmentation is seeded by (seed, epoch, index),
        so the batches are the same either way."""
        sampler = ShardedBatchSampler(
            len(self.data.train), self.config.optim.batch_size, self.data_seed, epoch, self.env.rank,
            self.env.world_size, start_step, flagged=self.balance, flagged_share=self.config.data.balance_share,
        )  # fmt: skip
        workers = loader_workers(self.config)
        if not keeps_workers(workers):
            return make_loader(self.train_samples, workers, self.device, batch_sampler=sampler)
        if self.train_loader is None:
            self.train_loader = make_loader(
                self.train_samples, workers, self.device, batch_sampler=CurrentBatches(sampler),
                persistent_workers=True,
            )  # fmt: skip
        else:
            assert isinstance(self.train_loader.batch_sampler, CurrentBatches)
            self.train_loader.batch_sampler.sampler = sampler
        return self.train_loader

    def close(self) -> None:
        """Stop the loader processes kept between epochs (none under fork)."""
        for loader in (self.train_loader, self.val_loader, self.train_eval_loader):
            if loader is not None:
                loader.close()

    def _stop_requested(self, step_number: int) -> bool:
        stop_after = self.config.run.stop_after_steps
        return self.signals.received is not None or (stop_after is not None and step_number >= stop_after)

    def _stop_status(self) -> str:
        """ "interrupted" (a signal, to any process) or "stopped" (`run.stop_after_steps`). Every process
        asks at the same point of a stop: the signal one received is every process's (SIGINT first),
        so each records it and exits 128 + it, not only the one the signal reached."""
        seen = ddp.all_reduce_sum(
            [float(self.signals.received == signal.SIGINT), float(self.signals.received == signal.SIGTERM)],
            self.device,
        )
        if self.signals.received is None and any(seen):
            self.signals.received = signal.SIGINT if seen[0] else signal.SIGTERM
        return "interrupted" if self.signals.received is not None else "stopped"

    def _split_gradient(self, losses: list[Tensor]) -> None:
        assert self.grad_norms is not None
        if self.grad_norms.armed:  # section 5's auxiliary part of the loss: weight x (aux1 + aux2)
            self.grad_norms.split(self.config.optim.aux_weight * torch.stack(losses[1:]).sum())

    def _after_step(self, result: StepResult) -> None:
        self.at.global_step = result.global_step
        self.at.last_lr = result.lr
        self.averager.maybe_update(self.model, result.epoch, result.global_step)
        if self.grad_norms is not None:
            self.grad_norms.commit(result.global_step)
            self.grad_norms.arm(result.global_step + 1)
        if result.global_step % self.config.run.log_every == 0:
            self.folder.scalar("step/loss_total", result.loss, result.global_step)
            self.folder.scalar("step/lr", result.lr, result.global_step)

    def _save_last(self, next_epoch: int, next_step: int, meter: EpochMeter | None) -> None:
        """last.pt, atomically: weights, average, optimiser, schedule, RNG streams and position."""
        rng = gather_rng_states()
        reduced = meter.reduced(self.device).state_dict() if meter is not None else None
        if self.env.is_main:
            train_state = {
                "config": self.config.as_dict(),
                "epoch": next_epoch,
                "step": next_step,
                "global_step": self.at.global_step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "averaged_updates": self.averager.updates,
                "average_start_epoch": self.averager.start_epoch,  # kept on resume once averaging started
                "train_images": len(self.data.train),
                "rng": rng,
                "meter": reduced,
                "history": self.at.history,
                "seed": self.config.run.seed,
                "world_size": self.env.world_size,
                "wall_time": self._wall(),
                "skipped_files": self.data.bad_files,
                "init_sha256": self.init_sha,
                "init_copied": self.init_copied,  # the parameters --init-lr-mult scales, for a resume
                # Mid-epoch, a BN variant's average holds the raw model's BN statistics (recomputed
                # only at an epoch's end): --test-only must not score the average with them.
                "averaged_bn_current": meter is None or not self.averager.recompute_bn,
                "averaged_exact": self.averager.exact_state(),  # Polyak's float64 running mean
            }
            averaged = self.averager.averaged
            last = self.folder.last
            try:
                sha = save_training_state(
                    last, self.model, self.meta, averaged.module.state_dict() if averaged is not None else None,
                    train_state, self.folder.pending_checkpoint(last),
                )  # fmt: skip
            except CheckpointError as exc:
                kept = "the previous last.pt is intact" if last.exists() else "no last.pt was written"
                raise CheckpointError(f"{exc}; {kept}") from None
            self.folder.record_checkpoint(last, sha)
        ddp.barrier()

    def _wall(self) -> float:
        """Seconds the run has trained, over every process that worked on it."""
        return self.at.wall_before + time.perf_counter() - self.started_wall

    def _val_balance(self) -> dict[str, Any]:
        """`class_balance` of the validation images (the chance lines of an imbalanced set)."""
        counts = [0] * len(self.data.classes)
        for target in self.data.val.targets:
            counts[target] += 1
        return class_balance(counts)

    def _results(self, status: str) -> dict[str, Any]:
        at = self.at
        last = at.history[-1] if at.history else {}
        results: dict[str, Any] = {
            "status": status,
            "output_dir": str(self.folder.path),
            "epochs": len(at.history),
            "global_step": at.global_step,
            **{
                key: last.get(key) for key in ("val_top1_raw", "val_top5_raw", "val_top1_avg", "val_top5_avg")
            },
            "train_top1": last.get("train_top1"),
            "averaged_steps": self.averager.updates,
            "wall_time_s": self._wall(),
            "img_per_s": overall_rate(row.get("img_per_s") for row in at.history),
            # the scan's and those the loader processes met (each adds them to skipped-files.jsonl)
            "skipped_bad_files": ddp.broadcast_object(
                len(set(self.data.bad_files) | set(read_skipped(self.skip_record))) if self.env.is_main else 0
            ),
            "skipped_steps": int(sum(row.get("skipped_steps", 0) or 0 for row in at.history)),
            "val_balance": self._val_balance(),
            "processes": self.env.world_size,
            "device": str(self.device),
            # what bit-identical reruns also depend on (bf16 kernels differ between torch versions)
            "versions": {
                "googlenet": __version__,
                "torch": torch.__version__,
                "torchvision": _torchvision_version(),
            },
            "seed": self.config.run.seed,
            "init_sha256": self.init_sha,
            "last_checkpoint": str(self.folder.last),
        }
        if self.signals.received is not None:
            results["signal"] = signal.Signals(self.signals.received).name
        return results


def _torchvision_version() -> str | None:
    try:
        import torchvision
    except ImportError:
        return None
    return str(torchvision.__version__)


class _TrainForward(nn.Module):
    """The training forward as `forward`, so DistributedDataParallel sees the auxiliary heads run."""

    def __init__(self, model: GoogLeNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return tuple(self.model.forward_train(x))


def _build_model(
    config: TrainConfig,
    classes: Sequence[str],
    device: torch.device,
    *,
    load_init: bool = True,
    wnids: Sequence[str] | None = None,
) -> tuple[GoogLeNet, str | None, list[str]]:
    """The network on `device`, the fingerprint of its initial weights (None when `load_init` is
    False and the model has `init_from`: the weights it would start from are not read) and the names of
    the parameters `init_from` copied (none without it, or when not loaded).

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
    model = build_model(m.variant, num_classes=len(classes), aux_logits=m.aux_logits, **overrides)
    copied: list[str] = []
    if m.init_from and load_init:
        kept = set(
            init_from(
                model, m.init_from, config.augment.mean, config.augment.std, classes=classes, wnids=wnids
            )
        )
        copied = [name for name, _ in model.named_parameters() if name not in kept]
    init_sha = _fingerprint(model) if load_init or not m.init_from else None
    if m.sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync-bn needs GPUs (SyncBatchNorm does not run on CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if m.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, init_sha, copied


def _fingerprint(model: nn.Module) -> str:
    """SHA-256 of the state dict's tensors (key order); equal initial weights give equal fingerprints."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def older_run_notes(state: dict[str, Any], config: TrainConfig) -> list[str]:
    """What a last.pt written before `TRAIN_STATE_VERSION` 2 may have done otherwise than its
    continuation will: said when such a run resumes, since its files cannot tell."""
    if int(state.get("version", 0)) >= 2:
        return []
    notes = []
    if state.get("history"):
        notes.append(
            "written by an older version: in a run begun before 2026-12-04 the lr column of the metrics.csv "
            "rows already there is the rate after each epoch, one epoch ahead of the rows from here on"
        )
    a = config.augment
    if not a.photometric and a.lighting > 0:
        notes.append(
            f"written by an older version: --no-photometric with lighting {a.lighting:g}; a run begun before "
            "2026-12-07 kept AlexNet's lighting noise under --no-photometric, and its remaining epochs train "
            "without it"
        )
    return notes


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
        averager.load_exact_state(state.get("averaged_exact"))
    if averager.updates > 0 and "average_start_epoch" in state:
        # A larger --epochs moves a fractional start (`average.start` 0.5 of 2 epochs is 1, of 7 is 4);
        # an average already under way keeps its start, or it would skip epochs and stop being uniform.
        averager.start_epoch = int(state["average_start_epoch"])
    return _Position(
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        global_step=int(state["global_step"]),
        history=[dict(row) for row in state.get("history", [])],
        wall_before=float(state.get("wall_time", 0.0)),
        meter_state=_meter_share(state.get("meter"), env.is_main),
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
    if data.wnids and wanted in data.wnids:  # a class folder named by WordNet id, named by its id
        wanted = data.classes[data.wnids.index(wanted)]
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
        + describe_groups(groups)
        + (", the layers --init-from copied frozen" if o.init_lr_mult == 0 else ""),
        "lr": o.lr,
        "schedule": (
            f"cosine to {s.lr_min}"
            if s.lr_scheduler == "cosine"
            else f"x{s.lr_gamma} every {s.lr_step_size} epochs (per {s.lr_step_every})"
        )
        + (f", {s.lr_warmup_epochs} {s.lr_warmup_method} warm-up epochs" if s.lr_warmup_epochs else ""),
        "epochs": config.run.epochs,
        "aux_weight": o.aux_weight,
        "averaging": a.method
        if a.method == "none"
        else f"{a.method} from {a.start}, every {a.every} step(s)"
        + (f", decay {a.ema_decay}" if a.method == "ema" else ""),
        "augment": dict(vars(config.augment)),
        "amp": config.run.amp,
        "seed": config.run.seed,
        "data_seed": config.run.data_seed,
        "dataset": config.data.dataset,
    } | (  # how the built-in data was drawn, so `evaluate --dataset builtin` finds the same images
        {"builtin": builtin_settings(config.data)} if config.data.dataset == "builtin" else {}
    )


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
            f"{averager.method} average of {averager.updates} snapshots from epoch {averager.start_epoch + 1}"
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


__all__ = ["RESUME_MUTABLE", "evaluate_checkpoint", "fit"]
