"""`googlenet predict`: top-k per image from a checkpoint, an ensemble or a torchvision weight file; an
unreadable image is a one-line error while the others are still predicted; the ImageNet class list."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import googlenet
from googlenet.cli import main
from googlenet.evaluate import load_ensemble
from googlenet.model.weights import default_meta
from googlenet.predict import predict_files, predict_image
from googlenet.resources import imagenet_classes

CLASSES = ["circle", "square", "star"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    out = {}
    for name, (w, h) in {"wide": (90, 70), "tall": (64, 80)}.items():
        out[name] = root / f"{name}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(out[name])
    out["broken"] = root / "broken.jpg"
    out["broken"].write_bytes(b"this is not a JPEG")
    for seed, key in ((1, "a"), (2, "b")):
        torch.manual_seed(seed)
        model = googlenet.build_model("paper", num_classes=3)
        out[key] = root / f"{key}.pt"
        googlenet.save_checkpoint(out[key], model, default_meta(model, 64) | {"class_names": CLASSES})
    return out


def test_predict_json_top_k(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["predict", str(files["wide"]), str(files["tall"]), "--checkpoint", str(files["a"])]
    assert main([*args, "--json", "--topk", "2", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"] == 1 and report["crops"] == 1 and report["errors"] == []
    assert [p["image"] for p in report["predictions"]] == [str(files["wide"]), str(files["tall"])]
    for prediction in report["predictions"]:
        top = prediction["top"]
        assert [t["rank"] for t in top] == [1, 2]
        assert top[0]["probability"] >= top[1]["probability"] > 0
        assert all(t["class"] == CLASSES[t["index"]] for t in top)


def test_predict_json_says_how_far_it_is_on_stderr(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`predict --json` on a large folder printed nothing until its end (minutes at ImageNet's size)."""
    import googlenet.predict as predict

    monkeypatch.setattr(predict, "PROGRESS_LINE_EVERY_S", 0.0)
    args = ["predict", str(files["wide"]), str(files["tall"]), "--checkpoint", str(files["a"]), "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["predictions"]) == 2
    lines = captured.err.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "googlenet predict: 1/2 images",
        "googlenet predict: 2/2 images",
    ]


def test_predict_jsonl_gives_a_line_per_image_as_it_comes(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--json` holds every result to the end (a large folder: minutes, and all lost to a kill);
    `--jsonl` prints each, errors too, in order."""
    paths = [str(files["wide"]), str(files["broken"]), str(files["tall"])]
    assert main(["predict", *paths, "--checkpoint", str(files["a"]), "--jsonl", "--topk", "2"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == paths
    assert "error" in lines[1] and [len(lines[k]["top"]) for k in (0, 2)] == [2, 2]
    assert main(["predict", *paths, "--checkpoint", str(files["a"]), "--jsonl", "--json"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_unreadable_image_is_one_line_and_the_others_are_predicted(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "predict",
        str(files["wide"]),
        str(files["broken"]),
        str(files["tall"]),
        "--checkpoint",
        str(files["a"]),
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert (
        len(errors) == 1 and "broken.jpg" in errors[0] and errors[0].startswith("googlenet predict: error:")
    )
    assert str(files["wide"]) in captured.out and str(files["tall"]) in captured.out
    assert captured.out.count("%") == 2 * 3  # top-5 of 3 classes: 3 lines per image
    assert errors[0].endswith("(skipped)")
    assert main(["predict", str(files["broken"]), "--checkpoint", str(files["a"])]) == 1
    assert not capsys.readouterr().err.strip().endswith("(skipped)")  # alone it has no others to go on to
    assert main([*args, "--on-bad", "abort"]) == 1  # the first unreadable image stops it
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and captured.err.count("\n") == 1
    # results are printed as they come: the image before it is there, the one after is not
    assert str(files["wide"]) in captured.out and str(files["tall"]) not in captured.out


def test_a_folder_of_images_goes_through_the_model_a_batch_at_a_time(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """One forward pass per image made `predict` 4.4 times slower than `evaluate` on the same images;
    batched, each image still gets its own figures, in order, an unreadable one among them."""
    import googlenet.predict as predict

    rng = np.random.default_rng(1)
    paths: list[Path] = []
    for k in range(7):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(rng.integers(0, 256, (50 + 3 * k, 60, 3), dtype=np.uint8)).save(paths[-1])
    paths.insert(3, files["broken"])
    ensemble = load_ensemble([files["a"]])
    spec = ensemble.crop_spec(1)
    one_by_one = [predict_image(Image.open(p).convert("RGB"), ensemble, spec, device=torch.device("cpu"), topk=3)
                  for p in paths if p != files["broken"]]  # fmt: skip
    passes: list[int] = []
    original = predict.member_probs
    seen: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict, "PREDICT_BATCH", 3)
        patch.setattr(
            predict,
            "member_probs",
            lambda m, crops, size: passes.append(len(crops)) or original(m, crops, size),
        )
        results = predict_files(paths, ensemble, topk=3, on_result=lambda r: seen.append(r["image"]))
    assert passes == [3, 3, 1]  # 7 readable images, 3 at a time
    assert seen == [r["image"] for r in results] == [str(p) for p in paths]
    assert "error" in results[3]
    batched = [r["top"] for r in results if "top" in r]
    for alone, together in zip(one_by_one, batched, strict=True):
        assert [t["index"] for t in alone] == [t["index"] for t in together]
        assert [t["probability"] for t in alone] == pytest.approx(
            [t["probability"] for t in together], abs=1e-5
        )


def test_ensemble_of_crops_averages_the_members(files: dict[str, Path]) -> None:
    paths = [files["wide"]]
    both = predict_files(paths, load_ensemble([files["a"], files["b"]]), crops=10, topk=3)[0]["top"]
    singles = [predict_files(paths, load_ensemble([files[k]]), crops=10, topk=3)[0]["top"] for k in "ab"]
    by_class = [{t["index"]: t["probability"] for t in top} for top in singles]
    for entry in both:  # section 7: the ensemble's probability is the mean of its members'
        expected = (by_class[0][entry["index"]] + by_class[1][entry["index"]]) / 2
        assert entry["probability"] == pytest.approx(expected, abs=1e-6)
    assert sum(t["probability"] for t in both) == pytest.approx(1.0, abs=1e-5)
    maxed = predict_files(paths, load_ensemble([files["a"]]), crops=10, topk=3, reduce="max")[0]["top"]
    assert sum(t["probability"] for t in maxed) >= 1.0 - 1e-6  # max over crops: not a distribution


def test_torchvision_weight_file_gets_imagenet_names(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = googlenet.build_model("torchvision", num_classes=1000, aux_logits=True)
    weights = tmp_path / "googlenet-random.pth"
    torch.save(model.state_dict(), weights)  # a bare state dict, as torchvision publishes
    args = ["predict", str(files["wide"]), "--weights", str(weights), "--variant", "torchvision", "--json"]
    assert main(args) == 0
    top = json.loads(capsys.readouterr().out)["predictions"][0]["top"]
    table = imagenet_classes()
    assert len(top) == 5
    for entry in top:
        assert (entry["wnid"], entry["class"]) == table[entry["index"]]
    code = main(["predict", str(files["wide"]), "--weights", str(weights), "--variant", "paper"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "torchvision" in err


def test_imagenet_classes_ship_in_torchvision_order() -> None:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    table = imagenet_classes()
    assert len(table) == 1000
    wnids = [wnid for wnid, _ in table]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000  # class index order = sorted synset ids
    assert [name for _, name in table] == list(_IMAGENET_CATEGORIES)
    assert table[0] == ("n01440764", "tench") and table[999] == ("n15075141", "toilet tissue")


def test_bad_arguments(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["predict", str(files["wide"]), "--checkpoint", str(files["a"])]
    assert main([*base, "--topk", "0"]) == 1  # our one-line error
    assert capsys.readouterr().err.count("\n") == 1
    assert main([*base, "--crops", "7"]) == 2  # argparse's own usage error, also one line
    assert capsys.readouterr().err.count("\n") == 1


def test_no_model_is_a_one_line_error(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(files["wide"])]) == 2  # a required option missing, as argparse exits
    assert "one of --checkpoint FILE [FILE ...] or --weights FILE is required" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "one of --checkpoint" in capsys.readouterr().err


def test_images_may_follow_the_checkpoints(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict --checkpoint A.pt B.pt img.jpg`: argparse gives every path to --checkpoint; the images
    at its end (by extension, or by content for a file without one) are taken back as IMAGE; the same
    ensemble and predictions as the images-first order."""
    shutil.copyfile(files["tall"], tmp_path / "snapshot")  # a JPEG without an extension
    images = [str(files["wide"]), str(tmp_path / "snapshot")]
    models = [str(files["a"]), str(files["b"])]
    assert main(["predict", *images, "--checkpoint", *models, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["predict", "--checkpoint", *models, *images, "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after == first and after["models"] == 2 and len(after["predictions"]) == 2
    assert main(["predict", "--checkpoint", *models]) == 2  # a usage error, as argparse's
    assert "required: IMAGE" in capsys.readouterr().err


def test_a_folder_of_images_and_a_folder_after_checkpoint(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    Image.open(files["wide"]).save(folder / "b.png")
    Image.open(files["tall"]).save(folder / "more" / "a.jpg")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "._b.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # a Mac's metadata: hidden, skipped
    (folder / ".thumbs").mkdir()
    Image.open(files["wide"]).save(folder / ".thumbs" / "t.jpg")
    # `--checkpoint` takes every path after it; a folder at the end is the images, as an image file is
    assert main(["predict", "--checkpoint", str(files["a"]), str(folder), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["image"] for p in report["predictions"]] == [
        str(folder / "b.png"),
        str(folder / "more" / "a.jpg"),
    ]
    (tmp_path / "empty").mkdir()
    code = main(["predict", "--checkpoint", str(files["a"]), str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "empty: a folder with no image files" in err
    typo = str(tmp_path / "photos_typo")  # a mistyped folder is named, not "IMAGE is required"
    assert main(["predict", "--checkpoint", str(files["a"]), typo]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{typo}: no such file or folder (an IMAGE" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--variant", "bn"], "--variant bn applies to --weights only"),
        (["--weights", "{a}", "--variant", "bn"], "is our checkpoint of the paper variant"),
    ],
)
def test_variant_that_cannot_apply_is_refused(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    extra = [e.format(a=files["a"]) for e in extra]
    code = main(["predict", str(files["wide"]), "--checkpoint", str(files["b"]), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and message in err


def test_a_folder_that_cannot_be_listed_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It read "a folder with no image files" (chmod 000; root lists any folder, hence the stand-in)."""
    import googlenet.predict as predict
    from googlenet.errors import DataError

    def unreadable(top: str, onerror: Any = None, **kwargs: Any) -> Any:
        onerror(PermissionError(13, "Permission denied", top))
        return iter(())

    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(predict.os, "walk", unreadable)
    with pytest.raises(DataError, match=r"locked: cannot list the folder \(Permission denied\)"):
        predict._expand_folders([str(tmp_path / "locked")])

    def one_unreadable_subfolder(top: str, onerror: Any = None, **kwargs: Any) -> Any:
        onerror(PermissionError(13, "Permission denied", f"{top}/sub"))
        return iter([(top, [], ["a.jpg"])])

    monkeypatch.setattr(predict.os, "walk", one_unreadable_subfolder)
    assert predict._expand_folders([str(tmp_path / "locked")]) == ([str(tmp_path / "locked" / "a.jpg")], [])
    assert f"cannot list {tmp_path / 'locked'}/sub (Permission denied); its images are left out" in (
        capsys.readouterr().err
    )


def test_a_bare_state_dict_predicts_with_its_variant_named(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """README's `torch.save(paper.state_dict(), ...)`, heads and all: `--weights F --variant paper` now
    predicts (it was "does not fit the model: 12 unexpected" with the heads, "meta lists 0 class names"
    without), saying what it had to assume; without `--variant` the error says to name it."""
    torch.manual_seed(3)
    source = googlenet.build_model("paper", num_classes=4)
    torch.save(source.state_dict(), tmp_path / "bare.pt")
    args = ["predict", str(files["wide"]), "--weights", str(tmp_path / "bare.pt"), "--engine", "off"]
    assert main([*args, "--variant", "paper", "--json"]) == 0
    captured = capsys.readouterr()
    top = json.loads(captured.out)["predictions"][0]["top"]
    assert sorted(row["class"] for row in top) == ["0", "1", "2", "3"]
    assert "a bare state dict carries no class names" in caplog.text
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "name its layout (variant paper or bn" in err
    assert main([*args, "--variant", "paper", "--no-transform-input"]) == 1
    assert "--no-transform-input applies to a torchvision GoogLeNet state dict" in capsys.readouterr().err


def test_a_model_with_non_finite_outputs_is_named_not_scored(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Broken weights (NaN) printed "nan%" and wrote NaN into --json (not JSON), exit 0; evaluate scored
    them a plausible accuracy (top-1 of a NaN row is class 0); export wrote them."""
    model = googlenet.build_model("paper", num_classes=3)
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    broken = tmp_path / "nan.pt"
    googlenet.save_checkpoint(broken, model, default_meta(model, 64) | {"class_names": CLASSES})
    for extra in ([], ["--json"]):
        assert (
            main(["predict", str(files["wide"]), "--checkpoint", str(broken), "--engine", "off", *extra]) == 1
        )
        captured = capsys.readouterr()
        assert (
            "nan.pt: the model's outputs are not finite (NaN or inf)" in captured.err
            and "NaN" not in captured.out
        )
    data = tmp_path / "val"
    for name in CLASSES:
        (data / name).mkdir(parents=True)
        shutil.copy(files["wide"], data / name / "a.jpg")
    assert (
        main(
            ["evaluate", "--checkpoint", str(broken), "--data-path", str(data), "--engine", "off", "-j", "0"]
        )
        == 1
    )
    assert "the model's outputs are not finite" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(broken), "--output", str(tmp_path / "x.pt")]) == 1
    assert (
        "fc.weight holds NaN or infinite values" in capsys.readouterr().err
        and not (tmp_path / "x.pt").exists()
    )


def test_images_after_the_checkpoint_with_a_non_image_among_them(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict --checkpoint A.pt *` in a folder with a README: the images were dropped and argparse's
    "required: IMAGE" printed; now the images are predicted and the README named as not an image. A
    folder among the images that holds none is skipped, not the end of the run; what a folder leaves out
    by type is said; a newline in a name prints as \\x0a."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    assert main(["predict", "--checkpoint", str(files["a"]), str(files["wide"]), str(notes)]) == 1
    captured = capsys.readouterr()
    assert str(files["wide"]) in captured.out and f"{notes}: not an image" in captured.err
    assert (
        main(["predict", "--checkpoint", str(files["a"]), str(notes), str(files["wide"])]) == 1
    )  # sorted first
    captured = capsys.readouterr()
    assert str(files["wide"]) in captured.out and f"{notes}: not an image" in captured.err
    # a mistyped member of an ensemble stays a member, named as missing, not skipped as an image
    assert (
        main(["predict", "--checkpoint", str(files["a"]), str(tmp_path / "b2.pt"), str(files["wide"])]) == 1
    )
    assert capsys.readouterr().err.strip().endswith("b2.pt: no such file")
    empty, mixed = tmp_path / "empty", tmp_path / "mixed"
    empty.mkdir()
    mixed.mkdir()
    shutil.copy(files["tall"], mixed / "new\nline.jpg")
    (mixed / "clip.gif").write_bytes(b"GIF89a")
    assert main(["predict", "--checkpoint", str(files["a"]), str(empty), str(mixed), "--topk", "1"]) == 1
    captured = capsys.readouterr()
    assert f"{empty}: a folder with no image files (skipped)" in captured.err
    assert f"{mixed}: left out 1 file(s) whose names are not of an image type (.gif 1)" in captured.err
    assert "new\\x0aline.jpg" in captured.out and len(captured.out.splitlines()) == 2
    assert main(["predict", "--checkpoint", str(files["a"]), str(empty)]) == 1
    assert (
        capsys.readouterr().err.strip() == f"googlenet predict: error: {empty}: a folder with no image files"
    )


def test_a_plain_pickle_is_not_called_code(
    files: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A dict pickled by `pickle` (not torch.save) was "refused: ... objects that could run code", after
    torch's multi-line warning about its protocol."""
    import pickle

    with open(tmp_path / "plain.pth", "wb") as handle:
        pickle.dump({"fc.weight": [1, 2]}, handle, protocol=4)
    assert main(["predict", str(files["wide"]), "--weights", str(tmp_path / "plain.pth")]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "refused: not a checkpoint torch.save wrote (Unsupported operand" in err
