"""Classification metrics: section 7's averaging over crops and models, top-k error, per-class accuracy.

Section 7: "softmax probabilities are averaged over multiple crops and over all the individual
classifiers to obtain the final prediction"; the authors also tried max pooling over crops and
averaging over classifiers, which was worse than simple averaging. `aggregate` does both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from googlenet.errors import ConfigError


def top5_trivial(num_classes: int) -> str:
    """What to say beside a top-5 figure of a model of 5 classes or fewer: every image is right."""
    return f"(top-5 is right by construction with {num_classes} classes, 5 or fewer: compare top-1)"


REDUCTIONS: tuple[str, ...] = ("mean", "max")


def aggregate_probs(probs: Tensor, reduce: str = "mean") -> Tensor:
    """Softmax probabilities [models, images, crops, classes] -> scores [images, classes].

    reduce="mean" (the paper's choice): the mean over crops and models, itself a distribution.
    reduce="max": the maximum over crops of each class's probability, then the mean over models
    (section 7's max-pooling alternative); the scores then no longer sum to 1.
    """
    if probs.ndim != 4:
        raise ValueError(f"probs: expected [models, images, crops, classes], got shape {tuple(probs.shape)}")
    if reduce == "mean":
        over_crops = probs.mean(dim=2)
    elif reduce == "max":
        over_crops = probs.amax(dim=2)
    else:
        raise ConfigError(f"reduce: must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    return over_crops.mean(dim=0)


def aggregate(logits: Tensor, reduce: str = "mean") -> Tensor:
    """Logits [models, images, crops, classes] -> scores [images, classes]: softmax, then `aggregate_probs`."""
    return aggregate_probs(torch.softmax(logits.float(), dim=-1), reduce)


def topk_correct(scores: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> Tensor:
    """Bool [len(ks), images]: whether each image's target is among its k highest scores.

    k larger than the number of classes counts as all classes (so top-5 of 3 classes is always right).
    """
    kmax = min(max(ks), scores.shape[-1])
    top = scores.topk(kmax, dim=-1).indices  # images x kmax, best first
    hits = top == targets.view(-1, 1)
    return torch.stack([hits[:, : min(k, kmax)].any(dim=1) for k in ks])


class ClassificationMeter:
    """Accumulates top-1 and top-5 hits, overall and per class, over batches of scores."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.images = torch.zeros(num_classes, dtype=torch.long)
        self.top1 = torch.zeros(num_classes, dtype=torch.long)
        self.top5 = torch.zeros(num_classes, dtype=torch.long)

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add a batch: scores [images, classes] and the true class indices [images]."""
        targets = targets.detach().to("cpu", torch.long)
        hits = topk_correct(scores.detach().cpu(), targets).long()
        self.images += torch.bincount(targets, minlength=self.num_classes)
        self.top1 += torch.bincount(targets, weights=hits[0].double(), minlength=self.num_classes).long()
        self.top5 += torch.bincount(targets, weights=hits[1].double(), minlength=self.num_classes).long()

    @property
    def count(self) -> int:
        return int(self.images.sum())

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Errors and accuracies in percent, the image count, and accuracy per class (None if no images)."""
        n = self.count
        top1 = 100.0 * int(self.top1.sum()) / n if n else float("nan")
        top5 = 100.0 * int(self.top5.sum()) / n if n else float("nan")
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        per_class = []
        for i, name in enumerate(names):
            count = int(self.images[i])
            per_class.append(
                {
                    "class": name,
                    "images": count,
                    "top1_accuracy": 100.0 * int(self.top1[i]) / count if count else None,
                    "top5_accuracy": 100.0 * int(self.top5[i]) / count if count else None,
                }
            )
        return {
            "images": n,
            "top1_accuracy": top1,
            "top5_accuracy": top5,
            "top1_error": 100.0 - top1,
            "top5_error": 100.0 - top5,
            "per_class": per_class,
        }
