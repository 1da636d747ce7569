"""Regions for the region classifier (section 8, after R-CNN): warping with context, labels.

- `warp_region`: R-CNN's "warp with context padding": the proposal is enlarged around its centre so
  that, once warped (anisotropically) to size x size, `context` pixels of surrounding image lie on
  every side of the original box (16 at 227 in R-CNN); parts outside the image are filled with the
  mean colour, which is zero after normalisation.
- `label_regions`: a proposal is a positive of class c when its best IoU with a ground-truth box is >= 0.5
  and that box is of class c, background (label 0) otherwise, the rule the issue sets for fine-tuning
  (R-CNN's fine-tuning threshold); ground-truth boxes themselves are added as positives.
- Batches with a fixed share of positives (R-CNN: 32 of 128) are the training engine's
  (`googlenet.train.sampling.balanced_permutation`, switched on by `detect train`).

The region classifier itself is trained by `detect.training` / `detect.pipeline` and scored by
`detect.detector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from googlenet.detect.metrics import GroundTruth, pixel_iou
from googlenet.errors import ConfigError

BACKGROUND = 0
# torchvision/ImageNet mean colour as uint8 (0.485, 0.456, 0.406 x 255): zero after normalisation
MEAN_FILL: tuple[int, int, int] = (124, 116, 104)


def scaled_context(context: int, size: int) -> int:
    """R-CNN's context (pixels at its 227-pixel input) scaled to a `size`-pixel input."""
    return round(context * size / 227)


def max_context(size: int) -> int:
    """The largest context (pixels at 227) a `size`-pixel input takes: scaled, it must stay under half
    the input, so that some of the box is left between the context on either side."""
    context = 227 // 2  # at any size, 114 scales to at least half the input
    while context > 0 and 2 * scaled_context(context, size) >= size:
        context -= 1
    return context


def check_context(context: int, size: int, name: str = "--context") -> None:
    """`ConfigError` naming `name` and the range of contexts a `size`-pixel input takes; the commands
    call it before computing any proposal."""
    limit = max_context(size)
    if not 0 <= context <= limit:
        why = "pixels of context at R-CNN's 227-pixel input"
        if context > limit:
            why += (f", scaled by {size}/227 to {scaled_context(context, size)} here, which must stay under "
                    f"half of {size} to leave some of the box")  # fmt: skip
        raise ConfigError(f"{name}: must be in [0, {limit}] for a {size}-pixel input, got {context} ({why})")


def context_box(box: Sequence[float], size: int, context: int) -> tuple[float, float, float, float]:
    """The box enlarged around its centre so that, warped to `size`, it keeps `context` pixels per side."""
    if not 0 <= 2 * context < size:
        raise ConfigError(f"context: must be in [0, size/2), got {context} for size {size}")
    x1, y1, x2, y2 = (float(v) for v in box)
    scale = size / (size - 2 * context)
    cx, cy = (x1 + x2 + 1) / 2, (y1 + y2 + 1) / 2  # centre of the inclusive box's pixel extent
    half_w, half_h = (x2 - x1 + 1) * scale / 2, (y2 - y1 + 1) * scale / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h  # exclusive-end coordinates


def warp_region(
    image: Tensor, box: Sequence[float], size: int = 224, context: int = 16, fill: Sequence[int] = MEAN_FILL
) -> Tensor:
    """3 x H x W uint8 image -> 3 x size x size uint8 region, warped with context (module docstring)."""
    height, width = image.shape[-2:]
    left, top, right, bottom = context_box(box, size, context)
    x0, y0 = int(np.floor(left)), int(np.floor(top))
    x1, y1 = max(x0 + 1, int(np.ceil(right))), max(y0 + 1, int(np.ceil(bottom)))
    pad = [max(0, -x0), max(0, -y0), max(0, x1 - width), max(0, y1 - height)]  # left, top, right, bottom
    if any(pad):
        padded = torch.empty(
            (image.shape[0], height + pad[1] + pad[3], width + pad[0] + pad[2]), dtype=image.dtype
        )
        padded[:] = torch.tensor(list(fill), dtype=image.dtype).view(-1, 1, 1)
        padded[:, pad[1] : pad[1] + height, pad[0] : pad[0] + width] = image
        image, x0, y0, x1, y1 = padded, x0 + pad[0], y0 + pad[1], x1 + pad[0], y1 + pad[1]
    return F.resized_crop(image, y0, x0, y1 - y0, x1 - x0, [size, size], antialias=True)


def classifier_region(
    image: Tensor, box: Sequence[float], input_size: int, resize_size: int, context: int = 16
) -> Tensor:
    """A region as a classifier checkpoint was validated on it: warped with context (`context` pixels
    at R-CNN's 227, scaled) to `input_size`, as the region set stores it, then through the checkpoint's
    evaluation transform (resized to `resize_size`, centre `input_size` square).

    `detect train`'s checkpoints have resize_size == input_size, so this is the warp itself, as R-CNN
    feeds its network. A checkpoint trained with the 256/224 resize-and-crop (`detect train` before
    2026-12-06) was validated on regions zoomed by that much; shown the bare warp it lost 7-13 points of
    mAP on the built-in scenes (docs/detection.md), so it is shown them the way it was validated.
    """
    warped = warp_region(image, box, input_size, scaled_context(context, input_size))
    if resize_size == input_size:
        return warped
    zoomed = F.resize(warped, [resize_size, resize_size], antialias=True)
    return F.center_crop(zoomed, [input_size, input_size])


@dataclass(frozen=True)
class Region:
    """One labelled region of an image: its box (0-based pixels), its label and its best IoU with a
    ground-truth box."""

    image: str
    box: tuple[float, float, float, float]
    label: int  # 0 = background, 1..C = classes[label - 1]
    iou: float  # best IoU with a ground-truth box


def label_regions(
    image: str,
    proposals: np.ndarray,
    truth: GroundTruth,
    classes: Sequence[str],
    fg_iou: float = 0.5,
    include_ground_truth: bool = True,
) -> list[Region]:
    """Label every proposal of one image (and, by default, add its ground-truth boxes as positives)."""
    index = {name: i + 1 for i, name in enumerate(classes)}
    unknown = sorted(set(truth.labels) - set(index))
    if unknown:
        raise ConfigError(f"{image}: ground-truth class(es) {unknown} are not in the class list")
    regions: list[Region] = []
    gt = torch.tensor(truth.boxes, dtype=torch.float64).reshape(-1, 4)
    if include_ground_truth:
        regions += [Region(image, b, index[n], 1.0) for b, n in zip(truth.boxes, truth.labels, strict=True)]
    if len(proposals) == 0:
        return regions
    boxes = np.asarray(proposals, dtype=np.float64).reshape(-1, 4)
    if len(gt) == 0:
        return regions + [Region(image, (b[0], b[1], b[2], b[3]), BACKGROUND, 0.0) for b in boxes.tolist()]
    overlaps = pixel_iou(torch.from_numpy(boxes), gt)
    best, which = overlaps.max(dim=1)
    for b, iou, k in zip(boxes.tolist(), best.tolist(), which.tolist(), strict=True):
        label = index[truth.labels[k]] if iou >= fg_iou else BACKGROUND
        regions.append(Region(image, (b[0], b[1], b[2], b[3]), label, float(iou)))
    return regions
