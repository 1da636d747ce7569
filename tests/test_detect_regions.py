"""Region warping with context, proposal labelling and balanced batches (R-CNN's fine-tuning data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from googlenet.detect.metrics import GroundTruth
from googlenet.detect.regions import (
    BACKGROUND,
    MEAN_FILL,
    context_box,
    label_regions,
    warp_region,
)
from googlenet.errors import ConfigError


def test_context_box_keeps_context_pixels_after_warping() -> None:
    # a 100 x 50 box warped to 224 with 16 pixels of context: enlarged by 224/192 around its centre
    left, top, right, bottom = context_box((10, 20, 109, 69), 224, 16)
    assert (right - left) == pytest.approx(100 * 224 / 192) and (bottom - top) == pytest.approx(
        50 * 224 / 192
    )
    assert (left + right) / 2 == pytest.approx(60) and (top + bottom) / 2 == pytest.approx(45)
    assert context_box((0, 0, 9, 9), 224, 0) == (0, 0, 10, 10)
    with pytest.raises(ConfigError, match="context"):
        context_box((0, 0, 9, 9), 32, 16)


def test_warp_region_puts_the_object_inside_and_fills_outside_with_the_mean() -> None:
    image = torch.zeros(3, 120, 160, dtype=torch.uint8)
    image[:, 40:80, 60:100] = 255  # a white 40 x 40 object at pixels 60..99 x 40..79
    region = warp_region(image, (60, 40, 99, 79), size=64, context=8)
    assert region.shape == (3, 64, 64) and region.dtype == torch.uint8
    assert (region[:, 10:54, 10:54] == 255).all()  # the object fills the centre 48 x 48 (+- a pixel of blur)
    assert (region[:, :6, :] == 0).all() and (region[:, :, -6:] == 0).all()  # context: the black image
    corner = warp_region(image, (0, 0, 19, 19), size=64, context=16)  # context reaches past the border
    assert corner[:, 0, 0].tolist() == list(MEAN_FILL)
    assert (corner[:, 40, 40] == 0).all()


def test_labels_follow_the_best_overlap() -> None:
    truth = GroundTruth()
    truth.add("cat", (0, 0, 9, 9))
    truth.add("dog", (50, 50, 69, 69))
    proposals = np.array(
        [[0, 0, 9, 9], [1, 1, 10, 10], [5, 0, 14, 9], [50, 50, 68, 69], [100, 100, 110, 110.0]]
    )
    regions = label_regions("img", proposals, truth, ["cat", "dog"])
    assert [r.label for r in regions] == [1, 2, 1, 1, BACKGROUND, 2, BACKGROUND]  # 2 ground truth first
    assert regions[3].iou == pytest.approx(81 / 119) and regions[4].iou == pytest.approx(1 / 3)
    assert len(label_regions("img", proposals, truth, ["cat", "dog"], include_ground_truth=False)) == 5
    with pytest.raises(ConfigError, match="dog"):
        label_regions("img", proposals, truth, ["cat"])
