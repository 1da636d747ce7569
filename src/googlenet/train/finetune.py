"""Starting a training run from another checkpoint's weights (fine-tuning, as R-CNN does for section 8).

`init_from` copies every tensor of a classification checkpoint whose name and shape match the new
model, except the classifiers when the run's classes are not the checkpoint's (by name and order; a
checkpoint that records no names is compared by count); the rest keep the fresh initialisation the
seed gave them. torch's `load_state_dict(strict=False)` would refuse mismatched shapes outright, so the
filtering is ours. The checkpoint must be of the same variant: a one-line error otherwise.

A checkpoint trained on differently normalised input (the reference Caffe weights: BGR 0-255 minus a
mean; torchvision's files: [-1, 1] through `transform_input`) gets that difference folded into conv1,
so the run's ImageNet-normalised input reaches the copied weights as the input they were trained on
(exact except at conv1's zero-padded border, where the two normalisations pad different pixel values).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
import torchvision
from torch import nn

from googlenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from googlenet.errors import CheckpointError
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.weights import model_from_file, same_classes

logger = logging.getLogger(__name__)


def init_from(
    model: GoogLeNet,
    path: str | os.PathLike[str],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    classes: Sequence[str] | None = None,
    wnids: Sequence[str] | None = None,
) -> list[str]:
    """Copy the matching weights of checkpoint `path` into `model`; returns the names left as initialised.

    `classes`: the run's class names; when the checkpoint's differ (other names, or the same in another
    order), its classifiers are not copied even where their shapes fit: their rows would score the
    checkpoint's classes under the run's labels. `wnids`: the run's WordNet ids, if its classes are
    ImageNet's; the checkpoint's ids, or names that are those ids, then count as the same classes.

    The weights are the checkpoint's "state_dict": in a run's `final.pt` that is the averaged (Polyak)
    model the run reports; in `last.pt` the raw weights. `mean`/`std`: the normalisation the run feeds
    (on 0-1 RGB); a checkpoint made for another one has the difference folded into conv1.
    """
    checkpoint = _weights_of(path)
    stored = checkpoint["model_config"].get("variant")
    if stored != model.config.variant:
        raise CheckpointError(
            f"{path}: --init-from checkpoint is variant {stored!r} but the run trains {model.config.variant!r}; "
            f"give --variant {stored} to fine-tune it"
        )
    state = dict(checkpoint["state_dict"])
    trained_on = _effective_normalisation(checkpoint.get("meta") or {}, checkpoint["model_config"])
    fed = _effective_normalisation({"mean": list(mean), "std": list(std)}, {
        "transform_input": model.config.transform_input})  # fmt: skip
    assert fed is not None  # mean and std are given
    if trained_on is not None and not _same(trained_on, fed) and CONV1_WEIGHT in state:
        _fold_normalisation(state, trained_on, fed)
        logger.info("%s: its weights were trained on input normalised with mean %s, std %s; folded into "
                    "conv1 for this run's mean %s, std %s", path, *_rounded(trained_on), *_rounded(fed))  # fmt: skip
    stored_classes = list((checkpoint.get("meta") or {}).get("class_names") or [])
    unnamed = stored_classes == [str(i) for i in range(len(stored_classes))]  # default_meta's placeholders
    if checkpoint["untrained_aux"]:
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        logger.info("%s: torchvision's GoogLeNet files hold auxiliary heads that were never trained "
                    "(torchvision says so when it loads them): the run's heads keep their fresh initialisation",
                    path)  # fmt: skip
    stored_wnids = (checkpoint.get("meta") or {}).get("wnids")
    if (
        classes is not None
        and stored_classes
        and not unnamed
        and not same_classes(stored_classes, stored_wnids, classes, wnids)
    ):
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIERS)}
        logger.info("%s: trained on other classes (%s) than this run's (%s): its classifiers are not copied",
                    path, _names(stored_classes), _names(classes))  # fmt: skip
    own = model.state_dict()
    copied, kept = {}, []
    for name, value in own.items():
        source = state.get(name)
        if isinstance(source, torch.Tensor) and tuple(source.shape) == tuple(value.shape):
            copied[name] = source
        else:
            kept.append(name)
    if not copied:
        raise CheckpointError(f"{path}: no tensor of the checkpoint fits the model")
    model.load_state_dict(copied, strict=False)
    fresh = f"{len(kept)} keep their fresh initialisation ({', '.join(kept[:4])}{' ...' if len(kept) > 4 else ''})"
    logger.info(
        "initialised %d tensors from %s; %s", len(copied), path, fresh if kept else "every one of the model"
    )
    return kept


def _weights_of(path: str | os.PathLike[str]) -> dict[str, Any]:
    """{"model_config", "state_dict", "meta"} of any weight file `model_from_file` reads (our checkpoint;
    a torchvision state dict, variant `torchvision`; the reference .caffemodel or the ONNX zoo's
    GoogLeNet, variant `paper`), through the model it describes, with the normalisation it needs."""
    model, meta = model_from_file(path)
    # torchvision's released GoogLeNet weights were ported without trained auxiliary heads: what the file
    # holds there is random, and must not be frozen or slowed by --init-lr-mult as if it were learnt.
    untrained_aux = model.aux1 is not None and bool(meta.get("aux_heads_untrained"))
    return {"model_config": model.config.as_dict(), "state_dict": model.state_dict(), "meta": meta,
            "untrained_aux": untrained_aux}  # fmt: skip


CONV1_WEIGHT, CONV1_BIAS, CONV1_BN_MEAN = "conv1.conv.weight", "conv1.conv.bias", "conv1.bn.running_mean"
CLASSIFIERS = ("fc.", "aux1.fc2.", "aux2.fc2.")  # the layers with one output per class


def _names(names: Sequence[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" ... {len(names)} in all" if len(names) > shown else "")


Normalisation = tuple[torch.Tensor, torch.Tensor]  # (mean, std) per RGB channel, on 0-1 pixels


def _effective_normalisation(
    meta: Mapping[str, Any], model_config: Mapping[str, Any]
) -> Normalisation | None:
    """What conv1 of such a model sees: (mean, std) on 0-1 RGB. `transform_input` turns ImageNet-normalised
    input back into [-1, 1], i.e. mean = std = 0.5, whatever the metadata says. None: not recorded."""
    if model_config.get("transform_input"):
        return torch.full((3,), 0.5, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64)
    if "mean" not in meta or "std" not in meta:
        return None
    return torch.tensor(meta["mean"], dtype=torch.float64), torch.tensor(meta["std"], dtype=torch.float64)


def _same(a: Normalisation, b: Normalisation) -> bool:
    return all(torch.allclose(x, y, rtol=1e-6, atol=1e-9) for x, y in zip(a, b, strict=True))


def _rounded(n: Normalisation) -> tuple[list[float], list[float]]:
    return [round(float(v), 4) for v in n[0]], [round(float(v), 4) for v in n[1]]


def _fold_normalisation(
    state: dict[str, torch.Tensor], trained_on: Normalisation, fed: Normalisation
) -> None:
    """Rewrite conv1 in `state` so that input normalised as `fed` gives what input normalised as
    `trained_on` gave: x_trained = a * x_fed + o per channel, a = std_fed / std_trained and
    o = (mean_fed - mean_trained) / std_trained, so W' = W * a and the offset W . o goes into conv1's
    bias (into its BatchNorm's running mean where conv1 has no bias). A plain affine identity; no
    library offers it for a convolution's input side."""
    (mean_t, std_t), (mean_f, std_f) = trained_on, fed
    weight = state[CONV1_WEIGHT]
    w64 = weight.double()
    scale = (std_f / std_t).view(1, 3, 1, 1)
    offset = ((mean_f - mean_t) / std_t).view(1, 3, 1, 1)
    shift = (w64 * offset).sum(dim=(1, 2, 3))
    state[CONV1_WEIGHT] = (w64 * scale).to(weight.dtype)
    if CONV1_BIAS in state:
        state[CONV1_BIAS] = (state[CONV1_BIAS].double() + shift).to(state[CONV1_BIAS].dtype)
    elif CONV1_BN_MEAN in state:  # BN subtracts its running mean: take the shift off it instead
        state[CONV1_BN_MEAN] = (state[CONV1_BN_MEAN].double() - shift).to(state[CONV1_BN_MEAN].dtype)


class FrozenBatchNorm2d(torchvision.ops.FrozenBatchNorm2d):
    """A BatchNorm layer `--init-lr-mult 0` froze: torchvision's FrozenBatchNorm2d (statistics and affine
    parameters fixed, in training as in evaluation; the layer torchvision's detection models use for a
    frozen backbone), keeping BatchNorm2d's `num_batches_tracked` so that the run's checkpoints hold the
    same keys as any other run's and load into a plain model unchanged."""

    def __init__(self, bn: nn.BatchNorm2d | nn.SyncBatchNorm) -> None:
        super().__init__(bn.num_features, eps=bn.eps)
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        self.to(bn.weight.device)
        self.load_state_dict(bn.state_dict())  # the same five tensors, by name

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # torchvision's drops `num_batches_tracked` from the state before loading; this layer keeps it.
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args)


def freeze_batchnorm(model: nn.Module, frozen: Collection[str]) -> list[str]:
    """Replace each BatchNorm2d (or SyncBatchNorm, --sync-bn) whose scale and shift are both in `frozen`
    (parameter names) by a `FrozenBatchNorm2d` holding its values; returns the replaced modules' names.

    Frozen weights alone would still let such a layer normalise by each batch's statistics in training
    and move its running statistics towards the new data, so the frozen features would change under the
    classifier that learns on them (and at evaluation differ from those it learnt on)."""
    frozen = set(frozen)
    names = [
        name for name, module in model.named_modules()
        if type(module) in (nn.BatchNorm2d, nn.SyncBatchNorm) and module.affine and module.track_running_stats
        and {f"{name}.weight", f"{name}.bias"} <= frozen
    ]  # fmt: skip
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, FrozenBatchNorm2d(getattr(parent, child)))
    return names
