"""Selective-search proposals and their recall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from extras import require
from googlenet.cli import main
from googlenet.detect.metrics import GroundTruth
from googlenet.detect.proposals import ProposalSetting, proposal_recall, selective_search
from googlenet.errors import ConfigError

require("cv2", reason="opencv-contrib is the [detect] extra")


def _scene() -> Image.Image:
    image = Image.new("RGB", (160, 120), (40, 90, 40))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 69, 79), fill=(220, 30, 30))  # a red box: pixels 20..69 x 20..79
    draw.ellipse((100, 40, 139, 99), fill=(30, 30, 220))
    return image


def test_selective_search_finds_the_objects_and_the_paper_setting_halves_the_count() -> None:
    image = _scene()
    boxes = selective_search(image, ProposalSetting("fast"))
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 5
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 159).all() and (boxes[:, 3] <= 119).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    truth = {"scene": GroundTruth()}
    truth["scene"].add("box", (20, 20, 69, 79))
    truth["scene"].add("disc", (100, 40, 139, 99))
    recall = proposal_recall({"scene": boxes}, truth)
    assert recall.recall_70 == 1.0 and recall.mabo > 0.9  # plain shapes on a plain background
    doubled = selective_search(image, ProposalSetting("fast", superpixel_scale=2.0))
    assert len(doubled) < len(boxes)
    shrunk = selective_search(image, ProposalSetting("fast", max_side=80))  # boxes come back in full size
    assert shrunk[:, 2].max() > 100


def test_recall_by_hand() -> None:
    truth = {"a": GroundTruth(), "b": GroundTruth()}
    truth["a"].add("x", (0, 0, 9, 9))
    truth["a"].add("y", (50, 50, 59, 59), difficult=True)  # not counted
    truth["b"].add("x", (0, 0, 9, 9))
    proposals = {"a": np.array([[0, 0, 9, 9.0]]), "b": np.array([[5, 0, 14, 9.0]])}  # IoU 1 and 1/3
    recall = proposal_recall(proposals, truth, seconds=3.0)
    assert recall.objects == 2 and recall.recall_50 == 0.5 and recall.recall_70 == 0.5
    assert recall.mabo == pytest.approx((1 + 1 / 3) / 2)
    assert recall.proposals_per_image == 1 and recall.seconds_per_image == 1.5
    with pytest.raises(ConfigError, match="mode"):
        ProposalSetting("slow")


def test_detect_proposals_command(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_data / "voc-mini"
    args = ["detect", "proposals", "--annotations", str(root), "--limit", "2", "--max-side", "200"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and [r["setting"] for r in report["settings"]] == [
        "fast",
        "fast, superpixels x2",
    ]
    for row in report["settings"]:
        assert 0 <= row["recall_70"] <= row["recall_50"] <= 1 and row["proposals_per_image"] > 0
    assert main([*args, "--limit", "0"]) == 1


def test_detect_predict_writes_detections_that_evaluate_reads(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    import torch

    import googlenet
    from googlenet.detect.detector import BACKGROUND_NAME
    from googlenet.detect.voc import read_detections
    from googlenet.model.weights import default_meta

    root = shared_data / "voc-mini"
    classes = [BACKGROUND_NAME, "person", "dog"]
    torch.manual_seed(0)
    model = googlenet.build_model("bn", num_classes=3, aux_logits=False)
    googlenet.save_checkpoint(tmp_path / "r.pt", model, default_meta(model, 64) | {"class_names": classes})
    out = tmp_path / "dets.csv"
    args = ["detect", "predict", "--checkpoint", str(tmp_path / "r.pt"), "--annotations", str(root),
            "--limit", "2", "--max-side", "120", "--score-threshold", "0.0", "--max-per-image", "5",
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    said = capsys.readouterr().out
    detections = read_detections(out)
    assert 0 < len(detections) <= 10 and {d.label for d in detections} <= {"person", "dog"}
    found = len({d.label for d in detections})  # the classes detected, of the model's (it said 2 of 2)
    assert f"{len(detections)} detections of {found} of the 2 classes on 2 images" in said
    assert main(["detect", "evaluate", "--annotations", str(root), "--detections", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["detections"] == len(detections)
    # a classifier without a background class is refused in one line
    plain = googlenet.build_model("bn", num_classes=2, aux_logits=False)
    googlenet.save_checkpoint(tmp_path / "p.pt", plain, default_meta(plain, 64) | {"class_names": ["a", "b"]})
    assert main([*args[:3], str(tmp_path / "p.pt"), *args[4:]]) == 1
    assert "background" in capsys.readouterr().err
