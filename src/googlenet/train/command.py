"""`googlenet train`: flags (named as in torchvision's reference train.py where they exist) -> TrainConfig -> fit.

With no arguments it trains the `paper` variant on the built-in data with the built-in preset
(`googlenet.train.config.builtin_preset`): 64x64 input, bf16 autocast where the CPU computes bf16 in
hardware, a few minutes on two CPU cores.

Every flag maps onto one config key (its argparse `dest` is the dotted key), and only the flags given
on the command line override the config file (`--config`), which overrides the defaults. Under
`torchrun` every process runs this command; only rank 0 prints and writes.

Exit status: 0 when the run completed (or stopped at `--stop-after-steps`), 1 on a user error,
128 + signal number (130 for SIGINT, 143 for SIGTERM) when a signal interrupted it after saving
`last.pt`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from googlenet.console import is_launched, setup_console, shell_path
from googlenet.errors import ConfigError, DataError, GoogLeNetError
from googlenet.train import distributed as ddp
from googlenet.train.checkpoint import (
    RESUME_MUTABLE,
    check_resume_config,
    load_training_state,
    resolve_resume_path,
)
from googlenet.train.config import (
    CHOICES,
    TrainConfig,
    apply,
    ensemble_member,
    flatten,
    from_dict,
    load_yaml,
    parse_set,
    read_run_config,
    resolve,
    validate_from,
)
from googlenet.train.engine import fit, flag_names
from googlenet.train.runs import is_detection_run, percent, summary_line

S = argparse.SUPPRESS


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet train`'s flags."""
    parser = subparsers.add_parser(
        "train",
        help="train GoogLeNet (section 6 recipe; with no arguments: a short run on the built-in data)",
        description=(
            "Train GoogLeNet: SGD with momentum 0.9, lr x0.96 every 8 epochs, auxiliary losses weighted 0.3, "
            "Polyak averaging. With no arguments: the paper variant on the built-in data at 64x64, a few "
            "minutes on CPU. Flags override --config, which overrides the defaults. Multi-process: "
            "--nproc-per-node N on one machine; across machines torchrun ... -m googlenet train ..."
        ),
        argument_default=S,
    )
    add_arguments(parser)
    add_launch_argument(parser)
    parser.set_defaults(func=run, unknown_hint=torchvision_hint)


# Flags of torchvision's reference script (references/classification/train.py) that `train` does not
# take, and what to give instead: a user of that script types them by habit, and a bare "unrecognized
# arguments" gave no way forward.
TORCHVISION_FLAGS: dict[str, str] = {
    "--model": "--variant (paper, bn or torchvision)",
    "--weights": "--init-from FILE (a torchvision .pth, a .caffemodel, an ONNX file or a checkpoint; nothing is downloaded)",
    "--use-deterministic-algorithms": "--deterministic",
    "--model-ema": "--average ema",
    "--model-ema-decay": "--ema-decay",
    "--model-ema-steps": "--average-every",
    "--val-resize-size": "--resize-size",
    "--train-crop-size": "--input-size (one size for training crops and evaluation)",
    "--val-crop-size": "--input-size (one size for training crops and evaluation)",
    "--print-freq": "--log-every",
    "--start-epoch": "--resume RUN (it continues where the run stopped)",
    "--opt": "none: section 6 trains with SGD and momentum (--momentum, --nesterov)",
    "--interpolation": "--no-random-interpolation for bilinear resizing only (section 6 draws one of four)",
    "--auto-augment": "none: the augmentation is section 6's (--random-crop, --photometric, --flip, ...)",
    "--random-erase": "none: the augmentation is section 6's (--random-crop, --photometric, --flip, ...)",
    "--mixup-alpha": "none: the augmentation is section 6's (--random-crop, --photometric, --flip, ...)",
    "--cutmix-alpha": "none: the augmentation is section 6's (--random-crop, --photometric, --flip, ...)",
    "--ra-sampler": "none: images are sampled once per epoch (--balance-class balances one class's share)",
    "--ra-reps": "none: images are sampled once per epoch (--balance-class balances one class's share)",
    "--ra-magnitude": "none: the augmentation is section 6's (--random-crop, --photometric, --flip, ...)",
    "--augmix-severity": "none: the augmentation is section 6's (--random-crop, --photometric, --flip, ...)",
    "--use-v2": "none: the transforms are always torchvision's transforms v2",
    "--backend": "none: images are decoded with Pillow into tensors",
    "--cache-dataset": "none: images are decoded each epoch by -j loader processes",
    "--dist-url": "none: torchrun sets the rendezvous (or --nproc-per-node N on one machine)",
    "--world-size": "--nproc-per-node N, or torchrun's --nnodes/--nproc-per-node",
}  # fmt: skip


def torchvision_hint(unknown: list[str]) -> str:
    """What to give instead of the torchvision reference-script flags among `unknown` ("" if none)."""
    named = dict.fromkeys(
        word.split("=", 1)[0] for word in unknown if word.split("=", 1)[0] in TORCHVISION_FLAGS
    )
    hints = []
    for flag in named:
        ours = TORCHVISION_FLAGS[flag]
        if ours.startswith("none: "):
            hints.append(f"; torchvision's {flag} has no counterpart here: {ours.removeprefix('none: ')}")
        else:
            hints.append(f"; torchvision's {flag} is {ours} here")
    return "".join(hints)


def add_launch_argument(parser: argparse.ArgumentParser) -> None:
    """`--nproc-per-node N` (`train`, `detect train`): see `launch_count`."""
    parser.add_argument(
        "--nproc-per-node", type=int, metavar="N",
        help="train in N processes on this machine (DDP; torchrun's launcher with --standalone, one-line "
             "errors); across machines use torchrun",
    )  # fmt: skip


def launch_count(args: argparse.Namespace, env: ddp.DistEnv) -> int:
    """The processes `--nproc-per-node` asks this process to start (googlenet.train.launch); 0 when not
    given, or when this process is one of those it started. ConfigError for one below 1, or under torchrun."""
    given = getattr(args, "nproc_per_node", None)
    if given is None or is_launched():
        return 0
    if given < 1:
        raise ConfigError(f"--nproc-per-node: must be at least 1, got {given}")
    if env.distributed or "TORCHELASTIC_RUN_ID" in os.environ:  # (torchrun's mark, also for one process)
        raise ConfigError(
            f"--nproc-per-node {given}: this process already runs under torchrun (process {env.rank} "
            f"of {env.world_size}); give the process count to one of them"
        )
    return int(given)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training flags (each `dest` a dotted config key); `detect train` shares them."""
    add = parser.add_argument
    boolean = argparse.BooleanOptionalAction

    g = parser.add_argument_group("run")
    add_g = g.add_argument
    add_g("--config", metavar="FILE", help="YAML config (sections as in a run's config.yaml)")
    add_g("--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
          help="any config key by name, over --config: one without a flag of its own "
               "(--set data.builtin_train_per_class=20), or null to clear one "
               "(--set optim.clip_grad_norm=null); repeatable")  # fmt: skip
    add_g("--epochs", dest="run.epochs", type=int,
          help="epochs to train (default 250, Caffe's solver: the paper gives none; built-in data: 30)")  # fmt: skip
    add_g(
        "-o",
        "--output-dir",
        dest="run.output_dir",
        metavar="DIR",
        help="run folder (default runs/<time>-<variant>)",
    )
    add_g(
        "--resume",
        metavar="PATH",
        help="continue a run exactly: its last.pt or run folder (ensemble: its folder)",
    )
    add_g(
        "--test-only",
        dest="run.test_only",
        action=boolean,
        help="evaluate --resume's weights and exit (--no-test-only: train, over a config file's test_only)",
    )
    add_g(
        "--seed",
        dest="run.seed",
        type=int,
        help="seed for the initial weights (and data, unless --data-seed)",
    )
    add_g(
        "--data-seed", dest="run.data_seed", type=int, help="seed for image order, augmentation and dropout"
    )
    add_g("--deterministic", dest="run.deterministic", action=boolean,
          help="torch.use_deterministic_algorithms: bit-identical reruns and resumes on CPU (default off)")  # fmt: skip
    add_g("--device", dest="run.device", help="auto (default), cpu, cuda or cuda:N")
    add_g(
        "--amp",
        dest="run.amp",
        action=boolean,
        help="mixed precision (bf16 autocast on CPU; default off, but on for the built-in data where the "
        "CPU has bf16 arithmetic)",
    )
    add_g("--amp-dtype", dest="run.amp_dtype", choices=CHOICES["run.amp_dtype"],
          help="GPU autocast type: auto (bf16 where the GPU has it natively, compute capability 8+; else fp16 + GradScaler)")  # fmt: skip
    add_g("--ensemble", dest="run.ensemble", type=int, metavar="N",
          help="train N members from the same initial weights with different sampling (section 7)")  # fmt: skip
    add_g(
        "--progress",
        dest="run.progress",
        action=boolean,
        help="progress bar on stderr when it is a terminal, else a progress line every 60 s (default on)",
    )
    add_g(
        "--log-every",
        dest="run.log_every",
        type=int,
        help="steps between TensorBoard loss points (default 50)",
    )
    add_g("--stop-after-steps", dest="run.stop_after_steps", type=int, metavar="N",
          help="stop after N optimiser steps in total, saving last.pt (time-boxed runs, tests)")  # fmt: skip
    add_g("--grad-norms-every", dest="run.grad_norms_every", type=int, metavar="N",
          help="record every conv/linear layer's gradient norm every N steps (grad_norms.csv; 0: off)")  # fmt: skip
    add_g("--json", action="store_true", help="print the results as JSON on stdout")

    g = parser.add_argument_group("data")
    add_g = g.add_argument
    add_g(
        "--data-path",
        dest="data.data_path",
        metavar="DIR",
        help="dataset root: train/ and val/ inside; for --dataset imagenet, ImageNet's three official archives",
    )
    add_g("--dataset", dest="data.dataset", choices=CHOICES["data.dataset"][1:],
          help="folder, imagenet or builtin (default: builtin without --data-path, else folder)")  # fmt: skip
    add_g(
        "--on-bad",
        dest="data.on_bad",
        choices=CHOICES["data.on_bad"],
        help="a bad image: skip (default) or abort",
    )
    add_g(
        "-j",
        "--workers",
        dest="data.workers",
        type=int,
        help="data loading processes, per process under torchrun (default min(4, CPUs); built-in data: 0, "
        "in the training process; at most 4 per CPU)",
    )
    add_g("--scan-bad-files", dest="data.scan_bad_files", action=boolean,
          help="decode every image once before training (default on: every loader skips them from the "
               "start; without it each bad file is named when met, and results.json counts those met)")  # fmt: skip
    add_g("--balance-class", dest="data.balance_class", metavar="CLASS",
          help="fix this class's share of every training batch (not in the paper; detect train: background)")  # fmt: skip
    add_g("--balance-share", dest="data.balance_share", type=float, metavar="F",
          help="that share (default 0.75, R-CNN's 96 background in 128)")  # fmt: skip
    add_g("--train-eval-samples", dest="data.train_eval_samples", type=int,
          help="training images evaluated raw vs averaged each epoch (default 1000; built-in data: 200; 0: none)")  # fmt: skip

    g = parser.add_argument_group("model")
    add_g = g.add_argument
    add_g(
        "--variant",
        dest="model.variant",
        choices=CHOICES["model.variant"],
        help="network variant (default paper: Table 1 exactly)",
    )
    add_g("--input-size", dest="model.input_size", type=int,
          help="training and evaluation crop (default 224, the paper's; built-in data: 64)")  # fmt: skip
    add_g(
        "--resize-size",
        dest="model.resize_size",
        type=int,
        help="evaluation resize (default input x 256/224)",
    )
    add_g(
        "--aux",
        dest="model.aux_logits",
        action=boolean,
        help="the auxiliary heads (section 5); --no-aux drops them",
    )
    add_g(
        "--dropout",
        dest="model.dropout",
        type=float,
        help="main dropout (default: the variant's: 0.4, torchvision 0.2)",
    )
    add_g("--lrn", dest="model.lrn", action=boolean,
          help="Figure 3's LRN layers (default: the variant's); --no-lrn on paper is a departure")  # fmt: skip
    add_g("--init", dest="model.init", choices=CHOICES["model.init"],
          help="initial weights (default: the variant's, paper: he); caffe: bvlc_googlenet's Xavier, bias 0.2")  # fmt: skip
    add_g("--init-from", dest="model.init_from", metavar="CHECKPOINT",
          help="start from these weights: our checkpoint, a torchvision .pth, bvlc_googlenet.caffemodel or the ONNX "
               "zoo's googlenet (same variant; classifiers re-initialised unless the classes are the same, in order)")  # fmt: skip
    add_g("--aux-dropout", dest="model.aux_dropout", type=float, help="auxiliary dropout (default 0.7)")
    add_g(
        "--channels-last", dest="model.channels_last", action=boolean, help="NHWC memory format (default on)"
    )
    add_g(
        "--sync-bn",
        dest="model.sync_bn",
        action=boolean,
        help="SyncBatchNorm under DDP on GPUs (default off)",
    )

    g = parser.add_argument_group("optimisation")
    add_g = g.add_argument
    add_g("-b", "--batch-size", dest="optim.batch_size", type=int,
          help="GLOBAL batch, split over processes (default 32, Caffe's solver: the paper gives none)")  # fmt: skip
    add_g("--lr", dest="optim.lr", type=float,
          help="base learning rate (default 0.01, Caffe's solver: the paper gives none)")  # fmt: skip
    add_g("--momentum", dest="optim.momentum", type=float, help="SGD momentum (section 6: 0.9)")
    add_g("--wd", "--weight-decay", dest="optim.weight_decay", type=float, help="weight decay (2e-4)")
    add_g("--bias-weight-decay", dest="optim.bias_weight_decay", type=float,
          help="weight decay of biases (default: --wd; Caffe's bvlc_googlenet: 0)")  # fmt: skip
    add_g("--norm-weight-decay", dest="optim.norm_weight_decay", type=float,
          help="weight decay of BatchNorm scales, and of its shifts unless a --bias-* flag is given (default: --wd)")  # fmt: skip
    add_g("--bias-lr-mult", dest="optim.bias_lr_mult", type=float,
          help="learning-rate multiplier of biases (1; Caffe's bvlc_googlenet: 2)")  # fmt: skip
    add_g("--init-lr-mult", dest="optim.init_lr_mult", type=float,
          help="fine-tuning: learning-rate multiplier of the layers --init-from copies (1; 0 freezes them, "
               "BatchNorm statistics included)")  # fmt: skip
    add_g(
        "--nesterov",
        dest="optim.nesterov",
        action=boolean,
        help="Nesterov momentum (default off: section 6's plain momentum)",
    )
    add_g("--aux-weight", dest="optim.aux_weight", type=float, help="auxiliary loss weight (section 5: 0.3)")
    add_g("--label-smoothing", dest="optim.label_smoothing", type=float, help="label smoothing (off)")
    add_g("--clip-grad-norm", dest="optim.clip_grad_norm", type=float,
          help="clip the gradient norm (default off; built-in data: 2)")  # fmt: skip
    add_g("--skip-nonfinite", dest="optim.skip_nonfinite", action=boolean,
          help="skip a step whose loss is NaN/Inf instead of stopping")  # fmt: skip
    add_g("--lr-scheduler", dest="schedule.lr_scheduler", type=_scheduler, choices=CHOICES["schedule.lr_scheduler"],
          help="step (default; section 6: x0.96 every 8 epochs) or cosine; torchvision's names steplr and "
               "cosineannealinglr are taken too")  # fmt: skip
    add_g("--lr-step-size", dest="schedule.lr_step_size", type=float, help="epochs between decays (8)")
    add_g("--lr-gamma", dest="schedule.lr_gamma", type=float, help="decay factor (0.96)")
    add_g("--lr-step-every", dest="schedule.lr_step_every", choices=CHOICES["schedule.lr_step_every"],
          help="epoch (default): staircase; iter: the same decay applied smoothly every iteration")  # fmt: skip
    add_g("--lr-warmup-epochs", dest="schedule.lr_warmup_epochs", type=float, help="warm-up epochs (0)")
    add_g("--lr-warmup-method", dest="schedule.lr_warmup_method", choices=CHOICES["schedule.lr_warmup_method"],
          help="linear (default): from lr x --lr-warmup-decay up to lr; constant (torchvision's default): "
               "lr x --lr-warmup-decay throughout")  # fmt: skip
    add_g("--lr-warmup-decay", "--lr-warmup-start", dest="schedule.lr_warmup_start", type=float,
          help="warm-up starts at lr x this (0.01)")  # fmt: skip
    add_g("--lr-min", dest="schedule.lr_min", type=float, help="final lr of the cosine schedule")

    g = parser.add_argument_group("averaging (section 6: Polyak)")
    add_g = g.add_argument
    add_g(
        "--average",
        dest="average.method",
        choices=CHOICES["average.method"],
        help="polyak (default), ema or none",
    )
    add_g("--average-start", dest="average.start", type=float,
          help="when averaging starts: a fraction of the run (< 1) or the number of epochs trained before it (0: from the first step; default 0.5, the second half; a fraction is rounded to whole epochs, halves to even: 3 epochs average the last one, 5 the last three)")  # fmt: skip
    add_g("--average-every", dest="average.every", type=int, help="steps between snapshots (1)")
    add_g("--ema-decay", dest="average.ema_decay", type=float, help="EMA decay per snapshot (default 0.9998)")
    add_g("--bn-stats", dest="average.bn_stats", choices=CHOICES["average.bn_stats"],
          help="BN variants: recompute the averaged model's statistics (default) or average them")  # fmt: skip
    add_g(
        "--bn-batches",
        dest="average.bn_batches",
        type=int,
        help="batches for recomputing BN statistics (default 200; 0: all)",
    )

    g = parser.add_argument_group("augmentation (section 6)")
    add_g = g.add_argument
    add_g("--random-crop", dest="augment.random_crop", action=boolean,
          help="random patches of 8-100%% area, aspect 3/4-4/3 (--no-random-crop: resize + random crop)")  # fmt: skip
    add_g("--scale-min", dest="augment.scale_min", type=float,
          help="smallest patch area fraction (0.08; built-in data: 0.5)")  # fmt: skip
    add_g("--scale-max", dest="augment.scale_max", type=float, help="largest patch area fraction (1.0)")
    add_g("--ratio-min", dest="augment.ratio_min", type=float, help="smallest aspect ratio (3/4)")
    add_g("--ratio-max", dest="augment.ratio_max", type=float, help="largest aspect ratio (4/3)")
    add_g("--random-interpolation", dest="augment.random_interpolation", action=boolean,
          help="bilinear/area/nearest/cubic at random (default on; --no-random-interpolation: bilinear)")  # fmt: skip
    add_g(
        "--photometric", dest="augment.photometric", action=boolean,
        help="Howard's photometric distortions: the colour jitter and lighting noise below (default on)",
    )  # fmt: skip
    add_g("--brightness", dest="augment.brightness", type=float, metavar="X",
          help="brightness factor drawn uniformly from [1-X, 1+X] (0.4)")  # fmt: skip
    add_g("--contrast", dest="augment.contrast", type=float, metavar="X",
          help="contrast factor drawn uniformly from [1-X, 1+X] (0.4)")  # fmt: skip
    add_g("--saturation", dest="augment.saturation", type=float, metavar="X",
          help="saturation factor drawn uniformly from [1-X, 1+X] (0.4)")  # fmt: skip
    add_g("--lighting", dest="augment.lighting", type=float, metavar="STD",
          help="AlexNet's PCA lighting noise, alpha ~ N(0, STD) per eigenvector (0.1; 0 = off)")  # fmt: skip
    add_g("--flip", dest="augment.flip", action=boolean, help="horizontal mirroring (default on)")
    add_g("--mean", dest="augment.mean", type=float, nargs=3, metavar=("R", "G", "B"),
          help="per-channel mean subtracted from 0-1 RGB input, at training and in the checkpoint for "
               "evaluation (ImageNet's: 0.485 0.456 0.406; with --std 1 1 1, 0 0 0 switches normalisation off)")  # fmt: skip
    add_g("--std", dest="augment.std", type=float, nargs=3, metavar=("R", "G", "B"),
          help="per-channel standard deviation it is divided by (ImageNet's: 0.229 0.224 0.225)")  # fmt: skip
    del add
    for action in parser._actions:  # "--lr LR", not "--lr OPTIM.LR"
        if "." in action.dest and action.metavar is None and action.nargs != 0 and not action.choices:
            action.metavar = action.dest.split(".", 1)[1].upper()


def _scheduler(value: str) -> str:
    """--lr-scheduler's value, torchvision's names (any case) taken for ours."""
    name = value.lower()
    if name == "exponentiallr":
        raise argparse.ArgumentTypeError(
            "exponentiallr: give --lr-scheduler step --lr-step-size 1 (a decay by --lr-gamma every epoch)"
        )
    return {"steplr": "step", "cosineannealinglr": "cosine"}.get(name, name)


PATH_KEYS: frozenset[str] = frozenset({"model.init_from", "run.output_dir"})  # the training-only paths


def _same_setting(key: str, value: Any, stored: dict[str, Any], folder: Path) -> bool:
    """Whether `value` is what the run in `folder` trained with (its config.yaml, flat `stored`; a key
    it lacks, added since, has the default it trained with)."""
    old = stored[key] if key in stored else _flat_defaults().get(key)
    if key == "run.output_dir":
        return Path(str(value)).expanduser().resolve() == folder.resolve()
    if key in PATH_KEYS and old is not None:
        return (
            str(old) == str(value)
            or Path(str(old)).expanduser().resolve() == Path(str(value)).expanduser().resolve()
        )
    if isinstance(old, list) or isinstance(value, list | tuple):
        return list(old or []) == list(value or [])
    return bool(old == value)


def _flat_defaults() -> dict[str, Any]:
    return flatten(TrainConfig().as_dict())


def _flag_of(key: str, value: Any, names: dict[str, str]) -> str:
    """The flag that gave `key` its `value`: --no-X for a --X/--no-X pair given False."""
    flag = names.get(key, key)
    return f"--no-{flag[2:]}" if value is False and flag.startswith("--") else flag


def _setup_logging(env: ddp.DistEnv) -> None:
    """Console lines for the "googlenet" loggers on stderr (rank 0 only, others warnings only)."""
    setup_console(logging.INFO if env.is_main else logging.WARNING)


# Sections that only training reads: with --test-only a value for one of them would be silently ignored
# (the batch size is the exception: evaluation batches by it too). The model section is the checkpoint's
# own (its layout, input and resize size are stored with it), and so are these run settings.
TRAINING_ONLY_SECTIONS: frozenset[str] = frozenset({"optim", "schedule", "augment", "average", "model"})
TRAINING_ONLY_KEYS: frozenset[str] = frozenset(
    {
        "run.epochs",
        "run.seed",
        "run.data_seed",
        "run.stop_after_steps",
        "run.log_every",
        "run.grad_norms_every",
        "run.output_dir",  # it writes nothing
    }
)


# (flag, its key, when it cannot apply, why): given on the command line there, it is refused rather than
# ignored. Only flags: a config file (a run's config.yaml, say) lists every key, applicable or not.
INAPPLICABLE: tuple[tuple[str, str, Callable[[Any], bool], str], ...] = (
    ("--aux-weight", "optim.aux_weight", lambda c: not c.model.aux_logits, "the model has no auxiliary heads (--no-aux)"),
    ("--aux-dropout", "model.aux_dropout", lambda c: not c.model.aux_logits, "the model has no auxiliary heads (--no-aux)"),
    ("--average-start", "average.start", lambda c: c.average.method == "none", "nothing is averaged (--average none)"),
    ("--ema-decay", "average.ema_decay", lambda c: c.average.method != "ema", "only --average ema decays"),
    ("--bn-stats", "average.bn_stats", lambda c: c.model.variant == "paper", "the paper variant has no BatchNorm"),
    ("--norm-weight-decay", "optim.norm_weight_decay", lambda c: c.model.variant == "paper", "the paper variant has no BatchNorm"),
    ("--sync-bn", "model.sync_bn", lambda c: c.model.variant == "paper", "the paper variant has no BatchNorm"),
    ("--bn-batches", "average.bn_batches",
     lambda c: c.model.variant == "paper" or c.average.method == "none" or c.average.bn_stats != "recompute",
     "nothing recomputes BatchNorm statistics (the paper variant, --average none or --bn-stats average)"),
    ("--lr-gamma", "schedule.lr_gamma", lambda c: c.schedule.lr_scheduler != "step", "only --lr-scheduler step decays by it"),
    ("--lr-step-size", "schedule.lr_step_size", lambda c: c.schedule.lr_scheduler != "step", "only --lr-scheduler step has steps"),
    ("--lr-min", "schedule.lr_min", lambda c: c.schedule.lr_scheduler != "cosine", "only --lr-scheduler cosine ends at it"),
    ("--lr-warmup-method", "schedule.lr_warmup_method", lambda c: not c.schedule.lr_warmup_epochs, "there is no warm-up (--lr-warmup-epochs)"),
    *((f"--{name}", f"augment.{name}", lambda c: not c.augment.photometric, "photometric distortion is off (--no-photometric)")
      for name in ("brightness", "contrast", "saturation", "lighting")),
    *((f"--{name.replace('_', '-')}", f"augment.{name}", lambda c: not c.augment.random_crop,
       "random crops are off (--no-random-crop)") for name in ("scale_min", "scale_max", "ratio_min", "ratio_max")),
    ("--balance-share", "data.balance_share", lambda c: c.data.balance_class is None, "no class is balanced (--balance-class)"),
    ("--amp-dtype", "run.amp_dtype", lambda c: not c.run.amp, "mixed precision is off (--amp)"),
)  # fmt: skip


def _refuse_inapplicable(flags: dict[str, Any], config: Any, settings: dict[str, Any] | None = None) -> None:
    """Refuse a flag, or its key given by `--set`, that changes nothing on this run's recipe (a config
    file is not checked: a run's own config.yaml holds every key)."""
    for flag, key, inapplicable, why in INAPPLICABLE:
        if inapplicable(config):
            if flags.get(key) is not None:
                raise ConfigError(f"{flag} does not apply: {why}")
            if (settings or {}).get(key) is not None:
                raise ConfigError(f"--set {key}=... does not apply: {why}")


def config_overrides(
    args: argparse.Namespace, flags: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`--config FILE`'s settings with `--set KEY=VALUE`'s over them, `--set`'s alone). A key given by
    --set and by its own flag is refused: the flags come last, and one of the two would be dropped."""
    file_overrides = load_yaml(args.config) if getattr(args, "config", None) else {}
    settings = parse_set(getattr(args, "set_overrides", None) or [])
    both = sorted(key for key in settings if flags.get(key) is not None)
    if both:
        raise ConfigError(f"--set {both[0]}=... and that key's own flag are both given; give one")
    return {**file_overrides, **settings}, settings


def build_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """(TrainConfig, resume path) from parsed flags: defaults/preset, file, flags; or a run to resume."""
    flags = {key: value for key, value in vars(args).items() if "." in key}
    file_overrides, settings = config_overrides(args, flags)
    resume = getattr(args, "resume", None)
    if resume == "":  # Path("") is the working folder: a script's unset "$CKPT" resumed whatever ran there
        raise ConfigError("--resume: an empty path; give a run folder or its last.pt")
    source = str(getattr(args, "config", None) or "config file")
    if settings:
        source = f"{args.config} or --set" if getattr(args, "config", None) else "--set"
    if resume is None:
        config = resolve(file_overrides, flags, source)
        _refuse_inapplicable(flags, config, settings)
        return config, resume
    if flags.get("run.test_only"):  # the run's own data, unless --config or flags name other data
        folder = _run_folder(Path(resume))
        stored_file = folder / "config.yaml"
        stored_values = load_yaml(stored_file) if stored_file.is_file() else {}
        # The training command given again with --test-only (as with torchvision's script) is fine where
        # its values are the run's own; another value would be silently ignored, and is refused.
        training_only = sorted(
            key for key, value in {**settings, **flags}.items()
            if value is not None and key != "optim.batch_size"
            and (key.split(".")[0] in TRAINING_ONLY_SECTIONS or key in TRAINING_ONLY_KEYS)
            and not _same_setting(key, value, stored_values, folder)
        )  # fmt: skip
        if training_only:
            names = flag_names()
            named = [
                f"--set {key}" if key in settings else _flag_of(key, flags[key], names)
                for key in training_only
            ]
            raise ConfigError(f"--test-only evaluates the checkpoint as it was trained; these settings differ from "
                              f"its training and do not apply: {', '.join(named)} (drop them)")  # fmt: skip
        given = {**file_overrides, **flags}
        data: dict[str, Any] = {}
        if not {"data.data_path", "data.dataset"} & given.keys():
            data = {k: v for k, v in stored_values.items() if k.startswith("data.")}
        elif "data.dataset" not in given and stored_values.get("data.dataset") == "imagenet":
            data = {"data.dataset": "imagenet"}  # another copy of ImageNet, as a plain --resume reads it
        # the precision the run trained in, not the one this machine's built-in preset would pick
        data.update(
            {k: v for k, v in stored_values.items() if k in ("run.amp", "run.amp_dtype") and k not in given}
        )
        return resolve({**data, **file_overrides}, flags, source), resume
    folder = Path(resume)
    ensemble = _is_ensemble_folder(folder)
    if ensemble:
        stored = read_run_config(folder / "config.yaml")
        _check_ensemble_file(folder, stored)
    else:
        path = resolve_resume_path(resume)
        stored = from_dict(load_training_state(path)["train_state"]["config"], str(path))
    # A stop point belongs to the run that stopped, not to its continuation (nor does the run's own
    # config.yaml given back with --config, which records it; --stop-after-steps, --set or a config file
    # naming another stop set a new one: that file's was dropped unsaid).
    recorded_stop, stored.run.stop_after_steps = stored.run.stop_after_steps, None
    if "run.stop_after_steps" not in settings and file_overrides.get("run.stop_after_steps") == recorded_stop:
        file_overrides = {k: v for k, v in file_overrides.items() if k != "run.stop_after_steps"}
    elsewhere = file_overrides.get("run.output_dir")  # as the file has it: the run's own, as it was typed
    typed = os.path.expanduser(str(elsewhere))  # "~/runs/x", as fit records it since 2026-12-07
    if (
        elsewhere is not None
        and typed != str(stored.run.output_dir)
        and str(elsewhere) != str(stored.run.output_dir)
        and Path(typed).resolve() != _run_folder(folder).resolve()
    ):
        raise ConfigError(
            f"{source}: run.output_dir {elsewhere}: a resumed run continues in its own folder "
            f"{_run_folder(folder)}; take run.output_dir out of the file (or resume without --config)"
        )
    config = apply(apply(stored, file_overrides, source), flags, "command line")  # copies: `stored` stays
    validate_from(config, file_overrides, flags, source, resuming=True)
    _refuse_inapplicable(flags, config, settings)
    if ensemble:  # a single run's continuation is checked against its last.pt by the engine
        check_resume_config(stored, config, folder / "config.yaml")
    return config, resume


def _check_ensemble_file(folder: Path, stored: TrainConfig) -> None:
    """An ensemble's resume reads its recipe from its config.yaml, the members not yet begun included:
    that file edited after a member began (an lr changed, say) gave the members different recipes
    unsaid. Checked against the first begun member's last.pt, its own sampling and data seed aside."""
    path = folder / "config.yaml"
    for k in range(stored.run.ensemble):
        last = folder / f"member-{k}" / "last.pt"
        if not last.is_file():
            continue
        state = load_training_state(last)["train_state"]
        began = from_dict(state["config"], str(last))
        expected, overrides = ensemble_member(stored, k, started=True)
        own = {*overrides, "run.data_seed", "run.ensemble"} | RESUME_MUTABLE
        # A member resumed with more epochs records its average's kept start as a whole epoch (the
        # engine's, not a user's edit): the ensemble's file keeps the fraction it began with.
        kept = began.average.start == state.get("average_start_epoch")
        for key, value in flatten(expected.as_dict()).items():
            if key == "average.start" and kept:
                continue
            if key not in own and began.get(key) != value:
                raise ConfigError(
                    f"{path}: {key} is {value!r} there, but member-{k} began with {began.get(key)!r}: the file "
                    "changed after the ensemble began and its members would train on different recipes; "
                    "put it back as it was"
                )
        return


def _elastic_resume(args: argparse.Namespace) -> None:
    """Under `torchrun --max-restarts N`, a restarted worker group continues its --output-dir's run.

    torchrun restarts every worker with the same command line after one fails, and counts the restarts
    in TORCHELASTIC_RESTART_COUNT; without this the restart would refuse the folder that holds last.pt.
    """
    restarts = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    folder = getattr(args, "run.output_dir", None)
    if not restarts.isdigit() or int(restarts) == 0 or folder is None or getattr(args, "resume", None):
        return
    if (Path(folder) / "last.pt").is_file() or (Path(folder) / "member-0").is_dir():
        args.resume = folder
        logging.getLogger("googlenet.train").warning(
            "elastic restart %s: resuming %s from its last checkpoint", restarts, folder
        )


def _run_folder(resume: Path) -> Path:
    """The run folder a --resume path names: the folder itself, or the one holding the checkpoint."""
    return resume if resume.is_dir() else resume.parent


def _weights_file(resume: Path) -> Path:
    """The checkpoint whose weights --init-from would take from a --resume path: the file itself, or a
    run folder's final.pt (its averaged model), else its last.pt."""
    if not resume.is_dir():
        return resume
    return resume / "final.pt" if (resume / "final.pt").is_file() else resume / "last.pt"


def _is_ensemble_folder(folder: Path) -> bool:
    """Whether `folder` is the run folder of `--ensemble N` (its ensemble.json, or a member started)."""
    return (folder / "ensemble.json").is_file() or (folder / "member-0").is_dir()


def _check_resume_target(args: argparse.Namespace, resume: Path, ensemble: int) -> None:
    """A resumed run continues in its own folder and keeps its kind (one model or an ensemble, a
    classifier or a detect train run)."""
    folder = _run_folder(resume)
    if is_detection_run(folder):
        raise ConfigError(
            f"--resume {shell_path(resume)}: a detect train run; continue it with googlenet detect train "
            f"--resume {shell_path(resume)}, which detects again with the model it trains on "
            "(this command would leave its detection results behind)"
        )
    wanted = getattr(args, "run.output_dir", None)
    if wanted is not None and Path(wanted).resolve() != folder.resolve():
        raise ConfigError(
            f"--output-dir {wanted}: a resumed run continues in its own folder {folder}; drop --output-dir "
            f"(or start a new run from its weights: --init-from {shell_path(_weights_file(resume))} "
            f"--output-dir {shell_path(wanted)})"
        )
    if ensemble > 1 and not _is_ensemble_folder(folder):
        raise ConfigError(
            f"--ensemble {ensemble}: {folder} holds one model, not an ensemble; resume it without "
            "--ensemble, or start the ensemble in a new --output-dir"
        )


def run(args: argparse.Namespace) -> int:
    """Run `googlenet train` from parsed flags; the exit code (0, or 128 + the signal that interrupted the
    run)."""
    env = ddp.from_environment()
    _setup_logging(env)
    nproc = launch_count(args, env)
    if nproc > 1:  # the processes say what the run does; this one only starts them
        setup_console(logging.WARNING)
    try:
        config, resume = _checked_config(args)
    except GoogLeNetError:
        leave_with_the_others(env, vars(args).get("run.device"))
        raise
    if nproc > 1 and config.optim.batch_size % nproc:  # before starting them (each would refuse it)
        raise ConfigError(f"-b {config.optim.batch_size} is not divisible by --nproc-per-node {nproc}")
    if nproc > 1:  # checked above once, here; each process checks again and trains
        from googlenet.train.launch import launch

        return launch(args.argv, nproc)
    results = fit(config, resume=resume)
    if env.is_main:
        if getattr(args, "json", False):
            from googlenet.io import json_text

            print(json_text(results))  # NaN (no average yet) as null
        else:
            _print_summary(results)
    if results.get("signal") and results.get("status") != "completed":  # a signal on the last step: done
        return 128 + int(signal.Signals[results["signal"]])
    return 0


def _checked_config(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """The run's config and checkpoint to resume, with the mistakes a look at the flags and files finds
    refused before any work."""
    _elastic_resume(args)
    config, resume = build_config(args)
    data_path = Path(str(config.data.data_path)).expanduser()  # a YAML file's "~/data": fit expands it too
    if config.data.dataset != "builtin" and not data_path.is_dir():
        what = "is a file, not a data folder" if data_path.exists() else "no such data folder"
        raise DataError(f"{config.data.data_path}: {what} (--data-path)")
    if config.run.ensemble > 1 and resume is not None and not Path(resume).is_dir():
        raise ConfigError("--resume for an ensemble takes the ensemble's folder")
    if resume is not None and not config.run.test_only:
        _check_resume_target(args, Path(resume), config.run.ensemble)
    return config, resume


def leave_with_the_others(env: ddp.DistEnv, device: str | None) -> None:
    """Under torchrun, a process that refuses its flags or files before training joins the process group
    first, then leaves: the others, which do not see the mistake (a data path missing on this node
    only), would otherwise wait for it in their own joining, torch's 30 minutes, without a word. Once
    it has left, their first collective fails at once ("another process failed")."""
    if not env.distributed:
        return
    import torch

    try:
        where = ddp.resolve_device(device or "auto", env)
    except GoogLeNetError:
        where = torch.device("cpu")
    with contextlib.suppress(RuntimeError, ValueError):  # the group is the others' way out, not ours
        ddp.init_process_group(env, where)


def _print_summary(results: dict[str, Any]) -> None:
    def pct(key: str) -> str:
        return percent(results.get(key))

    if "members" in results:
        print(
            f"ensemble of {results['ensemble']} ({results['status']}): {results['output_dir']}/ensemble.json"
        )
        for member in results["members"]:
            print(f"  member-{member['member']}: val top-1 averaged {percent(member.get('val_top1_avg'))}")
        return
    if "checkpoint" in results:  # --test-only
        images = f" on {results['samples']} images" if "samples" in results else ""
        if "weights" in results:  # a final checkpoint: one set of weights
            print(f"{results['checkpoint']} ({results['weights']}): val top-1 {pct('val_top1')}, "
                  f"top-5 {pct('val_top5')}{images}")  # fmt: skip
        else:
            print(f"{results['checkpoint']}: val top-1 raw {pct('val_top1_raw')} averaged {pct('val_top1_avg')}, "
                  f"top-5 raw {pct('val_top5_raw')} averaged {pct('val_top5_avg')}{images}")  # fmt: skip
        if "averaged_note" in results:
            print(f"averaged weights {results['averaged_note']}")
        return
    print(summary_line(results))
