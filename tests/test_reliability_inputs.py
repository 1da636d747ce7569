"""Bad input through every reader: the decoder, the datasets, train, evaluate, predict and detect.

The corpus (`badinputs.write_corpus`) is generated here, never committed. What must hold everywhere:
nothing crashes or hangs, every bad file is reported once by name, and the run's results count the
files it skipped.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from badinputs import Case, add_folder_traps, encoded, sample_image, write_corpus
from conftest import make_tiny_data
from extras import require
from googlenet.cli import main
from googlenet.data.datasets import ImageFolderDataset, read_skipped
from googlenet.data.decode import load_image
from googlenet.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["disc", "ring", "square"]  # make_tiny_data's


def decode_outcome(case: Case) -> str:
    """What the decoder does with a case: "ok" or "bad" (any other exception fails the test)."""
    try:
        image = load_image(case.path)
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and os.fsdecode(case.path) in message, message
        return "bad"
    assert image.mode == "RGB"
    if case.size is not None:
        assert image.size == case.size, case.path
    return "ok"


def test_every_corpus_file_decodes_to_rgb_or_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    cases = write_corpus(tmp_path / "corpus")
    assert len({c.kind for c in cases}) >= 11
    for case in cases:
        outcome = decode_outcome(case)
        assert case.expect in (outcome, "either"), f"{case.path}: expected {case.expect}, got {outcome}"


def test_a_dangling_link_is_named_as_such(tmp_path: Path) -> None:
    """It said "no such file" of a file that `ls` shows."""
    (tmp_path / "photo.jpg").symlink_to("moved-away.jpg")
    with pytest.raises(
        DataError, match=r"photo.jpg: a symbolic link to moved-away.jpg, which does not exist"
    ):
        load_image(tmp_path / "photo.jpg")
    with pytest.raises(DataError, match=r"gone.jpg: no such file$"):
        load_image(tmp_path / "gone.jpg")


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads chmod-000 files anyway")
    (case,) = [c for c in write_corpus(tmp_path / "c", unreadable=True) if c.kind == "unreadable"]
    with pytest.raises(DataError, match="permission denied"):
        load_image(case.path)


def test_unreadable_file_is_reported_whoever_runs_the_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test above skips as root, which CI may run as: the same refusal without needing a non-root user
    import builtins

    (case,) = [c for c in write_corpus(tmp_path / "c", unreadable=True) if c.kind == "unreadable"]
    real_open = builtins.open

    def refusing(file: object, *args: object, **kwargs: object) -> object:
        if isinstance(file, str | os.PathLike) and Path(file) == Path(case.path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", refusing)
    with pytest.raises(DataError, match=r"permission denied$"):
        load_image(case.path)


_JPEG = encoded(sample_image(), "JPEG", quality=85)
_PNG = encoded(sample_image(), "PNG")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from([_JPEG, _PNG]),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), max_size=6),
    suffix=st.sampled_from([".jpg", ".png", ".webp", ".tif"]),
)
def test_mutated_images_never_crash_the_decoder(
    tmp_path: Path, base: bytes, cut: float, flips: list[tuple[float, int]], suffix: str
) -> None:
    data = bytearray(base[: max(0, int(len(base) * cut)) or len(base)])
    for where, bit in flips:
        data[min(len(data) - 1, int(where * len(data)))] ^= 1 << bit
    path = tmp_path / f"mutant{suffix}"
    path.write_bytes(bytes(data))
    decode_outcome(Case("mutant", path, "either"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".jpg", ".png", ".bmp", ".ppm", ".tiff"]))
def test_arbitrary_bytes_never_crash_the_decoder(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(data)
    decode_outcome(Case("noise", path, "either"))


def _tree_with_corpus(root: Path) -> tuple[Path, list[Case]]:
    """The tiny 3-class tree with the corpus inside train/disc and val/disc; returns (data, corpus cases)."""
    data = make_tiny_data(root)
    cases = []
    for split in ("train", "val"):
        cases += write_corpus(data / split / "disc" / "corpus")
        add_folder_traps(data / split / "disc")
    return data, cases


def printed(path: str) -> str:
    """How a path reads on stderr and in train.log: a name that is not UTF-8 as backslash escapes."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _bad_paths(cases: list[Case]) -> list[str]:
    return [str(c.path) for c in cases if decode_outcome(c) == "bad"]


def test_image_folder_skips_and_counts_each_bad_file_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, cases = _tree_with_corpus(tmp_path)
    train_cases = [c for c in cases if "/train/" in str(c.path)]
    bad = sorted(_bad_paths(train_cases))
    dataset = ImageFolderDataset(data / "train")
    assert dataset.classes == CLASSES  # the link back up the tree is not a class, nor followed
    assert len(dataset) == 12 + len(train_cases) + 0  # every corpus entry has an image extension
    caplog.set_level(logging.WARNING, logger="googlenet.data")
    for _epoch in range(2):  # a bad file met every epoch is still reported once
        for index in range(len(dataset)):
            image, _ = dataset[index]
            assert image.mode == "RGB"
    assert sorted(dataset.bad_files) == bad
    for path in bad:
        assert sum(path in r.getMessage() for r in caplog.records) == 1, path
    assert sorted(dataset.scan_bad_files(workers=2)) == bad


def test_train_skips_bad_files_reports_each_once_and_counts_them(tmp_path: Path) -> None:
    """A real process with a timeout: the corpus (a pipe, a link loop, bombs...) cannot hang training."""
    data, cases = _tree_with_corpus(tmp_path)
    bad = _bad_paths(cases)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "PYTHONIOENCODING": "utf-8"}
    command = [sys.executable, "-m", "googlenet", "train", "--data-path", str(data), "--output-dir", str(out),
               "--input-size", "64", "-b", "4", "--epochs", "1", "-j", "0", "--train-eval-samples", "2",
               "--seed", "0", "--no-progress", "--json"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, timeout=300, cwd=tmp_path)
    stderr = done.stderr.decode("utf-8", "backslashreplace")
    assert done.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "Logging error" not in stderr
    results = json.loads(done.stdout[done.stdout.index(b"{") :])
    assert results["status"] == "completed" and results["skipped_bad_files"] == len(bad)
    assert json.loads((out / "results.json").read_text())["skipped_bad_files"] == len(bad)
    assert sorted(read_skipped(out / "skipped-files.jsonl")) == sorted(bad)  # the names, each once
    for path in bad:  # named once on the console
        assert stderr.count(printed(path) + ":") == 1, printed(path)
    log = (out / "train.log").read_text(encoding="utf-8")
    assert all(log.count(printed(path) + ":") == 1 for path in bad)


def test_train_counts_and_lists_files_that_go_bad_during_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that decodes when the run scans its data and fails later (deleted, its disk gone), met by
    a loader process the main process cannot see: counted in results.json beside the scan's, both
    listed in skipped-files.jsonl with their reasons."""
    import googlenet.data.datasets as datasets
    from googlenet.train import fit, resolve

    data = make_tiny_data(tmp_path)
    corrupt = data / "train" / "disc" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a JPEG")
    goes_bad = str(sorted((data / "train" / "ring").iterdir())[0])
    real_load, calls = datasets.load_image, {"n": 0}

    def load_image_going_bad(path: str, **kwargs: object) -> object:
        if path == goes_bad:
            calls["n"] += 1
            if calls["n"] > 1:  # the scan (in this process) reads it; afterwards it is gone
                raise DataError(f"{path}: No such file or directory")
        return real_load(path, **kwargs)

    monkeypatch.setattr(datasets, "load_image", load_image_going_bad)
    out = tmp_path / "run"
    flags = {"data.data_path": str(data), "data.workers": 1, "data.train_eval_samples": 6,
             "model.input_size": 64, "optim.batch_size": 4, "run.epochs": 2, "run.seed": 0,
             "run.progress": False, "run.output_dir": str(out)}  # fmt: skip
    results = fit(resolve({}, flags))
    assert results["status"] == "completed" and results["skipped_bad_files"] == 2
    listed = read_skipped(out / "skipped-files.jsonl")
    assert sorted(listed) == sorted([str(corrupt), goes_bad])
    assert "No such file" in listed[goes_bad] and str(corrupt) in listed[str(corrupt)]
    assert json.loads((out / "results.json").read_text())["skipped_bad_files"] == 2
    # the first loader process that met it added a line, and the later ones (the train-eval one, the
    # next epoch's: DataLoader starts new ones every epoch) found it there; the log names it once
    lines = [json.loads(line)["path"] for line in (out / "skipped-files.jsonl").read_text().splitlines()]
    assert lines.count(str(corrupt)) == 1 and lines.count(goes_bad) == 1 and set(lines) == set(listed)
    assert (out / "train.log").read_text().count(f"skipping a bad image: {goes_bad}") == 1


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import googlenet
    from googlenet.model.weights import default_meta

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = googlenet.build_model("bn", num_classes=3, aux_logits=False)
    googlenet.save_checkpoint(root / "cls.pt", model, default_meta(model, 64) | {"class_names": CLASSES})
    googlenet.save_checkpoint(
        root / "det.pt", model, default_meta(model, 64) | {"class_names": ["background", "disc", "square"]}
    )
    return {"cls": root / "cls.pt", "det": root / "det.pt"}


def test_evaluate_skips_bad_images_reports_each_once_and_counts_them(
    tmp_path: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, one_thread: None,
) -> None:  # fmt: skip
    data, cases = _tree_with_corpus(tmp_path)
    bad = _bad_paths([c for c in cases if "/val/" in str(c.path)])
    caplog.set_level(logging.WARNING)
    code = main(["evaluate", "--checkpoint", str(checkpoints["cls"]), "--data-path", str(data), "--json",
                 "--device", "cpu", "--engine", "off", "--no-progress"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped_images"] == len(bad) == len(report["bad_images"])
    assert sorted(b["image"] for b in report["bad_images"]) == sorted(bad)
    assert report["images"] == 3 + sum(1 for c in cases if "/val/" in str(c.path)) - len(bad)
    for path in bad:
        assert sum(path in r.getMessage() for r in caplog.records) == 1, path


def test_predict_names_each_bad_image_once_and_predicts_the_rest(
    tmp_path: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    cases = write_corpus(tmp_path / "corpus")
    bad = _bad_paths(cases)
    paths = [str(c.path) for c in cases]
    code = main(["predict", *paths, "--checkpoint", str(checkpoints["cls"]), "--json", "--device", "cpu"])
    assert code == 1  # some images failed
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["skipped_images"] == len(bad) and len(report["predictions"]) == len(paths) - len(bad)
    lines = captured.err.strip().splitlines()
    assert len(lines) == len(bad) and all(line.startswith("googlenet predict: error: ") for line in lines)
    for path in bad:
        assert sum(printed(path) + ":" in line for line in lines) == 1, path


def test_predict_prints_a_name_that_is_not_utf8_under_a_strict_stdout(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    image = tmp_path / os.fsdecode(b"caf\xe9-\xff.jpg")
    image.write_bytes(encoded(sample_image(), "JPEG"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "googlenet", "predict", str(image), "--checkpoint", str(checkpoints["cls"]),
               "--device", "cpu", "--topk", "1"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert os.fsencode(image) in done.stdout  # the file's own bytes, as `ls` prints them


def _voc_tree(root: Path, bad: dict[str, bytes]) -> Path:
    """A VOC2007 layout: two drawn scenes and the `bad` JPEG files, one object annotated on each."""
    from PIL import ImageDraw

    year = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (year / sub).mkdir(parents=True)
    ids = []
    for k in range(2):
        image = sample_image(120, 90, seed=k)
        ImageDraw.Draw(image).rectangle((20 + 10 * k, 20, 70, 70), fill=(220, 30, 30))
        image.save(year / "JPEGImages" / f"scene{k}.jpg")
        ids.append(f"scene{k}")
    for name, data in bad.items():
        (year / "JPEGImages" / f"{name}.jpg").write_bytes(data)
        ids.append(name)
    for image_id in ids:
        (year / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>120</width><height>90</height>"
            "<depth>3</depth></size><object><name>disc</name><difficult>0</difficult><bndbox><xmin>20</xmin>"
            "<ymin>20</ymin><xmax>70</xmax><ymax>70</ymax></bndbox></object></annotation>"
        )
    (year / "ImageSets" / "Main" / "val.txt").write_text("\n".join(ids) + "\n")
    return root


def test_proposal_recall_of_no_object_is_null_in_json_and_a_dash_in_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    """Every object marked difficult: `detect proposals --json` printed NaN, which JSON has not (a
    strict parser, `JSON.parse` among them, refused the file), and the table said "nan%"."""
    require("cv2", reason="opencv-contrib is the [detect] extra")
    voc = _voc_tree(tmp_path / "voc", {})
    for xml in (voc / "VOCdevkit" / "VOC2007" / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>"))
    base = ["detect", "proposals", "--annotations", str(voc), "--max-side", "100"]
    assert main([*base, "--json"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert report["settings"][0]["objects"] == 0 and report["settings"][0]["recall_50"] is None
    assert main(base) == 0
    table = capsys.readouterr().out
    assert "nan" not in table.lower() and "0 objects that are not difficult" in table


def test_detect_predict_pipes_into_detect_evaluate(
    tmp_path: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, one_thread: None,
) -> None:  # fmt: skip
    """`detect predict | detect evaluate` could not be piped: "-" was refused as an output and as
    --detections (no such file)."""
    import io

    require("cv2", reason="opencv-contrib is the [detect] extra")
    voc = _voc_tree(tmp_path / "voc", {})
    base = ["detect", "predict", "--checkpoint", str(checkpoints["det"]), "--annotations", str(voc),
            "--max-side", "100", "--score-threshold", "0", "--max-per-image", "3"]  # fmt: skip
    assert main([*base, "--output", "-"]) == 0
    piped = capsys.readouterr()
    assert piped.out.startswith("image_id,class,score,") and "-> standard output" in piped.err
    (tmp_path / "d.csv").write_bytes(piped.out.encode())  # the same rows, from a file
    scored = ["detect", "evaluate", "--annotations", str(voc), "--json", "--detections"]
    assert main([*scored, str(tmp_path / "d.csv")]) == 0
    from_file = json.loads(capsys.readouterr().out)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped.out.encode())))
    assert main([*scored, "-"]) == 0
    from_stdin = json.loads(capsys.readouterr().out)
    assert from_stdin["mAP"] == from_file["mAP"] and from_stdin["detections"] == from_file["detections"] > 0
    assert main([*base, "--output", "-", "--json"]) == 1
    assert "give one" in capsys.readouterr().err


BAD_JPEGS = {"truncated": _JPEG[: len(_JPEG) // 2], "empty": b"", "text": b"not a photo\n" * 4}


def test_detect_proposals_and_predict_skip_bad_images_and_count_them(
    tmp_path: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, one_thread: None,
) -> None:  # fmt: skip
    require("cv2", reason="opencv-contrib is the [detect] extra")
    voc = _voc_tree(tmp_path / "voc", BAD_JPEGS)
    caplog.set_level(logging.WARNING)
    assert main(["detect", "proposals", "--annotations", str(voc), "--max-side", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and report["skipped_images"] == 3
    assert sorted(Path(b["image"]).stem for b in report["bad_images"]) == sorted(BAD_JPEGS)
    for name in BAD_JPEGS:  # two settings ran, each bad image is still reported once
        assert sum(f"{name}.jpg" in r.getMessage() for r in caplog.records) == 1, name
    assert report["settings"][0]["objects"] == 2  # the skipped images' objects are not counted as missed

    out = tmp_path / "dets.csv"
    args = ["detect", "predict", "--checkpoint", str(checkpoints["det"]), "--annotations", str(voc),
            "--max-side", "100", "--score-threshold", "0", "--max-per-image", "3", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "on 2 images" in printed and "3 unreadable image(s) skipped" in printed
    assert out.is_file()

    # Not one image readable: a one-line error, and the detections file written above stays as it was.
    before = out.read_bytes()
    for jpeg in (voc / "VOCdevkit" / "VOC2007" / "JPEGImages").glob("scene*.jpg"):
        jpeg.write_bytes(b"")
    for command in (args, ["detect", "proposals", "--annotations", str(voc), "--max-side", "100"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "none of the 5 images of 'val' could be read" in err, err
    assert out.read_bytes() == before


def test_each_ensemble_member_lists_its_skips_and_a_new_run_forgets_a_killed_attempts(tmp_path: Path) -> None:
    """Members train one after another in one process: the second recorded nothing of a bad file the
    first had met (loaded in-process, no scan). A new run in a folder an attempt killed before its first
    checkpoint left kept that attempt's list."""
    from googlenet.train import fit, resolve

    data = make_tiny_data(tmp_path)
    corrupt = data / "train" / "disc" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a JPEG")
    out = tmp_path / "ensemble"
    flags = {"data.data_path": str(data), "data.workers": 0, "data.scan_bad_files": False,
             "data.train_eval_samples": 6, "model.input_size": 64, "optim.batch_size": 4, "run.epochs": 1,
             "run.seed": 0, "run.progress": False, "run.output_dir": str(out), "run.ensemble": 2}  # fmt: skip
    fit(resolve({}, flags))
    for member in ("member-0", "member-1"):
        assert list(read_skipped(out / member / "skipped-files.jsonl")) == [str(corrupt)], member
        assert json.loads((out / member / "results.json").read_text())["skipped_bad_files"] == 1, member
    single = tmp_path / "single"  # as an attempt killed before any checkpoint leaves it
    single.mkdir()
    (single / "config.yaml").write_text("# googlenet train: killed attempt\n")
    (single / "skipped-files.jsonl").write_text('{"path": "/old/x.jpg", "reason": "old"}\n')
    fit(resolve({}, {**flags, "run.ensemble": 1, "run.output_dir": str(single), "data.scan_bad_files": True}))
    assert list(read_skipped(single / "skipped-files.jsonl")) == [str(corrupt)]
    assert json.loads((single / "results.json").read_text())["skipped_bad_files"] == 1
