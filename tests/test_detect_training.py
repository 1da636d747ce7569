"""Section 8's training side: built-in scenes, fine-tuning init, the region set, MultiBox, shared features."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import googlenet
from extras import require
from googlenet.cli import main
from googlenet.data.scenes import MAX_PAIR_IOU, _box_iou, ensure_builtin_scenes
from googlenet.detect.metrics import GroundTruth
from googlenet.detect.voc import load_voc, voc_images
from googlenet.errors import CheckpointError, ConfigError, DataError
from googlenet.model.weights import default_meta, load_checkpoint_model, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_builtin_scenes(tmp_path_factory.mktemp("scenes"), train_images=40, val_images=20)


def test_scenes_are_a_voc_tree_with_1_based_boxes_and_are_deterministic(scenes: Path, tmp_path: Path) -> None:
    from PIL import Image

    truth = load_voc(scenes, "train")
    images = voc_images(scenes, "train")
    assert len(truth) == 40 and len(images) == 40 and len(load_voc(scenes, "val")) == 20
    for image_id, path in images:
        item = truth[image_id]
        assert 1 <= len(item.labels) <= 3
        width, height = Image.open(path).size
        for box in item.boxes:
            assert 1 <= box[0] < box[2] <= width and 1 <= box[1] < box[3] <= height
        boxes = [(b[0] - 1, b[1] - 1, b[2], b[3]) for b in item.boxes]
        assert all(_box_iou(a, b) <= MAX_PAIR_IOU for a, b in itertools.combinations(boxes, 2))
    again = ensure_builtin_scenes(tmp_path, train_images=40, val_images=20)
    first = json.loads((scenes / "manifest.json").read_text())
    assert json.loads((again / "manifest.json").read_text())["content_sha256"] == first["content_sha256"]
    (again / "VOCdevkit" / "VOC2007" / "Annotations" / "train_00001.xml").unlink()  # a lost annotation
    assert ensure_builtin_scenes(tmp_path, train_images=40, val_images=20) == again  # is drawn again
    assert len(load_voc(again, "train")) == 40


def test_a_crowded_scene_draws_only_what_it_annotates(monkeypatch: pytest.MonkeyPatch) -> None:
    # max_objects=30 cannot fit in 20 tries: the scene falls back to one object, drawn alone.
    import googlenet.data.scenes as scenes_module

    drawn: list[int] = []
    original = scenes_module.render_scene

    def counting(rng: object, size: object, specs: list[object], **kwargs: object) -> object:
        drawn.append(len(specs))
        return original(rng, size, specs, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scenes_module, "render_scene", counting)
    for seed in range(12):
        drawn.clear()
        _, placed = scenes_module.render_detection_scene(np.random.default_rng(seed), max_objects=30)
        assert drawn[-1] == len(placed), seed  # the image returned is the one whose objects are annotated


def test_init_from_copies_what_fits_and_reinitialises_the_classifiers(tmp_path: Path) -> None:
    from googlenet.train.finetune import init_from

    torch.manual_seed(0)
    source = googlenet.build_model("bn", num_classes=5)
    googlenet.save_checkpoint(tmp_path / "c.pt", source)
    torch.manual_seed(1)
    target = googlenet.build_model("bn", num_classes=3)
    fresh_fc = target.fc.weight.clone()
    kept = init_from(target, tmp_path / "c.pt")
    assert set(kept) == {
        "fc.weight",
        "fc.bias",
        "aux1.fc2.weight",
        "aux1.fc2.bias",
        "aux2.fc2.weight",
        "aux2.fc2.bias",
    }
    assert torch.equal(target.conv1.conv.weight, source.conv1.conv.weight)
    assert torch.equal(target.inception5b.branch4[1].conv.weight, source.inception5b.branch4[1].conv.weight)
    assert torch.equal(target.fc.weight, fresh_fc)
    with pytest.raises(
        CheckpointError, match="variant 'bn' but the run trains 'paper'; give --variant bn to"
    ):
        init_from(googlenet.build_model("paper", num_classes=3), tmp_path / "c.pt")


def test_init_from_copies_the_classifiers_only_for_the_same_classes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from googlenet.model.weights import default_meta
    from googlenet.train.finetune import init_from

    torch.manual_seed(0)
    source = googlenet.build_model("bn", num_classes=3)
    googlenet.save_checkpoint(
        tmp_path / "named.pt", source, {**default_meta(source), "class_names": ["a", "b", "c"]}
    )
    googlenet.save_checkpoint(tmp_path / "unnamed.pt", source)  # names "0", "1", "2": not recorded
    heads = {"fc.weight", "fc.bias", "aux1.fc2.weight", "aux1.fc2.bias", "aux2.fc2.weight", "aux2.fc2.bias"}
    for file, classes, fresh in (
        ("named.pt", ["a", "b", "c"], set()),  # the same task: everything is copied
        ("named.pt", ["x", "y", "z"], heads),  # three other classes: their rows would be the wrong ones
        ("named.pt", ["c", "b", "a"], heads),  # the same classes in another order: likewise
        ("unnamed.pt", ["x", "y", "z"], set()),  # nothing to compare: by shape, as before
    ):
        torch.manual_seed(1)
        target = googlenet.build_model("bn", num_classes=3)
        before = target.fc.weight.clone()
        with caplog.at_level(logging.INFO, logger="googlenet"):
            assert set(init_from(target, tmp_path / file, classes=classes)) == fresh, (file, classes)
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("initialised")][-1]
        assert said.endswith("every one of the model" if not fresh else " ...)"), said  # not "0 keep ... ()"
        assert torch.equal(target.fc.weight, before if fresh else source.fc.weight)
        assert torch.equal(target.conv1.conv.weight, source.conv1.conv.weight)


def test_init_from_takes_a_torchvision_file_as_export_convert_would(tmp_path: Path) -> None:
    import torchvision

    from googlenet.model.weights import model_from_file
    from googlenet.train.finetune import init_from

    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    converted, meta = model_from_file(tmp_path / "tv.pth")  # what `export --convert` writes
    googlenet.save_checkpoint(tmp_path / "converted.pt", converted, meta)
    runs = []
    for file in ("tv.pth", "converted.pt"):
        torch.manual_seed(1)
        target = googlenet.build_model("torchvision", num_classes=3)
        assert "fc.weight" in init_from(target, tmp_path / file, classes=["a", "b", "c"])
        runs.append(target.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert torch.equal(runs[0]["conv2.conv.weight"], theirs.conv2.conv.weight)  # copied as it is
    # torchvision's auxiliary heads were never trained: the run's own stay (frozen or slowed by
    # --init-lr-mult they would stay random), also from the converted file, which keeps the mark.
    torch.manual_seed(1)
    fresh = googlenet.build_model("torchvision", num_classes=3).state_dict()
    assert torch.equal(runs[0]["aux1.fc1.weight"], fresh["aux1.fc1.weight"])
    assert not torch.equal(runs[0]["aux1.fc1.weight"], theirs.aux1.fc1.weight)
    assert not torch.equal(runs[0]["conv1.conv.weight"], theirs.conv1.conv.weight)  # [-1, 1] folded in


@pytest.mark.parametrize(
    ("variant", "transform_input"), [("paper", False), ("bn", False), ("torchvision", True)]
)
def test_init_from_folds_another_normalisation_into_conv1(
    tmp_path: Path, variant: str, transform_input: bool
) -> None:
    """Caffe's weights (BGR 0-255 minus a mean) or torchvision's ([-1, 1] through transform_input) start
    a run fed ImageNet-normalised input: conv1 gives the same response away from its padded border."""
    from googlenet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from googlenet.train.finetune import init_from

    torch.manual_seed(0)
    source = googlenet.build_model(variant, num_classes=5, transform_input=transform_input).eval()
    caffe = ([123 / 255, 117 / 255, 104 / 255], [1 / 255] * 3)
    trained_on = ([0.5] * 3, [0.5] * 3) if transform_input else caffe
    meta = {**default_meta(source, 64), "mean": caffe[0], "std": caffe[1]} if not transform_input else None
    googlenet.save_checkpoint(tmp_path / "c.pt", source, meta=meta)
    target = googlenet.build_model(variant, num_classes=5).eval()
    init_from(target, tmp_path / "c.pt")
    pixels = torch.rand(2, 3, 64, 64)

    def normalised(mean: list[float], std: list[float]) -> torch.Tensor:
        return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    with torch.no_grad():
        expected = source.conv1(normalised(*trained_on))[..., 2:-2, 2:-2]
        got = target.conv1(normalised(list(IMAGENET_MEAN), list(IMAGENET_STD)))[..., 2:-2, 2:-2]
    assert float((got - expected).abs().max()) <= 1e-4 * float(expected.abs().max())
    assert not torch.equal(target.conv1.conv.weight, source.conv1.conv.weight)


def test_the_test_regions_are_warped_with_the_runs_own_context(tmp_path: Path) -> None:
    from googlenet.detect.pipeline import run_context

    run = tmp_path / "run"
    (run / "member-1").mkdir(parents=True)
    (run / "regions").mkdir()
    assert run_context(run / "member-1" / "final.pt") is None  # not a detect train run (yet)
    (run / "regions" / "manifest.json").write_text(json.dumps({"params": {"context": 4}}))
    assert run_context(run / "member-1" / "final.pt") == 4  # a run from before the setup recorded it
    (run / "detection-setup.json").write_text(json.dumps({"context": 0, "val_set": "val"}))
    assert run_context(run / "member-1" / "final.pt") == 0 and run_context(run) == 0


def test_regions_are_shown_to_a_classifier_as_it_was_validated() -> None:
    from torchvision.transforms.v2 import functional as F

    from googlenet.detect.regions import classifier_region, warp_region

    image = torch.randint(0, 256, (3, 120, 160), dtype=torch.uint8)
    box = (30.0, 20.0, 109.0, 99.0)
    # detect train's checkpoints (resize == input): the warp itself, context 16 at 227 scaled to 64
    assert torch.equal(classifier_region(image, box, 64, 64, 16), warp_region(image, box, 64, 5))
    # an older one: the stored 64-pixel warp through its evaluation transform (resize to 73, centre crop)
    older = classifier_region(image, box, 64, 73, 16)
    assert older.shape == (3, 64, 64)
    zoomed = F.resize(warp_region(image, box, 64, 5), [73, 73], antialias=True)
    assert torch.equal(older, F.center_crop(zoomed, [64, 64]))


def test_the_end_of_training_detection_uses_a_recorded_context_of_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import googlenet.detect.pipeline as pipeline
    import googlenet.detect.training as training

    run = tmp_path / "run"
    run.mkdir()
    (run / "final.pt").touch()
    setup = {"context": 0, "val_set": "val", "annotations": str(tmp_path)}
    (run / "detection-setup.json").write_text(json.dumps(setup))
    seen = []

    def fake_detector(checkpoints: list[str], *args: object, context: int = 16, **kwargs: object) -> dict:
        seen.append(context)
        return {"mAP": 0.0, "seconds_per_image": 0.0, "detections": []}

    monkeypatch.setattr(training, "load_proposals", lambda path: {})
    monkeypatch.setattr(pipeline, "evaluate_detector", fake_detector)
    pipeline.evaluate_run(run, setup)
    assert seen == [0]  # was 16: a recorded 0 read as "not recorded"


def test_per_class_nms_measures_overlap_on_the_pixel_extent() -> None:
    from types import SimpleNamespace

    from googlenet.detect.detector import DetectorConfig, detect

    ensemble = SimpleNamespace(class_names=["background", "disc"], sources=["test"])
    boxes = np.array([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])  # inclusive: IoU 50/150 = 1/3
    probs = torch.tensor([[0.1, 0.9], [0.2, 0.8]])
    found = detect(ensemble, "a", None, boxes, DetectorConfig(), scorer=lambda image, p: probs)  # type: ignore[arg-type]
    assert [d.score for d in found] == [pytest.approx(0.9)]  # R-CNN's NMS at 0.3 drops the second


def test_detect_train_json_is_one_object_whatever_the_outcome(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`detect train --json` printed the text summary line before its JSON, and no JSON at all when
    stopped by a signal: a script's `json.load` failed either way."""
    import googlenet.detect.pipeline as pipeline
    import googlenet.train.engine as engine

    monkeypatch.setattr(
        pipeline, "_build_regions", lambda *args: (args[-1] / "detection-setup.json").write_text("{}")
    )
    monkeypatch.chdir(tmp_path)
    outcome = {"status": "interrupted", "signal": "SIGTERM", "val_top1": float("nan"), "epochs_done": 1}
    monkeypatch.setattr(engine, "fit", lambda config, resume=None: dict(outcome))
    base = ["detect", "train", "--annotations", str(scenes), "--set", "model.input_size=64", "--json"]
    assert main([*base, "--output-dir", "stopped"]) == 143
    printed = json.loads(capsys.readouterr().out)
    assert printed == {**outcome, "val_top1": None}
    outcome.update(status="completed", signal=None)
    monkeypatch.setattr(pipeline, "evaluate_run", lambda output, setup: {"summary": {"run": {"mAP": 0.5}}})
    assert main([*base, "--output-dir", "done"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "completed" and printed["detection"] == {"run": {"mAP": 0.5}}


def test_detect_train_sizes_the_regions_by_set_and_config_too(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import googlenet.detect.pipeline as pipeline
    import googlenet.train.command as train_command
    import googlenet.train.engine as engine

    seen: dict[str, object] = {}
    monkeypatch.setattr(pipeline, "_build_regions",
                        lambda args, env, voc, regions, config, output: seen.update(regions=config))  # fmt: skip
    monkeypatch.setattr(
        engine, "fit", lambda config, resume=None: seen.update(config=config) or {"status": "x"}
    )
    monkeypatch.setattr(train_command, "_print_summary", lambda results: None)
    monkeypatch.chdir(tmp_path)
    args = [
        "detect",
        "train",
        "--annotations",
        str(scenes),
        "--output-dir",
        "run",
        "--set",
        "model.input_size=64",
    ]
    assert main(args) == 0
    config = seen["config"]
    assert seen["regions"].input_size == 64  # type: ignore[attr-defined]  # was 96: the default, not --set's
    assert config.model.input_size == config.model.resize_size == 64  # type: ignore[attr-defined]
    # Another run's config.yaml as --config: its folder and region set are not this run's (they won).
    (tmp_path / "old.yaml").write_text(
        "run: {output_dir: elsewhere}\ndata: {data_path: elsewhere/regions, dataset: folder}\nmodel: {input_size: 64}\n"
    )
    base = ["detect", "train", "--annotations", str(scenes), "--config", "old.yaml"]
    assert main([*base, "--output-dir", "run2"]) == 0
    config = seen["config"]
    assert Path(config.run.output_dir).name == "run2"  # type: ignore[attr-defined]
    assert config.data.data_path == str((tmp_path / "run2" / "regions").resolve())  # type: ignore[attr-defined]
    assert main([*base, "--output-dir", "run3", "--set", "data.data_path=elsewhere/regions"]) == 1
    assert (
        main([*base, "--output-dir", "run4", "--lr-min", "0.001"]) == 1
    )  # step schedule: refused as by train


def test_select_regions_keeps_ground_truth_positives_and_three_background_per_positive() -> None:
    from googlenet.detect.regions import BACKGROUND
    from googlenet.detect.training import RegionSetConfig, select_regions

    truth = GroundTruth()
    truth.add("a", [10, 10, 49, 49], False)
    truth.add("b", [100, 100, 139, 139], True)  # difficult: neither positive nor background
    positives = np.array([[12, 12, 50, 50], [9, 11, 47, 50], [11, 9, 52, 47]], dtype=float)
    background = np.array([[200 + i, 0, 230 + i, 30] for i in range(30)], dtype=float)
    hard = np.array([[101, 101, 139, 139]], dtype=float)
    proposals = np.concatenate([positives, background, hard])
    config = RegionSetConfig(input_size=64, positives_per_image=2)
    chosen = select_regions("x", proposals, truth, ["a", "b"], config, np.random.default_rng(0))
    labels = [r.label for r in chosen]
    assert chosen[0].box == (10, 10, 49, 49) and labels[0] == 1
    assert labels.count(1) == 1 + 2 and labels.count(2) == 0
    assert labels.count(BACKGROUND) == 3 * 3
    assert all(r.iou < 0.5 for r in chosen if r.label == BACKGROUND)
    everything = RegionSetConfig(input_size=64, positives_per_image=2, background_per_positive=20)
    chosen = select_regions("x", proposals, truth, ["a", "b"], everything, np.random.default_rng(0))
    background_boxes = [r.box for r in chosen if r.label == BACKGROUND]
    assert len(background_boxes) == 30 and (101, 101, 139, 139) not in background_boxes  # on the difficult b


def test_region_set_folder_counts_and_reuse(scenes: Path, tmp_path: Path) -> None:
    from googlenet.detect.training import BACKGROUND_FOLDER, RegionSetConfig, build_region_set, to_pixel_boxes

    rng = np.random.default_rng(0)
    proposals = {}
    for split in ("train", "val"):
        proposals[split] = {}
        for image_id, item in to_pixel_boxes(load_voc(scenes, split)).items():
            jitter = [np.asarray(b) + rng.integers(-2, 3, 4) for b in item.boxes]
            noise = [[x, y, x + 4, y + 4] for x, y in rng.integers(0, 120, (12, 2))]  # never IoU >= 0.5
            proposals[split][image_id] = np.asarray(jitter + noise, dtype=float)
    config = RegionSetConfig(input_size=32, positives_per_image=3, background_per_positive=1.0)
    manifest = build_region_set(scenes, tmp_path / "regions", config, proposals)
    counts = manifest["counts"]["train"]
    objects = sum(len(t.labels) for t in load_voc(scenes, "train").values())
    assert (
        sum(n for c, n in counts.items() if c != BACKGROUND_FOLDER) == 2 * objects
    )  # gt + its jittered copy
    files = list((tmp_path / "regions" / "train").rglob("*.jpg"))
    assert len(files) == sum(counts.values())
    from PIL import Image

    assert Image.open(files[0]).size == (32, 32)
    mtime = (tmp_path / "regions" / "manifest.json").stat().st_mtime_ns
    assert build_region_set(scenes, tmp_path / "regions", config, proposals) == manifest
    assert (tmp_path / "regions" / "manifest.json").stat().st_mtime_ns == mtime  # reused, not rebuilt

    # Any two image sets fill the train/ and val/ roles the engine reads: here one set for both.
    other = build_region_set(scenes, tmp_path / "one-set", config, proposals, splits=("val", "val"))
    assert sorted(p.name for p in (tmp_path / "one-set").iterdir() if p.is_dir()) == ["train", "val"]
    assert other["counts"]["train"] == other["counts"]["val"] == manifest["counts"]["val"]
    assert other["params"]["splits"] == ["val", "val"]


def test_multibox_matching_is_the_optimal_assignment() -> None:
    from googlenet.detect.multibox import match

    gen = torch.Generator().manual_seed(0)
    priors, truth = torch.rand(6, 4, generator=gen), torch.rand(3, 4, generator=gen)
    rows, cols = match(priors, truth)
    cost = torch.cdist(priors, truth)
    best = min(
        sum(float(cost[p, g]) for g, p in enumerate(perm)) for perm in itertools.permutations(range(6), 3)
    )
    assert sorted(cols.tolist()) == [0, 1, 2]
    assert float(cost[rows, cols].sum()) == pytest.approx(best)


def test_multibox_loss_by_hand() -> None:
    from googlenet.detect.multibox import multibox_loss

    priors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    truth = [torch.tensor([[0.1, 0.1, 0.6, 0.6]])]
    offsets = torch.zeros(1, 2, 4)
    logits = torch.zeros(1, 2)
    loss, parts = multibox_loss(offsets, logits, priors, truth, alpha=0.3)
    # prior 0 matches (distance 0.2 < 0.8); location 0.5 * 4 * 0.1^2; confidence 2 x ln 2
    assert parts["loc"] == pytest.approx(0.02)
    assert parts["conf"] == pytest.approx(2 * np.log(2))
    assert float(loss) == pytest.approx(2 * np.log(2) + 0.3 * 0.02)
    perfect = offsets.clone()
    perfect[0, 0] = truth[0][0] - priors[0]
    assert multibox_loss(perfect, logits, priors, truth, 0.3)[1]["loc"] == pytest.approx(0.0, abs=1e-12)


def test_multibox_trains_saves_and_proposes_inside_the_image(
    scenes: Path, tmp_path: Path, one_thread: None
) -> None:
    from googlenet.detect.multibox import MultiBoxConfig, load_multibox, multibox_proposals, train_multibox

    config = MultiBoxConfig(variant="bn", input_size=64, priors=8, epochs=1, batch_size=4, top_k=5)
    result = train_multibox(scenes, tmp_path / "mb.pt", config, progress=False)
    assert result["priors"] == 8 and len(result["history"]) == 1 and np.isfinite(result["history"][0]["loss"])
    assert 0.0 <= result["val_recall"]["recall_50"] <= 1.0
    model, loaded, _ = load_multibox(tmp_path / "mb.pt")
    assert loaded == config
    images = voc_images(scenes, "val")
    boxes, _ = multibox_proposals(model, images, 64, top_k=5)
    from PIL import Image

    for image_id, path in images:
        width, height = Image.open(path).size
        found = boxes[image_id]
        assert found.shape == (5, 4)
        assert (
            (found[:, 0] >= 0).all()
            and (found[:, 2] <= width - 1).all()
            and (found[:, 2] >= found[:, 0]).all()
        )
        assert (
            (found[:, 1] >= 0).all()
            and (found[:, 3] <= height - 1).all()
            and (found[:, 3] >= found[:, 1]).all()
        )
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(googlenet.errors.GoogLeNetError):
        load_multibox(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    ("stop_at", "expected"),
    [
        ("loss", "not written (stopped in epoch 1/2)"),
        ("second epoch", "the model after epoch 1/2"),
        ("recall", "the model of all 2 epochs, complete; only its validation recall was not computed"),
    ],
)
def test_an_interrupted_multibox_says_what_its_output_holds(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, one_thread: None,
    stop_at: str, expected: str,
) -> None:  # fmt: skip
    import googlenet.detect.multibox as multibox

    calls = {"loss": 0}
    loss = multibox.multibox_loss

    def stopping_loss(*args: Any, **kwargs: Any) -> Any:
        calls["loss"] += 1
        if stop_at == "loss" or (stop_at == "second epoch" and calls["loss"] > 10):  # 40 images, batch 4
            raise KeyboardInterrupt
        return loss(*args, **kwargs)

    def stopping_proposals(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(multibox, "multibox_loss", stopping_loss)
    if stop_at == "recall":
        monkeypatch.setattr(multibox, "multibox_proposals", stopping_proposals)
    output = tmp_path / "mb.pt"
    argv = ["detect", "multibox", "--annotations", str(scenes), "--output", str(output), "--epochs", "2",
            "-b", "4", "--input-size", "32", "--priors", "8", "--top-k", "5", "--variant", "bn"]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"{output}: {expected}" in err, err
    assert err.strip().splitlines()[-1] == "googlenet detect multibox: interrupted"
    assert output.exists() == (stop_at != "loss")
    if output.exists():
        from googlenet.detect.multibox import load_multibox

        _, _, meta = load_multibox(output)
        assert meta["epochs_done"] == (1 if stop_at == "second epoch" else 2)


@pytest.mark.slow  # 10 s; the default suite keeps `train`'s own launcher tests (the slow tier: CI runs it)
def test_detect_train_nproc_per_node_reports_a_mistake_in_one_line(scenes: Path, tmp_path: Path) -> None:
    # found by the first process while the other waits for its region set (torchrun stops that one)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "googlenet", "detect", "train", "--nproc-per-node", "2", "--annotations",
               str(scenes), "--val-set", "nope", "--epochs", "1", "--input-size", "64", "-o", str(tmp_path / "out")]  # fmt: skip
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1, completed.stderr[-3000:]
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("googlenet detect train: error: --val-set nope: ") and "nope.txt" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it); a torchrun job
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this Python")
def test_detect_train_under_torchrun_names_one_dated_folder_for_every_process(
    scenes: Path, tmp_path: Path
) -> None:
    # The second process starts 1.5 s after the first: its clock gives another dated folder, where it
    # waited (for hours) for a region set the first process built in its own.
    late = tmp_path / "late.py"
    late.write_text("import os, sys, time\n"
                    "time.sleep(1.5 if os.environ.get('RANK') == '1' else 0)\n"
                    "from googlenet.cli import main\n"
                    "sys.exit(main(sys.argv[1:]))\n")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(late), "detect", "train",
               "--annotations", str(scenes), "--train-set", "val", "--epochs", "1", "--input-size", "64", "-b", "8", "--max-side", "150",
               "--no-progress", "-j", "0"]  # fmt: skip
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert completed.returncode == 0, completed.stderr[-3000:]
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "final.pt").is_file() and "mAP" in completed.stdout


def test_shared_features_score_every_proposal_with_a_distribution(scenes: Path) -> None:
    from googlenet.data.decode import load_image
    from googlenet.detect.detector import DetectorConfig, SharedFeatures

    torch.manual_seed(0)
    model = googlenet.build_model("paper", num_classes=4, aux_logits=False).eval()
    torch.nn.init.normal_(model.fc.weight, std=1.0)  # a fresh classifier's logits are all near zero
    scorer = SharedFeatures([model], [default_meta(model, 64)], DetectorConfig())
    image = load_image(voc_images(scenes, "val")[0][1])
    proposals = np.array([[0, 0, 40, 40], [10, 20, 100, 90], [5, 5, 6, 6]], dtype=float)
    probs = scorer(image, proposals)
    assert probs.shape == (3, 4)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(probs[0], probs[1])  # different regions, different features


def test_background_may_be_any_class_of_the_region_classifier(tmp_path: Path) -> None:
    from googlenet.detect.detector import detection_classes
    from googlenet.evaluate.models import load_ensemble

    model = googlenet.build_model("bn", num_classes=3, aux_logits=False)
    meta = default_meta(model, 64) | {"class_names": ["arrow", "background", "disc"]}
    googlenet.save_checkpoint(tmp_path / "r.pt", model, meta)
    assert detection_classes(load_ensemble([tmp_path / "r.pt"])) == (["arrow", "disc"], 1)


def test_detect_train_end_to_end_on_tiny_scenes(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    require("cv2")
    torch.manual_seed(0)
    classifier = googlenet.build_model("bn", num_classes=10, aux_logits=False)
    googlenet.save_checkpoint(tmp_path / "cls.pt", classifier, default_meta(classifier, 64))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    args = ["detect", "train", "--annotations", str(scenes), "--init-from", str(tmp_path / "cls.pt"),
            "--no-aux", "--epochs", "1", "-b", "16", "--max-side", "96", "--positives-per-image", "1",
            "--background-per-positive", "1", "--train-eval-samples", "0", "--output-dir", "run", "--seed", "0",
            "--set", "average.start=0.25"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "mAP" in text
    # The paths the run derived are stored absolute: it resumes and evaluates from any working directory.
    setup = json.loads((out / "detection-setup.json").read_text())
    assert Path(setup["annotations"]).is_absolute()
    assert f"data_path: {out.resolve() / 'regions'}" in (out / "config.yaml").read_text()
    assert "start: 0.25" in (out / "config.yaml").read_text()  # --set reaches the run (it was dropped)
    report = json.loads((out / "detection.json").read_text())
    assert 0.0 <= report["runs"][0]["mAP"] <= 1.0
    assert (out / "final.pt").is_file() and (out / "regions" / "manifest.json").is_file()
    # The warped region is the input as it is: no 256/224 zoom in training or validation, as in detection.
    assert read_checkpoint(out / "final.pt")["meta"]["resize_size"] == 64
    from googlenet.detect.voc import read_detections

    detections = read_detections(report["runs"][0]["detections_file"])
    annotated = {
        label for split in ("train", "val") for t in load_voc(scenes, split).values() for label in t.labels
    }
    assert {d.label for d in detections} <= annotated  # never "background"

    # A run moved elsewhere resumes there, on its own region set, and is evaluated there (it trained in
    # the new folder but scored the folder its config.yaml named).
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(out, moved)
    # detection flags other than the run's own were taken silently on a resume, and ignored
    assert (
        main(["detect", "train", "--resume", str(moved), "--positives-per-image", "5", "--epochs", "2"]) == 1
    )
    assert "--positives-per-image: a resumed detect train run keeps the region set" in capsys.readouterr().err
    assert main(["detect", "train", "--resume", str(moved), "--annotations", str(scenes), "--epochs", "2",
                 "--no-progress"]) == 0  # fmt: skip
    assert "mAP" in capsys.readouterr().out and not out.exists()
    assert json.loads((moved / "detection.json").read_text())["runs"][0]["detections_file"].startswith(
        str(moved)
    )
    assert read_checkpoint(moved / "last.pt")["train_state"]["epoch"] == 2
    assert f"data_path: {moved.resolve() / 'regions'}" in (moved / "config.yaml").read_text()
    shutil.move(moved, out)  # back, for the box regression below

    # Box regression (beyond the paper) on the trained region classifier, then detections through it.
    fitted = tmp_path / "boxreg.pt"
    assert main(["detect", "boxreg", "--checkpoint", str(out / "final.pt"), "--annotations", str(scenes),
                 "--max-side", "96", "--limit", "12", "--output", str(fitted), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert sum(summary["pairs"].values()) > 0 and set(summary["pairs"]) == annotated
    refined = tmp_path / "refined.csv"
    assert main(["detect", "predict", "--checkpoint", str(out / "final.pt"), "--annotations", str(scenes),
                 "--max-side", "96", "--limit", "3", "--box-regression", str(fitted), "--output", str(refined)]) == 0  # fmt: skip
    assert "box regression" in capsys.readouterr().out
    # fitted on final.pt's features: refused with another member first (it was applied without a word)
    other = tmp_path / "other.pt"
    model, meta = load_checkpoint_model(out / "final.pt", aux_logits=False)
    with torch.no_grad():
        model.conv1.conv.weight.mul_(2)
    googlenet.save_checkpoint(other, model, meta)
    assert main(["detect", "predict", "--checkpoint", str(other), "--checkpoint", str(out / "final.pt"),
                 "--annotations", str(scenes), "--max-side", "96", "--limit", "1", "--box-regression",
                 str(fitted), "--output", str(tmp_path / "no.csv")]) == 1  # fmt: skip
    assert "fitted on another classifier's features than" in capsys.readouterr().err
    from PIL import Image

    sizes = {image_id: Image.open(path).size for image_id, path in voc_images(scenes, "val")}
    for d in read_detections(refined):
        width, height = sizes[d.image]
        assert 1 <= d.box[0] <= d.box[2] <= width and 1 <= d.box[1] <= d.box[3] <= height  # VOC 1-based


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_detect_train_takes_any_two_image_sets(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    """VOC2007's split names (trainval, test) fill the region set's train/ and val/ roles: it failed,
    after every region was built, looking for a train/ folder that was named trainval/."""
    require("cv2")
    (year,) = (scenes / "VOCdevkit").glob("VOC*")
    mine = tmp_path / "voc" / "VOCdevkit" / "VOC2007"
    (mine / "ImageSets" / "Main").mkdir(parents=True)
    for folder in ("Annotations", "JPEGImages"):
        (mine / folder).symlink_to(year / folder)
    for name, source in (("trainval", "train"), ("test", "val")):  # the same images under VOC2007's names
        (mine / "ImageSets" / "Main" / f"{name}.txt").write_bytes(
            (year / "ImageSets" / "Main" / f"{source}.txt").read_bytes()
        )
    torch.manual_seed(0)
    classifier = googlenet.build_model("bn", num_classes=10, aux_logits=False)
    googlenet.save_checkpoint(tmp_path / "cls.pt", classifier, default_meta(classifier, 64))
    out = tmp_path / "run"
    assert main(["detect", "train", "--annotations", str(tmp_path / "voc"), "--train-set", "trainval",
                 "--val-set", "test", "--init-from", str(tmp_path / "cls.pt"), "--no-aux", "--epochs", "1",
                 "-b", "16", "--max-side", "96", "--positives-per-image", "1", "--background-per-positive", "1",
                 "--train-eval-samples", "0", "--output-dir", str(out), "--seed", "0"]) == 0  # fmt: skip
    assert "mAP" in capsys.readouterr().out
    manifest = json.loads((out / "regions" / "manifest.json").read_text())
    assert manifest["params"]["splits"] == ["trainval", "test"] and set(manifest["counts"]) == {
        "train",
        "val",
    }
    assert (out / "regions" / "proposals-test.npz").is_file()
    report = json.loads((out / "detection.json").read_text())
    assert 0.0 <= report["runs"][0]["mAP"] <= 1.0


def test_box_regression_targets_round_trip_and_the_ridge_recovers_a_linear_map() -> None:
    from googlenet.detect.boxreg import decode, encode, ridge

    proposals = torch.tensor([[10.0, 20.0, 49.0, 59.0], [0.0, 0.0, 9.0, 19.0]])
    truth = torch.tensor([[14.0, 20.0, 53.0, 79.0], [0.0, 0.0, 9.0, 19.0]])
    deltas = encode(proposals, truth)
    # first pair: same width 40 moved right by 4 (0.1 of it), height 40 -> 60 (centre 39.5 -> 49.5)
    assert torch.allclose(deltas[0], torch.tensor([0.1, 0.25, 0.0, float(np.log(1.5))]), atol=1e-6)
    assert torch.equal(deltas[1], torch.zeros(4))
    assert torch.allclose(decode(proposals, deltas), truth, atol=1e-4)

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 6, generator=generator)
    true_map = torch.randn(6, 4, generator=generator)
    targets = features @ true_map + torch.tensor([0.5, -0.5, 0.1, 0.0])
    weights = ridge(features, targets, lam=0.0)
    assert torch.allclose(weights[:6], true_map, atol=1e-4)
    assert torch.allclose(weights[6], torch.tensor([0.5, -0.5, 0.1, 0.0]), atol=1e-4)  # the bias row
    shrunk = ridge(features, targets, lam=1e4)
    assert shrunk[:6].norm() < 0.1 * true_map.norm()  # lambda shrinks the weights, not the bias
    assert torch.allclose(shrunk[6], targets.mean(0), atol=0.1)


def test_a_box_regression_is_refused_with_another_classifiers_features(tmp_path: Path) -> None:
    from googlenet.detect.boxreg import BoxRegressor, check_pairing, features_digest

    torch.manual_seed(0)
    fitted_on, other = (googlenet.build_model("bn", num_classes=3, aux_logits=False) for _ in range(2))
    regressor = BoxRegressor(["a", "b"], torch.zeros(2, 1025, 4), 1.0, 16, {"a": 1, "b": 1}, None)
    check_pairing(regressor, ["a", "b"], "r.pt", other, "c.pt")  # a file from before: classes only
    regressor.features = features_digest(fitted_on)
    regressor.save(tmp_path / "r.pt")
    assert BoxRegressor.load(tmp_path / "r.pt").features == regressor.features
    check_pairing(regressor, ["a", "b"], "r.pt", fitted_on, "c.pt")
    with torch.no_grad():
        fitted_on.fc.weight.add_(1)  # the classifier reads the features; it is not part of them
    check_pairing(regressor, ["a", "b"], "r.pt", fitted_on, "c.pt")
    with pytest.raises(ConfigError, match=r"^r\.pt: box regression was fitted on another classifier's "
                       r"features than c\.pt's \(the first --checkpoint\)"):  # fmt: skip
        check_pairing(regressor, ["a", "b"], "r.pt", other, "c.pt")
    with pytest.raises(ConfigError, match="has no class 'c'"):
        check_pairing(regressor, ["a", "c"], "r.pt", fitted_on, "c.pt")


def test_box_regression_file_errors_are_one_line(tmp_path: Path) -> None:
    from googlenet.detect.boxreg import BoxRegressor

    bogus = tmp_path / "bogus.pt"
    torch.save({"format": "something else"}, bogus)
    with pytest.raises(CheckpointError, match="not a box regression file"):
        BoxRegressor.load(bogus)
    with pytest.raises(CheckpointError, match="no such file"):
        BoxRegressor.load(tmp_path / "missing.pt")
    os.mkfifo(tmp_path / "pipe.pt")  # refused at once, never opened (opening a pipe blocks)
    with pytest.raises(CheckpointError, match="not a regular file"):
        BoxRegressor.load(tmp_path / "pipe.pt")
    with pytest.raises(
        CheckpointError, match="is a folder; give a box regression file"
    ):  # not "a checkpoint"
        BoxRegressor.load(tmp_path)


def test_detect_predict_draws_labelled_pngs_and_prints_json(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    require("cv2")
    torch.manual_seed(0)
    classes = ["background", *sorted({c for t in load_voc(scenes, "train").values() for c in t.labels})]
    model = googlenet.build_model("bn", num_classes=len(classes), aux_logits=False)
    googlenet.save_checkpoint(tmp_path / "r.pt", model, default_meta(model, 64) | {"class_names": classes})
    out = tmp_path / "drawn"
    assert main(["detect", "predict", "--checkpoint", str(tmp_path / "r.pt"), "--annotations", str(scenes),
                 "--max-side", "96", "--limit", "2", "--score-threshold", "0.01", "--draw", str(out),
                 "--draw-threshold", "0", "--output", str(tmp_path / "d.csv"), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and len(report["drawn"]) == 2 and report["detections"]
    assert {d["class"] for d in report["detections"]} <= set(classes[1:])
    from PIL import Image

    first = voc_images(scenes, "val")[0]
    drawn = Image.open(out / f"{first[0]}.png")
    assert drawn.size == Image.open(first[1]).size and drawn.mode == "RGB"
    assert (
        np.asarray(drawn).tobytes() != np.asarray(Image.open(first[1]).convert("RGB")).tobytes()
    )  # boxes drawn
    # The drawings are named after the images: a folder of other files (the user's pictures, a class
    # folder of a data set) is refused before any work; the folder it made itself is drawn into again.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / f"{first[0]}.png").write_bytes(b"the user's own picture")
    for folder, code in ((mine, 1), (out, 0)):
        argv = ["detect", "predict", "--checkpoint", str(tmp_path / "r.pt"), "--annotations", str(scenes),
                "--max-side", "96", "--limit", "2", "--draw", str(folder), "--output", str(tmp_path / "e.csv")]  # fmt: skip
        assert main(argv) == code
    assert "holds other files than an earlier --draw's" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == [f"{first[0]}.png"]
    assert (mine / f"{first[0]}.png").read_bytes() == b"the user's own picture"


def test_detect_predict_replaces_its_csv_and_drawings_as_a_set(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    one_thread: None,
) -> None:  # fmt: skip
    # Ctrl-C while drawing once left the new CSV beside the earlier run's drawings.
    require("cv2")
    import signal

    import googlenet.detect.command as command
    import googlenet.detect.voc as voc

    torch.manual_seed(0)
    classes = ["background", *sorted({c for t in load_voc(scenes, "train").values() for c in t.labels})]
    model = googlenet.build_model("bn", num_classes=len(classes), aux_logits=False)
    googlenet.save_checkpoint(tmp_path / "r.pt", model, default_meta(model, 64) | {"class_names": classes})
    out, csv_file = tmp_path / "drawn", tmp_path / "d.csv"

    def predict(threshold: str) -> int:
        return main(["detect", "predict", "--checkpoint", str(tmp_path / "r.pt"), "--annotations", str(scenes),
                     "--max-side", "96", "--limit", "2", "--score-threshold", threshold, "--draw", str(out),
                     "--draw-threshold", threshold, "--output", str(csv_file)])  # fmt: skip

    def state() -> tuple[bytes, dict[str, bytes]]:
        drawings = sorted(p for p in out.iterdir() if p.name != command.DRAWN_MARK)
        return csv_file.read_bytes(), {p.name: p.read_bytes() for p in drawings}

    assert predict("0.01") == 0
    before = state()
    real_draw, real_write = command._draw, voc.write_detections

    def interrupted_drawing(*args: Any) -> list[str]:
        real_draw(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_draw", interrupted_drawing)
    assert predict("0.9") == 130
    assert state() == before  # the earlier set, whole; the hidden folder gone
    monkeypatch.setattr(command, "_draw", real_draw)

    def interrupted_writing(*args: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # while the CSV is written: held until the set is in place
        real_write(*args)

    monkeypatch.setattr(voc, "write_detections", interrupted_writing)  # imported when predict runs
    assert predict("0.9") == 130
    after = state()
    assert after[0] != before[0] and after[1].keys() == before[1].keys()
    assert all(after[1][name] != before[1][name] for name in before[1])  # every drawing is the new run's
    assert "interrupted" in capsys.readouterr().err
    # An image the set lists twice (the second move of its drawing found nothing and failed the run;
    # since 2026-12-07 its detections would count twice too) is refused before any file changes.
    monkeypatch.setattr(voc, "write_detections", real_write)
    twice = tmp_path / "twice"
    shutil.copytree(scenes, twice)
    (image_set,) = twice.rglob("ImageSets/Main/val.txt")
    first_id = image_set.read_text().split()[0]
    image_set.write_text(f"{first_id}\n" + image_set.read_text())
    scenes = twice
    assert predict("0.5") == 1 and state() == after
    assert f"val.txt:2: {first_id!r} is listed again (first on line 1)" in capsys.readouterr().err


def test_an_interrupted_final_detection_writes_no_part_of_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ensemble's final detection stopped after its first member left that member's CSV without the
    # others' or detection.json: a folder that looked complete and was not.
    import googlenet.detect.pipeline as pipeline
    import googlenet.detect.training as training
    from googlenet.detect.metrics import Detection

    members = [str(tmp_path / f"member-{i}" / "final.pt") for i in range(2)]
    monkeypatch.setattr(training, "load_proposals", lambda path: {})
    monkeypatch.setattr(pipeline, "run_members", lambda output: members)
    monkeypatch.setattr(pipeline, "run_context", lambda output: 16)
    calls: list[list[str]] = []
    interrupt_at = [2]  # the second group's detection (member 1) is interrupted

    def detector(group: list[str], *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(group)
        if len(calls) == interrupt_at[0]:
            raise KeyboardInterrupt
        box = (1.0, 1.0, 5.0, 5.0)
        return {"mAP": 0.5, "seconds_per_image": 0.1, "detections": [Detection("a", "cat", 0.9, box)]}

    monkeypatch.setattr(pipeline, "evaluate_detector", detector)
    setup = {"annotations": str(tmp_path), "val_set": "val"}
    with pytest.raises(KeyboardInterrupt):
        pipeline.evaluate_run(tmp_path, setup)
    assert not list(tmp_path.glob("detections-*.csv")) and not (tmp_path / "detection.json").exists()
    interrupt_at[0] = 0  # again, to the end: the whole set
    report = pipeline.evaluate_run(tmp_path, setup)
    written = {p.name for p in tmp_path.glob("detections-*.csv")}
    assert written == {"detections-member-0.csv", "detections-member-1.csv", "detections-ensemble.csv"}
    assert json.loads((tmp_path / "detection.json").read_text())["summary"] == report["summary"]


def _voc_tree(root: Path, sets: dict[str, list[list[tuple[str, bool]]]]) -> Path:
    """A VOC tree of annotations only: `sets[name]` lists each image's objects as (class, difficult)."""
    year = root / "VOCdevkit" / "VOC2007"
    (year / "Annotations").mkdir(parents=True)
    (year / "ImageSets" / "Main").mkdir(parents=True)
    for name, images in sets.items():
        ids = [f"{name}{k}" for k in range(len(images))]
        for image_id, objects in zip(ids, images, strict=True):
            xml = "".join(f"<object><name>{label}</name><difficult>{int(hard)}</difficult><bndbox><xmin>1</xmin>"
                          "<ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>" for label, hard in objects)  # fmt: skip
            (year / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{xml}</annotation>")
        (year / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.mark.parametrize(
    ("train", "val", "expected"),
    [  # a class the validation set lacks; a class the training set annotates only as difficult
        ([[("cat", False), ("dog", False)]], [[("cat", False)], [("dog", True)]],
         r"image set 'val' \(val\) has no object of class\(es\) dog that is not marked difficult \(dog: annotated there only"),
        ([[("cat", False), ("sofa", True)]], [[("cat", False), ("sofa", False)]],
         r"image set 'train' \(train\) has no object of class\(es\) sofa that is not marked difficult \(sofa: annotated"),
        ([[("cat", False), ("dog", False)]], [[("cat", False)]], r"class\(es\) dog that is not marked difficult; every class"),
    ],
)  # fmt: skip
def test_detect_train_finds_a_class_without_regions_from_the_annotations_before_any_proposal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    train: list[list[tuple[str, bool]]], val: list[list[tuple[str, bool]]], expected: str,
) -> None:  # fmt: skip
    """It was found only once both splits' proposals were computed (hours on VOC), as "split 'train'
    gives no region of class(es) sofa" for a class annotated there only as difficult."""
    import re

    import googlenet.detect.pipeline as pipeline

    def no_proposals(*args: object, **kwargs: object) -> object:
        raise AssertionError("proposals computed before the annotations were checked")

    monkeypatch.setattr(pipeline, "gather_proposals", no_proposals)
    voc = _voc_tree(tmp_path / "voc", {"train": train, "val": val})
    code = main(["detect", "train", "--annotations", str(voc), "--input-size", "64",
                 "--output-dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert (
        re.search(expected, err) and "needs such an object in both the training and the validation set" in err
    ), err
    assert not (tmp_path / "run").exists()  # the folder this command made is gone with the error


def test_detect_train_states_the_context_range_of_its_input_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--context is given at R-CNN's 227 pixels and scaled: at 64 pixels 111 is the most (scaled to 31
    of 64, under half); the message said "in [0, 113]" whatever the size."""
    from googlenet.detect.training import RegionSetConfig

    voc = _voc_tree(tmp_path / "voc", {"train": [[("cat", False)]], "val": [[("cat", False)]]})
    assert main(["detect", "train", "--annotations", str(voc), "--input-size", "64", "--context", "112",
                 "--output-dir", str(tmp_path / "run")]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "--context: must be in [0, 111] for a 64-pixel input, got 112" in err, err
    assert RegionSetConfig(input_size=64, context=111).context == 111
    from googlenet.detect.regions import max_context

    assert (max_context(32), max_context(64), max_context(224), max_context(227)) == (109, 111, 112, 113)


def test_detect_predict_checks_the_context_it_was_given_before_any_proposal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It failed after the proposals, on the scaled value: "context: must be in [0, size/2), got 34 for
    size 64" for --context 120."""
    import googlenet.detect.pipeline as pipeline

    def no_proposals(*args: object, **kwargs: object) -> object:
        raise AssertionError("proposals computed before --context was checked")

    monkeypatch.setattr(pipeline, "gather_proposals", no_proposals)
    voc = _voc_tree(tmp_path / "voc", {"val": [[("cat", False)]]})
    model = googlenet.build_model("bn", num_classes=2, aux_logits=False)
    googlenet.save_checkpoint(
        tmp_path / "r.pt", model, default_meta(model, 64) | {"class_names": ["background", "cat"]}
    )
    assert main(["detect", "predict", "--checkpoint", str(tmp_path / "r.pt"), "--annotations", str(voc),
                 "--context", "120", "--output", str(tmp_path / "d.csv")]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "--context: must be in [0, 111] for a 64-pixel input, got 120" in err and "to 34 here" in err, err


def test_detect_predict_with_a_missing_checkpoint_says_only_that(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # it warned first that the context was assumed for the checkpoint, sending the user to --context
    with caplog.at_level(logging.INFO, logger="googlenet"):
        code = main(["detect", "predict", "--checkpoint", str(tmp_path / "nope.pt"), "--annotations",
                     str(tmp_path), "--output", str(tmp_path / "d.csv")])  # fmt: skip
    assert (
        code == 1
        and capsys.readouterr().err
        == f"googlenet detect predict: error: {tmp_path / 'nope.pt'}: no such file\n"
    )
    assert "context" not in caplog.text


@pytest.mark.parametrize(
    "change", ["class with a slash", "class beginning with a dot", "box outside the image"]
)
def test_the_region_set_refuses_what_would_make_wrong_regions(
    scenes: Path, tmp_path: Path, change: str
) -> None:
    """A class named `traffic/light` made nested folders (the classifier learnt `traffic`); `.net` a
    hidden folder the training never read; a box past the decoded image (annotated on another size
    of it, its <size> gone) a positive of nothing but grey. Each is now a line naming the class or
    the image, before any region is written."""
    from googlenet.detect.training import RegionSetConfig, build_region_set

    tree = tmp_path / "voc"
    shutil.copytree(scenes, tree)
    year = next((tree / "VOCdevkit").iterdir())
    image_id = voc_images(tree, "train")[0][0]
    xml = year / "Annotations" / f"{image_id}.xml"
    text = xml.read_text()
    first = text.split("<name>")[1].split("</name>")[0]
    if change == "box outside the image":
        text = text.split("<size>")[0] + text.split("</size>")[1]  # no <size>: load_voc cannot check it
        text = re.sub(r"<xmin>\d+</xmin>", "<xmin>900</xmin>", text, count=1)
        text = re.sub(r"<xmax>\d+</xmax>", "<xmax>990</xmax>", text, count=1)
        expected = f"{image_id}.xml: object 1: box [900.0, "  # the image's own size, read from its file
    else:
        name = "traffic/light" if "slash" in change else ".net"
        text = text.replace(f"<name>{first}</name>", f"<name>{name}</name>")
        expected = f"class {name!r} (in {image_id}'s annotation) cannot name a folder of the region set"
    xml.write_text(text)
    proposals = {split: {} for split in ("train", "val")}
    with pytest.raises(DataError, match=re.escape(expected)):
        build_region_set(tree, tmp_path / "regions", RegionSetConfig(input_size=32), proposals)
    assert not [p.name for p in tmp_path.iterdir() if "regions" in p.name]  # nor its staging folder


def test_detect_predict_draws_only_this_runs_images_and_checks_draw_up_front(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    one_thread: None,
) -> None:  # fmt: skip
    """A --draw folder that cannot be written was found after the proposals and the scoring; a rerun on
    fewer images left the earlier run's other drawings beside the new CSV; a long image id failed the
    drawing at the end of the run ("File name too long")."""
    require("cv2")

    torch.manual_seed(0)
    classes = ["background", *sorted({c for t in load_voc(scenes, "train").values() for c in t.labels})]
    model = googlenet.build_model("bn", num_classes=len(classes), aux_logits=False)
    googlenet.save_checkpoint(tmp_path / "r.pt", model, default_meta(model, 64) | {"class_names": classes})
    (tmp_path / "file").write_text("not a folder")
    base = ["detect", "predict", "--checkpoint", str(tmp_path / "r.pt"), "--max-side", "96",
            "--score-threshold", "0.01", "--draw-threshold", "0.01", "--output", str(tmp_path / "d.csv")]  # fmt: skip

    def no_scoring(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("scored before --draw was checked")

    monkeypatch.setattr("googlenet.detect.detector.detect_images", no_scoring)
    bad = tmp_path / "file" / "drawn"
    assert main([*base, "--annotations", str(scenes), "--limit", "1", "--draw", str(bad)]) == 1
    assert f"--draw {bad}: cannot create the folder" in capsys.readouterr().err
    # the check leaves nothing behind when the run then fails: neither folders made nor a mark added
    (tmp_path / "empty").mkdir()
    missing = [a if a != str(tmp_path / "r.pt") else str(tmp_path / "missing.pt") for a in base]
    for draw in (tmp_path / "a" / "b" / "c", tmp_path / "empty"):  # a missing checkpoint, after the check
        assert main([*missing, "--annotations", str(scenes), "--limit", "1", "--draw", str(draw)]) == 1
    assert not (tmp_path / "a").exists() and not any((tmp_path / "empty").iterdir())
    capsys.readouterr()
    monkeypatch.undo()
    out = tmp_path / "drawn"
    assert main([*base, "--annotations", str(scenes), "--limit", "3", "--draw", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 3
    (out / "my-legend.png").write_bytes(b"the user's own")  # not a drawing of ours: stays
    assert main([*base, "--annotations", str(scenes), "--limit", "1", "--draw", str(out)]) == 0
    first = voc_images(scenes, "val")[0][0]
    assert sorted(p.name for p in out.glob("*.png")) == sorted([f"{first}.png", "my-legend.png"])
    capsys.readouterr()
    # an id of 250 characters under a folder: its drawing's name is cut and made unique
    tree = tmp_path / "long"
    shutil.copytree(scenes, tree)
    year = next((tree / "VOCdevkit").iterdir())
    long_id = "sub/" + "L" * 246
    for kind, suffix in (("Annotations", ".xml"), ("JPEGImages", ".jpg")):
        (year / kind / "sub").mkdir()
        shutil.copy(year / kind / f"{first}{suffix}", year / kind / f"{long_id}{suffix}")
    (year / "ImageSets" / "Main" / "val.txt").write_text(long_id + "\n")
    assert main([*base, "--annotations", str(tree), "--draw", str(tmp_path / "long-drawn")]) == 0
    (drawing,) = (tmp_path / "long-drawn").glob("*.png")
    assert drawing.name.startswith("sub%2FLLL") and len(drawing.name.encode()) <= 204
