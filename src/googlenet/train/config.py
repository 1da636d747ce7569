"""Typed training configuration whose defaults are the paper's recipe (section 6), each number sourced.

`TrainConfig` groups the settings in sections that mirror `config.yaml`:

    model:    variant, heads, dropout overrides, input size, memory format
    data:     dataset, path, loader workers, bad-file policy
    augment:  section 6 sampling (area 8%-100%, aspect 3/4-4/3, photometric, random interpolation)
    optim:    SGD with momentum, batch, weight decay, auxiliary-loss weight
    schedule: x0.96 every 8 epochs (default), warm-up, cosine
    average:  Polyak (default), EMA or none
    run:      epochs, seed, device, precision, output folder, ensembles, logging

Where the paper gives no number (base learning rate, batch, weight decay, epochs) the default is the
public reference, Caffe's `bvlc_googlenet/solver.prototxt`, and the comment says so.

Precedence, lowest first: these defaults -> the built-in data preset (`builtin_preset()`: `BUILTIN_PRESET`
and, where the CPU has bf16 arithmetic, bf16 autocast; applied only when training on the built-in
data) -> a YAML file (`--config`) -> command-line flags. Unknown keys,
wrong types and out-of-range values raise a one-line `ConfigError` before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from googlenet.data.datasets import max_workers
from googlenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from googlenet.errors import ConfigError, brief
from googlenet.model import table1
from googlenet.model.googlenet import (
    INITS,
    MAX_INPUT_SIZE,
    MAX_RESIZE_SIZE,
    MIN_INPUT_SIZE,
    MIN_INPUT_SIZE_AUX,
)

if typing.TYPE_CHECKING:
    from googlenet.data.synthetic import BuiltinSettings

# Choices for the string-valued settings; validation and the CLI read them from here.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.variant": ("paper", "bn", "torchvision"),
    "model.init": INITS,  # None (unset): the variant's
    "data.dataset": ("auto", "folder", "imagenet", "builtin"),
    "data.on_bad": ("skip", "abort"),
    "schedule.lr_scheduler": ("step", "cosine"),
    "schedule.lr_step_every": ("epoch", "iter"),
    "schedule.lr_warmup_method": ("linear", "constant"),
    "average.method": ("polyak", "ema", "none"),
    "average.bn_stats": ("recompute", "average"),
    "run.amp_dtype": ("auto", "bf16", "fp16"),
}


@dataclass
class ModelSection:
    """The network (see `googlenet.build_model`) and how its tensors are laid out."""

    variant: str = "paper"  # Table 1 + Figure 3 exactly; "bn" and "torchvision" are named departures
    aux_logits: bool = True  # section 5: two auxiliary classifiers, on 4a and 4d
    dropout: float | None = None  # None: the variant's (Table 1: 40%)
    aux_dropout: float | None = None  # None: the variant's (section 5: 70%)
    # None: the variant's (paper: Figure 3's two LRN layers; bn and torchvision: none). False on the
    # paper variant is a departure, there so an ablation can measure what the LRN layers contribute.
    lrn: bool | None = None
    # None: the variant's (paper: He; bn and torchvision: truncated normal); "caffe" is bvlc_googlenet's
    # Xavier with bias 0.2. The paper gives none; see `GoogLeNet.reset_parameters`.
    init: str | None = None
    input_size: int = 224  # Table 1: 224x224 RGB input
    resize_size: int | None = None  # evaluation resize before the centre crop; None: input * 256 / 224
    channels_last: bool = True  # not in the paper: NHWC is faster for convolutions on CPU and GPU
    sync_bn: bool = False  # BN variants under DDP on GPU: batch statistics over the global batch
    # Not in section 6 (which trains from scratch); section 8's region classifier, after R-CNN, starts
    # from a classification checkpoint: its tensors that fit are copied, the classifiers re-initialised.
    init_from: str | None = None


@dataclass
class DataSection:
    """Where the images come from and how they are loaded."""

    dataset: str = "auto"  # auto: "builtin" without data_path, else "folder"
    data_path: str | None = None  # folder: a tree with train/ and val/; imagenet: the ILSVRC root
    workers: int | None = None  # DataLoader worker processes; None: min(4, CPUs); 0: in the training process
    on_bad: str = "skip"  # an unreadable image: skip it (counted in results.json) or abort
    train_eval_samples: int = 1000  # training images (fixed subset) evaluated raw and averaged each epoch
    # Decode every image once before training: bad files are dropped up front, so their count is exact
    # and no worker meets them (costs one decoding pass; turn off for a huge, trusted dataset).
    scan_bad_files: bool = True
    # The built-in data (`googlenet.data.synthetic.ensure_builtin`): 10 classes of drawn objects.
    builtin_image_size: int = 96  # not in the paper: ensure_builtin's default image side
    builtin_train_per_class: int = 100  # ensure_builtin's default: 1,000 training images
    builtin_val_per_class: int = 30  # ensure_builtin's default: 300 validation images
    # ensure_builtin's default: the drawing's seed, which picks the images (run.data_seed their order)
    builtin_seed: int = 0
    # Not in the paper (classification draws batches uniformly): every training batch holds exactly
    # round(balance_share x batch) images of class `balance_class` (R-CNN's 96 background regions in
    # 128; `detect train` sets "background" and 0.75). None: uniform batches.
    balance_class: str | None = None  # not in the paper
    balance_share: float = 0.75  # R-CNN (Girshick et al. 2014): 96 of 128


@dataclass
class AugmentSection:
    """Section 6 sampling; mirrors `googlenet.data.transforms.AugmentConfig`."""

    random_crop: bool = True  # section 6: random patches of varying area and aspect ratio
    scale_min: float = 0.08  # section 6: area uniform between 8% ...
    scale_max: float = 1.0  # ... and 100% of the image
    ratio_min: float = 3 / 4  # section 6: aspect ratio uniform between 3/4 ...
    ratio_max: float = 4 / 3  # ... and 4/3
    random_interpolation: bool = True  # section 6: bilinear, area, nearest, cubic with equal probability
    photometric: bool = True  # section 6: photometric distortions after Howard (2013)
    brightness: float = 0.4  # not in the paper: the ranges fb.resnet.torch uses for Howard's distortions
    contrast: float = 0.4  # as above
    saturation: float = 0.4  # as above
    lighting: float = 0.1  # not in the paper: AlexNet-style PCA lighting noise, std 0.1 (Krizhevsky 2012)
    flip: bool = True  # not in the paper: Caffe's reference solver mirrors (FACTS s.3)
    # The paper's input is RGB "with mean subtraction" (section 5; FACTS s.1; Caffe's reference subtracts a mean per
    # channel); not in the paper: the division by a std and ImageNet's statistics as torchvision uses
    # them, per channel on 0-1 RGB. Recorded in the final
    # checkpoint, so evaluation and prediction normalise the same way; mean 0 0 0 with std 1 1 1
    # switches it off.
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))  # as above


@dataclass
class OptimSection:
    """SGD, the loss and its auxiliary weighting."""

    batch_size: int = 32  # not in the paper: Caffe bvlc_googlenet solver; GLOBAL batch over all processes
    lr: float = 0.01  # not in the paper: Caffe bvlc_googlenet solver base_lr
    momentum: float = 0.9  # section 6
    weight_decay: float = 2e-4  # not in the paper: Caffe bvlc_googlenet solver
    # Per-kind refinements (googlenet.train.params), all off: one group, as section 6 describes.
    # Not in the paper; None: weight_decay. bvlc_googlenet's train_val.prototxt: 0 (decay_mult 0).
    bias_weight_decay: float | None = None
    # BatchNorm scales (BN variants); None: weight_decay. torchvision's --norm-weight-decay.
    norm_weight_decay: float | None = None
    bias_lr_mult: float = 1.0  # not in the paper; bvlc_googlenet's train_val.prototxt: 2 (lr_mult 2)
    # Not in the paper (fine-tuning): learning-rate multiplier of the parameters model.init_from gave;
    # 0 freezes them (in the BN variants their BatchNorm statistics too: FrozenBatchNorm2d). The
    # classifiers and any re-initialised layer train at lr.
    init_lr_mult: float = 1.0
    nesterov: bool = False  # section 6 uses plain momentum
    aux_weight: float = table1.AUX_LOSS_WEIGHT  # section 5: total loss = main + 0.3 x (aux1 + aux2)
    label_smoothing: float = 0.0  # not in the paper (came with Inception v3, 2015); off
    clip_grad_norm: float | None = None  # not in the paper; None: no clipping
    skip_nonfinite: bool = False  # a NaN/Inf loss stops the run; True skips that step instead


@dataclass
class ScheduleSection:
    """Learning-rate policy: section 6's x0.96 every 8 epochs, with warm-up and cosine as options."""

    lr_scheduler: str = "step"  # section 6: step decay
    lr_step_size: float = 8.0  # section 6: every 8 epochs
    lr_gamma: float = 0.96  # section 6: decreased by 4%
    lr_step_every: str = "epoch"  # epoch: a staircase; iter: the same decay spread smoothly over iterations
    lr_warmup_epochs: float = 0.0  # not in the paper: linear warm-up length (epochs, may be fractional)
    lr_warmup_start: float = 0.01  # warm-up starts at lr x this factor (torchvision's lr_warmup_decay)
    # linear: from lr x lr_warmup_start up to lr; constant: lr x lr_warmup_start throughout the warm-up
    # (torchvision's reference script's default; not in the paper either way)
    lr_warmup_method: str = "linear"
    lr_min: float = 0.0  # cosine only: the final learning rate


@dataclass
class AverageSection:
    """Section 6: "Polyak averaging ... was used to create the final model used at inference time"."""

    method: str = "polyak"  # section 6: uniform Polyak-Ruppert average; "ema" and "none" are options
    # Not in the paper. < 1: a fraction of the run; >= 1 (or 0): an epoch number. Averaging the
    # early, far-from-converged weights would only drag the average back, so start halfway.
    start: float = 0.5  # epochs trained before the first snapshot: 0 averages from the first step
    every: int = 1  # update the average every this many optimiser steps
    ema_decay: float = 0.9998  # EMA only, per update: a horizon of about 5000 steps
    bn_stats: str = "recompute"  # BN variants: recompute the averaged model's statistics, or average them
    bn_batches: int = 200  # batches of training data used to recompute BN statistics (0: all)


def average_start_epoch(section: AverageSection, epochs: int) -> int:
    """The first epoch whose steps enter the average: a fraction (< 1) of the run, or an epoch number.
    A fraction is rounded by Python's `round` (halves to even: 0.5 of 3 epochs is 2, of 5 is 2), kept
    so because a resumed run must find the start it was started with."""
    if 0 < section.start < 1:
        return round(section.start * epochs)
    return int(section.start)


@dataclass
class RunSection:
    """Length, seeds, devices, precision, output and reporting."""

    # Not in the paper: Caffe's step-policy solver.prototxt runs 10M iterations at batch 32 (250 epochs;
    # its quick_solver reaches the released 68.7% top-1 in 60 epochs with a different schedule).
    epochs: int = 250
    seed: int | None = None  # None: drawn at start and written to config.yaml, so every run can be redone
    # Image order, augmentation and dropout streams; None: `seed`. The initial weights always come from
    # `seed`, so ensemble members (data_seed = seed + k) start from the same weights (section 7).
    data_seed: int | None = None
    deterministic: bool = False  # torch.use_deterministic_algorithms(True): bit-identical reruns on CPU
    device: str = "auto"  # auto: cuda if available, else cpu; or "cpu", "cuda", "cuda:1"
    amp: bool = False  # mixed precision: bf16 autocast on CPU; on GPU see amp_dtype
    amp_dtype: str = "auto"  # GPU: auto = bf16 where native (compute capability 8+), else fp16 + GradScaler
    output_dir: str | None = None  # None: runs/<timestamp>-<variant>
    ensemble: int = 1  # section 7: members trained from the same initial weights, different sampling
    progress: bool = True  # tqdm bar on stderr (off when stderr is not a terminal)
    log_every: int = 50  # optimiser steps between TensorBoard loss/lr points
    stop_after_steps: int | None = None  # stop (checkpoint and exit) after this many steps in total
    test_only: bool = False  # evaluate `resume`'s weights on the validation set and exit
    # Not in the paper: every N optimiser steps (and the first), the gradient norm of every conv and
    # linear layer, before clipping, to grad_norms.csv/.json (`googlenet.train.gradflow`); 0: off.
    grad_norms_every: int = 0


@dataclass
class TrainConfig:
    """The whole training recipe; `as_dict()` is what `config.yaml` holds."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    average: AverageSection = field(default_factory=AverageSection)
    run: RunSection = field(default_factory=RunSection)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def get(self, key: str) -> Any:
        """Value of a dotted key such as "optim.lr"."""
        section, name = _split(key)
        return getattr(getattr(self, section), name)

    def copy(self) -> TrainConfig:
        return copy.deepcopy(self)


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(TrainConfig)[f.name] for f in fields(TrainConfig)}

# The built-in data preset: what `googlenet train` with no arguments runs. The paper's recipe is made
# for 1.28M images at 224 px over a long run (the paper gives no epoch count; Caffe's solver runs 250
# epochs); on 1,000 images of 96 px on two CPU cores it would take hours. Only what must change for that scale changes: the input, the epochs, gradient clipping and the
# smallest crop (50% of the area, not 8%). Everything else is the training defaults: the paper's
# recipe where it gives one (momentum 0.9, x0.96 every 8 epochs, aux weight 0.3, Polyak averaging, the
# crops' aspect ratios, photometric distortion, random interpolation), Caffe's solver where it does not
# (lr 0.01, batch 32, weight decay 2e-4), and the departures the README names (mirroring, the average
# from halfway) (docs/recipe.md).
BUILTIN_PRESET: dict[str, Any] = {
    "model.input_size": 64,  # the smallest input that keeps the auxiliary heads (4x4 map after 4a)
    # 30 epochs: 4 min of training on the AMD 2-core machine (~160 img/s), 7.5-8 min on the Intel one
    # (~80 img/s, noisier); `make demo` in all stays under the 10 minutes asked (docs/recipe.md).
    "run.epochs": 30,
    # Without BatchNorm the He-initialised trunk's pooled features share a large common component
    # (norm ~100, cosine ~0.99 between images at init), so the classifier's curvature is ~|f|^2 / C and
    # plain SGD at lr 0.01 overshoots there, blows the logits up and then kills ReLUs: the loss sits at
    # ln(10) = 2.30 (the known stall). Clipping the global gradient norm at 2 keeps every early step
    # bounded; lr 0.001 also trains but far slower, and warm-up alone does not prevent the collapse.
    "optim.clip_grad_norm": 2.0,
    # The built-in images hold one object of 10-90% of the area among distractors: a patch of 8% of
    # the image often misses the object (a wrongly labelled sample), so patches keep >= 50% of it.
    "augment.scale_min": 0.5,
    "data.workers": 0,  # a loader process competes with the 2 training threads on 2 cores (-15% img/s)
    "data.train_eval_samples": 200,
}


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (x86's AVX512-BF16 or AMX, Arm's BF16 extension;
    from /proc/cpuinfo; False where that cannot be read). Without it bf16 is emulated and slower than
    fp32."""
    return cpu_bf16() is True


def gpu_bf16(device: torch.device) -> bool:
    """Whether the GPU `device` computes bf16 in hardware (compute capability 8.0 or later; ROCm GPUs), as
    `native_bf16` asks of the CPU. Not `torch.cuda.is_bf16_supported()`: by default it also says True
    where bf16 is only emulated (a T4, V100 or RTX 20xx can hold a bf16 tensor), where cuDNN has no bf16
    convolutions and `--amp` should be fp16 with a GradScaler; and it asks about the current GPU, not
    `device`."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def is_device_name(name: str) -> bool:
    """A device `train`, `evaluate` and `predict` accept: auto, cpu, cuda or cuda:N (torch knows more,
    "mps", "xpu", "meta", on which they fail later as a traceback)."""
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def cpu_bf16() -> bool | None:
    """`native_bf16`, or None where /proc/cpuinfo cannot tell (another system, or no "flags" line (x86)
    or "Features" line (Arm) in it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return None


def builtin_preset(device: str = "auto") -> dict[str, Any]:
    """`BUILTIN_PRESET`, plus bf16 autocast (`run.amp`) when the run trains on the CPU (`device`: the
    run's --device; "auto" is the CPU where no CUDA GPU is seen) and that CPU computes bf16 in
    hardware: the 30 epochs then took 0.74x the time on the project's AMD EPYC (339 s -> 251 s) with
    the same learning (docs/recipe.md); `--no-amp` trains in fp32. A GPU run keeps the recipe's fp32
    unless asked (`--amp`)."""
    import torch

    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return {**BUILTIN_PRESET, **({"run.amp": True} if on_cpu and native_bf16() else {})}


# Section 7: the ensemble's models "were trained with the same initialization ... and learning rate
# policies, and they only differ in sampling methodologies and the random order in which they see input
# images". The paper does not list the sampling methods; member k trains with the configured recipe
# plus entry k mod 7 of this table (7 members, as in the paper), and with data_seed = seed + k.
# `AtLeast(x)`: the configured value or x, whichever is larger, so "larger patches" never means smaller
# ones for a recipe whose patches are already large (the built-in preset's 50%; until 2026-12-04 its
# member 2 trained on patches down to 35%).
class AtLeast(float):
    """An ensemble override that only raises a setting: max(configured, this)."""


ENSEMBLE_SAMPLING: tuple[dict[str, Any], ...] = (
    {},  # the recipe as configured
    {"augment.random_interpolation": False},  # bilinear resizing only
    {"augment.scale_min": AtLeast(0.35)},  # larger patches: less scale augmentation
    {"augment.photometric": False},  # no colour distortions
    {"augment.random_crop": False},  # AlexNet/Caffe style: resize, then a random square crop
    {"augment.scale_min": AtLeast(0.35), "augment.random_interpolation": False},
    {"augment.photometric": False, "augment.lighting": 0.0, "augment.scale_min": AtLeast(0.2)},
)


def builtin_settings(data: DataSection) -> BuiltinSettings:
    """`ensure_builtin`'s arguments for this data config: the same settings find the same cached images
    (training, `evaluate --dataset builtin` through the checkpoint's recipe, the report, ablation)."""
    return {
        "seed": data.builtin_seed,  # another drawing of the same classes; run.data_seed varies the order
        "image_size": data.builtin_image_size,
        "train_per_class": data.builtin_train_per_class,
        "val_per_class": data.builtin_val_per_class,
    }


def ensemble_member(
    config: TrainConfig, k: int, *, started: bool = False
) -> tuple[TrainConfig, dict[str, Any]]:
    """Member k's config and the sampling overrides it received (see `ENSEMBLE_SAMPLING`). `started`:
    the member has a last.pt, so its `model.init_from` file is not read again (it may have moved)."""
    overrides = {
        key: max(float(value), config.get(key)) if isinstance(value, AtLeast) else value
        for key, value in ENSEMBLE_SAMPLING[k % len(ENSEMBLE_SAMPLING)].items()
    }
    member = apply(config, overrides, f"ensemble member {k}")
    seed = config.run.seed if config.run.seed is not None else 0
    base = config.run.data_seed if config.run.data_seed is not None else seed
    member.run.data_seed = base + k
    member.run.ensemble = 1
    validate(member, resuming=started)
    return member, overrides


# Patch-sampling settings that only the random patch sampling reads: with `augment.random_crop` off
# (the fixed-crop pipeline, and `detect train`'s warped regions) they change nothing.
CROP_RANGE_KEYS = ("augment.scale_min", "augment.scale_max", "augment.ratio_min", "augment.ratio_max")
# The distortions' ranges and the lighting noise: with `augment.photometric` off none of them acts.
PHOTOMETRIC_KEYS = ("augment.brightness", "augment.contrast", "augment.saturation", "augment.lighting")


def inert_overrides(member: TrainConfig, base: TrainConfig, overrides: Mapping[str, Any]) -> list[str]:
    """The keys of a member's sampling `overrides` that leave its training as `base` would run it: the
    value is the base's own (a member's "larger patches" on a recipe whose patches are already larger),
    or a patch-range setting while `member` samples no random patches, or a distortion's range or the
    lighting noise while `member` has photometric distortion off. What this cannot see from the
    config: `augment.random_interpolation` on images already at the input size with random patches off
    (`detect train`'s warped regions), where the resize is the identity; docs/detection.md says so."""
    patches, photometric = member.augment.random_crop, member.augment.photometric
    return [
        key
        for key in overrides
        if member.get(key) == base.get(key)
        or (key in CROP_RANGE_KEYS and not patches)
        or (key in PHOTOMETRIC_KEYS and not photometric)
    ]


def _split(key: str) -> tuple[str, str]:
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise ConfigError(f"unknown config key {key!r}; sections: {', '.join(SECTIONS)}")
    if name not in {f.name for f in fields(SECTIONS[section])}:
        known = ", ".join(f.name for f in fields(SECTIONS[section]))
        raise ConfigError(f"unknown config key {key!r}; {section} has: {known}")
    return section, name


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        names = " or ".join("null" if o is type(None) else _type_name(o) for o in options)
        raise ConfigError(f"{key} must be {names}, got {brief(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(tp) is list:  # list[float]: three numbers per RGB channel (augment.mean/std)
        if isinstance(value, list | tuple):
            (item,) = typing.get_args(tp)
            return [_coerce(key, v, item) for v in value]
    else:  # pragma: no cover - every field is one of the above
        raise TypeError(f"unsupported config type {tp} for {key}")
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {brief(value)}")


def flatten(data: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """A nested {section: {name: value}} mapping as {"section.name": value}; unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {brief(values)}")
        for name, value in values.items():
            key = f"{section}.{name}"
            try:
                _split(key)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
            flat[key] = value
    return flat


def apply(config: TrainConfig, overrides: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Set dotted keys on a copy of `config`, type-checking each value; does not validate ranges."""
    result = config.copy()
    for key, value in overrides.items():
        section, name = _split(key)
        holder = getattr(result, section)
        tp = typing.get_type_hints(type(holder))[name]
        try:
            setattr(holder, name, _coerce(key, value, tp))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return result


def from_dict(data: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Build a config from its nested dict form (as in config.yaml), over the paper defaults."""
    return apply(TrainConfig(), flatten(data, source), source)


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter and closer to YAML 1.2 for config files.

    A key given twice in one mapping is an error (PyYAML keeps the last one silently, so a second
    `optim:` section would quietly replace the first). `1e-2` is a float, as in YAML 1.2 and JSON
    (PyYAML follows YAML 1.1, which wants `1.0e-2`, and reads `1e-2` as a string).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The base class's mapping, after refusing a key given twice (a `ConstructorError` naming the key and
        its line); merge keys (`<<`) are left to the base class."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: the base class merges it
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (line {key_node.start_mark.line + 1})", None
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse config YAML (`_ConfigLoader`: duplicate keys refused, `1e-2` a float); yaml.YAMLError if bad,
    nested deeper than the parser's recursion allows (thousands of `[`) included."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """`--set SECTION.KEY=VALUE` pairs (train, ablate), each value read as YAML (so 40 is an int, false a
    bool, null None, 1e-2 a float); the keys are checked when the config is resolved."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        try:
            out[key.strip()] = yaml_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a config file into dotted overrides; a missing or malformed file is a `ConfigError`."""
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"{file}: is a folder, not a config file (--config)")
    if not file.is_file():
        if file.exists():  # a pipe or device: reading it could wait for ever, or give nothing
            raise ConfigError(f"{file}: not a regular file (a pipe or device); give a YAML file (--config)")
        raise ConfigError(f"{file}: no such config file (--config)")
    try:
        data = yaml_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{file}: not valid YAML ({first})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a YAML text file (binary: a checkpoint or an image?); --config "
                          "takes a YAML file such as a run's config.yaml") from None  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc})") from None
    if data is None:
        return {}
    return flatten(data, str(file))


def read_run_config(path: str | os.PathLike[str]) -> TrainConfig:
    """A run's config.yaml (or any config file) as the TrainConfig it resolves to over the defaults."""
    return apply(TrainConfig(), load_yaml(path), str(path))


def dump_yaml(config: TrainConfig, header: str = "") -> str:
    """The config as YAML text (sections in order), optionally under a comment header."""
    text = yaml.safe_dump(config.as_dict(), sort_keys=False, default_flow_style=False)
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    return "\n".join([*lines, text]) if lines else text


def resolve(
    file_overrides: Mapping[str, Any], flag_overrides: Mapping[str, Any], source: str = "config file"
) -> TrainConfig:
    """Defaults -> built-in preset (when the data is the built-in set) -> file -> flags, validated.

    Both mappings are flat, their keys dotted as the YAML file's sections and fields
    (`{"optim.lr": 0.02, "run.epochs": 3}`; `flatten` turns a nested one into that). `source` names
    the file in errors about its values (its path, where there is one)."""
    merged = {**file_overrides, **flag_overrides}
    dataset = merged.get("data.dataset", "auto")
    builtin = dataset == "builtin" or (dataset == "auto" and merged.get("data.data_path") is None)
    device = str(merged.get("run.device") or "auto")
    config = apply(TrainConfig(), builtin_preset(device), "built-in preset") if builtin else TrainConfig()
    config = apply(config, file_overrides, source)
    config = apply(config, flag_overrides, "command line")
    if config.data.dataset == "auto":
        config.data.dataset = "folder" if config.data.data_path is not None else "builtin"
    validate_from(config, file_overrides, flag_overrides, source)
    return config


_KEY = re.compile(r"\b(?:" + "|".join(SECTIONS) + r")\.[a-z0-9_]+")


def validate_from(
    config: TrainConfig,
    file_overrides: Mapping[str, Any],
    flag_overrides: Mapping[str, Any],
    source: str,
    *,
    resuming: bool = False,
) -> None:
    """`validate`, with an error about a value the file set (and no flag replaced) naming the file."""
    try:
        validate(config, resuming=resuming)
    except ConfigError as exc:
        named = _KEY.findall(str(exc))
        from_file = [key for key in named if key in file_overrides and flag_overrides.get(key) is None]
        if from_file and not str(exc).startswith(f"{source}:"):
            raise ConfigError(f"{source}: {exc}") from None
        raise


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: TrainConfig, *, resuming: bool = False) -> None:
    """Range and consistency checks; the first problem found is a one-line `ConfigError`.

    `resuming`: the run continues from its last.pt, so `model.init_from` (read once, when the run
    began) need not exist any more."""
    for section, values in config.as_dict().items():  # NaN and infinities pass most range checks
        for name, value in values.items():
            _check(
                not isinstance(value, float) or math.isfinite(value),
                f"{section}.{name} must be a finite number, got {value}",
            )
    for key, choices in CHOICES.items():  # None passes only where the field's type allows it
        value = config.get(key)
        _check(
            value is None or value in choices,
            f"{key} must be one of {', '.join(choices)}, got {brief(value)}",
        )
    m, d, a, o, s, avg, r = (
        config.model, config.data, config.augment, config.optim, config.schedule, config.average, config.run,
    )  # fmt: skip
    minimum = MIN_INPUT_SIZE_AUX if m.aux_logits else MIN_INPUT_SIZE
    _check(
        minimum <= m.input_size <= MAX_INPUT_SIZE,
        f"model.input_size must be between {minimum} and {MAX_INPUT_SIZE}"
        + (" with auxiliary heads (they need a 4x4 map after 4a)" if m.aux_logits else "")
        + f", got {m.input_size}",
    )
    _check(m.resize_size is None or m.resize_size >= m.input_size, "model.resize_size must be >= input_size")
    _check(
        m.resize_size is None or m.resize_size <= MAX_RESIZE_SIZE,
        f"model.resize_size must be at most {MAX_RESIZE_SIZE}, got {m.resize_size}",
    )
    if m.init_from is not None and not resuming and not os.path.isfile(m.init_from):
        what = "is a folder, not a checkpoint file" if os.path.isdir(m.init_from) else "no such file"
        raise ConfigError(f"model.init_from (--init-from): {what}: {m.init_from}")
    for name in ("dropout", "aux_dropout"):
        value = getattr(m, name)
        _check(value is None or 0.0 <= value < 1.0, f"model.{name} must be in [0, 1), got {value}")
    _check(d.workers is None or d.workers >= 0, f"data.workers must be >= 0, got {d.workers}")
    _check(
        d.workers is None or d.workers <= max_workers(),
        f"data.workers (-j) must be at most {max_workers()} (4 per CPU here), got {d.workers}",
    )
    _check(d.builtin_image_size >= 16, f"data.builtin_image_size must be >= 16, got {d.builtin_image_size}")
    _check(d.builtin_seed >= 0, f"data.builtin_seed must be >= 0, got {d.builtin_seed}")
    _check(
        d.builtin_train_per_class >= 1 and d.builtin_val_per_class >= 1,
        "data.builtin_train_per_class and data.builtin_val_per_class must be >= 1",
    )
    _check(d.train_eval_samples >= 0, f"data.train_eval_samples must be >= 0, got {d.train_eval_samples}")
    _check(
        d.dataset == "builtin" or d.data_path is not None,
        f"data.dataset {d.dataset!r} needs a data path (--data-path)",
    )
    _check(
        d.dataset != "builtin" or d.data_path is None,
        "the run being resumed trained on the built-in data (data.dataset 'builtin'); data.data_path "
        "(--data-path) does not apply to it: resume without it"
        if resuming
        else "data.dataset 'builtin' draws its own images; data.data_path (--data-path) does not apply, "
        "give one of them",
    )
    _check(0.0 < a.scale_min <= a.scale_max <= 1.0, "augment: need 0 < scale_min <= scale_max <= 1")
    _check(0.0 < a.ratio_min <= a.ratio_max, "augment: need 0 < ratio_min <= ratio_max")
    for name in ("brightness", "contrast", "saturation", "lighting"):
        _check(getattr(a, name) >= 0.0, f"augment.{name} must be >= 0, got {getattr(a, name)}")
    for name in ("mean", "std"):
        values = getattr(a, name)
        _check(
            len(values) == 3 and all(math.isfinite(v) for v in values),
            f"augment.{name} must be three numbers (R G B), got {values}",
        )
    _check(all(v > 0.0 for v in a.std), f"augment.std must be > 0 for each channel, got {a.std}")
    _check(o.batch_size >= 1, f"optim.batch_size must be >= 1, got {o.batch_size}")
    _check(o.lr > 0.0, f"optim.lr must be > 0, got {o.lr}")
    _check(0.0 <= o.momentum < 1.0, f"optim.momentum must be in [0, 1), got {o.momentum}")
    _check(o.weight_decay >= 0.0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    for name in ("bias_weight_decay", "norm_weight_decay"):
        value = getattr(o, name)
        _check(
            value is None or value >= 0.0, f"optim.{name} must be >= 0 (or null: weight_decay), got {value}"
        )
    _check(o.bias_lr_mult > 0.0, f"optim.bias_lr_mult must be > 0, got {o.bias_lr_mult}")
    _check(o.init_lr_mult >= 0.0, f"optim.init_lr_mult must be >= 0 (0 freezes), got {o.init_lr_mult}")
    _check(
        o.init_lr_mult == 1.0 or m.init_from is not None,
        "optim.init_lr_mult (--init-lr-mult) scales the layers --init-from copies; give --init-from",
    )
    _check(not o.nesterov or o.momentum > 0, "optim.nesterov needs momentum > 0")
    _check(o.aux_weight >= 0.0, f"optim.aux_weight must be >= 0, got {o.aux_weight}")
    _check(
        0.0 <= o.label_smoothing < 1.0, f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}"
    )
    _check(
        o.clip_grad_norm is None or o.clip_grad_norm > 0,
        "optim.clip_grad_norm must be > 0 (or null: off, from the command line --set optim.clip_grad_norm=null)",
    )
    _check(s.lr_step_size > 0, f"schedule.lr_step_size must be > 0 epochs, got {s.lr_step_size}")
    _check(0.0 < s.lr_gamma <= 1.0, f"schedule.lr_gamma must be in (0, 1], got {s.lr_gamma}")
    _check(s.lr_warmup_epochs >= 0, f"schedule.lr_warmup_epochs must be >= 0, got {s.lr_warmup_epochs}")
    _check(
        0.0 < s.lr_warmup_start <= 1.0, f"schedule.lr_warmup_start must be in (0, 1], got {s.lr_warmup_start}"
    )
    _check(0.0 <= s.lr_min < o.lr, f"schedule.lr_min must be in [0, lr), got {s.lr_min}")
    # Cosine takes every parameter group to the one lr_min: a group that starts below it would rise.
    scaled = [o.bias_lr_mult] + (
        [o.init_lr_mult, o.init_lr_mult * o.bias_lr_mult] if o.init_lr_mult > 0 else []
    )
    lowest = o.lr * min(1.0, *scaled)
    _check(
        s.lr_scheduler != "cosine" or s.lr_min < lowest,
        f"schedule.lr_min ({s.lr_min}) must be below every group's starting learning rate (the lowest: "
        f"{lowest:g}, from --bias-lr-mult/--init-lr-mult): cosine takes each group to lr_min, so that one would rise",
    )
    # 0 epochs would write an untrained final.pt as if it were a result (--test-only evaluates instead)
    _check(r.epochs >= 1, f"run.epochs must be >= 1, got {r.epochs}")
    # the reference solver's 250 is far below; a 20-digit count is a typing mistake, not a plan
    _check(r.epochs <= 1_000_000, f"run.epochs must be at most 1000000, got {r.epochs}")
    _check(
        s.lr_warmup_epochs < r.epochs,
        f"schedule.lr_warmup_epochs ({s.lr_warmup_epochs}) must be shorter than run.epochs ({r.epochs})",
    )
    _check(
        avg.start >= 0 and (avg.start < 1 or float(avg.start).is_integer()),
        f"average.start must be a fraction in [0, 1) or a whole epoch number, got {avg.start}",
    )
    first = average_start_epoch(avg, r.epochs)
    _check(
        avg.method == "none" or r.test_only or first < r.epochs,
        f"average.start (--average-start {avg.start:g}) is epoch {first + 1} of a {r.epochs}-epoch run: "
        "averaging would never start; start earlier, or --average none",
    )
    _check(avg.every >= 1, f"average.every must be >= 1, got {avg.every}")
    _check(0.0 < avg.ema_decay < 1.0, f"average.ema_decay must be in (0, 1), got {avg.ema_decay}")
    _check(avg.bn_batches >= 0, f"average.bn_batches must be >= 0, got {avg.bn_batches}")
    _check(
        r.seed is None or 0 <= r.seed < 2**63, f"run.seed must be a non-negative 64-bit integer, got {r.seed}"
    )
    _check(
        r.data_seed is None or 0 <= r.data_seed < 2**63,
        f"run.data_seed must be a non-negative 64-bit integer, got {r.data_seed}",
    )
    _check(r.ensemble >= 1, f"run.ensemble must be >= 1, got {r.ensemble}")
    _check(
        0.0 < config.data.balance_share < 1.0,
        f"data.balance_share must be in (0, 1), got {config.data.balance_share}",
    )
    _check(r.grad_norms_every >= 0, f"run.grad_norms_every must be >= 0, got {r.grad_norms_every}")
    _check(r.log_every >= 1, f"run.log_every must be >= 1, got {r.log_every}")
    _check(
        r.stop_after_steps is None or r.stop_after_steps >= 1,
        f"run.stop_after_steps must be >= 1, got {r.stop_after_steps}",
    )
    _check(is_device_name(r.device), f"run.device must be auto, cpu, cuda or cuda:N, got {r.device!r}")
    _check(not (r.test_only and r.ensemble > 1), "run.test_only evaluates one model; drop --ensemble")
