"""Every subcommand (walked from `build_parser()`, nested `detect` ones included) with bad flags.

Invalid numbers, unknown choices and missing required options are usage errors (exit 2); negative or
non-finite numbers, missing files and folders, the wrong kind of path and conflicting options are
runtime errors (exit 1). Either way: one line on stderr naming the problem, and no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from googlenet.cli import build_parser, main
from googlenet.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaves(sub, (*path, name))


LEAVES = dict(leaves(build_parser()))
NUMERIC = {float: "float", int: "int"}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    return code, err


def assert_one_line(code: int, err: str, allowed: tuple[int, ...], *names: str) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert any(_names(name, lines[0]) for name in names), (names, lines[0])


def _names(name: str, line: str) -> bool:
    """`name` stands in `line` as a whole word, not inside another word or hyphenated name: so "0" from
    "-b 0" is not found in a temporary folder's ".../pytest-0/..." and "b" not in "batch"."""
    return re.search(rf"(?<!\w)(?<!\w-){re.escape(name)}(?!\w)", line) is not None


def test_the_walk_reaches_every_subcommand() -> None:
    assert {" ".join(p) for p in LEAVES} >= {"summary", "train", "evaluate", "predict", "benchmark",
                                            "detect evaluate", "detect proposals", "detect predict", "detect boxreg"}  # fmt: skip


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_usage_errors_are_one_line_exit_2(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    parser = LEAVES[path]
    required = [a for a in parser._actions if a.required]
    if required:  # nothing given at all
        code, err = run(list(path), capsys)
        assert_one_line(code, err, (2,), "required", "arguments")
    code, err = run([*path, "--no-such-flag"], capsys)
    assert_one_line(code, err, (2,), "--no-such-flag", "required")  # argparse names what is missing first
    if not required:  # the error names the subcommand whose usage to read
        assert err.startswith(f"googlenet {' '.join(path)}: error: unrecognized arguments: --no-such-flag"), (
            err
        )
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:
            continue
        flag = action.option_strings[-1]
        if action.choices is not None:
            code, err = run([*path, flag, "no-such-choice"], capsys)
            assert_one_line(code, err, (2,), "no-such-choice")
        elif action.type in NUMERIC:  # as many words as the flag takes (--mean R G B: three)
            words = ["twelve"] * (action.nargs if isinstance(action.nargs, int) else 1)
            code, err = run([*path, flag, *words], capsys)
            assert_one_line(code, err, (2,), "twelve")
        if action.nargs == "?":  # the value is optional (benchmark --json [FILE]): nothing is missing
            continue
        code, err = run([*path, flag], capsys)  # the value is missing
        assert_one_line(code, err, (2,), flag)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid inputs, so each case differs from a working command line in one thing only."""
    import torch

    import googlenet
    from badinputs import sample_image
    from conftest import make_tiny_data
    from googlenet.model.weights import default_meta
    from test_reliability_inputs import _voc_tree

    root = tmp_path_factory.mktemp("cli")
    data = make_tiny_data(root)
    torch.manual_seed(0)
    model = googlenet.build_model("paper", num_classes=3, aux_logits=False)
    googlenet.save_checkpoint(
        root / "cls.pt", model, default_meta(model, 64) | {"class_names": ["disc", "ring", "square"]}
    )
    googlenet.save_checkpoint(
        root / "det.pt", model, default_meta(model, 64) | {"class_names": ["background", "disc", "x"]}
    )
    sample_image().save(root / "image.png")
    voc = _voc_tree(root / "voc", {})
    (root / "dets.csv").write_text("image_id,class,score,xmin,ymin,xmax,ymax\nscene0,disc,0.9,20,20,70,70\n")
    (root / "file.txt").write_text("a file, not a folder\n")
    return {"root": root, "data": data, "cls": root / "cls.pt", "det": root / "det.pt", "image": root / "image.png",
            "voc": voc, "dets": root / "dets.csv", "file": root / "file.txt"}  # fmt: skip


def baseline(path: tuple[str, ...], f: dict[str, Path]) -> list[str]:
    """A command line that would run (quickly) for each known subcommand."""
    out = str(f["root"] / "out")
    return {
        ("summary",): ["--input-size", "64"],
        ("train",): ["--data-path", str(f["data"]), "--output-dir", out, "--input-size", "64", "-b", "4", "-j", "0",
                     "--epochs", "1", "--stop-after-steps", "1", "--no-progress"],
        ("evaluate",): ["--checkpoint", str(f["cls"]), "--data-path", str(f["data"]), "--engine", "off"],
        ("predict",): [str(f["image"]), "--checkpoint", str(f["cls"])],
        ("benchmark",): ["--quick", "--only", "gemm"],
        ("detect", "evaluate"): ["--annotations", str(f["voc"]), "--detections", str(f["dets"])],
        ("detect", "proposals"): ["--annotations", str(f["voc"])],
        ("detect", "predict"): ["--checkpoint", str(f["det"]), "--annotations", str(f["voc"]), "--output", out + ".csv"],
        ("detect", "boxreg"): ["--checkpoint", str(f["det"]), "--annotations", str(f["voc"]), "--output", out + ".pt"],
        ("detect", "multibox"): ["--annotations", str(f["voc"]), "--train-set", "val", "--val-set", "val",
                                 "--output", out + "-mb.pt", "--epochs", "1", "-b", "1", "--input-size", "32"],
        ("detect", "train"): ["--annotations", str(f["voc"]), "--train-set", "val", "--val-set", "val",
                              "--output-dir", out + "-det", "--epochs", "1", "--input-size", "64", "--no-progress"],
        ("export",): ["--checkpoint", str(f["cls"]), "--output", out + ".onnx"],
        ("ablate",): ["-o", out, "--data-path", str(f["data"]), "--arms", "full", "--seeds", "0", "--epochs", "1"],
    }.get(path, [])  # fmt: skip


# (flag, value) pairs that must be refused; each is tried on its subcommand's working baseline
RUNTIME_CASES: dict[tuple[str, ...], list[tuple[str, ...]]] = {
    ("summary",): [("--input-size", "-5"), ("--input-size", "0"), ("--num-classes", "0"),
                   ("--num-classes", "100000000000")],
    ("train",): [("--epochs=-1",), ("--epochs", "99999999999999999999"), ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("-b", "0"), ("--momentum", "1.5"),
                 ("--dropout", "1"), ("--seed=-3",), ("--workers=-1",), ("--workers", "100000"), ("--input-size", "16"), ("--device", "tpu"),
                 ("--weight-decay", "inf"), ("--scale-min", "0.9", "--scale-max", "0.5"), ("--test-only",),
                 ("--config", "MISSING"), ("--config", "DIR"), ("--config", "CLS"), ("--resume", "MISSING"), ("--data-path", "MISSING"),
                 ("--data-path", "FILE"), ("--output-dir", "UNDER_FILE"), ("--nesterov", "--momentum", "0"),
                 ("--ensemble", "2", "--test-only", "--resume", "CLS"), ("--epochs", "0"), ("--dataset", "builtin"),
                 ("--test-only", "--resume", "CLS", "--lr", "0.5"), ("--test-only", "--resume", "CLS", "--variant", "bn"),
                 ("--test-only", "--resume", "CLS", "--epochs", "3"), ("--no-aux", "--aux-weight", "0.5"),
                 ("--average", "none", "--average-start", "0.3"), ("--no-photometric", "--brightness", "0.2"),
                 ("--amp-dtype", "fp16"), ("--lr-scheduler", "cosine", "--lr-gamma", "0.5"), ("--balance-share", "0.5"),
                 ("--bn-stats", "average"), ("--average", "polyak", "--ema-decay", "0.9"), ("--norm-weight-decay", "0"),
                 ("--bn-batches", "5"), ("--input-size", "64", "--resize-size", "4682"), ("--resume", ""),
                 ("--sync-bn",), ("--lr-warmup-method", "constant")],
    ("evaluate",): [("--limit", "0"), ("-b", "0"), ("--workers=-2",), ("--workers", "100000"), ("--crops", "10", "--table3"),
                    ("--output-dir", "X"), ("--checkpoint", "MISSING"), ("--checkpoint", "DIR"), ("--checkpoint", "IMAGE"),
                    ("--data-path", "MISSING"), ("--data-path", "FILE"), ("--weights", "MISSING"), ("--device", "cuda:7"), ("--device", "mps"),
                    ("--table3", "--output-dir", "DIR"), ("--reduce", "max"), ("--dataset", "builtin")],
    ("predict",): [("--reduce", "max"), ("--topk", "0"), ("--checkpoint", "MISSING"), ("--checkpoint", "FILE"), ("--weights", "FILE"),
                   ("--engine", "off", "--precision", "bf16"), ("--device", "meta")],
    ("benchmark",): [("--repeats", "0"), ("--batch", "0"), ("--train-size", "8"), ("--data-path", "MISSING"),
                    ("--only", "data", "--data-path", "DIR"), ("--only", "gemm", "--json", "DIR"),
                    ("--only", "gemm", "--json", "CLS"), ("--train-size", "112"), ("--compile",), ("--turns", "3")],
    ("export",): [("--output", "FILE", "--format", "onnx"), ("--output", "DIR", "--format", "onnx"), ("--format", "torchscript"), ("--no-aux",),
                  ("--output", "/proc/no-such-place/x.onnx"), ("--format", "checkpoint", "--no-verify")],
    ("detect", "evaluate"): [("--iou", "0"), ("--iou", "nan"), ("--annotations", "MISSING"), ("--annotations", "FILE"),
                             ("--detections", "MISSING"), ("--detections", "DIR"), ("--detections", "IMAGE"),
                             ("--image-set", "nope"), ("--plot-dir", "FILE")],
    ("detect", "proposals"): [("--limit", "0"), ("--max-side", "-5"), ("--annotations", "MISSING")],
    ("detect", "predict"): [("--limit", "0"), ("--score-threshold", "nan"), ("--nms-iou", "0"), ("--max-per-image", "0"),
                            ("--max-side", "-5"), ("--checkpoint", "MISSING"), ("--checkpoint", "CLS"),
                            ("--annotations", "MISSING"), ("--box-regression", "MISSING"), ("--box-regression", "CLS"),
                            ("--draw-threshold", "2", "--draw", "DIR"), ("--draw", "UNDER_FILE"), ("--draw", "FILE"), ("--output", "CLS"),
                            ("--output", "DET"), ("--output", "DIR"), ("--output", "FILE")],
    ("detect", "boxreg"): [("--limit", "0"), ("--min-iou", "0"), ("--min-iou", "nan"), ("--ridge", "-1"), ("--ridge", "0"),
                           ("--ridge", "inf"), ("--per-image", "0"), ("--checkpoint", "MISSING"), ("--checkpoint", "CLS"),
                           ("--annotations", "MISSING"), ("--output", "DET"), ("--output", "CLS"), ("--output", "DIR"),
                           ("--output", "FILE")],
    ("detect", "multibox"): [("--val-set", "nope"), ("--train-set", "nope"), ("--priors", "0"), ("--top-k", "0"),
                             ("--lr", "nan"), ("-b", "0"), ("--epochs", "0"), ("--input-size", "16"),
                             ("--output", "CLS"), ("--output", "DIR"), ("--init-from", "MISSING")],
    ("detect", "train"): [("--val-set", "nope"), ("--train-set", "nope"), ("--context", "200"),
                          ("--positives-per-image=-1",), ("--background-per-positive", "nan"), ("--multibox", "FILE"),
                          ("--multibox", "CLS"), ("--max-side", "5"), ("--annotations", "MISSING"),
                          ("--data-path", "DIR"), ("--output-dir", "FILE"), ("--balance-share", "1.5")],
    ("ablate",): [("--seeds", "-1"), ("--seeds", "1", "1"), ("--parallel", "0"), ("--torchrun=-1",),
                  ("--arms", "nope"), ("--arms", "no-aux"), ("--data-path", "MISSING"), ("--set", "lr"),
                  ("--set", "optim.lr=-1"), ("--grad-norms-every=-1",), ("--test-limit", "0"), ("--epochs=-1",), ("--epochs", "0"), ("--report-only",),
                  ("--set", "run.epochs=5"), ("--config", "DIR")],
}  # fmt: skip


def _resolve(value: str, f: dict[str, Path]) -> str:
    return {"MISSING": str(f["root"] / "no-such-thing"), "DIR": str(f["root"]), "FILE": str(f["file"]),
            "IMAGE": str(f["image"]), "CLS": str(f["cls"]), "DET": str(f["det"]), "UNDER_FILE": str(f["file"] / "run")}.get(value, value)  # fmt: skip


CASES = [(path, case) for path, cases in RUNTIME_CASES.items() if path in LEAVES for case in cases]


@pytest.mark.parametrize(("path", "case"), CASES, ids=[" ".join(p) + " " + " ".join(c) for p, c in CASES])
def test_bad_values_paths_and_conflicts_are_one_line(
    path: tuple[str, ...],
    case: tuple[str, ...],
    fixtures: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = [_resolve(v, fixtures) for v in case]
    code, err = run([*path, *baseline(path, fixtures), *values], capsys)
    # The message names the flag, the value or the path: whatever the user has to change.
    names = [v for v in values if len(v) > 1] + [v.lstrip("-").split("=")[0].replace("-", "_") for v in case]
    names += [v.lstrip("-").split("=")[0] for v in case] + [v.split("=")[-1] for v in case]
    assert_one_line(
        code,
        err,
        (1, 2),
        *names,
        *[n.replace("_", ".") for n in names],
        *[n.replace("_", " ") for n in names],
    )


@pytest.mark.parametrize(
    ("path", "case", "expected"),
    [
        (("ablate",), ("-o", "FILE"), "is a file, not a study folder"),
        (("export",), ("--output", "DIR"), "is a folder; give a file name"),
        (("evaluate",), ("--table3", "--output-dir", "FILE"), "is a file, not a folder"),
        (("train",), ("--config", "FIFO"), "not a regular file"),
        (
            ("export",),
            ("--format", "onnx", "--output", "FIFO"),
            "is not a regular file",
        ),  # it was replaced by a file
        (("detect", "predict"), ("--box-regression", "FIFO"), "not a regular file"),  # it hung
    ],
    ids=[
        "ablate-o-file",
        "export-output-folder",
        "table3-output-file",
        "config-pipe",
        "export-output-pipe",
        "boxreg-pipe",
    ],
)
def test_a_path_of_the_wrong_kind_is_named_as_such(
    path: tuple[str, ...], case: tuple[str, ...], expected: str, fixtures: dict[str, Path],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer: it must be refused before that
    values = [str(fifo) if v == "FIFO" else _resolve(v, fixtures) for v in case]
    code, err = run([*path, *baseline(path, fixtures), *values], capsys)
    assert_one_line(code, err, (1,), expected)
    assert fifo.is_fifo()  # still the pipe it was


def test_detect_evaluate_warns_about_rows_it_cannot_score(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dets = tmp_path / "typos.csv"
    dets.write_text("image_id,class,score,xmin,ymin,xmax,ymax\nscene0,disc,0.9,20,20,70,70\n"
                    "scene0,dsic,0.8,20,20,70,70\nscene9,disc,0.7,20,20,70,70\n")  # fmt: skip
    argv = ["detect", "evaluate", "--annotations", str(fixtures["voc"]), "--detections", str(dets), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["detections_on_unknown_images"], report["detections_of_unknown_classes"]) == (1, 1)
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 2 and "'scene9'" in warnings[0] and "'dsic'" in warnings[1]
    # "not scored" means it: the mAP is that of the rows that can be scored (the stray ones were false
    # positives until 2026-12-04), and a BOM (as Excel writes CSV) does not hide the header.
    clean = tmp_path / "clean.csv"
    clean.write_text("image_id,class,score,xmin,ymin,xmax,ymax\nscene0,disc,0.9,20,20,70,70\n")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + dets.read_bytes())
    for other in (clean, bom):
        assert main([*argv[:4], "--detections", str(other), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["mAP"] == report["mAP"] == 0.5  # scene0 found, scene1 not


def test_detect_train_never_rebuilds_a_runs_region_set(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = baseline(("detect", "train"), fixtures)
    folder = tmp_path / "det-run"
    argv[argv.index("--output-dir") + 1] = str(folder)
    (folder / "regions").mkdir(parents=True)
    (folder / "regions" / "manifest.json").write_text('{"the run": "trained on this"}')
    (folder / "final.pt").write_bytes(b"a finished run")
    code, err = run(["detect", "train", *argv], capsys)
    assert_one_line(code, err, (1,), "holds a finished run (final.pt)")
    assert (folder / "regions" / "manifest.json").read_text() == '{"the run": "trained on this"}'
    assert sorted(p.name for p in folder.iterdir()) == ["final.pt", "regions"]
    # a folder the refused command created itself is not left behind
    argv[argv.index("--output-dir") + 1] = str(tmp_path / "new-run")
    code, err = run(["detect", "train", *argv, "--train-set", "nope"], capsys)
    assert_one_line(code, err, (1,), "nope")
    assert not (tmp_path / "new-run").exists()


def test_detect_evaluate_on_odd_annotations(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    voc = tmp_path / "voc"
    shutil.copytree(fixtures["voc"], voc)
    year = voc / "VOCdevkit" / "VOC2007"
    (year / "ImageSets" / "Main" / "val.txt").write_text("scene0\n\nscene1\n")  # a blank line: skipped
    argv = ["detect", "evaluate", "--annotations", str(voc), "--detections", str(fixtures["dets"]), "--json"]
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["images"] == 2
    # a class name is not a path: the plot stays inside --plot-dir
    xml = (year / "Annotations" / "scene0.xml").read_text()
    (year / "Annotations" / "scene0.xml").write_text(
        xml.replace("<name>disc</name>", "<name>a/../../up</name>")
    )
    dets = tmp_path / "odd.csv"
    dets.write_text("image_id,class,score,xmin,ymin,xmax,ymax\nscene0,a/../../up,0.9,20,20,70,70\n")
    plots = tmp_path / "plots" / "pr"
    assert main([*argv[:4], "--detections", str(dets), "--plot-dir", str(plots), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)["plots"]
    assert all(Path(p).parent == plots and Path(p).is_file() for p in written) and len(written) == 2
    # a folder of the user's is refused before any work; an earlier call's plot of a class this call
    # does not plot is removed, not left to pass for today's
    (plots / "thesis.tex").write_text("mine")
    assert main([*argv[:4], "--detections", str(dets), "--plot-dir", str(plots)]) == 1
    assert "--plot-dir" in capsys.readouterr().err and (plots / "thesis.tex").read_text() == "mine"
    (plots / "thesis.tex").unlink()
    (plots / "pr-earlier.png").write_bytes(b"old")
    assert main([*argv[:4], "--detections", str(dets), "--plot-dir", str(plots), "--json"]) == 0
    assert sorted(p.name for p in plots.iterdir()) == sorted(Path(p).name for p in written)
    capsys.readouterr()
    # only difficult objects: the mAP is undefined, null in JSON and said so in text
    for image in ("scene0", "scene1"):
        path = year / "Annotations" / f"{image}.xml"
        path.write_text(path.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>"))
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] is None
    assert main(argv[:-1]) == 0 and "mAP undefined" in capsys.readouterr().out
    # a box that is no box names the annotation file
    for coords, what in (("<xmin>99</xmin>", "has xmax < xmin"), ("<xmin>nan</xmin>", "not finite")):
        path = year / "Annotations" / "scene1.xml"
        path.write_text(re.sub(r"<xmin>[^<]*</xmin>", coords, path.read_text()))
        code, err = run(argv[:-1], capsys)
        assert_one_line(code, err, (1,), "scene1.xml")
        assert what in err
    # an empty image list is named, not scored as NaN over 0 images (proposals printed "nan%")
    (year / "ImageSets" / "Main" / "val.txt").write_text("\n")
    for command in (argv[:-1], ["detect", "proposals", "--annotations", str(voc)]):
        code, err = run(command, capsys)
        assert_one_line(code, err, (1,), "val.txt lists no images")


def test_a_new_run_never_starts_over_another_or_over_other_files(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = baseline(("train",), fixtures)

    def start(folder: Path, *extra: str) -> tuple[int, str]:
        line = list(argv)
        line[line.index("--output-dir") + 1] = str(folder)
        return run(["train", *line, *extra], capsys)

    done = tmp_path / "done"  # a finished run whose 124 MB last.pt the user deleted
    done.mkdir()
    (done / "final.pt").write_bytes(b"the weights")
    (done / "results.json").write_text("{}")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file\n")
    own_config = tmp_path / "own-config"  # a config.yaml that googlenet train did not write
    own_config.mkdir()
    (own_config / "config.yaml").write_text("optim:\n  lr: 0.02\n")
    ensemble = tmp_path / "ensemble"
    (ensemble / "member-0").mkdir(parents=True)
    for folder, extra, message in ((done, (), "holds a finished run (final.pt)"), (done, ("--ensemble", "2"), "final.pt"),
                                   (mine, (), "holds other files (notes.txt)"), (ensemble, (), "holds an ensemble"),
                                   (own_config, (), "holds other files (config.yaml)")):  # fmt: skip
        code, err = start(folder, *extra)
        assert_one_line(code, err, (1,), message)
    assert (done / "final.pt").read_bytes() == b"the weights" and sorted(p.name for p in done.iterdir()) == [
        "final.pt", "results.json"]  # fmt: skip
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # refused before its lock file is made


def test_a_run_stores_its_data_path_absolute_and_resumes_from_anywhere(
    fixtures: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = baseline(("train",), fixtures)
    monkeypatch.chdir(fixtures["data"].parent)
    argv[argv.index("--data-path") + 1] = fixtures["data"].name  # relative to where the run starts
    argv[argv.index("--output-dir") + 1] = str(tmp_path / "run")
    assert run(["train", *argv], capsys)[0] == 0  # one step, then last.pt
    assert f"data_path: {fixtures['data']}" in (tmp_path / "run" / "config.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    code, err = run(
        ["train", "--resume", "run", "--stop-after-steps", "1", "-j", "0", "--no-progress"], capsys
    )
    assert_one_line(code, err, (1,), "already at step 1")  # it took a second step
    assert (
        run(["train", "--resume", "run", "--test-only", "-b", "3", "-j", "0", "--no-progress"], capsys)[0]
        == 0
    )


def test_a_resumed_ensemble_keeps_its_settings(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = baseline(("train",), fixtures)
    folder = tmp_path / "ens"
    argv[argv.index("--output-dir") + 1] = str(folder)
    assert run(["train", *argv, "--ensemble", "2"], capsys)[0] == 0  # member-0 stops after one step
    before = (folder / "config.yaml").read_bytes()
    for extra, message in ((["--lr", "0.5"], "optim.lr=0.5"), (["--variant", "bn"], "model.variant='bn'"),
                           (["--ensemble", "3"], "run.ensemble=3")):  # fmt: skip
        code, err = run(["train", "--resume", str(folder), "-j", "0", "--no-progress", *extra], capsys)
        assert_one_line(code, err, (1,), message)
    assert (folder / "config.yaml").read_bytes() == before


def test_a_resumed_run_keeps_its_folder_kind_and_classes(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    argv = baseline(("train",), fixtures)
    argv[argv.index("--output-dir") + 1] = str(run_dir)
    assert run(["train", *argv], capsys)[0] == 0  # one step, then last.pt
    before = {name: (run_dir / name).read_bytes() for name in ("last.pt", "config.yaml")}
    other = tmp_path / "two-classes"
    for split in ("train", "val"):
        for name in ("disc", "ring"):
            (other / split).mkdir(parents=True, exist_ok=True)
            (other / split / name).symlink_to(fixtures["data"] / split / name)
    rest = ["-j", "0", "--no-progress"]
    for extra, message in (
        (
            ["--output-dir", str(tmp_path / "elsewhere")],
            f"continues in its own folder {run_dir}; drop "
            f"--output-dir (or start a new run from its weights: --init-from {run_dir / 'last.pt'} --output-dir",
        ),
        (["--ensemble", "2"], "holds one model, not an ensemble"),
        (["--data-path", str(other)], "trained on 3 classes, the data has 2"),
    ):
        code, err = run(["train", "--resume", str(run_dir), *rest, *extra], capsys)
        assert_one_line(code, err, (1,), message)
    # a classifier's run is not continued by detect train (it trained an epoch on, then failed)
    code, err = run(["detect", "train", "--resume", str(run_dir), "--epochs", "3", *rest], capsys)
    assert_one_line(code, err, (1,), "not a detect train run", "googlenet train --resume")
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # nothing rewritten
    # nor a detect train run by train, which would leave its detection results behind the model
    (run_dir / "detection-setup.json").write_text("{}")
    code, err = run(["train", "--resume", str(run_dir), "--epochs", "3", *rest], capsys)
    assert_one_line(code, err, (1,), "a detect train run", "googlenet detect train --resume")
    (run_dir / "detection-setup.json").unlink()
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # nothing rewritten
    assert not (tmp_path / "elsewhere").exists() and not (run_dir / "member-0").exists()
    # another command never writes over a checkpoint the run lists in its checkpoints.json
    code, err = run(["export", "--checkpoint", str(fixtures["cls"]), "-o", str(run_dir / "last.pt")], capsys)
    assert_one_line(code, err, (1,), "checkpoints.json")
    assert (run_dir / "last.pt").read_bytes() == before["last.pt"]
    # --test-only evaluates on the run's own data without --data-path
    code, _ = run(["train", "--resume", str(run_dir), "--test-only", "-j", "0", "--no-progress"], capsys)
    assert code == 0
    # ... and takes the training command given again (torchvision's habit) where its values are the run's;
    # it refused them all ("model.input_size, run.epochs ..."), and names another value by its flag
    code, err = run(["train", *argv, "--resume", str(run_dir), "--test-only"], capsys)
    assert code == 0, err
    code, err = run(
        ["train", *argv, "--resume", str(run_dir), "--test-only", "--lr", "0.5", "--wd", "0"], capsys
    )
    assert_one_line(
        code, err, (1,), "differ from its training and do not apply: --lr, --weight-decay (drop them)"
    )


def test_torchvision_reference_flags_are_pointed_to_ours(capsys: pytest.CaptureFixture[str]) -> None:
    # A user of torchvision's references/classification/train.py types its flags by habit; each was a
    # bare "unrecognized arguments"
    code, err = run(["train", "--model", "googlenet", "--model-ema", "--print-freq=10"], capsys)
    assert_one_line(code, err, (2,), "unrecognized arguments: --model googlenet --model-ema --print-freq=10")
    for hint in (
        "torchvision's --model is --variant (paper, bn or torchvision) here",
        "torchvision's --model-ema is --average ema here",
        "torchvision's --print-freq is --log-every here",
    ):
        assert hint in err, err
    code, err = run(["train", "--auto-augment", "ta_wide"], capsys)
    assert_one_line(
        code, err, (2,), "--auto-augment has no counterpart here: the augmentation is section 6's"
    )
    code, err = run(["train", "--lr-scheduler", "exponentiallr"], capsys)
    assert_one_line(code, err, (2,), "--lr-scheduler step --lr-step-size 1")
    from googlenet.train.command import build_config

    for name, ours in (("StepLR", "step"), ("cosineannealinglr", "cosine")):  # torchvision's names, any case
        args = build_parser().parse_args(["train", "--lr-scheduler", name])
        assert build_config(args)[0].schedule.lr_scheduler == ours


def test_what_counts_as_a_detect_train_run(tmp_path: Path) -> None:
    from googlenet.train.runs import is_detection_run

    det = tmp_path / "det"
    for folder in (det / "member-0", det / "cls", tmp_path / "plain" / "member-0"):
        folder.mkdir(parents=True)
    (det / "detection-setup.json").write_text("{}")
    assert is_detection_run(det) and is_detection_run(det / "member-0")  # the run and its ensemble's member
    assert not is_detection_run(det / "cls")  # a classification run kept inside a detect run's folder
    assert not is_detection_run(tmp_path / "plain" / "member-0") and not is_detection_run(tmp_path)


def test_one_class_and_abort_on_a_bad_file_are_one_line(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A one-class folder would train to loss 0 and 100% at once; `--on-bad abort` stops at the first bad
    file with one line, without first saying that it skips it."""
    argv = baseline(("train",), fixtures)
    one = tmp_path / "one-class"
    for split in ("train", "val"):
        (one / split).mkdir(parents=True)
        (one / split / "disc").symlink_to(fixtures["data"] / split / "disc")
    argv[argv.index("--data-path") + 1] = str(one)
    code, err = run(["train", *argv], capsys)
    assert_one_line(code, err, (1,), "needs at least 2 classes, found 1 (disc)")
    bad = tmp_path / "bad"
    for split in ("train", "val"):
        for name in ("disc", "ring"):
            (bad / split / name).mkdir(parents=True)
            for image in sorted((fixtures["data"] / split / name).iterdir()):
                (bad / split / name / image.name).symlink_to(image)
    (bad / "train" / "ring" / "zz-broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    argv[argv.index("--data-path") + 1] = str(bad)
    code, err = run(["train", *argv, "--on-bad", "abort"], capsys)
    assert_one_line(code, err, (1,), "zz-broken.jpg: not an image")
    assert "skipping" not in err and "1 bad file(s)" in err
    # Unscanned, the bad file is met in a loader worker: torch re-raises it with the worker's traceback,
    # and its live workers (which ignore SIGTERM) kept the process from exiting. One line, and an exit.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    stop = argv.index("--stop-after-steps")
    whole_epoch = argv[:stop] + argv[stop + 2 :]  # every image is drawn once in the epoch, the bad one too
    done = subprocess.run(
        [sys.executable, "-m", "googlenet", "train", *whole_epoch, "--on-bad", "abort", "--no-scan-bad-files", "-j", "1",
         "--output-dir", str(tmp_path / "unscanned")],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("googlenet train: error: "), done.stderr
    assert "zz-broken.jpg: not an image" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["predict", "boxreg"])
def test_detect_outputs_never_replace_a_checkpoint(
    command: str, fixtures: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # A checkpoint named as --output (its own --checkpoint, or another) is refused before any work.
    for victim in (fixtures["det"], fixtures["cls"]):
        before = victim.read_bytes()
        argv = list(baseline(("detect", command), fixtures))
        argv[argv.index("--output") + 1] = str(victim)
        code, err = run(["detect", command, *argv], capsys)
        assert code == 1 and "--output" in err and victim.read_bytes() == before, err


def test_check_output_replaces_only_its_own_kind(tmp_path: Path) -> None:
    from googlenet.errors import ConfigError
    from googlenet.io import check_output

    def is_csv(file: Path) -> bool:
        return file.read_text().startswith("image_id,")

    earlier, empty, other = tmp_path / "dets.csv", tmp_path / "empty.csv", tmp_path / "notes.txt"
    earlier.write_text("image_id,class\n")
    empty.touch()
    other.write_text("keep me\n")
    for ok in (earlier, empty, tmp_path / "new" / "dets.csv"):  # an earlier result, an empty file, a new path
        check_output("--output", ok, replaceable=is_csv, kind="a detections CSV")
    with pytest.raises(ConfigError, match=r"--output .*notes\.txt: exists and is not a detections CSV"):
        check_output("--output", other, replaceable=is_csv, kind="a detections CSV")
    link = tmp_path / "link.csv"
    link.symlink_to(earlier)
    with pytest.raises(ConfigError, match="is also --checkpoint"):  # the same file by another name
        check_output("--output", link, inputs={"--checkpoint": [str(other), str(earlier)]})
    with pytest.raises(ConfigError, match="is a folder"):
        check_output("--output", tmp_path)
    with pytest.raises(ConfigError, match="--output -: this output is a file, not standard output"):
        check_output("--output", "-")  # `detect predict --output -` wrote a file named "-"
    from googlenet.io import check_output_folder

    with pytest.raises(ConfigError, match="--plot-dir -: this output is a folder, not standard output"):
        check_output_folder("--plot-dir", "-", lambda name: True, "plot", "")


def test_true_processes_exit_with_one_line(fixtures: dict[str, Path]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for argv, expected in (
        (["train", "--lr", "fast"], 2),
        (["predict", str(fixtures["image"]), "--checkpoint", str(fixtures["file"])], 1),
        (["detect"], 2),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "googlenet", *argv], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == expected, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_ctrl_c_while_pytorch_loads_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import googlenet.cli

    def interrupted(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        raise KeyboardInterrupt

    monkeypatch.setattr(googlenet.cli, "build_parser", interrupted)
    code, err = run(["summary"], capsys)
    assert_one_line(code, err, (130,), "interrupted")
    # and the window before main() is short: importing the package and the CLI does not load PyTorch
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    probe = "import sys, googlenet, googlenet.cli; print('torch' in sys.modules, googlenet.__version__)"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split()[0] == "False", done.stdout + done.stderr


def test_the_command_listing_is_the_modules_own() -> None:
    # `googlenet --help` lists the commands from cli.COMMANDS without importing their modules
    import googlenet.cli

    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    listed = {choice.dest: choice.help for choice in action._choices_actions}
    assert listed == {word: text for word, (_, text) in googlenet.cli.COMMANDS.items()}
    assert [module for module, _ in googlenet.cli.COMMANDS.values()] == list(googlenet.cli.SUBCOMMANDS)


def test_help_and_a_mistyped_command_load_no_pytorch_and_a_command_only_its_own_module() -> None:
    # The listing took 3 s here (every subcommand module imports PyTorch); a mistyped command as long.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    probe = (
        "import sys\n"
        "from googlenet.cli import main\n"
        "codes = [main(argv) for argv in (['--help'], ['trian'], [], ['--version'])]\n"
        "print('RESULT', codes, 'torch' in sys.modules, file=sys.stderr)\n"
        "code = main(['report', '--help'])\n"
        "print('RESULT', code, sorted(m for m in sys.modules if m.endswith('.command')), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    results = [line for line in done.stderr.splitlines() if line.startswith("RESULT")]
    assert results == ["RESULT [0, 2, 2, 0] False", "RESULT 0 ['googlenet.report.command']"], done.stderr
    assert "invalid choice: 'trian'" in done.stderr and "train GoogLeNet" in done.stdout


def test_sigterm_unwinds_as_ctrl_c_does_with_exit_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    import googlenet.cli

    real = googlenet.cli.build_parser

    def terminated_while_loading(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        os.kill(os.getpid(), signal.SIGTERM)  # a batch scheduler's stop, delivered here
        return real(*args, **kwargs)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(googlenet.cli, "build_parser", terminated_while_loading)
    code, err = run(["summary"], capsys)
    assert_one_line(code, err, (143,), "terminated (SIGTERM)")
    assert signal.getsignal(signal.SIGTERM) is before  # main() leaves the caller's handler in place


def test_a_signal_after_the_error_line_ends_the_command_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # torchrun stops the other processes when one fails: a SIGTERM while a process reports its own
    # error escaped as a `Terminated` traceback (3 of 6 tries). The error line stays the only line.
    import signal

    import googlenet.cli
    import googlenet.model.summary as summary

    def mistake(args: object) -> int:
        raise ConfigError("a mistake")

    real, sent = googlenet.cli._say, []

    def say_then_terminated(line: str, cause: bool = True) -> None:
        real(line, cause)
        if not sent:
            sent.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # delivered right after the line

    monkeypatch.setattr(summary, "run", mistake)
    monkeypatch.setattr(googlenet.cli, "_say", say_then_terminated)
    code, err = run(["summary"], capsys)
    assert code == 143
    assert err.strip().splitlines() == ["googlenet summary: error: a mistake"]


def test_a_signal_during_native_code_is_raised_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ONNX exporter and C extensions call back into Python: a KeyboardInterrupt raised there once
    # aborted the process from C++ (exit 134) or read as "onnxruntime is not installed".
    import signal

    from googlenet.signals import held_import, signals_held

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")  # the block runs to its end ...
        steps.append("not reached")  # ... and the interruption comes as it ends
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    terminated: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert not terminated
        assert terminated == [signal.SIGTERM]  # the handler installed before, once
    finally:
        signal.signal(signal.SIGTERM, before)

    (tmp_path / "slow_extension.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nLOADED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        held_import("slow_extension")
    assert sys.modules["slow_extension"].LOADED  # imported whole, then interrupted
    monkeypatch.delitem(sys.modules, "slow_extension")


def test_a_signal_while_the_subcommands_load_waits_for_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Loading the subcommands imports PyTorch and numpy; a Ctrl-C inside their C code aborted the
    # process, gave a RecursionError in numpy or was lost (a timed-signal sweep: 18 of 142 runs).
    import signal

    import googlenet.cli

    real, built = googlenet.cli.build_parser, []

    def interrupted_while_loading(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        os.kill(os.getpid(), signal.SIGINT)
        built.append(real(*args, **kwargs))  # runs to its end ...
        return built[-1]

    monkeypatch.setattr(googlenet.cli, "build_parser", interrupted_while_loading)
    code, err = run(["detect", "predict", "--limit", "2"], capsys)
    assert built and code == 130 and err.strip() == "googlenet detect predict: interrupted"  # ... then stops


def test_a_signal_after_the_work_leaves_the_exit_code_as_it_was(tmp_path: Path) -> None:
    # While the interpreter shuts down (about a second), a Ctrl-C killed the finished command without a
    # word (exit 130) or printed "Exception ignored ... KeyboardInterrupt".
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    program = (
        "import os, signal, sys\n"
        "from googlenet.cli import main, run\n"
        "sys.argv = ['googlenet', '--version']\n"
        "try:\n"
        "    run()\n"  # the program: the console script and `python -m googlenet`
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print('after main', code, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"  # lands in the shutdown
        "print('not reached')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.splitlines()[-1] == "after main 0" and "not reached" not in done.stdout
    assert done.stderr == ""
    # main(), with or without arguments (a library call, a wrapper, a test), leaves the caller's handlers
    done = subprocess.run(
        [sys.executable, "-c", program.replace("    run()", "    code = main()")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr


def test_signals_are_not_held_where_a_handler_could_not_be_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from googlenet.signals import signals_held

    real = signal.getsignal
    monkeypatch.setattr(signal, "getsignal", lambda s: None if s == signal.SIGTERM else real(s))  # set in C
    before = {s: real(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt), signals_held():
        os.kill(os.getpid(), signal.SIGINT)  # a plain block: raised here, at once
        time.sleep(5)
    assert {s: real(s) for s in before} == before


def test_the_first_of_two_stop_signals_is_the_one_recorded(caplog: pytest.LogCaptureFixture) -> None:
    # ablate follows the terminal's Ctrl-C with a SIGTERM to its runs: they recorded SIGTERM
    import signal

    from googlenet.train.checkpoint import StopSignals

    caplog.set_level("INFO", logger="googlenet")
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == signal.SIGINT
        # a second Ctrl-C stops at once, unsaved: the first one's line says so, and so does the second
        assert "then saving last.pt (Ctrl-C again stops at once, without saving)" in caplog.text
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert "Ctrl-C while stopping: stopping at once, without saving last.pt" in caplog.text
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # said once
        assert stop.received == signal.SIGTERM


def test_a_signal_the_process_was_started_ignoring_stays_ignored(tmp_path: Path) -> None:
    # A shell without job control starts `googlenet train &` with SIGINT ignored, so that a Ctrl-C meant
    # for the script's foreground leaves it running; our handlers replaced that SIG_IGN and the Ctrl-C
    # stopped the run (or, after the work, ended the process).
    import signal

    from googlenet.signals import signals_held
    from googlenet.train.checkpoint import StopSignals

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and stop.received is None
            os.kill(os.getpid(), signal.SIGTERM)  # not ignored: still finishes the step and stops
            assert stop.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    program = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # as such a shell starts the process
        "from googlenet.cli import run\n"
        "sys.argv = ['googlenet', '--version']\n"
        "try:\n"
        "    run()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"  # during the exit: ignored, not the end of the process
        "print('still here', code, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "still here 0", (done.stdout, done.stderr)


def test_closed_standard_streams_and_a_narrow_encoding(tmp_path: Path) -> None:
    """With stdout closed (`>&-`) every command ended in "'NoneType' object has no attribute 'flush'",
    exit 1; with stderr closed its errors went into stdout; an "é" in a name under
    PYTHONIOENCODING=ascii made the printing command a UnicodeEncodeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    program = "import sys; from googlenet.cli import run; sys.argv = ['googlenet', *sys.argv[1:]]; run()"
    for closed in (">&-", "2>&-"):
        done = subprocess.run(
            ["sh", "-c", f'"$0" -c "$1" --version {closed}', sys.executable, program],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0 and "Traceback" not in done.stderr + done.stdout, (closed, done)
        assert ("googlenet " in done.stdout) == (closed == "2>&-")
    done = subprocess.run(
        ["sh", "-c", '"$0" -c "$1" predict /no/such.jpg --weights /no/such.pth 2>&-', sys.executable, program],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and done.stdout == "", done  # the error does not land in the results
    import io

    import googlenet.cli  # noqa: F401 (registers the "googlenet-stdout" error handler)

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    stream.reconfigure(errors="googlenet-stdout")
    stream.write("caf\u00e9 \udce9.jpg\n")  # a character ascii lacks; a byte that was not UTF-8
    stream.flush()
    assert raw.getvalue() == b"caf\\xe9 \xe9.jpg\n"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_help_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # A choice list written out in a usage line ran past a terminal's width ("--engine {auto,eager,...}",
    # 121 columns for `benchmark --only`); such flags name a metavar and list their choices in the help.
    # argparse's own "[--x | --no-x]" pairs cannot be wrapped and are the only lines allowed longer.
    monkeypatch.setenv("COLUMNS", "80")
    for parser in _parsers(build_parser()):
        long = [
            line
            for line in parser.format_help().splitlines()
            if len(line) > 80 and not re.fullmatch(r"\s*\[--([\w-]+) \| --no-\1\]", line)
        ]
        assert not long, (parser.prog, long)


def test_no_usable_temporary_folder_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A container with a read-only root and TMPDIR unset or wrong: every command, `summary` too, was a
    40-line traceback from inside torchvision's import."""
    import tempfile

    import googlenet.cli as cli

    def none(*args: object) -> str:
        raise FileNotFoundError(2, "No usable temporary directory found in ['/nonexistent', '/tmp']")

    monkeypatch.setattr(tempfile, "gettempdir", none)
    monkeypatch.setattr(cli, "follow_launcher", lambda: None)
    monkeypatch.setattr(cli, "as_program", lambda: None)  # run() marks the process: not pytest's for good
    monkeypatch.setenv("MPLBACKEND", os.environ.get("MPLBACKEND", ""))  # run() sets it: given back after
    monkeypatch.setenv("TMPDIR", "/nonexistent")
    monkeypatch.setattr(sys, "argv", ["googlenet", "summary"])
    with pytest.raises(SystemExit) as done:
        cli.run()
    err = capsys.readouterr().err
    assert done.value.code == 1 and err.count("\n") == 1
    assert (
        err.startswith("googlenet: error: no writable temporary folder (TMPDIR='/nonexistent'")
        and "set TMPDIR" in err
    )


def test_a_librarys_root_warning_does_not_double_our_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OpenVINO's `logging.warning(...)` (with an unwritable HOME) called basicConfig, whose root handler
    then printed every "googlenet" line a second time, as "INFO:googlenet.infer:..."."""
    import logging

    from googlenet.console import setup_console

    top = logging.getLogger()
    monkeypatch.setattr(top, "handlers", [])  # a plain process's root, not pytest's
    monkeypatch.setattr(logging.getLogger("googlenet"), "handlers", [])
    setup_console()
    logging.warning("telemetry folder not created")  # what OpenVINO does
    logging.getLogger("googlenet.infer").info("optimize: onnxruntime chosen")
    err = capsys.readouterr().err.splitlines()
    assert err == ["telemetry folder not created", "optimize: onnxruntime chosen"]
