"""Region proposals (section 8): selective search through opencv-contrib, and their recall.

Section 8 used R-CNN's proposals, selective search, with the superpixel size "increased by 2x", which
halves the proposals and, combined with MultiBox, raised coverage from 92% to 93%. OpenCV's
`ximgproc.segmentation` implements Uijlings et al.'s selective search; its graph-based (Felzenszwalb)
segmentation grows superpixels with the parameter k, so the paper's change is `superpixel_scale=2`:
base_k and inc_k doubled. opencv-contrib is an optional extra (`pip install "googlenet[detect]"`).

OpenCV's selective search is not R-CNN's MATLAB one: its fast mode segments with k = 150, 300 and 450
(base_k + 0, 1, 2 x inc_k) where R-CNN's uses k = 50 and 100 (minimum size = k), and R-CNN then drops
boxes narrower or shorter than 20 pixels, which OpenCV does not. So our proposal counts, and the
"superpixels x2" setting built on them, compare with each other, not with R-CNN's or the paper's.
MultiBox proposals (section 8's other source) are in `googlenet.detect.multibox`.

Boxes are (xmin, ymin, xmax, ymax) in inclusive 0-based pixel coordinates of the original image (VOC's
annotations are 1-based; `detect.training` shifts them).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from googlenet.detect.metrics import GroundTruth, pixel_iou
from googlenet.errors import ConfigError, DataError, check_values
from googlenet.signals import held_import

logger = logging.getLogger("googlenet.detect")

MODES: tuple[str, ...] = ("fast", "quality")
# OpenCV's defaults for both strategies (base_k 150, inc_k 150, sigma 0.8).
BASE_K, INC_K, SIGMA = 150, 150, 0.8


@dataclass(frozen=True)
class ProposalSetting:
    """One selective-search configuration; `superpixel_scale=2` is the paper's (section 8)."""

    mode: str = "fast"
    superpixel_scale: float = 1.0
    max_side: int = 500  # images are shrunk so their longer side is at most this, boxes scaled back

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"selective search mode: one of {', '.join(MODES)}, got {self.mode!r}")
        check_values(
            (self.superpixel_scale > 0, "superpixel scale", self.superpixel_scale, "> 0"),
            (self.max_side >= 32, "--max-side", self.max_side, "at least 32"),
        )

    @property
    def name(self) -> str:
        return f"{self.mode}" + (
            "" if self.superpixel_scale == 1 else f", superpixels x{self.superpixel_scale:g}"
        )


def _cv2() -> Any:
    try:
        cv2 = held_import("cv2")
    except ImportError:
        raise ConfigError('selective search needs opencv-contrib: pip install "googlenet[detect]"') from None
    if not hasattr(cv2, "ximgproc"):
        raise ConfigError('OpenCV lacks the contrib modules (ximgproc): pip install "googlenet[detect]"')
    return cv2


def selective_search(
    image: Image.Image | np.ndarray, setting: ProposalSetting = ProposalSetting()
) -> np.ndarray:
    """Proposals for one RGB image: an N x 4 float array of inclusive boxes, in OpenCV's order."""
    cv2 = _cv2()
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    height, width = rgb.shape[:2]
    scale = min(1.0, setting.max_side / max(height, width))
    if scale < 1.0:
        rgb = cv2.resize(
            rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV works in BGR
    k = round(BASE_K * setting.superpixel_scale)
    inc = round(INC_K * setting.superpixel_scale)
    if setting.mode == "fast":
        search.switchToSelectiveSearchFast(k, inc, SIGMA)
    else:
        search.switchToSelectiveSearchQuality(k, inc, SIGMA)
    rects = np.asarray(search.process(), dtype=np.float64).reshape(-1, 4)  # x, y, w, h
    boxes = (
        np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]], 1) / scale
    )
    boxes[:, 2:] -= 1  # exclusive end -> inclusive last pixel
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height - 1)
    return boxes


@dataclass
class Recall:
    """Proposal quality over a set of images (R-CNN's and the paper's "coverage")."""

    objects: int
    recall_50: float  # fraction of objects with a proposal at IoU >= 0.5
    recall_70: float
    mabo: float  # mean over objects of the best IoU any proposal reaches
    proposals_per_image: float
    seconds_per_image: float


def percent(fraction: float) -> str:
    """A recall as "61.3%", or "-" where there was nothing to recall (no object that is not difficult)."""
    return f"{100 * fraction:.1f}%" if math.isfinite(fraction) else "-"


def mabo(value: float) -> str:
    """A mean best overlap as "0.712", or "-" where there was nothing to overlap."""
    return f"{value:.3f}" if math.isfinite(value) else "-"


def proposal_recall(
    proposals: Mapping[str, np.ndarray], truth: Mapping[str, GroundTruth], seconds: float = 0.0
) -> Recall:
    """Recall at IoU 0.5 and 0.7 and mean best overlap of `proposals` against every (non-difficult) object."""
    best: list[float] = []
    for image, objects in truth.items():
        boxes = [b for b, hard in zip(objects.boxes, objects.difficult, strict=True) if not hard]
        if not boxes:
            continue
        found = proposals.get(image, np.zeros((0, 4)))
        if len(found) == 0:
            best.extend([0.0] * len(boxes))
            continue
        overlaps = pixel_iou(
            torch.tensor(boxes, dtype=torch.float64), torch.from_numpy(np.asarray(found, dtype=np.float64))
        )
        best.extend(overlaps.max(dim=1).values.tolist())
    values = np.asarray(best)
    images = max(1, len(proposals))
    return Recall(
        objects=len(values),
        recall_50=float((values >= 0.5).mean()) if len(values) else float("nan"),
        recall_70=float((values >= 0.7).mean()) if len(values) else float("nan"),
        mabo=float(values.mean()) if len(values) else float("nan"),
        proposals_per_image=sum(len(p) for p in proposals.values()) / images,
        seconds_per_image=seconds / images,
    )


def propose_all(
    images: Sequence[tuple[str, str]],
    setting: ProposalSetting,
    progress: bool = False,
    skipped: list[tuple[str, str]] | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """Selective search on (image id, path) pairs; returns the proposals and the seconds spent.

    An image that cannot be decoded is a `DataError`, or, when a `skipped` list is given, logged once,
    appended to it as (path, message) and left out of the proposals.
    """
    from tqdm import tqdm

    from googlenet.data.decode import load_image

    out: dict[str, np.ndarray] = {}
    spent = 0.0
    for image_id, path in tqdm(images, unit="img", disable=not progress, desc=setting.name):
        try:
            image = load_image(path)
        except DataError as exc:
            if skipped is None:
                raise
            if all(path != seen for seen, _ in skipped):
                logger.warning("skipping a bad image: %s", exc)
                skipped.append((path, str(exc)))
            continue
        start = time.perf_counter()
        out[image_id] = selective_search(image, setting)
        spent += time.perf_counter() - start
    return out, spent
