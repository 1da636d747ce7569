"""Models as evaluation and prediction see them: a logits callable with its input normalisation.

An `Ensemble` is one or more `Member`s that share class names, input size and test resize (section 7
averages the softmax of 7 such models). Evaluation only calls `Member.forward` on normalised crop
batches, so any faster callable (a folded, compiled or exported model) can stand in for the network.
`load_ensemble` builds one from our checkpoints, or from a torchvision GoogLeNet weight file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from googlenet.data.crops import CropSpec
from googlenet.data.transforms import default_resize_size
from googlenet.errors import CheckpointError, ConfigError
from googlenet.infer.optimize import BACKENDS, PRECISIONS, optimize
from googlenet.model.googlenet import VARIANTS, GoogLeNet, build_model
from googlenet.model.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_transform_input,
    file_classes,
    imagenet_labels,
    is_torchvision_state_dict,
    load_checkpoint_model,
    load_weight_object,
    load_weights,
    model_from_file,
    same_classes,
    weight_file_kind,
)
from googlenet.train.config import is_device_name

IMAGENET_NUM_CLASSES = 1000

logger = logging.getLogger("googlenet.evaluate")


@dataclass(frozen=True)
class Member:
    """One classifier: `forward` maps a normalised float N x 3 x S x S batch to N x classes logits."""

    forward: Callable[[Tensor], Tensor]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    name: str = "model"
    engine: str = "off"  # how `forward` runs: "off" (the model as is) or "<backend> <precision>"


@dataclass
class Ensemble:
    """Members that agree on what they predict and on the input they take."""

    members: list[Member]
    class_names: list[str]
    input_size: int
    resize_size: int
    interpolation: str = "bilinear"
    wnids: list[str] | None = None  # WordNet ids in class order, for ImageNet models
    sources: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def crop_spec(self, crops: int) -> CropSpec:
        """Section 7's crops for this input size: 1 and 10 crops at the model's test resize (256 for
        224), 144 at the paper's four scales scaled to the input size."""
        scales = (self.resize_size,) if crops in (1, 10) else None
        return CropSpec(crops, self.input_size, scales)


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" -> cuda if available, else cpu; "cuda" and "cuda:N" must exist; other names are refused, as
    `train`'s run.device is (`is_device_name`)."""
    if not is_device_name(name):
        raise ConfigError(f"device: unknown device {name!r} (auto, cpu, cuda or cuda:N)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is available")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist ({torch.cuda.device_count()} GPU(s))")
    return device


def _is_placeholder(names: Sequence[str]) -> bool:
    """Whether class names are the default "0", "1", ... (a weight file that carried no names)."""
    return list(names) == [str(i) for i in range(len(names))]


ENGINES: tuple[str, ...] = ("auto", *BACKENDS, "off")


def add_model_arguments(parser: Any) -> None:
    """`--checkpoint`, `--weights` and `--variant`, shared by evaluate and predict."""
    parser.add_argument("--checkpoint", nargs="+", action="extend", metavar="FILE", default=[],
                        help="our checkpoint(s); several form an ensemble, softmax averaged (section 7)")  # fmt: skip
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="a torchvision GoogLeNet weight file, bvlc_googlenet.caffemodel or the ONNX zoo's googlenet (or our checkpoint)",
    )
    parser.add_argument("--variant", choices=tuple(VARIANTS),
                        help="the layout of a --weights state dict: torchvision's is recognised by its keys; "
                             "a bare state dict of ours (torch.save(model.state_dict())) needs paper or bn")  # fmt: skip
    parser.add_argument("--no-transform-input", dest="transform_input", action="store_false",
                        help="the --weights torchvision state dict comes from a model torchvision built with "
                             "transform_input=False (its default without pretrained weights: trained from "
                             "scratch), which takes ImageNet-normalised input; by default such a file is taken "
                             "to be torchvision's released weights or fine-tuned from them ([-1, 1] input)")  # fmt: skip


def add_engine_arguments(parser: Any, default: str) -> None:
    """`--engine` and `--precision`, shared by evaluate, predict and detection."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=default,
        metavar="ENGINE",
        help=f"inference backend of googlenet.optimize (fused network): {', '.join(ENGINES)}; auto times the "
        f"installed ones and keeps the fastest; off runs the model unchanged (default {default})",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="fp32 (default) or bf16 (AMX where present)"
    )


def member_from_model(
    model: nn.Module,
    meta: dict[str, Any],
    source: str,
    device: torch.device,
    engine: str = "off",
    precision: str = "fp32",
    input_size: int = 224,
    batch_size: int = 32,
) -> Member:
    """A `Member` running `model` in eval mode on `device` with the normalisation in `meta`. The member
    takes `model` over: it is put in eval mode and moved to `device` in place (pass a copy to keep
    training the original).

    `engine`: "off" runs the model as it is (eager, float32); any other value runs it through
    `googlenet.optimize` with that backend ("auto": the fastest measured) and `precision`.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "off" and precision != "fp32":
        raise ConfigError("precision bf16 needs the inference engine (not --engine off)")
    model.eval().to(device)
    forward: Any = model
    used = "off"
    if engine != "off" and isinstance(model, GoogLeNet):
        fast = optimize(model, precision, engine, input_size=input_size, batch_size=batch_size, device=device)
        forward, used = fast, fast.describe()
    mean = tuple(float(v) for v in meta.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in meta.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise CheckpointError(f"{source}: meta mean/std must be 3 numbers each (std > 0), got {mean} / {std}")
    return Member(forward=forward, mean=mean, std=std, name=os.path.basename(source), engine=used)


def _load_weight_file(
    path: str, variant: str | None, transform_input: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Our checkpoint (its own variant decides), a torchvision state dict (`transform_input` as
    `model_from_file` takes it), a bare state dict of our `paper` or `bn` layout (named by `variant`),
    or the reference Caffe weights (.caffemodel or the ONNX zoo file; always `paper`). A `variant` the
    file cannot be (given for a file that fixes its own) is a one-line error."""
    if weight_file_kind(path) != "torch":
        if variant not in (None, "paper"):
            raise ConfigError(f"--variant {variant}: {path} holds the reference Caffe weights (always paper)")
        check_transform_input(path, transform_input, "--no-transform-input")
        return model_from_file(path, aux_logits=False)
    obj = load_weight_object(path)
    if isinstance(obj, dict) and obj.get("format") == "googlenet":
        check_transform_input(path, transform_input, "--no-transform-input")
        model, meta = load_checkpoint_model(path, aux_logits=False)
        own = getattr(getattr(model, "config", None), "variant", None)
        if variant is not None and variant != own:
            raise ConfigError(f"--variant {variant}: {path} is our checkpoint of the {own} variant")
        return model, meta
    if not is_torchvision_state_dict(obj):
        if variant == "torchvision":
            raise ConfigError(f"--variant torchvision: {path} is not a torchvision GoogLeNet state dict")
        check_transform_input(path, transform_input, "--no-transform-input")
        model, meta = model_from_file(path, aux_logits=False, variant=variant)  # a bare one: named problems
        logger.warning(
            "%s: a bare state dict carries no class names, input size or normalisation: taken as %s, 224 px "
            "and ImageNet's mean/std (write it with googlenet.save_checkpoint to keep its own)",
            path, "ImageNet's 1000 classes" if len(meta["class_names"]) == IMAGENET_NUM_CLASSES else "classes 0..N-1",
        )  # fmt: skip
        return model, meta
    if variant not in (None, "torchvision"):
        raise ConfigError(f"--variant {variant}: {path} is a torchvision GoogLeNet state dict")
    fc = obj["fc.weight"]
    model = build_model("torchvision", num_classes=file_classes(path, int(fc.shape[0])), aux_logits=False)
    meta = load_weights(model, path)  # the [-1, 1] scaling of torchvision's released weights, as mean/std
    if not transform_input:  # a model torchvision built with transform_input=False: ImageNet's
        meta = {**meta, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                "weights": "a torchvision GoogLeNet built with transform_input=False"}  # fmt: skip
        meta.pop("aux_heads_untrained", None)
    return model, meta


def load_ensemble(
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    weights: str | os.PathLike[str] | None = None,
    variant: str | None = None,
    device: torch.device | str = "cpu",
    engine: str = "off",
    precision: str = "fp32",
    batch_size: int = 32,
    check_classes: Callable[[list[str], list[str] | None], Any] | None = None,
    transform_input: bool = True,
) -> Ensemble:
    """Load `checkpoints` (ours, each with its metadata) and/or a weight file into one `Ensemble`.

    All members must share class names, input size, resize size and interpolation (one-line
    `CheckpointError` naming the first file that differs); each keeps its own mean/std. A model whose
    names are the placeholders "0".."999" gets the ImageNet class names shipped with the package.
    `engine`, `precision` and `batch_size` choose how each member runs (see `member_from_model`).
    `check_classes(class_names, wnids)` runs on the first model's classes before any member is
    optimised (which times backends), so a data set that does not match fails at once.
    `transform_input`: False for a `weights` file from a torchvision GoogLeNet built with
    `transform_input=False` (see `model_from_file`).
    """
    device = torch.device(device) if isinstance(device, str) else device
    if isinstance(checkpoints, str | bytes | os.PathLike):  # a str is a sequence too: "/" would be a member
        raise ConfigError(
            f"checkpoints: a list of files, got the one path {os.fsdecode(checkpoints)!r} (wrap it in a list)"
        )
    sources = [str(p) for p in checkpoints] + ([str(weights)] if weights is not None else [])
    if not sources:
        raise ConfigError("no model: give --checkpoint FILE [FILE ...] or --weights FILE")
    seen: dict[str, str] = {}
    for source in sources:  # one file twice would count as two members of the ensemble
        key = os.path.realpath(source)
        if key in seen:
            raise ConfigError(
                f"{source}: given twice (as {seen[key]}); an ensemble's members are different models"
            )
        seen[key] = source
    if not transform_input and weights is None:
        raise ConfigError(
            "--no-transform-input applies to --weights only (a checkpoint carries its normalisation)"
        )
    if variant is not None and weights is None:
        raise ConfigError(
            f"--variant {variant} applies to --weights only (a checkpoint carries its own variant)"
        )
    # Every file is read and checked against the first before any is optimised (which times backends,
    # a minute each): a member that does not fit is refused at once.
    loaded: list[tuple[str, Any, dict[str, Any]]] = []
    for i, source in enumerate(sources):
        is_weight_file = weights is not None and i == len(sources) - 1
        if is_weight_file:
            model, meta = _load_weight_file(source, variant, transform_input)
        else:
            model, meta = load_checkpoint_model(source, aux_logits=False)
        num_classes = int(getattr(getattr(model, "config", None), "num_classes", 0)) or None
        names = [str(n) for n in meta.get("class_names") or []]
        if num_classes is not None and len(names) != num_classes:
            raise CheckpointError(f"{source}: meta lists {len(names)} class names for {num_classes} outputs")
        wnids = meta.get("wnids")
        if len(names) == IMAGENET_NUM_CLASSES and _is_placeholder(names):  # 1000 nameless outputs: ImageNet
            labels = imagenet_labels()
            names, wnids = labels["class_names"], labels["wnids"]
        input_size = int(meta.get("input_size", 224))
        resize_size = int(meta.get("resize_size") or default_resize_size(input_size))
        interpolation = str(meta.get("interpolation", "bilinear"))
        shape: dict[str, Any] = {
            "input_size": input_size,
            "resize_size": resize_size,
            "interpolation": interpolation,
        }
        if i == 0:
            if check_classes is not None:
                check_classes(names, list(wnids) if wnids else None)
            ensemble = Ensemble(members=[], class_names=names, input_size=input_size, resize_size=resize_size,
                                interpolation=interpolation, wnids=list(wnids) if wnids else None, sources=[])  # fmt: skip
            first = source
        elif names != ensemble.class_names:
            if not same_classes(names, wnids, ensemble.class_names, ensemble.wnids):
                raise CheckpointError(f"{source}: {_names_differ(names, ensemble.class_names, first)}")
            if wnids and not ensemble.wnids:  # the named member's names and ids for the ensemble
                ensemble.class_names, ensemble.wnids = names, list(wnids)
        for what, mine in shape.items():
            if mine != getattr(ensemble, what):
                raise CheckpointError(
                    f"{source}: {what} {mine!r} differs from {first}'s {getattr(ensemble, what)!r}"
                )
        loaded.append((source, model, meta))
    for source, model, meta in loaded:
        member = member_from_model(
            model, meta, source, device, engine, precision, ensemble.input_size, batch_size
        )
        ensemble.members.append(member)
        ensemble.sources.append(source)
    return ensemble


def _names_differ(mine: Sequence[str], theirs: Sequence[str], other: str) -> str:
    if len(mine) != len(theirs):
        return f"it has {len(mine)} classes but {other} has {len(theirs)}"
    at = next(k for k, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
    return f"its class {at} is {mine[at]!r} but {other}'s is {theirs[at]!r}"
