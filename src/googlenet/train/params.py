"""Parameter groups for SGD: weight decay and learning rate per kind of parameter.

By default every parameter gets the same learning rate and weight decay (one group), which is what
section 6 describes and what `googlenet train` has always done. Two well-known refinements are named
options:

- Caffe's bvlc_googlenet `train_val.prototxt`, the reference replication of the paper, gives every
  bias `lr_mult: 2, decay_mult: 0` (twice the learning rate, no weight decay): `bias_lr_mult=2.0`,
  `bias_weight_decay=0.0`.
- torchvision's reference `train.py` takes `--bias-weight-decay` and `--norm-weight-decay` (the
  BatchNorm scale and shift are usually not decayed): the same names here.

A bias belongs to the bias group whatever its module (BatchNorm's shift included), as in torchvision's
`set_weight_decay`, where a custom key ("bias") wins over the norm group; a norm layer's scale belongs
to the norm group. torch.optim has no helper that builds such groups (torchvision's lives in its
reference scripts, not the package), so this is ours.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from torch import nn

_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
)  # fmt: skip


def parameter_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    bias_weight_decay: float | None = None,
    norm_weight_decay: float | None = None,
    bias_lr_mult: float = 1.0,
    scaled: Collection[str] = (),
    scaled_lr_mult: float = 1.0,
) -> list[dict[str, Any]]:
    """SGD parameter groups; the first is always the plain weights' (its lr is the one logged).

    With every option at its default the result is one group holding every trainable parameter, in
    `model.parameters()` order. Otherwise up to three groups: weights (`lr`, `weight_decay`), biases
    (`lr x bias_lr_mult`, `bias_weight_decay` or `weight_decay`), norm layers' parameters (`lr`,
    `norm_weight_decay`; their shifts go with the biases when those are split). Each group carries a
    `name` ("weights", "biases", "norms").

    `scaled`: parameter names (as `named_parameters` gives them) whose learning rate is multiplied by
    `scaled_lr_mult` (fine-tuning: the layers a checkpoint gave); unless that is 1, each kind's scaled
    parameters form a group of their own after the others, named "copied weights", "copied biases",
    "copied norms" (empty ones left out). Parameters that do not require gradients (frozen) are left out.
    """
    split_bias = bias_weight_decay is not None or bias_lr_mult != 1.0
    split_norm = norm_weight_decay is not None
    split_scaled = scaled_lr_mult != 1.0
    scaled = set(scaled)
    kinds: dict[tuple[str, bool], list[nn.Parameter]] = {
        (kind, copied): [] for copied in (False, True) for kind in ("weights", "biases", "norms")
    }
    seen: set[int] = set()  # a parameter shared by two modules goes in one group, once
    for prefix, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            copied = split_scaled and f"{prefix}.{name}".lstrip(".") in scaled
            if split_bias and name == "bias":
                kinds["biases", copied].append(param)
            elif split_norm and isinstance(module, _NORMS):
                kinds["norms", copied].append(param)
            else:
                kinds["weights", copied].append(param)
    bias_decay = weight_decay if bias_weight_decay is None else bias_weight_decay
    settings = {
        "weights": (lr, weight_decay),
        "biases": (lr * bias_lr_mult, bias_decay),
        "norms": (lr, norm_weight_decay),
    }
    groups: list[dict[str, Any]] = []
    for (kind, copied), params in kinds.items():
        if params or (kind, copied) == ("weights", False):  # the first group is always there
            kind_lr, decay = settings[kind]
            groups.append({"name": f"copied {kind}" if copied else kind, "params": params,
                           "lr": kind_lr * (scaled_lr_mult if copied else 1.0), "weight_decay": decay})  # fmt: skip
    return groups


def describe_groups(groups: list[dict[str, Any]]) -> str:
    """How the groups after the first differ from it, as ", biases lr x2.0 weight decay 0.0"; "" for one group.

    Read from the groups `parameter_groups` built, so the description cannot drift from what the
    optimiser was given (a bias decay left unset falls back to the weights' in one place only).
    """
    base_lr = groups[0]["lr"]
    parts = []
    for group in groups[1:]:
        copied = group["name"].startswith("copied ")
        kind = group["name"].removeprefix("copied ")
        what = {"weights": "weights", "biases": "biases", "norms": "norm layers"}[kind]
        what = f"copied {what}" if copied else what
        if kind == "biases" or copied:
            parts.append(f"{what} lr x{round(group['lr'] / base_lr, 6)} weight decay {group['weight_decay']}")
        else:
            parts.append(f"{what} weight decay {group['weight_decay']}")
    return "".join(f", {part}" for part in parts)
