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
    """[len(ks), images] in [0, 1]: whether each image's target is among its k highest scores, 1 or 0;
    where the target's score is tied with others across the k-th place, the chance that a random order
    of the tied classes puts it inside (k - higher) / tied.

    Ties are rarer than they look but real: float32 softmax rounds a class more than about 103 logits
    below the top to exactly 0 and, under `--reduce max`, a confident crop's top class to exactly 1, so
    a confident model's scores tie. `torch.topk` then ranked the tied classes in an order of its own
    (neither the classes' order nor repeatable across versions); this is the expected hit instead.
    k larger than the number of classes counts as all classes (so top-5 of 3 classes is always right).
    """
    target_scores = scores.gather(-1, targets.view(-1, 1).to(scores.device))
    higher = (scores > target_scores).sum(dim=-1)
    tied = (scores == target_scores).sum(dim=-1).clamp(min=1)  # the target itself, and any equal to it
    finite = torch.isfinite(target_scores).view(-1)  # a NaN score is never a hit (it compares unequal)
    credits = []
    for k in ks:
        k = min(k, scores.shape[-1])
        credit = ((k - higher).clamp(min=0).float() / tied).clamp(max=1.0)
        credits.append(torch.where(finite, credit, torch.zeros_like(credit)))
    return torch.stack(credits)


class ClassificationMeter:
    """Accumulates top-1 and top-5 hits, overall and per class, over batches of scores."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.images = torch.zeros(num_classes, dtype=torch.long)
        self.top1 = torch.zeros(
            num_classes, dtype=torch.float64
        )  # hits; a tie's expected share (topk_correct)
        self.top5 = torch.zeros(num_classes, dtype=torch.float64)

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add a batch: scores [images, classes] and the true class indices [images]."""
        targets = targets.detach().to("cpu", torch.long)
        hits = topk_correct(scores.detach().cpu(), targets).double()
        self.images += torch.bincount(targets, minlength=self.num_classes)
        self.top1 += torch.bincount(targets, weights=hits[0], minlength=self.num_classes)
        self.top5 += torch.bincount(targets, weights=hits[1], minlength=self.num_classes)

    @property
    def count(self) -> int:
        return int(self.images.sum())

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Errors and accuracies in percent, the image count, and accuracy per class (None if no images)."""
        n = self.count
        top1 = 100.0 * float(self.top1.sum()) / n if n else float("nan")
        top5 = 100.0 * float(self.top5.sum()) / n if n else float("nan")
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        per_class = []
        for i, name in enumerate(names):
            count = int(self.images[i])
            per_class.append(
                {
                    "class": name,
                    "images": count,
                    "top1_accuracy": 100.0 * float(self.top1[i]) / count if count else None,
                    "top5_accuracy": 100.0 * float(self.top5[i]) / count if count else None,
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
