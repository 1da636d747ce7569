"""`googlenet report`: one self-contained HTML file per run folder, checked in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import make_tiny_data
from googlenet.ablate.results import write_study
from googlenet.ablate.study import StudyPlan
from googlenet.errors import DataError
from googlenet.evaluate.table3 import Table3Row, save_table3
from googlenet.model.googlenet import build_model
from googlenet.model.weights import save_checkpoint
from googlenet.report.build import detect_kind, write_report
from googlenet.train.config import dump_yaml, resolve
from googlenet.train.gradflow import plot_grad_split, save_grad_norms, write_split_table

CLASSES = ["disc", "ring", "square"]


def _training_folder(root: Path, data: Path) -> Path:
    """A finished-looking run folder: config, two epochs of metrics, results, gradient norms, final.pt."""
    folder = root / "train-run"
    folder.mkdir()
    config = resolve({}, {"data.data_path": str(data), "model.input_size": 64, "run.epochs": 2})
    (folder / "config.yaml").write_text(dump_yaml(config, "test"))
    header = "epoch,lr,loss_total,loss_main,train_top1,val_top1_raw,val_top1_avg,val_top5_avg,val_loss_raw"
    (folder / "metrics.csv").write_text(
        f"{header}\n0,0.01,3.9,2.4,20,33.3,,,1.1\n1,0.01,3.5,2.1,40,66.7,66.7,100,1.0\n"
    )
    (folder / "results.json").write_text(json.dumps({"status": "completed", "val_top1_avg": 66.7}))
    rows = [
        {"step": s, "depth": d, "layer": n, "aux": n.startswith("aux"), "norm": 0.1 * (d + 1) * s}
        for s in (1, 4)
        for d, n in enumerate(("conv1.conv", "conv2.conv", "aux1.fc1", "fc"))
    ]
    save_grad_norms(folder, rows, 4)
    model = build_model("paper", num_classes=3)  # with its auxiliary heads, as a run saves final.pt
    meta = {"class_names": CLASSES, "input_size": 64, "resize_size": 73, "interpolation": "bilinear"}
    save_checkpoint(folder / "final.pt", model, meta)
    return folder


def _split_rows() -> list[dict[str, Any]]:
    """Gradient norms of two recorded steps, each split into the main and the auxiliary loss's part."""
    return [
        {"step": s, "depth": d, "layer": n, "aux": n.startswith("aux"), "norm": 0.15 * (d + 1) * s,
         "norm_main": 0.1 * (d + 1) * s, "norm_aux": 0.0 if n == "fc" else 0.08 * (d + 1) * s}
        for s in (1, 4)
        for d, n in enumerate(("conv1.conv", "inception3a.branch1.conv", "aux1.fc1", "fc"))
    ]  # fmt: skip


def _ablation_folder(root: Path, arms: tuple[str, ...] = ("full", "no-aux"), split: bool = False) -> Path:
    """A finished study of `arms` over two seeds, the full arm's gradient norms split when `split`."""
    plan = StudyPlan(root / "ablation", arms=arms, seeds=(0, 1), test_time=False)
    for index, arm in enumerate(arms):
        for seed in (0, 1):
            top1 = 60.0 - 3 * index + 2 * seed
            folder = plan.run_dir(arm, seed)
            folder.mkdir(parents=True)
            (folder / "final.pt").write_bytes(b"")
            (folder / "results.json").write_text(json.dumps({"status": "completed", "val_top1_avg": top1,
                                                             "val_top5_avg": 95.0, "epochs": 1}))  # fmt: skip
            rows = [{"step": 1, "depth": 0, "layer": "conv1.conv", "aux": False, "norm": top1},
                    {"step": 1, "depth": 1, "layer": "fc", "aux": False, "norm": 1.0}]  # fmt: skip
            save_grad_norms(folder, _split_rows() if split and arm == "full" else rows, 1)
    write_study(plan, "test study")
    return plan.output_dir


def _evaluation_folder(root: Path, checkpoint: Path, data: Path) -> Path:
    rows = [Table3Row(1, 1, 1, 10.0, None, 40.0), Table3Row(1, 10, 10, 9.0, -1.0, 38.0)]
    info = {"checkpoints": [str(checkpoint)], "dataset": f"folder {data / 'val'}", "images": 3}
    save_table3(root / "table3", rows, info)
    return root / "table3"


def _detection_folder(root: Path) -> Path:
    from googlenet.data.scenes import ensure_builtin_scenes
    from googlenet.detect.voc import voc_images

    scenes = ensure_builtin_scenes(root / "scenes", train_images=1, val_images=2)
    folder = root / "detect-run"
    folder.mkdir()
    setup = {"annotations": str(scenes), "val_set": "val"}
    (folder / "detection-setup.json").write_text(json.dumps(setup))
    report = {"setup": setup, "summary": {"ensemble": {"mAP": 0.42, "seconds_per_image": 0.5}}}
    (folder / "detection.json").write_text(json.dumps(report))
    lines = ["image_id,class,score,xmin,ymin,xmax,ymax"]
    for image_id, _ in voc_images(scenes, "val"):
        lines += [f"{image_id},disc,0.9,10,12,60,70", f"{image_id},ring,0.4,30,30,90,95"]
    (folder / "detections-ensemble.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One report of each kind: training, evaluation, ablation, detection."""
    root = tmp_path_factory.mktemp("report")
    data = make_tiny_data(root)
    training = _training_folder(root, data)
    folders = {
        "training": training,
        "evaluation": _evaluation_folder(root, training / "final.pt", data),
        "ablation": _ablation_folder(root),
        "detection": _detection_folder(root),
    }
    return {kind: write_report(folder, root / f"{kind}.html") for kind, folder in folders.items()}


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


def test_each_kind_is_one_self_contained_file_with_its_sections(reports: dict[str, Path]) -> None:
    expected = {
        "training": ["Training curves", "Table 1: the network", "Gradient flow", "most confidently wrong",
                     "inception (5b)", "true: ", " with them;", "img_per_s (this epoch)"],  # final.pt keeps its aux heads
        "evaluation": ["Table 3: crops and models", "the paper (ILSVRC 2012 val)", "confusion"],
        "ablation": ["Effects with 95% confidence intervals", "Gradient flow with and without", "no-aux"],
        "detection": ["mean average precision", "42.00%", "the 5 highest-scoring detections", "disc 0.90"],
    }  # fmt: skip
    for kind, path in reports.items():
        html = path.read_text(encoding="utf-8")
        for text in expected[kind]:
            assert text in html, (kind, text)
        assert not re.search(r"(?:src|href)=\"(?!data:|#)", html), kind  # nothing outside the file
        assert "http://" not in html and "https://" not in html
        images = _images(html)
        assert images, kind
        for src in images:
            assert src.startswith("data:image/png;base64,")
            assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_images(reports["detection"].read_text())) == 2  # both validation scenes drawn


def test_a_report_reads_the_model_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A training or evaluation report loads (and hashes) the model's file once, not once for Table 1,
    again for the class names and twice more for the predictions; the predictions are still made."""
    import torch

    data = make_tiny_data(tmp_path)
    training = _training_folder(tmp_path, data)
    evaluation = _evaluation_folder(tmp_path, training / "final.pt", data)
    loads: list[str] = []
    original = torch.load

    def counted(file: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(Path(file).name)
        return original(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    seen = _record_predicted_images(monkeypatch)
    for folder in (training, evaluation):
        loads.clear()
        seen.clear()
        write_report(folder, tmp_path / f"{folder.name}.html")
        assert loads == ["final.pt"], folder.name
        assert seen, folder.name


def test_a_report_writes_nothing_into_the_run_folder(tmp_path: Path) -> None:
    """A run folder may be read-only (an archive, another user's run): the gradient-flow plot is drawn
    in a temporary folder elsewhere."""
    training = _training_folder(tmp_path, make_tiny_data(tmp_path))

    def state() -> list[tuple[Path, int]]:  # the folder's own mtime changes when a file comes and goes
        return sorted(
            (p.relative_to(training), p.stat().st_mtime_ns) for p in [training, *training.rglob("*")]
        )

    before = state()
    write_report(training, tmp_path / "training.html")
    assert state() == before


def test_a_stopped_run_is_described_by_its_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No final.pt (stopped before its end): last.pt gives the class count for the curves' chance lines
    and the network, heads included, for Table 1."""
    import googlenet.report.build as build

    training = _training_folder(tmp_path, make_tiny_data(tmp_path))
    (training / "final.pt").rename(training / "last.pt")
    seen: list[int | None] = []
    original = build.curves_section

    def spy(folder: Path, num_classes: int | None = None) -> str:
        seen.append(num_classes)
        return original(folder, num_classes)

    monkeypatch.setattr(build, "curves_section", spy)
    html = write_report(training, tmp_path / "stopped.html").read_text(encoding="utf-8")
    assert seen == [len(CLASSES)]
    assert " with them;" in html  # Table 1 counts the auxiliary heads the run trains


def test_a_finished_run_whose_checkpoint_was_not_kept_is_not_called_unfinished(tmp_path: Path) -> None:
    training = _training_folder(tmp_path, make_tiny_data(tmp_path))
    (training / "final.pt").unlink()
    html = write_report(training, tmp_path / "saved.html").read_text(encoding="utf-8")
    assert "no final.pt (the run finished, but its final.pt was not kept)" in html
    assert "has not finished" not in html


def test_the_curves_draw_top1_and_top5_each_raw_and_averaged_against_its_own_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Top-5 averaged alone had shared top-1's axis and its 10% chance line (top-5's is 50%)."""
    from matplotlib.axes import Axes

    from googlenet.report.build import curves_section
    from googlenet.train.runs import METRIC_COLUMNS

    drawn: dict[str, list[str]] = {}
    plot, axhline = Axes.plot, Axes.axhline

    def record(self: Axes, *args: Any, **kwargs: Any) -> Any:
        drawn.setdefault(self.get_title() or str(id(self)), []).append(kwargs.get("label", ""))
        return (axhline if "y" in kwargs or len(args) == 1 else plot)(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", lambda self, *a, **k: record(self, *a, **k))
    monkeypatch.setattr(Axes, "axhline", lambda self, y, **k: record(self, y, **k))
    rows = [{column: "" for column in METRIC_COLUMNS} | {"epoch": str(e), "val_top1_raw": "11", "val_top5_avg": "60",
            "val_top5_raw": "55", "val_top1_avg": "12", "lr": "0.01", "loss_main": "2.2"} for e in range(2)]  # fmt: skip
    lines = [",".join(METRIC_COLUMNS)] + [",".join(row[c] for c in METRIC_COLUMNS) for row in rows]
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n")
    curves_section(tmp_path, num_classes=10)
    labels = [label for axis in drawn.values() for label in axis]
    top5 = next(axis for axis in drawn.values() if "val top-5 raw" in axis)
    assert "val top-5 averaged" in top5 and "chance: 500/10 = 50%" in top5
    assert "val top-1 raw" not in top5 and "chance: 100/10 = 10%" in labels
    # an imbalanced validation set (results.json's val_balance): where a model that learnt nothing sits
    from googlenet.train.runs import class_balance

    (tmp_path / "results.json").write_text(json.dumps({"val_balance": class_balance([50] + [5] * 9)}))
    drawn.clear()
    curves_section(tmp_path, num_classes=10)
    labels = [label for axis in drawn.values() for label in axis]
    assert "majority class: 52.6% (imbalanced val)" in labels and "chance: 100/10 = 10%" not in labels
    assert "5 largest classes: 73.7% (imbalanced val)" in labels


def _record_predicted_images(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The (path, label) pairs the report runs through the model, collected as it builds."""
    import googlenet.report.build as build

    seen: list[tuple[str, int]] = []
    original = build.predict_images

    def spy(model: Any, meta: dict[str, Any], samples: list[tuple[str, int]], limit: int) -> dict[str, Any]:
        seen.extend(samples)
        return original(model, meta, samples, limit)

    monkeypatch.setattr(build, "predict_images", spy)
    return seen


def test_an_evaluation_report_labels_the_images_in_the_models_class_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose classes are in another order than the folder's: each image keeps its own class (the
    report's confusion and captions named them by the wrong class); without its images, a note."""
    data = make_tiny_data(tmp_path)
    names = list(reversed(CLASSES))
    meta = {"class_names": names, "input_size": 64, "resize_size": 73, "interpolation": "bilinear"}
    save_checkpoint(tmp_path / "reversed.pt", build_model("paper", num_classes=len(names)), meta)
    folder = _evaluation_folder(tmp_path, tmp_path / "reversed.pt", data)
    seen = _record_predicted_images(monkeypatch)
    write_report(folder, tmp_path / "reversed.html")
    assert seen and all(names[target] == Path(path).parent.name for path, target in seen)
    shutil.rmtree(data / "val")
    html = write_report(folder, tmp_path / "moved.html").read_text(encoding="utf-8")
    assert "Left out: the evaluated images" in html


def test_a_training_report_labels_the_images_by_the_models_class_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's val folders renamed or added to since: each image keeps its own class (they were
    relabelled in the folders' sorted order: shifted labels, or an IndexError), or the section is left
    out with the reason; a data folder that moved leaves it out too, the rest of the report stays."""
    data = make_tiny_data(tmp_path)
    training = _training_folder(tmp_path, data)
    seen = _record_predicted_images(monkeypatch)
    (data / "val" / "disc").rename(data / "val" / "zz_disc")  # sorts last now: ring, square, zz_disc
    html = write_report(training, tmp_path / "renamed.html").read_text(encoding="utf-8")
    assert not seen and "Left out:" in html and "Training curves" in html
    (data / "val" / "zz_disc").rename(data / "val" / "disc")
    shutil.copytree(data / "val" / "ring", data / "val" / "a_ring")  # a class the model does not have
    html = write_report(training, tmp_path / "extra.html").read_text(encoding="utf-8")
    assert not seen and "Left out:" in html
    shutil.rmtree(data / "val" / "a_ring")
    write_report(training, tmp_path / "same.html")
    assert seen and all(CLASSES[target] == Path(path).parent.name for path, target in seen)
    shutil.rmtree(data)
    html = write_report(training, tmp_path / "moved.html").read_text(encoding="utf-8")
    assert "Left out:" in html and "no such data folder" in html


def test_both_report_kinds_show_each_losss_part_of_the_gradient(tmp_path: Path) -> None:
    """A run with heads writes grad_split.png/.csv, a study gradflow-split.png/.csv: the one-run answer
    to "do the auxiliary heads help gradients flow", which neither report showed."""
    training = _training_folder(tmp_path, make_tiny_data(tmp_path))
    assert plot_grad_split(_split_rows(), training / "grad_split.png")
    write_split_table(_split_rows(), training / "grad_split.csv")
    html = write_report(training, tmp_path / "run.html", predictions=False).read_text(encoding="utf-8")
    flow = html[html.index(">Gradient flow</h2>") :]
    assert "part of the gradient</h3>" in flow and "whole/main" in flow
    assert len(_images(flow)) == 2  # the depth plot and the split's
    study = _ablation_folder(tmp_path, split=True)
    assert (study / "gradflow-split.png").is_file()
    html = write_report(study, tmp_path / "study.html").read_text(encoding="utf-8")
    assert "part of the gradient (the full arm" in html and "whole/main" in html
    assert len(_images(html)) == 3  # effects, gradient flow, the split
    (training / "grad_split.png").unlink()
    (training / "grad_split.csv").unlink()  # a run without heads: no split, and nothing said of one
    html = write_report(training, tmp_path / "none.html", predictions=False).read_text(encoding="utf-8")
    assert "part of the gradient" not in html and "Gradient flow" in html


def test_a_study_without_no_aux_runs_says_its_gradient_flow_has_one_curve(tmp_path: Path) -> None:
    html = write_report(
        _ablation_folder(tmp_path, arms=("full", "no-polyak")), tmp_path / "r.html"
    ).read_text(encoding="utf-8")
    assert "with and without the auxiliary heads" not in html
    assert "Gradient flow by depth, with auxiliary heads (full) only" in html
    assert "no runs of the other arm" in html


def test_a_study_with_an_empty_gradient_table_still_reports(tmp_path: Path) -> None:
    study = _ablation_folder(tmp_path, split=True)
    for name in ("gradflow.csv", "gradflow-split.csv"):
        (study / name).write_text("")  # 0 bytes: was a traceback ("I/O operation on closed file")
    html = write_report(study, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<table" in html and "no-aux" in html  # the effects table, with its arms
    assert len(_images(html)) >= 2  # the effects plot, and the gradient-flow plot the table is beside


def test_an_evaluation_report_on_the_builtin_data_shows_its_confusion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`evaluate --dataset builtin` records "builtin DIR", DIR the drawn data's val folder, an image folder
    like any other (the report said it was not one); once that folder is gone, a note saying so."""
    data = make_tiny_data(tmp_path)
    training = _training_folder(tmp_path, data)
    folder = _evaluation_folder(tmp_path, training / "final.pt", data)
    record = json.loads((folder / "table3.json").read_text())
    record["dataset"] = f"builtin {data / 'val'}"
    (folder / "table3.json").write_text(json.dumps(record))
    seen = _record_predicted_images(monkeypatch)
    html = write_report(folder, tmp_path / "builtin.html").read_text(encoding="utf-8")
    assert seen and "confusion matrix" in html and "Left out" not in html
    shutil.rmtree(data / "val")
    html = write_report(folder, tmp_path / "gone.html").read_text(encoding="utf-8")
    assert "Left out: the evaluated images (builtin" in html and "not there any more" in html


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("metrics.csv", "hello world\n", "Left out:"),  # no epoch column: the curves are left out
        ("metrics.csv", "epoch,lr\nx,0.1\n", "Left out:"),
        ("metrics.csv", b"\xff\xfe\x00garbage", "Left out:"),
        ("metrics.csv", "", "Table 1"),  # empty (0 bytes): no curves, and no traceback
        ("grad_norms.csv", "", "Table 1"),
        ("config.yaml", "model: [unclosed\n", "config.yaml: not a readable config file"),
        ("config.yaml", "- a\n- list\n", "config.yaml: expected a mapping of sections"),
        ("results.json", "[1, 2]", "results.json: expected a JSON object, found a list"),
        ("grad_norms.csv", "step,depth\nx,y\n", "Left out:"),
        ("grad_norms.csv", b"\xff\xfe\x00garbage\n", "Left out:"),
    ],
)
def test_a_damaged_run_file_is_a_note_or_one_line(
    tmp_path: Path, file: str, text: str | bytes, expected: str
) -> None:
    training = _training_folder(tmp_path, make_tiny_data(tmp_path))
    if isinstance(text, bytes):
        (training / file).write_bytes(text)
    else:
        (training / file).write_text(text)
    try:
        html = write_report(training, tmp_path / "r.html", predictions=False).read_text(encoding="utf-8")
    except DataError as exc:
        assert expected in str(exc) and "\n" not in str(exc)
        assert not (tmp_path / "r.html").exists()
    else:
        assert expected in html and "Table 1" in html


def test_class_names_are_not_read_as_tex() -> None:
    import torch

    from googlenet.report.build import predictions_section

    names = ["$x^$", "a_b $\\frac{", "plain"]
    pred = {"probs": torch.eye(3), "targets": [0, 1, 2], "paths": ["a", "b", "c"], "names": names}
    assert "confusion matrix" in predictions_section(pred)  # matplotlib's mathtext raised on "$x^$"


def test_an_unfinished_detect_run_says_how_to_finish_it(tmp_path: Path) -> None:
    folder = tmp_path / "detect-run"
    folder.mkdir()
    (folder / "detection-setup.json").write_text(json.dumps({"val_set": "val"}))  # no detections yet
    html = write_report(folder, tmp_path / "detect.html").read_text(encoding="utf-8")
    assert f"googlenet detect train --resume {folder}" in html


def test_kind_detection_and_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a run folder"):
        detect_kind(tmp_path)
    result = subprocess.run([sys.executable, "-m", "googlenet", "report", str(tmp_path / "none")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no such run folder" in result.stderr
    (tmp_path / "photo.jpg").write_bytes(b"not a folder")
    with pytest.raises(DataError, match=r"photo\.jpg: is a file, not a run folder"):  # not blamed on --output
        write_report(tmp_path / "photo.jpg")
    (tmp_path / "config.yaml").write_text("run: {}\n")
    (tmp_path / "last.pt").write_bytes(b"")  # a run stopped before its first epoch ended
    with pytest.raises(DataError, match="no finished epoch yet"):
        detect_kind(tmp_path)


def test_report_output_never_replaces_another_kind_of_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from googlenet.cli import main

    run = tmp_path / "run"
    run.mkdir()  # not a run folder: the output is checked before the folder is read
    checkpoint = tmp_path / "final.html"
    checkpoint.write_bytes(b"PK\x03\x04 a checkpoint by mistake named .html")
    page = tmp_path / "index.html"  # somebody's own page: HTML, but not a report of ours
    page.write_text("<!DOCTYPE html>\n<html><body>my notes</body></html>\n")
    for output, message in ((checkpoint, "exists and is not an HTML report"), (page, "is not an HTML report"),
                            (tmp_path / "x.png", ".html file name"), (tmp_path, ".html file name")):  # fmt: skip
        assert main(["report", str(run), "-o", str(output)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert checkpoint.read_bytes().startswith(b"PK") and "my notes" in page.read_text()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("GOOGLENET_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is not installed but GOOGLENET_REQUIRE_CHROMIUM is set (CI)")
    pytest.skip("no chromium on PATH: the browser check needs Debian's package (apt-get install chromium)")


def _load(browser: str, page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=10000", *flags, page.resolve().as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def test_reports_load_in_headless_chromium_without_errors_or_broken_images(
    reports: dict[str, Path], tmp_path: Path
) -> None:
    browser = _chromium()
    # The check itself must see a broken image and a console error, or its silence proves nothing.
    bad = tmp_path / "bad.html"
    page = reports["training"].read_text(encoding="utf-8")
    bad.write_text(
        page.replace(
            "<h1>", '<script>console.error("boom")</script><img src="data:image/png;base64,AAAA"><h1>', 1
        )
    )
    dom = _load(browser, bad, "--dump-dom")
    assert 'data-report-status="broken 1 of' in dom.stdout
    assert "CONSOLE" in dom.stderr and "boom" in dom.stderr

    for kind, path in reports.items():
        dom = _load(browser, path, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-1000:]
        count = len(_images(path.read_text(encoding="utf-8")))
        assert f'data-report-status="ok {count} images"' in dom.stdout, kind
        console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
        assert not console, (kind, console)
        shot = tmp_path / f"{kind}.png"
        result = _load(browser, path, f"--screenshot={shot}", "--window-size=1200,1600")
        assert result.returncode == 0, result.stderr[-1000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, kind


def test_an_ensemble_report_says_whose_sections_follow_and_shows_no_python_none(tmp_path: Path) -> None:
    """The training sections under an ensemble are member 0's; unrun or unknown values are dashes."""
    folder = tmp_path / "ensemble"
    folder.mkdir()
    member = _training_folder(tmp_path, make_tiny_data(tmp_path))
    member.rename(folder / "member-0")
    members = [{"member": 0, "folder": str(folder / "member-0"), "status": "completed", "val_top1_avg": 66.7,
                "val_top5_avg": 100.0, "sampling": {}},
               {"member": 1, "folder": str(folder / "member-1"), "status": "not run", "val_top1_avg": None,
                "val_top5_avg": float("nan"), "sampling": {}}]  # fmt: skip
    (folder / "ensemble.json").write_text(json.dumps({"members": members}))
    html = write_report(folder, tmp_path / "ensemble.html", predictions=False).read_text(encoding="utf-8")
    for heading in ("Configuration", "Results", "Training curves", "Table 1: the network"):
        assert f"{heading} (member 0)</h2>" in html, heading
    assert "<td>None</td>" not in html and "<td>nan</td>" not in html.lower()


def test_a_finished_detection_run_without_its_detection_files_is_not_told_to_resume(tmp_path: Path) -> None:
    folder = _detection_folder(tmp_path)
    (folder / "detections-ensemble.csv").unlink()
    html = write_report(folder, tmp_path / "detection.html").read_text(encoding="utf-8")
    assert "No detections-*.csv in this folder: nothing to draw" in html and "--resume" not in html


def test_class_names_that_are_not_utf8_are_drawn_escaped(tmp_path: Path) -> None:
    """A class folder named with a byte that is not UTF-8 (Latin-1 é) made matplotlib raise TypeError."""
    import torch
    from PIL import Image

    from googlenet.report.build import predictions_section

    paths = []
    for k in range(2):
        paths.append(tmp_path / f"{k}.png")
        Image.new("RGB", (8, 8)).save(paths[-1])
    pred = {"probs": torch.tensor([[0.2, 0.8], [0.9, 0.1]]), "targets": [0, 1], "names": ["caf\udce9", "dog"],
            "paths": [str(p) for p in paths]}  # fmt: skip
    body = predictions_section(pred)
    assert "true: caf\\xe9 | top-5: dog 80.0%" in body


def test_an_unknown_mplbackend_does_not_stop_the_command(tmp_path: Path) -> None:
    folder = _training_folder(tmp_path, make_tiny_data(tmp_path))
    env = {**os.environ, "MPLBACKEND": "bogus"}
    argv = [
        sys.executable,
        "-m",
        "googlenet",
        "report",
        str(folder),
        "-o",
        str(tmp_path / "r.html"),
        "--no-predictions",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "r.html").is_file(), done.stderr


def test_the_confusion_matrix_of_many_classes_stays_small(tmp_path: Path) -> None:
    """300 classes drew a 9616-pixel square (4.3 GB); 1000 would have needed about 40 GB."""
    import base64
    import io
    import re

    import torch
    from PIL import Image

    from googlenet.report.build import MATRIX_CLASSES, predictions_section

    n = 300
    targets = [i % n for i in range(2 * n)]
    probs = torch.full((2 * n, n), 0.1 / n)
    for row, t in enumerate(targets):  # every image of class 7 taken for class 3, the rest right
        probs[row, 3 if t == 7 else t] = 0.9
    names = [f"class{i:03d}" for i in range(n)]
    body = predictions_section({"probs": probs, "targets": targets, "paths": [], "names": names}, wrong=0)
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', body).group(1))  # type: ignore[union-attr]
    width, height = Image.open(io.BytesIO(png)).size
    assert max(width, height) < 2500, (width, height)
    assert f"the matrix shows the {MATRIX_CLASSES} in the most mistakes" in body
    assert "<td>class007</td><td>class003</td><td>2</td><td>100.0%</td>" in body


def test_an_ensembles_evaluation_report_names_the_one_model_its_confusion_is_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Table 3 over two members (each a `final.pt`): the confusion section, of the first member alone,
    said "Validation of final.pt", read as the ensemble's."""
    data = make_tiny_data(tmp_path)
    training = _training_folder(tmp_path, data)
    folder = _evaluation_folder(tmp_path, training / "final.pt", data)
    record = json.loads((folder / "table3.json").read_text())
    record["checkpoints"] = [str(training / "final.pt"), str(tmp_path / "member-1" / "final.pt")]
    (folder / "table3.json").write_text(json.dumps(record))
    _record_predicted_images(monkeypatch)
    html = write_report(folder, tmp_path / "ensemble.html").read_text(encoding="utf-8")
    assert f"Validation of {training / 'final.pt'}, the first of 2 models" in html
