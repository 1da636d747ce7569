"""Scoring proposals with region classifiers (section 8's inference): warp, classify, NMS per class.

A region classifier is any of our classification checkpoints whose first class is `background`
(`BACKGROUND_NAME`) and whose other classes are the detection classes; several form an ensemble whose
softmax outputs are averaged (the paper used 6). For each image: proposals -> regions warped with
context (`regions.warp_region`) -> the members (through `googlenet.optimize` when loaded by
`evaluate.models.load_ensemble`) -> per-class scores -> score threshold -> per-class non-maximum
suppression (`torchvision.ops.batched_nms`, IoU 0.3 as R-CNN) -> the best `max_per_image`.
No bounding-box regression, as in the paper.

Training the region classifier is not implemented yet; `detect predict` needs a checkpoint trained
elsewhere with the background-first class list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms

from googlenet.data.crops import normalize, to_uint8_tensor
from googlenet.detect.metrics import Detection
from googlenet.detect.regions import warp_region
from googlenet.errors import CheckpointError, ConfigError
from googlenet.evaluate.models import Ensemble

BACKGROUND_NAME = "background"


@dataclass(frozen=True)
class DetectorConfig:
    context: int = 16  # R-CNN: 16 pixels of context at 227; scaled with the input size below
    score_threshold: float = 0.05
    nms_iou: float = 0.3  # R-CNN's per-class NMS threshold
    max_per_image: int = 100
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.score_threshold < 1 or not 0 < self.nms_iou <= 1:
            raise ConfigError("score threshold must be in [0, 1) and NMS IoU in (0, 1]")
        if self.max_per_image < 1 or self.batch_size < 1 or self.context < 0:
            raise ConfigError("max per image and batch size must be >= 1, context >= 0")


def detection_classes(ensemble: Ensemble) -> list[str]:
    """The detection classes of a region classifier (its classes after `background`)."""
    names = ensemble.class_names
    if not names or names[0] != BACKGROUND_NAME:
        raise CheckpointError(
            f"{ensemble.sources[0]}: a region classifier's first class must be {BACKGROUND_NAME!r}, "
            f"got {names[0] if names else 'none'!r}"
        )
    return list(names[1:])


def score_regions(
    ensemble: Ensemble, image: Image.Image, proposals: np.ndarray, config: DetectorConfig
) -> torch.Tensor:
    """Softmax probabilities averaged over the members: len(proposals) x (1 + classes)."""
    pixels = to_uint8_tensor(image)
    size = ensemble.input_size
    context = round(config.context * size / 227)
    probs = torch.zeros(len(proposals), ensemble.num_classes)
    with torch.inference_mode():
        for start in range(0, len(proposals), config.batch_size):
            chunk = proposals[start : start + config.batch_size]
            regions = torch.stack([warp_region(pixels, box, size, context) for box in chunk])
            for member in ensemble.members:
                logits = member.forward(normalize(regions, member.mean, member.std))
                probs[start : start + len(chunk)] += torch.softmax(logits.float().cpu(), dim=-1)
    return probs / len(ensemble.members)


def detect(
    ensemble: Ensemble, image_id: str, image: Image.Image, proposals: np.ndarray, config: DetectorConfig
) -> list[Detection]:
    """Detections of one image (see the module docstring)."""
    classes = detection_classes(ensemble)
    if len(proposals) == 0:
        return []
    probs = score_regions(ensemble, image, np.asarray(proposals, dtype=np.float64), config)[:, 1:]
    boxes = torch.as_tensor(np.asarray(proposals, dtype=np.float64))
    region, label = torch.nonzero(probs > config.score_threshold, as_tuple=True)
    if len(region) == 0:
        return []
    scores = probs[region, label]
    keep = batched_nms(boxes[region].float(), scores, label, config.nms_iou)  # NMS within each class
    keep = keep[scores[keep].argsort(descending=True)][: config.max_per_image]
    out = []
    for k in keep.tolist():
        x1, y1, x2, y2 = (float(v) for v in boxes[region[k]])
        out.append(Detection(image_id, classes[int(label[k])], float(scores[k]), (x1, y1, x2, y2)))
    return out


def detect_images(
    ensemble: Ensemble,
    images: Sequence[tuple[str, str]],
    proposals: dict[str, np.ndarray],
    config: DetectorConfig,
    skip: bool = False,
) -> list[Detection]:
    """Detections for (image id, path) pairs whose proposals are given.

    `skip=True` leaves out the images without proposals (those `propose_all` skipped as undecodable).
    """
    from googlenet.data.decode import load_image

    out: list[Detection] = []
    for image_id, path in images:
        if skip and image_id not in proposals:
            continue
        out += detect(ensemble, image_id, load_image(path), proposals.get(image_id, np.zeros((0, 4))), config)
    return out
