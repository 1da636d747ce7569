"""Class-specific bounding-box regression (R-CNN, Girshick et al. 2014, appendix C): beyond the paper.

Section 8 says GoogLeNet's detection entry used no bounding-box regression; R-CNN added it and gained
about 3 points of mAP on VOC. We offer it as an option, off by default, measured in docs/detection.md.

What it is, as R-CNN does it, on the region classifier's own features:
- features: the 1024-d pooled output (`GoogLeNet.forward_features`) of a proposal warped with context
  exactly as for scoring (R-CNN used pool5 of its classifier);
- training pairs: every training-set proposal whose IoU with a ground-truth box is >= 0.6, paired with
  that (best-overlapping) box; the targets are R-CNN's t_x = (G_x - P_x) / P_w, t_y = (G_y - P_y) / P_h,
  t_w = log(G_w / P_w), t_h = log(G_h / P_h) on centres and inclusive pixel widths;
- one ridge regression per class and coordinate, solved in closed form, with R-CNN's lambda = 1000
  after scaling the features to a mean norm of 20 (R-CNN's feature scaling), and an unregularised bias;
- at test time each detection of class c moves by class c's prediction, then per-class NMS runs again
  (R-CNN regresses the scored proposals before its NMS; ours refines the kept detections only, which
  costs one more forward pass for those regions instead of all of them).

Written here because no library we use fits a per-class ridge on CNN features; the solve itself is
`torch.linalg.solve`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from googlenet.data.crops import normalize, to_uint8_tensor
from googlenet.data.transforms import default_resize_size
from googlenet.detect.metrics import Detection, GroundTruth
from googlenet.detect.regions import classifier_region
from googlenet.errors import CheckpointError, ConfigError, DataError, check_values
from googlenet.model.googlenet import GoogLeNet

logger = logging.getLogger(__name__)

FORMAT = "googlenet-boxreg-1"
FEATURE_NORM = 20.0  # R-CNN scales pool5 features to a mean norm of 20 before the regression


@dataclass(frozen=True)
class BoxRegConfig:
    """Settings of `fit_box_regressor`; `min_iou` and `ridge` default to R-CNN's (appendix C). `ConfigError`
    for a value out of range."""

    min_iou: float = 0.6  # R-CNN: proposals with IoU above 0.6 to a ground-truth box (here >=: ties are rare)
    ridge: float = 1000.0  # R-CNN's lambda
    per_image: int = 32  # training pairs drawn per image at most (seeded)
    context: int = 16  # the region classifier's context (pixels at 227), as `DetectorConfig.context`
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_values(
            (0 < self.min_iou <= 1, "--min-iou", self.min_iou, "in (0, 1]"),
            # > 0: with no penalty the system is singular whenever a class has fewer pairs than dimensions
            (0 < self.ridge < float("inf"), "--ridge", self.ridge, "a finite number > 0"),
            (self.per_image >= 1, "--per-image", self.per_image, "at least 1"),
            (self.batch_size >= 1, "batch_size", self.batch_size, "at least 1"),
        )


def encode(proposals: Tensor, truth: Tensor) -> Tensor:
    """R-CNN's regression targets of `truth` relative to `proposals` (N x 4 each, inclusive pixels)."""
    pw, ph = proposals[:, 2] - proposals[:, 0] + 1, proposals[:, 3] - proposals[:, 1] + 1
    gw, gh = truth[:, 2] - truth[:, 0] + 1, truth[:, 3] - truth[:, 1] + 1
    px, py = proposals[:, 0] + 0.5 * pw, proposals[:, 1] + 0.5 * ph
    gx, gy = truth[:, 0] + 0.5 * gw, truth[:, 1] + 0.5 * gh
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1)


def decode(proposals: Tensor, deltas: Tensor) -> Tensor:
    """The inverse of `encode`: boxes from proposals and predicted targets."""
    pw, ph = proposals[:, 2] - proposals[:, 0] + 1, proposals[:, 3] - proposals[:, 1] + 1
    px, py = proposals[:, 0] + 0.5 * pw, proposals[:, 1] + 0.5 * ph
    x, y = px + deltas[:, 0] * pw, py + deltas[:, 1] * ph
    w, h = pw * torch.exp(deltas[:, 2].clamp(max=4.0)), ph * torch.exp(deltas[:, 3].clamp(max=4.0))
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w - 1, y + 0.5 * h - 1], dim=1)


def region_features(
    model: GoogLeNet, meta: Mapping[str, Any], image: Tensor, boxes: np.ndarray, context: int, batch_size: int
) -> Tensor:
    """Pooled features (N x 1024) of `boxes` (0-based pixels) of a 3 x H x W uint8 image, warped with
    context as the detector warps them for scoring."""
    size = int(meta["input_size"])
    resize = int(meta.get("resize_size") or default_resize_size(size))
    mean, std = meta["mean"], meta["std"]
    out = []
    with torch.inference_mode():
        for start in range(0, len(boxes), batch_size):
            regions = torch.stack(
                [
                    classifier_region(image, box, size, resize, context)
                    for box in boxes[start : start + batch_size]
                ]
            )
            out.append(model.forward_features(normalize(regions, mean, std)).float())
    return torch.cat(out) if out else torch.zeros(0, model.num_features)


def ridge(features: Tensor, targets: Tensor, lam: float) -> Tensor:
    """(D + 1) x 4 weights of min |[X 1] W - T|^2 + lam |W without its bias row|^2, in closed form."""
    x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], dim=1)
    penalty = torch.eye(x.shape[1], dtype=torch.float64) * lam
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return torch.linalg.solve(x.T @ x + penalty, x.T @ targets.double()).float()


@dataclass
class BoxRegressor:
    """Per-class linear maps from scaled features to R-CNN targets, tied to one region classifier."""

    classes: list[str]
    weights: Tensor  # C x (D + 1) x 4; a class without training pairs has zeros (boxes unchanged)
    scale: float  # features are multiplied by this (mean norm FEATURE_NORM on the training pairs)
    context: int
    pairs: dict[str, int]
    features: str | None = None  # `features_digest` of the classifier it was fitted on (None: older files)

    def predict(self, features: Tensor, labels: Sequence[str]) -> Tensor:
        x = torch.cat([features.float() * self.scale, torch.ones(len(features), 1)], dim=1)
        index = torch.tensor([self.classes.index(label) for label in labels], dtype=torch.long)
        return torch.einsum("nd,ndk->nk", x, self.weights[index])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the regressor to `path` atomically (format `googlenet-boxreg-1`, read by `load`)."""
        from googlenet.io import atomic_save

        atomic_save(
            {"format": FORMAT, "classes": self.classes, "weights": self.weights, "scale": self.scale,
             "context": self.context, "pairs": self.pairs, "features": self.features},
            path,
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BoxRegressor:
        """A regressor written by `save`; `CheckpointError` for a missing, unreadable or foreign file."""
        from googlenet.io import safe_load

        if os.path.isdir(path):  # safe_load's words are a checkpoint's
            raise CheckpointError(
                f"{path}: is a folder; give a box regression file (made by googlenet detect boxreg)"
            )
        data = safe_load(path)  # one-line CheckpointError for a missing, non-regular or unreadable file
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a box regression file (made by googlenet detect boxreg)")
        return cls(list(data["classes"]), data["weights"], float(data["scale"]), int(data["context"]),
                   dict(data["pairs"]), data.get("features"))  # fmt: skip


def fit_box_regressor(
    model: GoogLeNet,
    meta: Mapping[str, Any],
    images: Sequence[tuple[str, str]],
    truth: Mapping[str, GroundTruth],
    proposals: Mapping[str, np.ndarray],
    classes: Sequence[str],
    config: BoxRegConfig,
    progress: bool = False,
) -> BoxRegressor:
    """Fit one ridge per class on the training images' proposals (module docstring). `truth` and
    `proposals` are in 0-based pixel coordinates."""
    from googlenet.data.decode import load_image

    rng = np.random.default_rng(config.seed)
    feats: dict[str, list[Tensor]] = {c: [] for c in classes}
    targets: dict[str, list[Tensor]] = {c: [] for c in classes}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), desc="box regression features", unit="img", leave=False)
    model.eval()
    for image_id, path in images:
        if bar is not None:
            bar.update(1)
        item = truth.get(image_id)
        boxes = np.asarray(proposals.get(image_id, np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        if item is None or not len(boxes):
            continue
        kept = [(label, box) for label, box, hard in zip(item.labels, item.boxes, item.difficult, strict=True)
                if not hard and label in classes]  # fmt: skip
        if not kept:
            continue
        gt = torch.tensor([box for _, box in kept], dtype=torch.float64)
        iou = box_iou(torch.from_numpy(boxes) + torch.tensor([0, 0, 1, 1]), gt + torch.tensor([0, 0, 1, 1]))
        best, which = iou.max(dim=1)
        chosen = torch.nonzero(best >= config.min_iou).flatten().numpy()
        if len(chosen) > config.per_image:
            chosen = np.sort(rng.choice(chosen, size=config.per_image, replace=False))
        if not len(chosen):
            continue
        pixels = to_uint8_tensor(load_image(path))
        f = region_features(model, meta, pixels, boxes[chosen], config.context, config.batch_size)
        t = encode(torch.from_numpy(boxes[chosen]), gt[which[chosen]]).float()
        for k, j in enumerate(which[chosen].tolist()):
            feats[kept[j][0]].append(f[k : k + 1])
            targets[kept[j][0]].append(t[k : k + 1])
    if bar is not None:
        bar.close()
    counts = {c: sum(len(f) for f in feats[c]) for c in classes}
    if not any(counts.values()):
        annotated = {label for item in truth.values() for label in item.labels}
        if not annotated & set(classes):  # not a matter of overlaps: the names differ
            raise DataError(
                f"box regression: the annotations name none of the region classifier's classes "
                f"({', '.join(sorted(classes)[:5])}{', ...' if len(classes) > 5 else ''}); they hold "
                f"{', '.join(sorted(annotated)[:5]) or 'no objects'}"
            )
        raise DataError(f"box regression: no training proposal has IoU >= {config.min_iou} with an object")
    every = torch.cat([torch.cat(f) for f in feats.values() if f])
    scale = FEATURE_NORM / float(every.norm(dim=1).mean().clamp(min=1e-12))
    weights = torch.zeros(len(classes), every.shape[1] + 1, 4)
    for i, c in enumerate(classes):
        if counts[c]:
            weights[i] = ridge(torch.cat(feats[c]) * scale, torch.cat(targets[c]), config.ridge)
        else:
            logger.warning("box regression: class %s has no training pair; its boxes stay as proposed", c)
    return BoxRegressor(list(classes), weights, scale, config.context, counts, features_digest(model))


def features_digest(model: GoogLeNet) -> str:
    """sha256 of the weights (and BatchNorm statistics) of the trunk whose features a regression maps:
    a regression moves boxes right only with the features of the classifier it was fitted on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(("fc.", "aux1.", "aux2.")):  # the classifiers: not part of the features
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def refine_detections(
    detections: Sequence[Detection],
    regressor: BoxRegressor,
    model: GoogLeNet,
    meta: Mapping[str, Any],
    image: Tensor,
    nms_iou: float,
    pixel_offset: float,
    batch_size: int = 64,
) -> list[Detection]:
    """Move one image's detections by their class's regression, clip them to the image, and run
    per-class NMS again (the moved boxes may now overlap more)."""
    from torchvision.ops import batched_nms

    if not detections:
        return []
    boxes = np.array([d.box for d in detections], dtype=np.float64) - pixel_offset  # back to 0-based
    features = region_features(model, meta, image, boxes, regressor.context, batch_size)
    labels = [d.label for d in detections]
    moved = decode(torch.from_numpy(boxes).float(), regressor.predict(features, labels))
    height, width = image.shape[-2:]
    moved[:, 0::2] = moved[:, 0::2].clamp(0, width - 1)
    moved[:, 1::2] = moved[:, 1::2].clamp(0, height - 1)
    # A sliver proposal shrunk below a pixel would end before it starts, which no evaluator accepts.
    moved[:, 2:] = torch.maximum(moved[:, 2:], moved[:, :2])
    scores = torch.tensor([d.score for d in detections])
    label_ids = torch.tensor([regressor.classes.index(label) for label in labels])
    keep = batched_nms(moved + torch.tensor([0, 0, 1, 1]), scores, label_ids, nms_iou)
    keep = keep[scores[keep].argsort(descending=True)]
    return [
        Detection(detections[k].image, labels[k], detections[k].score,
                  tuple(float(v) + pixel_offset for v in moved[k]))  # type: ignore[arg-type]
        for k in keep.tolist()
    ]  # fmt: skip


def check_pairing(
    regressor: BoxRegressor,
    classes: Sequence[str],
    path: str | Path,
    model: GoogLeNet,
    checkpoint: str | Path,
) -> None:
    """One-line error when a regression file does not fit the detector's classes, or was fitted on the
    features of another classifier than `model` (read from `checkpoint`). A file written before the
    features were recorded (2026-12-07) is checked by its classes only."""
    missing = sorted(set(classes) - set(regressor.classes))
    if missing:
        raise ConfigError(f"{path}: box regression has no class {missing[0]!r} of the region classifier")
    if regressor.features is not None and regressor.features != features_digest(model):
        raise ConfigError(
            f"{path}: box regression was fitted on another classifier's features than {checkpoint}'s (the "
            "first --checkpoint); fit one for it with googlenet detect boxreg --checkpoint " + str(checkpoint)
        )
