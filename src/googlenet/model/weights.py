"""Checkpoint format with metadata, and loading of our checkpoints and torchvision weight files.

Our checkpoint is a plain dict (tensors, numbers, strings, lists), so `torch.load(weights_only=True)`
reads it and nothing in it can run code:

    {"format": "googlenet", "format_version": 1,
     "model_config": ModelConfig as a dict (variant, classes, every layout switch),
     "state_dict": the model's weights,
     "meta": {"class_names": [...], "input_size": 224, "resize_size": 256, "mean": [...], "std": [...], ...},
     ... training checkpoints add optimiser, scheduler, averaged weights, RNG states, epoch ...}

A torchvision GoogLeNet weight file (`googlenet-*.pth`) is a bare state dict whose keys our
`torchvision` variant shares one for one, so the converter is the identity plus shape checks. The
reference Caffe model's weights (`bvlc_googlenet.caffemodel`, or the ONNX model zoo's conversion of it)
load into the `paper` variant through `googlenet.model.caffe`; `weight_file_kind` tells the files apart.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from googlenet.data.transforms import default_resize_size
from googlenet.errors import CheckpointError, ConfigError, brief
from googlenet.io import atomic_save, require_file, safe_load
from googlenet.model.googlenet import (
    MAX_INPUT_SIZE,
    MAX_NUM_CLASSES,
    MAX_RESIZE_SIZE,
    MIN_INPUT_SIZE,
    VARIANTS,
    GoogLeNet,
    ModelConfig,
    build_from_config,
    build_model,
)

FORMAT = "googlenet"
FORMAT_VERSION = 1

# ImageNet statistics, the normalisation every variant uses by default (torchvision's convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_meta(model: GoogLeNet, input_size: int = 224) -> dict[str, Any]:
    """Metadata enough to evaluate or predict from a checkpoint alone."""
    return {
        "class_names": [str(i) for i in range(classifier_classes(model))],
        "input_size": input_size,
        "resize_size": default_resize_size(input_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def same_classes(
    names: Sequence[str], wnids: Sequence[str] | None, other: Sequence[str], other_wnids: Sequence[str] | None
) -> bool:
    """Whether two class lists are the same classes in the same order: the same names, or the same
    WordNet ids, where a list without ids counts its names as ids (class folders named by id, as runs
    named them before such folders were given their ImageNet names)."""
    return list(names) == list(other) or list(wnids or names) == list(other_wnids or other)


def imagenet_labels() -> dict[str, list[str]]:
    """ILSVRC 2012's 1000 classes in the standard (sorted wnid) order: {"class_names", "wnids"}."""
    from googlenet.resources import imagenet_classes

    table = imagenet_classes()
    return {"class_names": [name for _, name in table], "wnids": [wnid for wnid, _ in table]}


# torchvision's GoogLeNet weights were ported from TF-slim's Inception v1, which was trained on pixels
# scaled to [-1, 1]: (x - 0.5) / 0.5 with x in [0, 1]. torchvision builds its pretrained model with
# `transform_input=True`, which turns ImageNet-normalised input into exactly that.
TORCHVISION_FILE_MEAN = (0.5, 0.5, 0.5)
TORCHVISION_FILE_STD = (0.5, 0.5, 0.5)


def imagenet_meta(model: GoogLeNet) -> dict[str, Any]:
    """`default_meta` for weights trained on ILSVRC 2012 (torchvision's file, Caffe's reference): with
    1000 outputs, the ImageNet class names and WordNet ids."""
    meta = default_meta(model)
    labels = imagenet_labels()
    if model.config.num_classes == len(labels["class_names"]):
        meta.update(labels)
    return meta


def torchvision_meta(model: GoogLeNet) -> dict[str, Any]:
    """`imagenet_meta` for torchvision's weight file loaded into `model`: ImageNet's normalisation when
    the model re-normalises its input as torchvision's pretrained model does (`transform_input=True`),
    else the [-1, 1] scaling the weights were trained with, so that preprocessing by the returned
    mean/std feeds the weights what they expect either way."""
    meta = imagenet_meta(model)
    if not model.config.transform_input:
        meta["mean"], meta["std"] = list(TORCHVISION_FILE_MEAN), list(TORCHVISION_FILE_STD)
    if model.aux1 is not None:
        # torchvision's released GoogLeNet weights were ported without trained auxiliary heads (it warns
        # so when it loads them); a state dict in its layout is taken to be such a file. `--init-from`
        # leaves these heads to the run; `export --convert` keeps the mark in the converted file.
        meta["aux_heads_untrained"] = True
    return meta


def classifier_classes(model: GoogLeNet) -> int:
    """The number of classes `model`'s classifiers compute: `fc`'s outputs, which the auxiliary heads' final
    layers must share.

    Read from the layers, not `model.config`: torchvision's fine-tuning idiom, `model.fc =
    nn.Linear(1024, 5)`, leaves `config.num_classes` as it was. Classifiers that disagree, or one that is
    not a `Linear` layer, are a one-line `CheckpointError` naming `model.reset_classifier(n)`, which
    replaces all of them and the config together.
    """
    heads = {"aux1": model.aux1, "aux2": model.aux2}
    layers = {"fc": model.fc, **{f"{name}.fc2": head.fc2 for name, head in heads.items() if head is not None}}
    for name, layer in layers.items():
        if not isinstance(layer, nn.Linear):
            raise CheckpointError(
                f"model.{name} is a {type(layer).__name__}, not the Linear classifier a checkpoint's "
                "config describes; replace the classifiers with model.reset_classifier(n)"
            )
    widths = {name: layer.out_features for name, layer in layers.items()}
    if len(set(widths.values())) > 1:
        listed = ", ".join(f"{name} {width}" for name, width in widths.items())
        raise CheckpointError(
            f"the model's classifiers disagree on the number of classes ({listed}); "
            "replace them all with model.reset_classifier(n)"
        )
    return widths["fc"]


def save_checkpoint(
    path: str | os.PathLike[str],
    model: GoogLeNet,
    meta: Mapping[str, Any] | None = None,
    state_dict: Mapping[str, Tensor] | None = None,
    before_replace: Callable[[str, int], None] | None = None,
    **extra: Any,
) -> str:
    """Write `model` (or `state_dict`, e.g. averaged weights) with its config and metadata atomically.

    Returns the SHA-256 of the file written. `extra` entries (optimiser state, epoch...) are stored
    beside them and must be plain data (what `torch.load(weights_only=True)` reads back: tensors,
    numbers, strings and containers of them); anything else, or a `state_dict` that does not fit
    `model`, is a `ValueError` before anything is written. `before_replace`: see `googlenet.io.atomic_save`.

    The config saved takes its `num_classes` from the classifiers (`classifier_classes`), so a model
    whose `fc` was replaced by hand is saved as the model it now is; classifiers that disagree are a
    `CheckpointError`, before anything is written.

    `meta` is laid over `default_meta(model, its input_size)`, so a checkpoint always holds what
    evaluate and predict read (class names, sizes, normalisation); a value they could not use (an
    input size that is no whole number, class names that do not count the outputs) is a
    `CheckpointError` now, not when the file is loaded.
    """
    if not isinstance(model, nn.Module):  # load_weights(model, path) takes them the other way round
        raise TypeError(
            f"save_checkpoint(path, model, meta): model is a {type(model).__name__}, not a network"
        )
    num_classes = classifier_classes(model)
    if state_dict is not None:
        own = model.state_dict()
        if set(state_dict) != set(own):
            odd = sorted(set(state_dict) ^ set(own))[0]
            raise ValueError(f"state_dict does not fit the model: {odd!r} is in one but not the other")
        for key, value in state_dict.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"state_dict {key} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}"
                )
    given = dict(meta) if meta is not None else {}
    size = given.get("input_size", 224)
    full_meta = {**default_meta(model, size if isinstance(size, int) and size >= 1 else 224), **given}
    _check_meta(path, full_meta)
    labels = full_meta.get("class_names")
    if isinstance(labels, list | tuple) and len(labels) != num_classes:
        raise CheckpointError(f"{path}: meta lists {len(labels)} class names for {num_classes} outputs")
    for key, value in {**extra, "meta": full_meta}.items():
        _check_plain(value, key)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": {**model.config.as_dict(), "num_classes": num_classes},
        "state_dict": dict(state_dict if state_dict is not None else model.state_dict()),
        "meta": full_meta,
    }
    payload.update(extra)
    return atomic_save(payload, path, before_replace)


# What `torch.load(weights_only=True)` reads back without an allowlist (besides containers).
_PLAIN = (str, bytes, int, float, complex, bool, type(None), Tensor, torch.dtype, torch.Size, torch.device)


def _check_plain(value: Any, where: str) -> None:
    """A `ValueError` naming the first entry of `value` that safe loading would refuse (a numpy array or
    scalar, any other object), so a checkpoint is never written that `load_weights` cannot read."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN) or type(value).__module__.split(".")[0] not in ("builtins", "torch"):
        raise ValueError(
            f"checkpoint entry {where} is a {type(value).__module__}.{type(value).__name__}; only tensors, "
            "numbers, strings and containers of them are stored (safe loading refuses the rest)"
        )


def _is_ours(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def _is_state_dict(obj: Any) -> bool:
    """A bare state dict: a non-empty mapping of names to tensors (what `torch.save(m.state_dict())` writes)."""
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def is_torchvision_state_dict(obj: Any) -> bool:
    """Whether `obj` (a loaded file) is a state dict in torchvision's GoogLeNet layout."""
    return _is_torchvision(obj)


def _is_torchvision(obj: Any) -> bool:
    # torchvision's keys (BatchNorm after every convolution) and its 3x3 kernel in the "5x5" branch: a
    # state dict of our `bn` variant has the same keys, but 5x5 kernels there.
    branch3 = obj.get("inception3a.branch3.1.conv.weight") if isinstance(obj, Mapping) else None
    return (
        _is_state_dict(obj)
        and "inception3a.branch1.conv.weight" in obj
        and "conv1.bn.running_mean" in obj
        and isinstance(branch3, Tensor)
        and branch3.shape[-2:] == (3, 3)
    )


def load_weight_object(path: str | os.PathLike[str]) -> Any:
    """What a PyTorch weight file holds (safe loading), a checkpoint of torchvision's reference training
    script (references/classification/train.py: {"model", "optimizer", "lr_scheduler", "epoch", "args"})
    taken as its "model" state dict: its `argparse.Namespace` of flags only holds values, so it is let
    through the weights-only loader, and the optimizer's state is not needed here."""
    obj = safe_load(path, allow=(argparse.Namespace,))
    if (
        isinstance(obj, Mapping)
        and not _is_ours(obj)
        and _is_state_dict(obj.get("model"))
        and {"optimizer", "epoch"} <= obj.keys()
    ):
        if _is_state_dict(obj.get("model_ema")):  # --model-ema: its averaged weights are there too
            logging.getLogger("googlenet").info(
                '%s: a torchvision reference-script checkpoint: its "model" weights are read, not its '
                '"model_ema" average',
                path,
            )
        return obj["model"]
    return obj


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one of our checkpoints (safe loading); a torchvision file is an error here."""
    return _validated(path, load_weight_object(path))


def _validated(path: str | os.PathLike[str], obj: Any) -> dict[str, Any]:
    """`obj`, loaded from `path`, checked to be one of our checkpoints with entries of the right types."""
    if not _is_ours(obj):
        hint = ""
        if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
            hint = (
                "; it is a bare state dict (torchvision's, say): evaluate and predict read it with --weights, "
                "and googlenet export --convert makes a checkpoint of it"
            )
        raise CheckpointError(f"{path}: not a googlenet checkpoint (no 'format: googlenet' entry){hint}")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {obj['format_version']} is newer than this "
            f"googlenet ({FORMAT_VERSION}); upgrade the package"
        )
    for key in ("model_config", "state_dict"):
        if key not in obj:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
        if not isinstance(obj[key], Mapping):
            raise CheckpointError(
                f"{path}: checkpoint entry {key!r} is a {type(obj[key]).__name__}, not a mapping"
            )
    if not all(isinstance(v, Tensor) for v in obj["state_dict"].values()):
        raise CheckpointError(f"{path}: checkpoint entry 'state_dict' holds something other than tensors")
    _check_meta(path, obj.setdefault("meta", {}))
    return obj


def _weights(path: str | os.PathLike[str], checkpoint: Mapping[str, Any], key: str) -> Mapping[str, Tensor]:
    """The checkpoint's `key` entry (one of `WEIGHT_KEYS`), checked to be a mapping of tensors."""
    weights = checkpoint.get(key)
    if not isinstance(weights, Mapping) or not all(isinstance(v, Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: checkpoint has no {key!r} entry (a mapping of tensors)")
    return weights


def file_classes(path: str | os.PathLike[str], count: int) -> int:
    """A class count read from a weight file's classifier, refused (`CheckpointError` naming the file)
    above `MAX_NUM_CLASSES` before a model that large is built."""
    if count > MAX_NUM_CLASSES:
        raise CheckpointError(
            f"{path}: its classifier has {count:,} outputs, more than the {MAX_NUM_CLASSES:,} classes a "
            "model is built for (a damaged or foreign file?)"
        )
    return count


def _check_meta(path: str | os.PathLike[str], meta: Any) -> None:
    """The metadata entries that later code reads as numbers or names have the types it expects, so a
    hand-edited or foreign file is one line here rather than a traceback in evaluate or predict."""
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{path}: checkpoint entry 'meta' is a {type(meta).__name__}, not a mapping")

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    def numbers(value: Any) -> bool:
        return (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and len(value) == 3
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        )

    def names(value: Any) -> bool:
        return (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and all(isinstance(n, str) for n in value)
        )

    checks = {
        "input_size": (
            lambda v: whole(v) and MIN_INPUT_SIZE <= v <= MAX_INPUT_SIZE,  # the network's own limits
            f"a whole number from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE}",
        ),
        "resize_size": (
            lambda v: v is None or (whole(v) and v <= MAX_RESIZE_SIZE),
            f"a whole number from 1 to {MAX_RESIZE_SIZE}",
        ),
        "mean": (numbers, "3 numbers"),
        "std": (numbers, "3 numbers"),
        "class_names": (names, "a list of names"),
    }
    for key, (valid, wanted) in checks.items():
        if key in meta and not valid(meta[key]):
            raise CheckpointError(f"{path}: meta {key} must be {wanted}, got {brief(meta[key])}")
    size, resize = meta.get("input_size"), meta.get("resize_size")
    if size is not None and resize is not None and resize < size:  # the centre crop would not fit
        raise CheckpointError(f"{path}: meta resize_size {resize} is smaller than its input_size {size}")


def _check_averaged(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> None:
    """Refuse a last.pt's averaged weights where `train --test-only` leaves them out: before averaging
    starts the copy holds the initial weights, and a BN variant stopped mid-epoch has stale statistics."""
    state = checkpoint.get("train_state")
    if not isinstance(state, Mapping):
        return
    if int(state.get("averaged_updates", 0) or 0) == 0:
        raise CheckpointError(f"{path}: no averaged weights yet (averaging had not started or is off)")
    if state.get("averaged_bn_current") is False:
        raise CheckpointError(f"{path}: the averaged weights' BatchNorm statistics are stale (the run "
                              "stopped mid-epoch, before they were recomputed); resume it to the epoch's "
                              "end, or use its final.pt")  # fmt: skip


# The ModelConfig fields that change what a set of weights computes: a checkpoint loads only into a model
# that agrees on each (dropout and init do not matter to trained weights; aux_logits is handled apart).
LAYOUT_KEYS = (
    "variant", "num_classes", "bn_eps", "lrn", "branch3_kernel", "maxpool4_kernel", "aux_adaptive_pool",
    "transform_input",
)  # fmt: skip


# The layout fields a foreign weight file (torchvision's, Caffe's) fixes: its tensors fit a model with
# other values (BatchNorm's eps, the pooling) yet compute other logits, so these are checked by value.
FILE_LAYOUT_KEYS = ("bn_eps", "lrn", "branch3_kernel", "maxpool4_kernel", "aux_adaptive_pool")


def layout_difference(config: ModelConfig, expected: ModelConfig) -> str | None:
    """The first of `FILE_LAYOUT_KEYS` where `config` differs from `expected`, as "key=value (the file's
    network has other)"; None when they agree."""
    for key in FILE_LAYOUT_KEYS:
        if getattr(config, key) != getattr(expected, key):
            return f"{key}={getattr(config, key)!r} (the file's network has {getattr(expected, key)!r})"
    return None


def _check_config(path: str | os.PathLike[str], stored: Mapping[str, Any], config: ModelConfig) -> None:
    """One-line error naming the first layout difference between a checkpoint and a model."""
    for key in LAYOUT_KEYS:
        if key in stored and stored[key] != getattr(config, key):
            raise CheckpointError(
                f"{path}: checkpoint has {key}={brief(stored[key])} but the model has {key}="
                f"{getattr(config, key)!r}"
            )


# The weights a checkpoint may hold: a training checkpoint (last.pt) has both sets.
WEIGHT_KEYS = ("state_dict", "averaged_state_dict")


def _check_arguments(key: str, aux_logits: bool | None = None) -> None:
    if key not in WEIGHT_KEYS:
        raise ConfigError(f"key must be 'state_dict' or 'averaged_state_dict', got {key!r}")
    if aux_logits is not None and not isinstance(aux_logits, bool):
        raise ConfigError(
            f"aux_logits must be None (the heads the file has), True or False, got {aux_logits!r}"
        )


def _has_heads(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(("aux1.", "aux2.")) for k in state)


# What a function that builds the model says when `aux_logits=True` asks for heads the file lacks (the
# caller built nothing, so "build the model with aux_logits=False" would not be theirs to do).
NO_HEADS_TO_BUILD = "the file has no auxiliary heads; pass aux_logits=False, or leave it out"


def _key_misfit(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> str | None:
    """ "N missing (first K), M unexpected (first L)" for the keys of `state` against the model's `own`."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    return ", ".join(parts) or None


def _shape_misfit(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> str | None:
    """The first key of `state` whose shape differs from the model's `own`."""
    return next((k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)), None)


# What `load_weights` returns for a bare state dict: no metadata came with it, and none is made up.
BARE_STATE_DICT_META: dict[str, Any] = {"bare_state_dict": True}


def _load_bare(path: str | os.PathLike[str], model: GoogLeNet, state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Load a bare state dict strictly (exactly the model's keys and shapes): with no config beside it,
    only an exact fit says the weights were written by a model of this layout."""
    own = model.state_dict()
    keys = _key_misfit(own, state)
    if keys:
        raise CheckpointError(
            f"{path}: a bare state dict (no googlenet metadata) that does not fit the model: {keys}"
        )
    key = _shape_misfit(own, state)
    if key is not None:
        raise CheckpointError(
            f"{path}: a bare state dict (no googlenet metadata) that does not fit the model: {key} has "
            f"shape {tuple(state[key].shape)} in the file but {tuple(own[key].shape)} in the model"
        )
    model.load_state_dict(state, strict=True)
    return dict(BARE_STATE_DICT_META)


def _fits_exactly(model: GoogLeNet, state: Mapping[str, Tensor]) -> bool:
    own = model.state_dict()
    return _key_misfit(own, state) is None and _shape_misfit(own, state) is None


def _load_state(path: str | os.PathLike[str], model: GoogLeNet, state: Mapping[str, Tensor]) -> None:
    own = model.state_dict()
    state = dict(state)
    has_aux = _has_heads(state)
    if model.aux1 is None and has_aux:
        # An inference model without heads may load a training checkpoint: the heads are dropped.
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    elif model.aux1 is not None and not has_aux:
        raise CheckpointError(
            f"{path}: the file has no auxiliary heads; build the model with aux_logits=False"
        )
    for key in set(own) - set(state):
        # BatchNorm's counter, absent from files written before PyTorch 0.4.1 and from stripped state
        # dicts: BatchNorm's own loader starts it at 0 (it is only read with momentum=None).
        prefix = key.removesuffix("num_batches_tracked")
        if key.endswith(".num_batches_tracked") and f"{prefix}running_mean" in state:
            state[key] = torch.zeros_like(own[key])
    keys = _key_misfit(own, state)
    if keys:
        raise CheckpointError(f"{path}: weights do not fit the model: {keys}")
    odd = _shape_misfit(own, state)
    if odd is not None:
        shape = tuple(state[odd].shape)
        # The model's class count is read from fc.weight: a head that disagrees names it
        classes = model.fc.out_features
        hint = (
            f" (the model has fc.weight's {classes} classes)"
            if odd.startswith(("aux1.fc2.", "aux2.fc2.")) and shape[:1] != tuple(own[odd].shape[:1])
            else ""
        )
        raise CheckpointError(
            f"{path}: {odd} has shape {shape} in the file but {tuple(own[odd].shape)} in the model{hint}"
        )
    # load_state_dict copies integers into float weights without a word: a file of whole numbers is
    # not a trained network's (a damaged or foreign file); float16 and bfloat16 copies are welcome
    wrong = next(
        (k for k, v in own.items() if v.is_floating_point() and not state[k].is_floating_point()), None
    )
    if wrong is not None:
        raise CheckpointError(
            f"{path}: {wrong} holds {state[wrong].dtype} values, not floating-point weights"
        )
    model.load_state_dict(state, strict=True)


def weight_file_kind(path: str | os.PathLike[str]) -> str:
    """ "torch" (our checkpoint or a torchvision state dict), "caffe" (.caffemodel) or "onnx".

    Decided by content where it is unambiguous (torch.save writes a zip, old pickles start with 0x80, an
    ONNX ModelProto with its `ir_version` tag 0x08), else by the extension, else by the first byte of
    a Caffe NetParameter (its name, V1 `layers` or `layer` field).
    """
    file = Path(path)
    if file.is_dir():
        raise CheckpointError(f"{file}: is a folder, not a weight file")
    require_file(file)
    with open(file, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    suffix = file.suffix.lower()
    if suffix == ".caffemodel":
        return "caffe"
    if suffix == ".onnx" or head[:1] == b"\x08":
        return "onnx"
    if head[:1] in (b"\x0a", b"\x12") or head[:2] == b"\xa2\x06":
        return "caffe"
    return "torch"  # safe_load then names the problem


def load_weights(model: GoogLeNet, path: str | os.PathLike[str], key: str = "state_dict") -> dict[str, Any]:
    """Load weights into `model` from our checkpoint, a torchvision GoogLeNet state-dict file, a bare
    state dict of this model (`torch.save(model.state_dict(), path)`), the reference Caffe model
    (`bvlc_googlenet.caffemodel`) or the ONNX model zoo's GoogLeNet.

    Returns the checkpoint's metadata (class names, input size, normalisation); for a torchvision file
    ImageNet's names (1000 classes) and the normalisation its weights need: ImageNet's mean/std when the
    model has `transform_input=True` (as torchvision builds it for these weights), else mean = std = 0.5,
    the [-1, 1] scaling the weights were trained with; for the reference weights Caffe's preprocessing
    (conv1 is flipped to read RGB; see `googlenet.model.caffe`). Any incompatibility (variant, layout,
    classes, a missing or mis-shaped tensor) is a one-line `CheckpointError` naming what differs; the
    model is left unchanged then.

    A bare state dict carries no config and no metadata, so it loads only when its keys and shapes are
    exactly the model's (strict: heads included), and the metadata returned is `{"bare_state_dict": True}`:
    no class names, input size or normalisation are made up (save with `save_checkpoint` to keep them).
    For the `torchvision` variant a bare state dict has torchvision's own keys and shapes, so it cannot be
    told from torchvision's weight file and is loaded as one (with that file's metadata above).

    `key` picks which weights of a training checkpoint to load ("state_dict" or "averaged_state_dict";
    anything else is a `ConfigError`).

    Example:
        >>> import googlenet
        >>> model = googlenet.build_model("torchvision", aux_logits=False, transform_input=True)
        >>> meta = googlenet.load_weights(model, "googlenet-1378be20.pth")  # doctest: +SKIP
        >>> paper = googlenet.build_model("paper")
        >>> meta = googlenet.load_weights(paper, "bvlc_googlenet.caffemodel")  # doctest: +SKIP
    """
    _check_arguments(key)
    kind = weight_file_kind(path)
    if kind != "torch":
        from googlenet.model.caffe import load_reference

        return load_reference(model, path, kind)
    obj = load_weight_object(path)
    if _is_ours(obj):
        checkpoint = _validated(path, obj)
        _check_config(path, checkpoint["model_config"], model.config)
        weights = _weights(path, checkpoint, key)
        if key == "averaged_state_dict":
            _check_averaged(path, checkpoint)
        _load_state(path, model, weights)
        meta = dict(checkpoint.get("meta") or default_meta(model))
        return meta
    if model.config.variant != "torchvision" and _is_state_dict(obj) and _fits_exactly(model, obj):
        return _load_bare(path, model, obj)  # e.g. a `bn` model's own: torchvision's keys, other shapes
    if _is_torchvision(obj):
        if model.config.variant != "torchvision":
            raise CheckpointError(
                f"{path}: a torchvision GoogLeNet weight file fits only variant 'torchvision' "
                f"(this model is {model.config.variant!r})"
            )
        differs = layout_difference(model.config, VARIANTS["torchvision"])
        if differs is not None:
            raise CheckpointError(f"{path}: a torchvision GoogLeNet weight file needs torchvision's layout; "
                                  f"this model has {differs}")  # fmt: skip
        num_classes = obj["fc.weight"].shape[0]
        if num_classes != model.config.num_classes:
            raise CheckpointError(
                f"{path}: file has {num_classes} classes but the model has {model.config.num_classes}"
            )
        _load_state(path, model, obj)
        return torchvision_meta(model)
    if _is_state_dict(obj):
        return _load_bare(path, model, obj)
    raise CheckpointError(
        f"{path}: neither a googlenet checkpoint, a torchvision GoogLeNet state dict, a .caffemodel "
        "nor an ONNX file"
    )


def model_from_file(
    path: str | os.PathLike[str],
    aux_logits: bool | None = None,
    key: str = "state_dict",
    *,
    variant: str | None = None,
    transform_input: bool = True,
) -> tuple[GoogLeNet, dict[str, Any]]:
    """Build the model any weight file describes and load it; returns (model, meta).

    Our checkpoint: its own config. A torchvision state dict: the `torchvision` variant. A `.caffemodel`
    or the ONNX zoo file: the `paper` variant. Classes come from the file's classifier. `aux_logits`:
    None keeps the heads the file has, False drops them, True requires them.

    `variant`: the layout of a bare state dict of ours (`torch.save(model.state_dict())` of a `paper`
    or `bn` model), which carries no config: its classes come from `fc`, its heads from its keys, and
    its meta is `default_meta`'s (classes "0".."N-1", 224 px, ImageNet's mean/std) with
    `bare_state_dict` set, as nothing in the file says otherwise. For other files it must be the
    variant the file is, or None.

    `transform_input` (torchvision state dicts only): True, the default, for weights that take
    torchvision's released file's [-1, 1] input, i.e. that file and every model fine-tuned from it
    (torchvision builds them with `transform_input=True`); False for a model torchvision built with
    its own default `transform_input=False` (trained from scratch), which takes ImageNet-normalised
    input.
    """
    _check_arguments(key, aux_logits)
    if variant is not None and variant not in VARIANTS:
        raise ConfigError(f"variant: one of {', '.join(VARIANTS)}, got {variant!r}")
    kind = weight_file_kind(path)
    if kind != "torch":
        if variant not in (None, "paper"):
            raise ConfigError(f"variant {variant}: {path} holds the reference Caffe weights (always paper)")
        check_transform_input(path, transform_input)
        from googlenet.model.caffe import reference_model

        return reference_model(path, kind, aux_logits)
    obj = load_weight_object(path)
    if _is_ours(obj):
        check_transform_input(path, transform_input)
        model, meta = _model_from_checkpoint(path, _validated(path, obj), aux_logits, key)
        if variant is not None and variant != model.config.variant:
            raise ConfigError(
                f"variant {variant}: {path} is our checkpoint of the {model.config.variant} variant"
            )
        return model, meta
    if _is_torchvision(obj):
        if variant not in (None, "torchvision"):
            raise ConfigError(f"variant {variant}: {path} is a torchvision GoogLeNet state dict")
        has_aux = _has_heads(obj)
        if aux_logits and not has_aux:
            raise CheckpointError(f"{path}: {NO_HEADS_TO_BUILD}")
        model = build_model(
            "torchvision",
            num_classes=file_classes(path, int(obj["fc.weight"].shape[0])),
            aux_logits=has_aux if aux_logits is None else aux_logits,
            transform_input=transform_input,  # True: as torchvision builds the model for its own weights
        )
        _load_state(path, model, obj)
        if transform_input:
            return model, torchvision_meta(model)
        return model, {
            **imagenet_meta(model),
            "weights": "a torchvision GoogLeNet built with transform_input=False",
        }
    if _is_state_dict(obj) and variant in ("paper", "bn") and _is_googlenet(obj):
        check_transform_input(path, transform_input)
        fc = obj.get("fc.weight")
        if not isinstance(fc, Tensor) or fc.ndim != 2:
            raise CheckpointError(f"{path}: a bare state dict without a 2-d fc.weight (not a GoogLeNet's)")
        has_aux = _has_heads(obj)
        if aux_logits and not has_aux:
            raise CheckpointError(f"{path}: {NO_HEADS_TO_BUILD}")
        model = build_model(
            variant,
            num_classes=file_classes(path, int(fc.shape[0])),
            aux_logits=has_aux if aux_logits is None else aux_logits,
        )
        _load_state(path, model, obj)
        return model, {**default_meta(model), **BARE_STATE_DICT_META}
    if _is_state_dict(obj):
        raise CheckpointError(f"{path}: {_bare_problem(obj)}")
    raise CheckpointError(
        f"{path}: neither a googlenet checkpoint, a torchvision GoogLeNet state dict, a .caffemodel "
        "nor an ONNX file"
    )


def _is_googlenet(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("inception3a.") for k in state)


def _bare_problem(state: Mapping[str, Any]) -> str:
    """What to say of a bare state dict `model_from_file` cannot build a model for."""
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        return (
            "a state dict saved from a DistributedDataParallel or DataParallel wrapper (every key begins "
            "with 'module.'); save model.module.state_dict() instead"
        )
    if not _is_googlenet(state):
        return f"a state dict of another network, not a GoogLeNet (no inception3a layers; first keys {', '.join(keys[:3])})"
    return (
        "a bare state dict, with no model config to build from; name its layout (variant paper or bn: "
        "--variant on the command line), or write it with save_checkpoint"
    )


def check_transform_input(
    path: str | os.PathLike[str],
    transform_input: bool,
    flag: str = "transform_input=False (--no-transform-input)",
) -> None:
    """`ConfigError` when `transform_input` is False for `path`, a file that is no torchvision state dict;
    `flag` names the setting as its caller takes it."""
    if not transform_input:
        raise ConfigError(f"{flag} applies to a torchvision GoogLeNet state dict; {path} is not one")


def load_checkpoint_model(
    path: str | os.PathLike[str], aux_logits: bool | None = None, key: str = "state_dict"
) -> tuple[GoogLeNet, dict[str, Any]]:
    """Build the model a checkpoint describes and load it; returns (model, meta).

    `aux_logits=False` builds an inference model without heads (their weights are dropped), True
    requires the file to have them, None (default) keeps what the file has. `key`: as in `load_weights`.
    """
    _check_arguments(key, aux_logits)
    return _model_from_checkpoint(path, read_checkpoint(path), aux_logits, key)


def _model_from_checkpoint(
    path: str | os.PathLike[str], checkpoint: dict[str, Any], aux_logits: bool | None, key: str
) -> tuple[GoogLeNet, dict[str, Any]]:
    """`load_checkpoint_model` of a checkpoint already read and validated (`path` names it in errors)."""
    if key == "averaged_state_dict" and key not in checkpoint:
        if "train_state" not in checkpoint:  # a run's final.pt: already the weights used for evaluation
            held = (checkpoint.get("meta") or {}).get("weights", "the run's final weights")
            raise CheckpointError(f"{path}: holds one set of weights ({held}); --averaged picks the averaged "
                                  "copy inside a run's last.pt, so drop it here")  # fmt: skip
        raise CheckpointError(f"{path}: no averaged weights yet (averaging had not started or is off)")
    weights = _weights(path, checkpoint, key)
    if key == "averaged_state_dict":
        _check_averaged(path, checkpoint)
    if aux_logits and not _has_heads(weights):
        raise CheckpointError(f"{path}: {NO_HEADS_TO_BUILD}")
    config = dict(checkpoint["model_config"])
    if aux_logits is not None:
        config["aux_logits"] = aux_logits
    try:
        model = build_from_config(config)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model config ({exc})") from None
    _load_state(path, model, weights)
    state = checkpoint.get("train_state")
    meta = dict(checkpoint.get("meta") or default_meta(model))
    if isinstance(state, Mapping) and "weights" not in meta:  # a run's last.pt: say which of its two sets
        which = "averaged" if key == "averaged_state_dict" else "raw"
        meta["weights"] = f"{which} weights of a training checkpoint after {state.get('epoch')} epoch(s)" + (
            f" and {state.get('step')} step(s)" if state.get("step") else ""
        )
    return model, meta
