"""The built-in dataset: deterministic bytes, cached and atomic on disk, and scenes whose boxes are
tight, inside the image and spread over the promised range of sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from googlenet.data import synthetic
from googlenet.data.datasets import load_image_folder
from googlenet.data.synthetic import CLASSES, ObjectSpec, ensure_builtin, render_scene
from googlenet.errors import ConfigError

TINY: dict[str, Any] = {"image_size": 48, "train_per_class": 2, "val_per_class": 1}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_at_least_ten_distinct_classes() -> None:
    assert len(CLASSES) >= 10 and len(set(CLASSES)) == len(CLASSES)
    assert tuple(synthetic.SHAPES) == CLASSES


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = ensure_builtin(tmp_path / "a", seed=3, **TINY)
    second = ensure_builtin(tmp_path / "b", seed=3, **TINY)
    assert first.name == second.name
    files = _files(first)
    assert files == _files(second)
    assert len([name for name in files if name.endswith(".jpg")]) == len(CLASSES) * 3
    other = ensure_builtin(tmp_path / "a", seed=4, **TINY)
    assert other != first
    assert _files(other)["train/disc/00000.jpg"] != files["train/disc/00000.jpg"]


def test_layout_loads_as_an_image_folder(tmp_path: Path) -> None:
    folder = ensure_builtin(tmp_path, **TINY)
    train, val = load_image_folder(folder, None, None)
    assert train.classes == sorted(CLASSES) and len(train) == 2 * len(CLASSES) and len(val) == len(CLASSES)
    image, _ = train[0]
    assert image.size == (48, 48) and image.mode == "RGB"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["counts"] == {"train": 20, "val": 10}


def test_second_call_is_cached(tmp_path: Path) -> None:
    folder = ensure_builtin(tmp_path, **TINY)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert ensure_builtin(tmp_path, **TINY) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind


def test_folder_without_manifest_is_regenerated(tmp_path: Path) -> None:
    folder = ensure_builtin(tmp_path, **TINY)
    reference = _files(folder)
    (folder / "manifest.json").unlink()
    (folder / "train" / "disc" / "00001.jpg").unlink()
    (folder / "train" / "disc" / "junk.jpg").write_bytes(b"half-written")
    assert ensure_builtin(tmp_path, **TINY) == folder
    assert _files(folder) == reference


def test_a_folder_that_lost_an_image_is_drawn_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = ensure_builtin(tmp_path, **TINY)
    reference = _files(folder)
    (folder / "val" / "star" / "00000.jpg").unlink()  # the manifest stays: it alone said "complete"
    assert ensure_builtin(tmp_path, **TINY) == folder
    assert _files(folder) == reference
    assert "(29 of its 30 images there, or one changed or added); drawing it again" in caplog.text


@pytest.mark.parametrize("change", ["truncated", "added", "legacy"])
def test_a_folder_whose_files_changed_is_drawn_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    # Counting the JPEGs let a truncated image, or a replaced one, through as the built-in data.
    folder = ensure_builtin(tmp_path, **TINY)
    reference = _files(folder)
    if change == "truncated":
        image = folder / "train" / "disc" / "00001.jpg"
        image.write_bytes(image.read_bytes()[:100])
    elif change == "added":
        (folder / "train" / "disc" / "00001.jpg").unlink()
        (folder / "train" / "disc" / "extra.jpg").write_bytes(b"not the drawn image")
    else:  # a manifest of before the digest: its files cannot be checked
        manifest = json.loads((folder / "manifest.json").read_text())
        del manifest["files_sha256"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
    assert ensure_builtin(tmp_path, **TINY) == folder
    assert _files(folder) == reference
    assert "drawing it again" in caplog.text


def test_a_shared_cache_is_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        folder = ensure_builtin(tmp_path, **TINY)
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700


def test_different_parameters_never_share_a_folder(tmp_path: Path) -> None:
    small = ensure_builtin(tmp_path, **TINY)
    bigger = ensure_builtin(tmp_path, **{**TINY, "val_per_class": 2})
    assert small != bigger and small.parent == bigger.parent == tmp_path
    assert (small / "manifest.json").is_file() and (bigger / "manifest.json").is_file()


def test_default_root_is_the_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLENET_CACHE", str(tmp_path / "cache"))
    folder = ensure_builtin(**{**TINY, "train_per_class": 1})
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("synthetic-")


@pytest.mark.parametrize("bad", [{"image_size": 8}, {"train_per_class": 0}, {"val_per_class": 0}])
def test_bad_parameters(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ConfigError):
        ensure_builtin(tmp_path, **{**TINY, **bad})


def test_images_are_order_independent() -> None:
    one = synthetic.render_example(synthetic.example_rng(0, "train", 4, 7), 40, "star")
    synthetic.render_example(synthetic.example_rng(0, "val", 1, 0), 40, "ring")
    again = synthetic.render_example(synthetic.example_rng(0, "train", 4, 7), 40, "star")
    assert np.array_equal(np.asarray(one), np.asarray(again))


def test_boxes_lie_inside_and_span_10_to_90_percent() -> None:
    rng = np.random.default_rng(0)
    fractions = []
    for index in range(300):
        kind = CLASSES[index % len(CLASSES)]
        image, placed = render_scene(rng, 40, [ObjectSpec(kind)], distractors=1)
        assert image.size == (40, 40) and len(placed) == 1 and placed[0].kind == kind
        xmin, ymin, xmax, ymax = placed[0].box
        assert 0 <= xmin < xmax <= 40 and 0 <= ymin < ymax <= 40
        fractions.append((xmax - xmin) * (ymax - ymin) / 40**2)
    assert min(fractions) < 0.14 and max(fractions) > 0.8
    assert 0.3 < float(np.median(fractions)) < 0.6


def test_box_is_tight() -> None:
    rng = np.random.default_rng(1)
    spec = ObjectSpec("square", area=0.25, aspect=1.0, rotation=0.0, center=(0.5, 0.5), color=(255, 0, 0))
    _, placed = render_scene(rng, 64, [spec])
    xmin, ymin, xmax, ymax = placed[0].box
    assert abs(xmin - 16) <= 1 and abs(ymin - 16) <= 1 and abs(xmax - 48) <= 1 and abs(ymax - 48) <= 1


def test_scenes_with_several_objects_for_detection() -> None:
    rng = np.random.default_rng(2)
    specs = [ObjectSpec("ring", area=0.05), ObjectSpec("arrow", area=0.08), ObjectSpec("heart", area=0.04)]
    image, placed = render_scene(rng, (80, 60), specs, distractors=2)
    assert image.size == (80, 60)
    assert [p.kind for p in placed] == ["ring", "arrow", "heart"]
    for p in placed:
        xmin, ymin, xmax, ymax = p.box
        assert 0 <= xmin < xmax <= 80 and 0 <= ymin < ymax <= 60
    with pytest.raises(ConfigError):
        render_scene(rng, 32, [ObjectSpec("pentagon")])


def test_colour_is_not_the_class() -> None:
    """Mean colour of many images varies within a class as much as across classes."""
    means = np.array(
        [
            [np.asarray(synthetic.render_example(synthetic.example_rng(0, "train", c, i), 32, kind)).mean((0, 1))
             for i in range(12)]
            for c, kind in enumerate(CLASSES[:4])
        ]
    )  # fmt: skip
    within = means.std(axis=1).mean()
    across = means.mean(axis=1).std(axis=0).mean()
    assert across < within


@pytest.mark.slow
def test_learnable_by_a_small_cnn_but_not_by_colour(tmp_path: Path) -> None:
    """A 4-layer CNN gets well above chance in ~20 short epochs; colour histograms stay near chance."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    train, val = load_image_folder(ensure_builtin(tmp_path, image_size=48), None, None)

    def tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images = [np.asarray(dataset[i][0], dtype=np.float32) / 255 - 0.5 for i in range(len(dataset))]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(
            dataset.targets
        )

    (x_train, y_train), (x_val, y_val) = tensors(train), tensors(val)
    chance = 1 / len(CLASSES)

    def histograms(x: torch.Tensor) -> torch.Tensor:
        bins = ((x + 0.5).clamp(0, 0.999) * 8).long()  # 8 levels per channel
        return torch.stack(
            [torch.stack([(b == k).float().mean((1, 2)) for k in range(8)], 1).flatten() for b in bins]
        )

    colour = nn.Linear(24, len(CLASSES))
    optimizer = torch.optim.Adam(colour.parameters(), 1e-2)
    h_train, h_val = histograms(x_train) * 10, histograms(x_val) * 10
    for _ in range(500):
        optimizer.zero_grad()
        nn.functional.cross_entropy(colour(h_train), y_train).backward()
        optimizer.step()
    assert (colour(h_val).argmax(1) == y_val).float().mean() < 2 * chance

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    net = nn.Sequential(
        *block(3, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 128), nn.MaxPool2d(2),
        *block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, len(CLASSES)),
    )  # fmt: skip
    epochs, batch = 20, 32
    optimizer = torch.optim.SGD(net.parameters(), 0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, 0.1, total_steps=epochs * (len(x_train) // batch)
    )
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order) - batch + 1, batch):
            x, y = x_train[order[start : start + batch]], y_train[order[start : start + batch]]
            x = torch.where(torch.rand(len(x), 1, 1, 1) < 0.5, x.flip(-1), x)
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x_val).argmax(1) == y_val).float().mean().item()
    assert accuracy > 3 * chance
