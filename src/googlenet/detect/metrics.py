"""Average precision for detection, as the PASCAL VOC and ILSVRC devkits compute it (section 8's mAP).

A detection is a true positive when its class matches and its box overlaps a not-yet-matched ground
truth box of that image by IoU >= the threshold (0.5 in section 8); detections are taken in order of
decreasing score, each matched to the ground truth it overlaps most; a second detection of an already
matched object is a false positive. Ground truth marked "difficult" is ignored: a detection matching it
is neither a true nor a false positive, and it does not count towards the positives (VOC).

Conventions kept from the devkits:
- boxes are inclusive pixel coordinates, so a box's width is xmax - xmin + 1 (`pixel_offset=1`);
- AP is the area under the precision-recall curve with precision made monotonically decreasing,
  summed at every recall change ("all-point", VOC 2010 onwards and ILSVRC), or VOC 2007's 11-point
  interpolation (mean of the best precision at recall >= 0, 0.1, ..., 1);
- ILSVRC's threshold for small objects: IoU >= min(0.5, w*h / ((w+10)*(h+10))) for a ground-truth box of
  width w and height h (`ilsvrc_small=True`).

torchvision has box IoU (`torchvision.ops.box_iou`, used here with the +1 convention applied to the
boxes) but no VOC-style AP; pycocotools computes COCO's 101-point AP with a different matching rule, so
the AP itself is written here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou

from googlenet.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """One detection: the image id, the class name, the score and the box."""

    image: str
    label: str
    score: float
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax (inclusive pixels)


@dataclass
class GroundTruth:
    """The objects of one image: boxes (xmin, ymin, xmax, ymax), labels and difficult flags."""

    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)

    def add(self, label: str, box: Sequence[float], difficult: bool = False) -> None:
        """Append one object; `ConfigError` unless `box` is xmin, ymin, xmax, ymax with xmax >= xmin and
        ymax >= ymin."""
        if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
            raise ConfigError(f"a box must be xmin, ymin, xmax, ymax with xmax >= xmin, ymax >= ymin: {box}")
        self.boxes.append((float(box[0]), float(box[1]), float(box[2]), float(box[3])))
        self.labels.append(label)
        self.difficult.append(bool(difficult))


def pixel_iou(a: torch.Tensor, b: torch.Tensor, pixel_offset: float = 1.0) -> torch.Tensor:
    """IoU matrix of boxes in inclusive pixel coordinates: widths are xmax - xmin + `pixel_offset`."""
    shift = torch.tensor([0.0, 0.0, pixel_offset, pixel_offset], dtype=torch.float64)
    return box_iou(a.double() + shift, b.double() + shift)


def average_precision(recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False) -> float:
    """Area under the precision-recall curve, VOC style (see the module docstring)."""
    if eleven_point:
        # t from NumPy's arange(0, 1.1, 0.1), as the NumPy evaluators compute it (py-faster-rcnn's
        # voc_eval, Padilla's): a recall of exactly 3/10 does not reach t = 0.30000000000000004, nor
        # 6/10 and 7/10 their t. MATLAB's 0:0.1:1 (the VOC devkit) computes the upper half from the
        # end, so its 0.6 and 0.7 are exact: a class whose recall ends at exactly 0.6 or 0.7 can
        # differ from the MATLAB devkit by one point in eleven (not verified in MATLAB).
        points = []
        for t in np.arange(0.0, 1.1, 0.1):
            above = precision[recall >= t]
            points.append(float(above.max()) if above.size else 0.0)
        return float(np.mean(points))
    r = np.concatenate(([0.0], recall, [1.0]))
    p = np.concatenate(([0.0], precision, [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope: the best precision at any higher recall
    changes = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[changes + 1] - r[changes]) * p[changes + 1]))


def precision_envelope(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve whose area `average_precision` (all-point) takes, as (x, y) to draw with matplotlib's
    `drawstyle="steps-pre"`: over each recall interval (x[i-1], x[i]] the best precision at recall >=
    x[i]. Drawn "steps-post", the raw points had shown each detection's precision over the next
    interval (precision 0 over the first fifth of recall for a class whose AP is 26.7%)."""
    if recall.size == 0:
        return np.zeros(0), np.zeros(0)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return np.concatenate(([0.0], recall)), np.concatenate((envelope[:1], envelope))


@dataclass
class ClassResult:
    """One class's evaluation: AP (NaN without positives), positives (difficult objects left out), its
    detection count, and the precision-recall curve, one point per detection in decreasing score."""

    label: str
    ap: float
    positives: int
    detections: int
    recall: np.ndarray
    precision: np.ndarray


def evaluate_class(
    label: str,
    detections: Iterable[Detection],
    ground_truth: Mapping[str, GroundTruth],
    iou_threshold: float = 0.5,
    eleven_point: bool = False,
    ilsvrc_small: bool = False,
    pixel_offset: float = 1.0,
    use_difficult: bool = False,
) -> ClassResult:
    """AP of one class over all images; `use_difficult` counts "difficult" objects as ordinary ones."""
    gts: dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]] = {}
    positives = 0
    for image, truth in ground_truth.items():
        keep = [i for i, name in enumerate(truth.labels) if name == label]
        boxes = torch.tensor([truth.boxes[i] for i in keep], dtype=torch.float64).reshape(-1, 4)
        difficult = np.array([truth.difficult[i] and not use_difficult for i in keep], dtype=bool)
        positives += int((~difficult).sum())
        gts[image] = (boxes, difficult, np.zeros(len(keep), dtype=bool))
    dets = sorted((d for d in detections if d.label == label), key=lambda d: -d.score)
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    for k, det in enumerate(dets):
        boxes, difficult, matched = gts.get(
            det.image, (torch.zeros(0, 4, dtype=torch.float64), np.zeros(0, bool), np.zeros(0, bool))
        )
        if len(boxes) == 0:
            fp[k] = 1
            continue
        overlaps = pixel_iou(torch.tensor([det.box], dtype=torch.float64), boxes, pixel_offset)[0].numpy()
        if ilsvrc_small:
            # ILSVRC's devkit (eval_detection.m): each object has its own threshold,
            # min(0.5, wh / ((w + 10)(h + 10))), and a detection takes the object of highest IoU among
            # those not yet found that reach theirs; none is a false positive.
            w = (boxes[:, 2] - boxes[:, 0] + pixel_offset).numpy()
            h = (boxes[:, 3] - boxes[:, 1] + pixel_offset).numpy()
            thresholds = np.minimum(iou_threshold, w * h / ((w + 10) * (h + 10)))
            open_ = (overlaps >= thresholds) & ~matched
            if not open_.any():
                fp[k] = 1
                continue
            best = int(np.where(open_, overlaps, -np.inf).argmax())
            threshold = float(thresholds[best])
        else:  # VOC's devkit: the object of highest IoU; found already, the detection is a duplicate
            best = int(overlaps.argmax())
            threshold = iou_threshold
        if overlaps[best] >= threshold:
            if difficult[best]:
                continue  # neither true nor false positive
            if not matched[best]:
                matched[best] = True
                tp[k] = 1
            else:
                fp[k] = 1  # a duplicate detection of a found object
        else:
            fp[k] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = ctp / positives if positives else np.zeros_like(ctp)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    ap = average_precision(recall, precision, eleven_point) if positives else float("nan")
    return ClassResult(label, ap, positives, len(dets), recall, precision)


def evaluate_detections(
    detections: Sequence[Detection],
    ground_truth: Mapping[str, GroundTruth],
    classes: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
    eleven_point: bool = False,
    ilsvrc_small: bool = False,
    use_difficult: bool = False,
) -> dict[str, ClassResult]:
    """Per-class results for `classes` (default: every class in the ground truth, sorted). Detections
    on images that are not in `ground_truth` are not scored (a warning says how many): as in `googlenet
    detect evaluate`, not as false positives, which would lower every class's AP for rows nothing can
    match (the VOC devkit refuses an unknown image id)."""
    if not 0 < iou_threshold <= 1:
        raise ConfigError(f"IoU threshold: must be in (0, 1], got {iou_threshold}")
    outside = sorted({d.image for d in detections if d.image not in ground_truth})
    if outside:
        detections = [d for d in detections if d.image in ground_truth]
        logger.warning(
            "%d image id(s) of the detections are not in the ground truth, e.g. %r: their detections are not scored",
            len(outside),
            outside[0],
        )
    if classes is None:
        classes = sorted({name for truth in ground_truth.values() for name in truth.labels})
    return {
        name: evaluate_class(
            name,
            detections,
            ground_truth,
            iou_threshold,
            eleven_point,
            ilsvrc_small,
            use_difficult=use_difficult,
        )
        for name in classes
    }


def mean_ap(results: Mapping[str, ClassResult]) -> float:
    """Mean of the per-class APs over classes with at least one positive."""
    values = [r.ap for r in results.values() if r.positives > 0]
    return float(np.mean(values)) if values else float("nan")
