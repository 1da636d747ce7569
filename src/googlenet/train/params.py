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
) -> list[dict[str, Any]]:
    """SGD parameter groups; the first is always the plain weights' (its lr is the one logged).

    With every option at its default the result is one group holding every trainable parameter, in
    `model.parameters()` order. Otherwise up to three groups: weights (`lr`, `weight_decay`), biases
    (`lr x bias_lr_mult`, `bias_weight_decay` or `weight_decay`), norm layers' parameters (`lr`,
    `norm_weight_decay`; their shifts go with the biases when those are split). Each group carries a
    `name` ("weights", "biases", "norms").
    """
    split_bias = bias_weight_decay is not None or bias_lr_mult != 1.0
    split_norm = norm_weight_decay is not None
    weights: list[nn.Parameter] = []
    biases: list[nn.Parameter] = []
    norms: list[nn.Parameter] = []
    seen: set[int] = set()  # a parameter shared by two modules goes in one group, once
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if split_bias and name == "bias":
                biases.append(param)
            elif split_norm and isinstance(module, _NORMS):
                norms.append(param)
            else:
                weights.append(param)
    groups: list[dict[str, Any]] = [
        {"name": "weights", "params": weights, "lr": lr, "weight_decay": weight_decay}
    ]
    if biases:
        bias_decay = weight_decay if bias_weight_decay is None else bias_weight_decay
        groups.append(
            {"name": "biases", "params": biases, "lr": lr * bias_lr_mult, "weight_decay": bias_decay}
        )
    if norms:
        groups.append({"name": "norms", "params": norms, "lr": lr, "weight_decay": norm_weight_decay})
    return groups


def describe_groups(groups: list[dict[str, Any]]) -> str:
    """How the groups after the first differ from it, as ", biases lr x2.0 weight decay 0.0"; "" for one group.

    Read from the groups `parameter_groups` built, so the description cannot drift from what the
    optimiser was given (a bias decay left unset falls back to the weights' in one place only).
    """
    base_lr = groups[0]["lr"]
    parts = []
    for group in groups[1:]:
        if group["name"] == "biases":
            parts.append(f"biases lr x{group['lr'] / base_lr} weight decay {group['weight_decay']}")
        else:
            parts.append(f"norm layers weight decay {group['weight_decay']}")
    return "".join(f", {part}" for part in parts)
