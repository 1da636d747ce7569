"""Real images from ../shared/data: the data layer and the training engine on cifar10-mini.

Skipped on a user's fresh clone without ../shared; CI sets GOOGLENET_REQUIRE_SHARED so they must run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from googlenet.cli import main
from googlenet.data.datasets import load_image_folder
from googlenet.data.transforms import AugmentConfig, build_eval_transform, build_train_transform


def test_cifar10_mini_loads_through_the_training_pipeline(shared_data: Path) -> None:
    root = shared_data / "cifar10-mini"
    train, val = load_image_folder(root, build_train_transform(64, AugmentConfig()), build_eval_transform(64))
    assert len(train.classes) == 10 and train.classes == val.classes
    assert (len(train), len(val)) == (2000, 500)
    image, target = train[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= target < 10
    image, _ = val[len(val) - 1]
    assert image.shape == (3, 64, 64)
    assert abs(float(image.mean())) < 3  # normalised, not raw 0..255


@pytest.mark.slow
def test_train_end_to_end_on_cifar10_mini(shared_data: Path, tmp_path: Path, capsys, load_script) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train", "--data-path", str(shared_data / "cifar10-mini"), "--variant", "bn",
            "--input-size", "64", "--epochs", "4", "-b", "32", "--lr", "0.01", "-j", "0",
            "--lr-warmup-epochs", "1", "--lr-scheduler", "cosine", "--clip-grad-norm", "2",
            "--output-dir", str(out), "--seed", "0", "--no-progress", "--json",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["val_top1_raw"] > 15.0  # chance is 10%
    for name in ("config.yaml", "metrics.csv", "final.pt", "last.pt", "train.log"):
        assert (out / name).is_file(), name
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(out / "final.pt"),
            "--data-path",
            str(shared_data / "cifar10-mini"),
            "--crops",
            "10",
            "--limit",
            "50",
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 50 and report["crops"] == 10
    # Issue 5: bf16 inference keeps top-1 agreement >= 99% with fp32 on real images, every bf16 backend
    # (eager bf16 and, with the [fast] extra, OpenVINO), on this trained model's 500 validation images.
    found = load_script("bf16_agreement").agreements(str(out / "final.pt"), str(shared_data / "cifar10-mini"))
    assert found["images"] == 500 and "eager" in found["backends"]
    for backend, figures in found["backends"].items():
        assert figures["top1_agreement"] >= 0.99, (backend, figures)
