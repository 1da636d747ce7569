"""`googlenet evaluate`: averaging and top-k against hand computations, end to end on a tiny image folder
with tiny random checkpoints, and Table 3's files."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import googlenet
from googlenet.cli import main
from googlenet.data.crops import crop_boxes, cut_crops, normalize
from googlenet.evaluate import (
    PAPER_TABLE3,
    ClassificationMeter,
    Member,
    View,
    aggregate,
    aggregate_probs,
    evaluate_views,
    limit_samples,
    load_ensemble,
    match_classes,
    topk_correct,
)
from googlenet.evaluate.evalset import load_eval_set
from googlenet.model.weights import default_meta

CLASSES = ["circle", "square", "star"]
SIZES = [(64, 64), (80, 60), (60, 90)]  # per class: a square, a landscape and a portrait image


def make_tree(root: Path, classes: list[str] = CLASSES, sizes: list[tuple[int, int]] = SIZES) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / "val" / name
        folder.mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return root


def make_checkpoint(path: Path, seed: int, classes: list[str] = CLASSES, input_size: int = 64) -> Path:
    torch.manual_seed(seed)
    model = googlenet.build_model("paper", num_classes=len(classes))
    meta = default_meta(model, input_size) | {"class_names": list(classes)}
    googlenet.save_checkpoint(path, model, meta)
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    return {
        "data": make_tree(root / "data"),
        "a": make_checkpoint(root / "a.pt", 1),
        "b": make_checkpoint(root / "b.pt", 2),
    }


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    engine = [] if "--engine" in args else ["--engine", "eager"]  # auto's timing is tested once, below
    assert main(["evaluate", *args, *engine, "--json", "-j", "0", "--no-progress", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_imbalanced_set_gets_its_balance_and_the_mean_per_class_accuracy(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a set whose largest class holds most images, a model naming it everywhere scored its share
    as top-1 with no word of the imbalance (`train` says it in results.json and its plot)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    first = data / "val" / CLASSES[0]
    source = sorted(first.iterdir())[0]
    for k in range(8):  # the first class: 8 images more than the others
        shutil.copy(source, first / f"extra{k}{source.suffix}")
    counts = [len(list((data / "val" / name).iterdir())) for name in CLASSES]
    share = 100 * counts[0] / sum(counts)
    report = run_json(["--checkpoint", str(setup["a"]), "--data-path", str(data)], capsys)
    balance = report["balance"]
    assert balance["imbalanced"] and balance["largest_class_share"] == pytest.approx(share)
    rows = report["per_class"]
    assert report["mean_class_top1_accuracy"] == pytest.approx(
        sum(r["top1_accuracy"] for r in rows) / len(rows)
    )
    assert main(["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(data), "--engine", "eager",
                 "-j", "0", "--no-progress"]) == 0  # fmt: skip
    assert f"imbalanced: the largest class is {share:.2f}% of the images" in capsys.readouterr().out
    even = run_json(["--checkpoint", str(setup["a"]), "--data-path", str(setup["data"])], capsys)
    assert not even["balance"]["imbalanced"]
    # --limit leaving a class without images: the classes scored are still even (it said imbalanced)
    part = run_json(
        ["--checkpoint", str(setup["a"]), "--data-path", str(setup["data"]), "--limit", "2"], capsys
    )
    assert part["images"] == 2 and not part["balance"]["imbalanced"]


def test_without_a_terminal_a_long_evaluation_says_how_far_it_is(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a log file or a CI job, a 144-crop evaluation of a large set was silent until its end."""
    import googlenet.evaluate.command as command

    monkeypatch.setattr(command, "PROGRESS_LINE_EVERY_S", 0.0)
    argv = ["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(setup["data"]), "--engine", "eager",
            "-j", "0", "-b", "2", "--json"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("evaluated ")]
    total = json.loads(captured.out)["images"]
    assert lines and lines[-1].startswith(f"evaluated {total}/{total} images | ") and "ETA" in lines[-1]
    assert main([*argv, "--no-progress"]) == 0 and "evaluated " not in capsys.readouterr().err


# --- aggregation and metrics against hand computations --------------------------------------------
def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


LOGITS = [  # models x images(1) x crops x classes
    [[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]],
    [[[0.5, 0.5, 3.0], [1.0, -2.0, 0.0]]],
]


def test_aggregate_averages_softmax_over_crops_and_models() -> None:
    p = [[_softmax(crop) for crop in model[0]] for model in LOGITS]
    expected = [sum(p[m][c][k] for m in range(2) for c in range(2)) / 4 for k in range(3)]
    scores = aggregate(torch.tensor(LOGITS), "mean")
    assert scores.shape == (1, 3)
    assert scores[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert float(scores.sum()) == pytest.approx(1.0, abs=1e-6)


def test_aggregate_max_over_crops_then_mean_over_models() -> None:
    p = [[_softmax(crop) for crop in model[0]] for model in LOGITS]
    expected = [(max(p[0][0][k], p[0][1][k]) + max(p[1][0][k], p[1][1][k])) / 2 for k in range(3)]
    assert aggregate(torch.tensor(LOGITS), "max")[0].tolist() == pytest.approx(expected, abs=1e-6)
    probs = torch.softmax(torch.tensor(LOGITS), dim=-1)
    assert torch.allclose(aggregate_probs(probs, "max"), aggregate(torch.tensor(LOGITS), "max"))
    with pytest.raises(googlenet.ConfigError):
        aggregate(torch.tensor(LOGITS), "median")


def test_topk_and_per_class_accuracy_by_hand() -> None:
    # 7 classes; class ranks are read off the scores by eye.
    scores = torch.tensor(
        [
            [0.9, 0.05, 0.01, 0.01, 0.01, 0.01, 0.01],  # target 0: top-1 hit
            [0.30, 0.25, 0.20, 0.10, 0.08, 0.05, 0.02],  # target 4: rank 5 -> top-5 hit only
            [0.30, 0.25, 0.20, 0.10, 0.08, 0.05, 0.02],  # target 5: rank 6 -> miss
            [0.1, 0.6, 0.1, 0.1, 0.05, 0.03, 0.02],  # target 0: rank 2 -> top-5 only
        ]
    )
    targets = torch.tensor([0, 4, 5, 0])
    hits = topk_correct(scores, targets, (1, 5))
    assert hits.tolist() == [[True, False, False, False], [True, True, False, True]]
    meter = ClassificationMeter(7)
    meter.update(scores[:2], targets[:2])
    meter.update(scores[2:], targets[2:])
    summary = meter.summary([f"c{i}" for i in range(7)])
    assert summary["images"] == 4
    assert summary["top1_error"] == pytest.approx(75.0)
    assert summary["top5_error"] == pytest.approx(25.0)
    by_name = {c["class"]: c for c in summary["per_class"]}
    assert by_name["c0"] == {"class": "c0", "images": 2, "top1_accuracy": 50.0, "top5_accuracy": 100.0}
    assert by_name["c4"]["top1_accuracy"] == 0.0 and by_name["c4"]["top5_accuracy"] == 100.0
    assert by_name["c1"]["images"] == 0 and by_name["c1"]["top1_accuracy"] is None


def test_topk_larger_than_the_number_of_classes() -> None:
    hits = topk_correct(torch.tensor([[0.2, 0.5, 0.3]]), torch.tensor([0]), (1, 5))
    assert hits.tolist() == [[False], [True]]


def test_tied_scores_count_the_expected_hit_not_topks_order() -> None:
    """A confident model's float32 scores tie: a class 100+ logits down is exactly 0, and under
    --reduce max two confident crops give two classes exactly 1. topk ranked ties in its own order."""
    two_crops = torch.full((1, 1, 2, 4), -1e4)
    two_crops[0, 0, 0, 0] = two_crops[0, 0, 1, 1] = 30.0  # each crop sure of another class
    scores = aggregate(two_crops, "max")
    assert scores[0, 0] == scores[0, 1] == 1.0
    hits = topk_correct(scores.expand(2, 4), torch.tensor([0, 1]), (1, 5))
    assert hits.tolist() == [[0.5, 0.5], [1.0, 1.0]]  # either class: a coin's chance of being first
    tail = torch.tensor([[1.0] + [0.0] * 9])  # nine classes tied at 0 below a sure one
    assert topk_correct(tail, torch.tensor([7]), (1, 5)).tolist() == [[0.0], [pytest.approx(4 / 9)]]
    meter = ClassificationMeter(4)
    meter.update(scores.expand(2, 4), torch.tensor([0, 1]))
    assert meter.summary()["top1_accuracy"] == 50.0
    nan = torch.full((2, 10), float("nan"))  # compares unequal to everything: never a hit, not a sure one
    assert topk_correct(nan, torch.tensor([3, 7])).tolist() == [[0.0, 0.0], [0.0, 0.0]]


# --- the evaluation loop ----------------------------------------------------------------------------
def test_any_logits_callable_can_be_evaluated(setup: dict[str, Path]) -> None:
    # A stand-in "model" that always says class 1: its top-1 accuracy is the share of class 1.
    def always_one(batch: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(batch), 3)
        logits[:, 1] = 5.0
        return logits

    evalset = load_eval_set("folder", setup["data"], CLASSES)
    specs = [googlenet.data.crops.CropSpec(10, 64, (73,))]
    result = evaluate_views([Member(always_one)], evalset.samples, specs, [View("v", 0, (0,))], 3)
    summary = result["views"][0].summary()
    assert summary["images"] == 9
    assert summary["top1_accuracy"] == pytest.approx(100 / 3)
    assert result["forward_passes"] == 90


def test_evaluate_end_to_end_matches_a_direct_computation(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--checkpoint",
        str(setup["a"]),
        "--data-path",
        str(setup["data"]),
        "--crops",
        "10",
        "--limit",
        "6",
    ]
    report = run_json(args, capsys)
    assert report["images"] == 6 and report["crops"] == 10 and report["models"] == 1
    assert report["forward_passes"] == 60 and report["cost"] == 10
    assert report["top1_error"] + report["top1_accuracy"] == pytest.approx(100.0)
    assert report["top5_error"] == 0.0  # 3 classes: the top 5 always hold the answer
    assert [c["class"] for c in report["per_class"]] == CLASSES
    assert all(c["images"] == 2 for c in report["per_class"])
    assert report["images_per_s"] > 0 and report["crops_per_s"] > 0

    # The same numbers with the library's pieces and no DataLoader: crops of the 6 images (the first two
    # of each class, which --limit 6 picks), one forward, softmax averaged per image.
    member = load_ensemble([setup["a"]]).members[0]
    batches, targets = [], []
    for index, name in enumerate(CLASSES):
        for path in sorted((setup["data"] / "val" / name).iterdir())[:2]:
            image = Image.open(path).convert("RGB")
            batches.append(cut_crops(image, crop_boxes(*image.size, crops=10, crop_size=64), 64))
            targets.append(index)
    with torch.inference_mode():
        logits = member.forward(normalize(torch.cat(batches), member.mean, member.std))
    predicted = aggregate(logits.view(1, 6, 10, 3)).argmax(dim=1)
    wrong = int((predicted != torch.tensor(targets)).sum())
    assert report["top1_error"] == pytest.approx(100 * wrong / 6)


def test_table3_one_pass_gives_the_same_rows_as_separate_runs(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--data-path", str(setup["data"]), "--limit", "3"]  # images 0, 3, 6: the square ones
    two = ["--checkpoint", str(setup["a"]), str(setup["b"])]
    out = tmp_path / "t3"
    report = run_json([*two, *common, "--table3", "--output-dir", str(out)], capsys)
    rows = report["table3"]
    assert [(r["models"], r["crops"], r["cost"]) for r in rows] == [
        (1, 1, 1), (1, 10, 10), (1, 144, 144), (2, 1, 2), (2, 10, 20), (2, 144, 288),
    ]  # fmt: skip
    assert rows[0]["delta_top5"] is None
    assert report["top1_error"] == rows[-1]["top1_error"] and report["images"] == 3
    # Square images: the three squares coincide, so each model runs 48 distinct 144-crops (+ 1/10-crop extras).
    assert report["forward_passes"] < 2 * 3 * 144

    with open(out / "table3.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 6 and table[2]["crops"] == "144"
    saved = json.loads((out / "table3.json").read_text())
    assert len(saved["rows"]) == 6 and len(saved["paper"]) == 6
    assert saved["paper"][-1]["top5_error"] == 6.67
    assert (out / "table3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    single = run_json(["--checkpoint", str(setup["a"]), *common, "--crops", "10"], capsys)
    assert single["top1_error"] == pytest.approx(rows[1]["top1_error"])
    ensemble = run_json([*two, *common, "--crops", "1"], capsys)
    assert ensemble["top1_error"] == pytest.approx(rows[3]["top1_error"])


def test_table3_text_shows_the_papers_table(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(setup["data"]), "--limit", "1"]
    assert (
        main(
            [
                *args,
                "--table3",
                "--output-dir",
                str(tmp_path),
                "-j",
                "0",
                "--no-progress",
                "--engine",
                "eager",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "paper (Table 3" in text and "6.67%" in text and "10.07%" in text
    rows = list(csv.DictReader((tmp_path / "table3.csv").read_text().splitlines()))
    assert len(rows) == 3  # one checkpoint: the 1-model rows only
    assert len(PAPER_TABLE3) == 6


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_text_report_and_max_reduction(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(setup["data"] / "val")]
    assert (
        main([*args, "--crops", "10", "--reduce", "max", "-j", "0", "--progress"]) == 0
    )  # class folders directly
    captured = capsys.readouterr()
    text = captured.out
    assert "9/9" in captured.err and "img" in captured.err  # tqdm's bar: count, rate and ETA
    assert "top-1 error" in text and "top-5 error" in text and "images       9" in text
    assert "per-class accuracy" in text and "crops/s" in text
    assert "top-5 is right by construction with 3 classes" in text  # a 100% that says nothing, said so
    engine = next(line for line in text.splitlines() if line.startswith("engine"))
    assert any(backend in engine for backend in ("eager", "onnxruntime", "openvino"))  # --engine auto's pick


def test_engines_agree(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--checkpoint", str(setup["a"]), "--data-path", str(setup["data"]), "--crops", "10"]
    off = run_json([*args, "--engine", "off"], capsys)
    fused = run_json(args, capsys)  # eager: the fused network
    bf16 = run_json([*args, "--engine", "eager", "--precision", "bf16"], capsys)
    assert (
        off["engines"] == ["off"] and fused["engines"] == ["eager fp32"] and bf16["engines"] == ["eager bf16"]
    )
    for a, b in zip(off["per_class"], fused["per_class"], strict=True):
        assert a["top1_accuracy"] == b["top1_accuracy"] and a["top5_accuracy"] == b["top5_accuracy"]
    assert bf16["images"] == off["images"]


def test_workers_and_limit(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--checkpoint", str(setup["a"]), "--data-path", str(setup["data"]), "--limit", "4", "-b", "3"]
    assert (
        main(
            ["evaluate", *args, "-j", "1", "--json", "--no-progress", "--device", "cpu", "--engine", "eager"]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 4 and report["crops"] == 1
    assert limit_samples([(str(i), i) for i in range(10)], 4) == [("0", 0), ("2", 2), ("5", 5), ("7", 7)]


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_bad_images_are_skipped_and_reported_or_abort(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    (data / "val" / "star" / "3.jpg").write_bytes(b"\xff\xd8 truncated")
    report = run_json(["--checkpoint", str(setup["a"]), "--data-path", str(data)], capsys)
    assert report["images"] == 9 and report["resize_size"] == 73  # the 1- and 10-crop scale, recorded
    assert len(report["bad_images"]) == 1 and "3.jpg" in report["bad_images"][0]["error"]
    code = main(["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(data), "--on-bad", "abort",
                 "-j", "0", "--no-progress"])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    # --engine auto says what it times, then what it measured and chose
    assert lines[0].startswith("optimize: building and timing") and lines[1].startswith("optimize: ")
    assert code == 1 and len(lines) == 3 and "3.jpg" in lines[2] and "error" in lines[2]


def test_no_readable_image_is_an_error_and_a_class_of_unreadable_ones_is_named(
    setup: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nothing scored, evaluate printed "top-1 error nan%" and exited 0; a class whose every image
    was unreadable dropped out of the figures unsaid."""
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    for image in (data / "val" / "star").iterdir():
        image.write_bytes(b"\xff\xd8 truncated")
    report = run_json(["--checkpoint", str(setup["a"]), "--data-path", str(data)], capsys)
    assert report["images"] == 6 and len(report["bad_images"]) == 3
    assert "1 class(es) had every listed image unreadable" in caplog.text and "'star'" in caplog.text
    argv = [
        "evaluate",
        "--checkpoint",
        str(setup["a"]),
        "--data-path",
        str(data),
        "--engine",
        "eager",
        "-j",
        "0",
    ]
    assert main([*argv, "--no-progress"]) == 0
    assert (
        "top-5 is right by construction with 3 classes" in capsys.readouterr().out
    )  # a 100% that says nothing
    for image in (data / "val").glob("*/*.jpg"):
        image.write_bytes(b"not an image")
    for extra in ([], ["--table3", "--output-dir", str(tmp_path / "t3")]):
        code = main(["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(data), "--engine", "eager",
                     "-j", "0", "--no-progress", *extra])  # fmt: skip
        captured = capsys.readouterr()
        assert code == 1 and "nan" not in captured.out, captured.out
        one_line = captured.err.strip().splitlines()[-1]
        assert "none of its 9 image(s) could be read; nothing to score" in one_line, captured.err
    assert not (tmp_path / "t3").exists()


def test_class_mismatch_is_a_one_line_error_before_any_backend_is_timed(
    setup: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_timing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the engine was prepared before the data was checked")

    monkeypatch.setattr("googlenet.evaluate.models.optimize", no_timing)  # --engine auto times backends
    data = make_tree(tmp_path / "other", ["circle", "square", "triangle"], [(64, 64)])
    code = main(["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(data), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert "'triangle'" in err and "'star'" in err
    code = main(["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "none" in err


def test_classes_are_matched_by_name_not_order() -> None:
    assert match_classes(["a", "b", "c"], ["c", "a", "b"], "x") == [1, 2, 0]
    assert match_classes(["n1", "n2"], ["two", "one"], "x", model_ids=["n2", "n1"]) == [1, 0]
    with pytest.raises(googlenet.DataError, match="in the data only: 'd'"):
        match_classes(["a", "d"], ["a", "b"], "x")
    # ImageNet data (ids) against an ImageNet model with one class fewer: the ids that differ are named
    ids = ["n01440764", "n01443537", "n01484850"]
    with pytest.raises(
        googlenet.DataError, match=r"in the data only: 'n01484850'; in the checkpoint only: none"
    ):
        match_classes(["tench", "goldfish", "shark"], ["tench", "goldfish"], "x", ids, ids[:2])
    # ... and against a model whose class names are WordNet ids (trained with --dataset folder)
    assert match_classes(["tench", "goldfish"], ids[1::-1], "x", ids[:2]) == [1, 0]
    with pytest.raises(
        googlenet.DataError, match=r"in the data only: 'n01484850'; in the checkpoint only: none"
    ):
        match_classes(["tench", "goldfish", "shark"], ids[:2], "x", ids)
    # a folder of splits given where a split was meant, and names alike but for their Unicode encoding
    with pytest.raises(googlenet.DataError, match=r"its 2 classes .*'test', 'train' look like the splits"):
        match_classes(["test", "train"], ["a", "b", "c"], "x")
    # a folder copied from macOS (NFD names) scored by a model trained on Linux (NFC) matches; when
    # other names differ too, the error still says which ones are alike but for their encoding
    nfd, nfc = "u\u0308ber", "\u00fcber"
    assert match_classes(["a", nfd], [nfc, "a"], "x") == [1, 0]
    with pytest.raises(
        googlenet.DataError, match=r"differ only in how their accented letters .*'u\\\\u0308ber'"
    ):
        match_classes([nfd, "a", "d"], [nfc, "a", "b"], "x")
    with pytest.raises(googlenet.DataError, match=r"its 2 classes do not match"):  # two names, one class
        match_classes([nfd, nfc], [nfc, "b"], "x")
    with pytest.raises(googlenet.DataError, match=r"its 1 class does not match"):
        match_classes(["a"], ["b", "c"], "x")


def test_ensemble_members_must_agree(setup: dict[str, Path], tmp_path: Path) -> None:
    other = make_checkpoint(tmp_path / "other.pt", 3, ["circle", "square", "heart"])
    with pytest.raises(googlenet.CheckpointError, match="class 2 is 'heart'"):
        load_ensemble([setup["a"], other])
    bigger = make_checkpoint(tmp_path / "bigger.pt", 3, input_size=96)
    with pytest.raises(googlenet.CheckpointError, match="input_size 96"):
        load_ensemble([setup["a"], bigger])


def test_builtin_dataset_uses_its_val_split(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import googlenet.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "ensure_builtin", lambda **_: setup["data"])
    evalset = load_eval_set("builtin", None, CLASSES)
    assert len(evalset.samples) == 9 and all("/val/" in path for path, _ in evalset.samples)


def test_builtin_data_is_not_drawn_for_a_model_of_other_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import googlenet.data.synthetic as synthetic

    def no_drawing(**_: object) -> None:
        raise AssertionError("the built-in data was drawn for a model that cannot score it")

    monkeypatch.setattr(synthetic, "ensure_builtin", no_drawing)
    weights = tmp_path / "googlenet-random.pth"  # 1000 ImageNet classes, as torchvision publishes
    torch.save(googlenet.build_model("torchvision", num_classes=1000).state_dict(), weights)
    code = main(["evaluate", "--weights", str(weights), "--variant", "torchvision", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert "built-in data" in err and "--data-path" in err and "1000" in err
    code = main(["evaluate", "--weights", str(weights), "--variant", "torchvision", "--dataset", "builtin"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "the built-in data (--dataset builtin)" in err  # as asked, not "when no --data-path"
    code = main(["evaluate", "--checkpoint", str(weights), "--no-progress"])  # torchvision's file, our flag
    assert (
        code == 1
        and "it is a bare state dict (torchvision's, say): evaluate and predict read it with --weights"
        in (capsys.readouterr().err)
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["--table3", "--crops", "10"],
        ["--output-dir", "x"],
        ["--batch-size", "0"],
        ["--limit", "0"],
        ["--engine", "off", "--precision", "bf16"],
    ],
)
def test_bad_flag_combinations(
    setup: dict[str, Path], extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["evaluate", "--checkpoint", str(setup["a"]), "--data-path", str(setup["data"]), *extra])
    assert code == 1 and capsys.readouterr().err.count("\n") == 1


def test_imagenet_val_is_matched_by_wordnet_id(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The layout torchvision's ImageNet leaves after parsing the devkit: meta.bin and val/<wnid>/.
    wnids = ["n01", "n02", "n03"]
    root = tmp_path / "imagenet"
    for wnid, name in zip(wnids, CLASSES, strict=True):
        shutil.copytree(setup["data"] / "val" / name, root / "val" / wnid)
    devkit_names = {wnid: (f"devkit {wnid}", "synonym") for wnid in wnids}
    torch.save((devkit_names, []), root / "meta.bin")
    torch.manual_seed(1)
    model = googlenet.build_model("paper", num_classes=3)
    # Our names differ from the devkit's and our class order is reversed: the wnids decide.
    meta = default_meta(model, 64) | {"class_names": CLASSES[::-1], "wnids": wnids[::-1]}
    googlenet.save_checkpoint(tmp_path / "in.pt", model, meta)
    args = ["--checkpoint", str(tmp_path / "in.pt"), "--dataset", "imagenet", "--data-path", str(root)]
    report = run_json(args, capsys)
    assert report["images"] == 9 and "ImageNet val" in report["dataset"]
    assert [c["class"] for c in report["per_class"]] == CLASSES[::-1]
    assert all(c["images"] == 3 for c in report["per_class"])
    # A model trained with --dataset folder on an extracted tree: its class names are the WordNet ids.
    googlenet.save_checkpoint(
        tmp_path / "in.pt", model, default_meta(model, 64) | {"class_names": wnids[::-1]}
    )
    report = run_json(args, capsys)
    assert [c["class"] for c in report["per_class"]] == wnids[::-1] and report["images"] == 9


def test_images_are_grouped_into_full_model_calls(setup: dict[str, Path]) -> None:
    # 144 crops of a square image hold 48 distinct ones: three such images make one call of 144.
    # The grouping must not change any score: the same views with one crop per call agree exactly.
    calls: list[int] = []
    weights = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))

    def by_colour(batch: torch.Tensor) -> torch.Tensor:  # logits from each crop's mean colour
        calls.append(len(batch))
        return batch.mean(dim=(2, 3)) @ weights

    evalset = load_eval_set("folder", setup["data"], CLASSES)
    squares = [s for s in evalset.samples if Path(s[0]).name == "0.jpg"]  # the 64x64 images
    specs = [googlenet.data.crops.CropSpec(144, 32), googlenet.data.crops.CropSpec(1, 32)]
    views = [View("144", 0, (0,)), View("1", 1, (0,))]
    grouped = evaluate_views([Member(by_colour)], squares, specs, views, 3, batch_size=144)
    assert calls == [144]
    assert grouped["forward_passes"] == 144
    calls.clear()
    single = evaluate_views([Member(by_colour)], squares, specs, views, 3, batch_size=1)
    assert calls == [1] * 144
    for a, b in zip(grouped["views"], single["views"], strict=True):
        assert a.summary() == b.summary()
    # A group never exceeds the batch size: 48 + 48 would, so 48-crop calls stay apart at 90.
    calls.clear()
    evaluate_views([Member(by_colour)], squares, specs, views, 3, batch_size=90)
    assert calls == [48, 48, 48]


def test_merge_batches_shifts_indices_and_fill_calls_passes_errors_on_first() -> None:
    from googlenet.evaluate.protocol import CropBatch, fill_calls, merge_batches

    def image(value: int, target: int) -> CropBatch:  # one image, 2 distinct crops, 3 crops in its spec
        crops = torch.full((2, 3, 2, 2), value, dtype=torch.uint8)
        return CropBatch(crops, [torch.tensor([[0, 1, 1]])], torch.tensor([target]), [])

    empty = torch.empty((0, 3, 1, 1), dtype=torch.uint8)
    bad = CropBatch(empty, [], torch.empty(0, dtype=torch.long), [("x.jpg", "x.jpg: not an image")])
    merged = merge_batches([image(1, 0), bad, image(2, 1)])
    assert merged.crops[:, 0, 0, 0].tolist() == [1, 1, 2, 2]
    assert merged.indices[0].tolist() == [[0, 1, 1], [2, 3, 3]]
    assert merged.targets.tolist() == [0, 1]
    assert merged.errors == bad.errors

    groups = list(fill_calls([image(1, 0), bad, image(2, 1), image(3, 2)], crops_per_call=4))
    assert [len(g.crops) for g in groups] == [0, 4, 2]  # the error first, then 2 + 2, then 2
    assert groups[0].errors == bad.errors and not groups[1].errors
    assert groups[1].targets.tolist() == [0, 1] and groups[2].targets.tolist() == [2]


def test_table3_files_are_replaced_as_a_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C between two of the files once left a new table3.json beside an old table3.csv and png.
    import os
    import signal

    import googlenet.evaluate.table3 as table3
    from googlenet.evaluate import Table3Row, save_table3

    def rows(error: float) -> list[Table3Row]:
        return [Table3Row(models=1, crops=1, cost=1, top1_error=error, top5_error=error, delta_top5=None)]

    save_table3(tmp_path, rows(50.0), {"run": "old"})
    opened = []
    real_open = table3.atomic_open

    def interrupted_after_the_first(path: Path, mode: str = "wb") -> object:
        if opened:
            os.kill(os.getpid(), signal.SIGINT)
        opened.append(path)
        return real_open(path, mode)

    monkeypatch.setattr(table3, "atomic_open", interrupted_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        save_table3(tmp_path, rows(25.0), {"run": "new"})
    assert len(opened) == 3  # every file written, then the interruption
    assert json.loads((tmp_path / "table3.json").read_text())["run"] == "new"
    assert "25.0" in (tmp_path / "table3.csv").read_text()


def test_an_older_checkpoint_without_its_drawing_uses_the_run_config_beside_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its recipe has no built-in drawing: evaluate drew and scored the default 300 images, not the 20
    the run held out, without a word."""
    from googlenet.evaluate.command import _builtin_drawing
    from googlenet.train.config import dump_yaml, resolve

    model = googlenet.build_model("paper", num_classes=10)
    googlenet.save_checkpoint(tmp_path / "final.pt", model, default_meta(model, 64) | {"recipe": {}})
    with caplog.at_level(logging.WARNING, logger="googlenet"):
        assert _builtin_drawing([str(tmp_path / "final.pt")]) is None
    assert "records no built-in drawing (an older checkpoint) and has no run config.yaml" in caplog.text
    config = resolve({}, {"data.builtin_train_per_class": 4, "data.builtin_val_per_class": 2})
    (tmp_path / "config.yaml").write_text(dump_yaml(config, "test"))
    drawing = _builtin_drawing([str(tmp_path / "final.pt")])
    assert drawing is not None and (drawing["train_per_class"], drawing["val_per_class"]) == (4, 2)


def test_a_folder_of_some_of_the_models_classes_is_scored_with_class_subset(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An Imagenette-style folder (2 of the checkpoint's 3 classes; 10 of ImageNet's 1000) was refused
    with no way round it; the error now says so, and --class-subset scores each image over all the
    model's outputs, the same predictions as the full folder gives those images."""
    full_tree = make_tree(tmp_path / "full")
    part = tmp_path / "part"
    for name in ("circle", "star"):
        shutil.copytree(full_tree / "val" / name, part / "val" / name)
    args = ["evaluate", "--checkpoint", str(setup["a"]), "--engine", "off", "--no-progress", "--json"]
    assert main([*args, "--data-path", str(part)]) == 1
    assert (
        "they are 2 of its classes: --class-subset scores them over all 3 outputs" in capsys.readouterr().err
    )
    assert main([*args, "--data-path", str(part), "--class-subset"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 6 and [row["class"] for row in report["per_class"]] == ["circle", "star"]
    assert main([*args, "--data-path", str(full_tree)]) == 0
    full = {row["class"]: row for row in json.loads(capsys.readouterr().out)["per_class"]}
    assert all(row == full[row["class"]] for row in report["per_class"])
    with pytest.raises(googlenet.DataError, match="in the data only: 'd'"):  # never a superset
        match_classes(["a", "d"], ["a", "b", "c"], "x", subset=True)


def test_per_class_rows_stay_one_line_and_narrow(capsys: pytest.CaptureFixture[str]) -> None:
    """A class folder named with a newline split its row in two; a 200-character name padded every row."""
    from googlenet.evaluate.command import _print_report

    rows = [{"class": "line\nbreak", "images": 2, "top1_accuracy": 50.0, "top5_accuracy": 100.0},
            {"class": "L" * 200, "images": 0, "top1_accuracy": None, "top5_accuracy": None},
            {"class": "cat", "images": 1, "top1_accuracy": 0.0, "top5_accuracy": 100.0}]  # fmt: skip
    report = {"models": 1, "checkpoints": ["/m.pt"], "crops": 1, "reduce": "mean", "dataset": "d", "images": 3,
              "bad_images": [], "top1_error": 66.7, "top1_accuracy": 33.3, "top5_error": 0.0,
              "top5_accuracy": 100.0, "num_classes": 3, "cost": 1, "forward_passes": 3, "images_per_s": None,
              "engines": ["eager"], "per_class": rows}  # fmt: skip
    _print_report(report)
    out = capsys.readouterr().out.splitlines()
    assert "  line\\x0abreak" in "\n".join(out) and not any(
        line == "break" or line.startswith("break ") for line in out
    )
    cat = next(line for line in out if line.startswith("  cat"))
    assert len(cat) < 80, cat
