"""Scoring proposals with region classifiers (section 8's inference): warp, classify, NMS per class.

A region classifier is any of our classification checkpoints with a class named `background`
(`BACKGROUND_NAME`, anywhere in its class list) besides the detection classes; `googlenet detect train`
makes them. Several form an ensemble whose softmax outputs are averaged (the paper used 6). For each
image: proposals -> regions warped with context as the checkpoint was validated on them
(`regions.classifier_region`) -> the members (through
`googlenet.optimize` when loaded by `evaluate.models.load_ensemble`) -> per-class scores -> score
threshold -> per-class non-maximum suppression (`torchvision.ops.batched_nms`, IoU 0.3 as R-CNN) -> the
best `max_per_image`. No bounding-box regression, as in the paper (`detect.boxreg` adds it on request).

Beyond the paper, off by default: `SharedFeatures` scores every proposal from one pass of the trunk
over the whole image (RoIAlign on inception 4e's map, then 4e's pooling, 5a, 5b and the classifier per
region, as Fast R-CNN shares computation), trading some accuracy, since the classifier was fine-tuned on
warped regions, for speed.

Coordinates: proposals are 0-based pixel indices of the image; detections are written in VOC's
1-based convention (`DetectorConfig.pixel_offset`), the convention of the annotations they are
evaluated against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms, roi_align
from torchvision.transforms.v2 import functional as F

from googlenet.data.crops import normalize, to_uint8_tensor
from googlenet.detect.metrics import Detection
from googlenet.detect.regions import classifier_region, context_box, scaled_context
from googlenet.errors import CheckpointError, check_values
from googlenet.evaluate.models import Ensemble
from googlenet.evaluate.protocol import check_finite
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.weights import IMAGENET_MEAN, IMAGENET_STD

BACKGROUND_NAME = "background"


@dataclass(frozen=True)
class DetectorConfig:
    """How proposals are scored and kept (module docstring); context and NMS IoU are R-CNN's. `ConfigError`
    for a value out of range."""

    context: int = 16  # R-CNN: 16 pixels of context at 227; scaled with the input size below
    score_threshold: float = 0.05
    nms_iou: float = 0.3  # R-CNN's per-class NMS threshold
    max_per_image: int = 100
    batch_size: int = 64
    pixel_offset: float = 1.0  # added to the 0-based proposal boxes: VOC's 1-based coordinates

    def __post_init__(self) -> None:
        check_values(
            (0 <= self.score_threshold < 1, "--score-threshold", self.score_threshold, "in [0, 1)"),
            (0 < self.nms_iou <= 1, "--nms-iou", self.nms_iou, "in (0, 1]"),
            (self.max_per_image >= 1, "--max-per-image", self.max_per_image, "at least 1"),
            (self.batch_size >= 1, "batch size", self.batch_size, "at least 1"),
            (self.context >= 0, "--context", self.context, ">= 0"),
        )


def detection_classes(ensemble: Ensemble) -> tuple[list[str], int]:
    """The detection classes of a region classifier (all but `background`) and background's index."""
    return split_background(ensemble.class_names, ensemble.sources[0])


def split_background(class_names: Sequence[str], source: object) -> tuple[list[str], int]:
    """`detection_classes` for a class list read from `source` (named in the error)."""
    names = list(class_names)
    if BACKGROUND_NAME not in names:
        raise CheckpointError(
            f"{source}: not a region classifier: no class named {BACKGROUND_NAME!r} "
            f"(train one with googlenet detect train)"
        )
    index = names.index(BACKGROUND_NAME)
    return names[:index] + names[index + 1 :], index


def score_regions(
    ensemble: Ensemble, image: Image.Image, proposals: np.ndarray, config: DetectorConfig
) -> torch.Tensor:
    """Softmax probabilities averaged over the members: len(proposals) x (1 + classes)."""
    pixels = to_uint8_tensor(image)
    size, resize = ensemble.input_size, ensemble.resize_size
    probs = torch.zeros(len(proposals), ensemble.num_classes)
    with torch.inference_mode():
        for start in range(0, len(proposals), config.batch_size):
            chunk = proposals[start : start + config.batch_size]
            regions = torch.stack(
                [classifier_region(pixels, box, size, resize, config.context) for box in chunk]
            )
            for member in ensemble.members:
                logits = member.forward(normalize(regions, member.mean, member.std))
                probs[start : start + len(chunk)] += check_finite(
                    member, torch.softmax(logits.float().cpu(), dim=-1)
                )
    return probs / len(ensemble.members)


def detect(
    ensemble: Ensemble,
    image_id: str,
    image: Image.Image,
    proposals: np.ndarray,
    config: DetectorConfig,
    scorer: Callable[[Image.Image, np.ndarray], torch.Tensor] | None = None,
) -> list[Detection]:
    """Detections of one image (see the module docstring)."""
    classes, background = detection_classes(ensemble)
    if len(proposals) == 0:
        return []
    boxes = torch.as_tensor(np.asarray(proposals, dtype=np.float64)).reshape(-1, 4)
    probs = (
        scorer(image, boxes.numpy())
        if scorer is not None
        else score_regions(ensemble, image, boxes.numpy(), config)
    )
    probs = torch.cat([probs[:, :background], probs[:, background + 1 :]], dim=1)
    region, label = torch.nonzero(probs > config.score_threshold, as_tuple=True)
    if len(region) == 0:
        return []
    scores = probs[region, label]
    # NMS within each class, on the pixel extent of the inclusive boxes (+1, as R-CNN's nms.m, the
    # region labels, box regression and the evaluator measure overlap)
    extent = boxes[region].float() + torch.tensor([0.0, 0.0, 1.0, 1.0])
    keep = batched_nms(extent, scores, label, config.nms_iou)
    keep = keep[scores[keep].argsort(descending=True)][: config.max_per_image]
    out = []
    for k in keep.tolist():
        x1, y1, x2, y2 = (float(v) + config.pixel_offset for v in boxes[region[k]])
        out.append(Detection(image_id, classes[int(label[k])], float(scores[k]), (x1, y1, x2, y2)))
    return out


def detect_images(
    ensemble: Ensemble,
    images: Sequence[tuple[str, str]],
    proposals: dict[str, np.ndarray],
    config: DetectorConfig,
    skip: bool = False,
    scorer: Callable[[Image.Image, np.ndarray], torch.Tensor] | None = None,
    progress: bool = False,
) -> list[Detection]:
    """Detections for (image id, path) pairs whose proposals are given (`scorer`: see `detect`).

    `skip=True` leaves out the images without proposals (those `propose_all` skipped as undecodable).
    """
    from googlenet.data.decode import load_image

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), desc="detecting", unit="img", leave=False)
    out: list[Detection] = []
    for image_id, path in images:
        if bar is not None:
            bar.update(1)
        if skip and image_id not in proposals:
            continue
        found = proposals.get(image_id, np.zeros((0, 4)))
        out += detect(ensemble, image_id, load_image(path), found, config, scorer)
    if bar is not None:
        bar.close()
    return out


class SharedFeatures:
    """Scores proposals from one trunk pass per image (beyond the paper; see the module docstring).

    The image is resized so that its longer side is `image_side` (default twice the classifier's input,
    so that a typical object keeps roughly the scale the classifier saw), run through the trunk to
    inception 4e (stride 16), and each proposal, enlarged by the same context as a warped region, is
    pooled with `torchvision.ops.roi_align` to the 4e map size the classifier's own input gives
    (input / 16), then passed through maxpool 4, 5a, 5b, average pooling and the classifier. One eager
    model per member; the members' softmax outputs are averaged.
    """

    def __init__(self, models: Sequence[GoogLeNet], metas: Sequence[dict[str, Any]], config: DetectorConfig,
                 image_side: int | None = None) -> None:  # fmt: skip
        self.models = [m.eval() for m in models]
        self.metas = list(metas)
        self.input_size = int(self.metas[0].get("input_size", 224))
        self.image_side = image_side or 2 * self.input_size
        self.context = scaled_context(config.context, self.input_size)
        self.grid = max(1, self.input_size // 16)

    @torch.inference_mode()
    def __call__(self, image: Image.Image, proposals: np.ndarray) -> torch.Tensor:
        pixels = to_uint8_tensor(image)
        height, width = pixels.shape[-2:]
        scale = self.image_side / max(height, width)
        size = [max(16, round(height * scale)), max(16, round(width * scale))]
        resized = F.resize(pixels, size, antialias=True)
        rois = torch.tensor(
            [[0.0, *context_box(box, self.input_size, self.context)] for box in proposals],
            dtype=torch.float32,
        )
        rois[:, 1:] *= torch.tensor([size[1] / width, size[0] / height] * 2)
        probs = torch.zeros(len(proposals), self.models[0].config.num_classes)
        for model, meta in zip(self.models, self.metas, strict=True):
            x = normalize(
                resized.unsqueeze(0), meta.get("mean", IMAGENET_MEAN), meta.get("std", IMAGENET_STD)
            )
            feature = model.forward_stages(x, ["inception4e"])["inception4e"]
            pooled = roi_align(feature, rois, self.grid, spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
            y = model.inception5b(model.inception5a(model.maxpool4(pooled)))
            logits = model.forward_head(torch.flatten(model.avgpool(y), 1))
            probs += torch.softmax(logits.float(), dim=-1)
        return probs / len(self.models)
