"""ImageFolderDataset, load_image_folder and load_imagenet on small trees made inside each test: layout
rules, one-line errors for unusable trees, and bad files skipped (reported once) or refused."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from googlenet.data import datasets
from googlenet.data.datasets import ImageFolderDataset, load_image_folder, load_imagenet, load_val_folder
from googlenet.errors import ConfigError, DataError


def _image(path: Path, value: int = 0, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def _truncated(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:300])
    return path


def _one_line_error(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture(autouse=True)
def _fresh_warning_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "_warned", set())


def test_layout_classes_and_samples(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _image(tmp_path / "cat" / "b.png", 1)
    _image(tmp_path / "cat" / "a.JPG", 2)
    _image(tmp_path / "cat" / "deeper" / "c.png", 3)
    _image(tmp_path / "dog" / "z.webp", 4)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "README").write_text("nor this")
    _image(tmp_path / "dog" / ".hidden.png", 5)
    _image(tmp_path / ".git" / "x.png")  # hidden folder: not a class
    _image(tmp_path / "dog" / ".cache" / "y.png")  # hidden sub-folder: skipped
    (tmp_path / "stray.png").write_bytes(b"")  # files at the top level are not classes

    with caplog.at_level(logging.WARNING, logger="googlenet.data"):
        dataset = ImageFolderDataset(tmp_path)
    # the files left out are named (they were only counted, in an attribute nothing read)
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: left out 2 file(s) whose names are not of an image type (no extension 1, .txt 1), e.g. "
        f"{tmp_path / 'dog' / 'README'}; the types read are .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp"
    ]
    caplog.clear()
    datasets._warned.clear()
    monkeypatch.setenv("RANK", "1")  # a torchrun process other than the first: the first one says it
    with caplog.at_level(logging.WARNING, logger="googlenet.data"):
        ImageFolderDataset(tmp_path)
    assert caplog.records == []
    assert dataset.classes == ["cat", "dog"]
    assert dataset.class_to_idx == {"cat": 0, "dog": 1}
    names = [os.path.relpath(path, tmp_path) for path, _ in dataset.samples]
    assert names == ["cat/a.JPG", "cat/b.png", os.path.join("cat", "deeper", "c.png"), "dog/z.webp"]
    assert dataset.targets == [0, 0, 0, 1]
    assert dataset.num_non_image_files == 2
    assert len(dataset) == 4
    image, target = dataset[1]
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (1, 1, 1) and target == 0
    assert dataset[-1][1] == 1
    with pytest.raises(IndexError):
        dataset[4]


def test_given_class_list_sets_the_order_and_transform_applies(tmp_path: Path) -> None:
    _image(tmp_path / "a" / "1.png")
    _image(tmp_path / "b" / "1.png")
    dataset = ImageFolderDataset(tmp_path, transform=lambda im: im.size, classes=["b", "a"])
    assert dataset.class_to_idx == {"b": 0, "a": 1}
    assert dataset[0] == ((8, 8), 0)
    assert "'c'" in _one_line_error(ImageFolderDataset, tmp_path, classes=["a", "c"])


def test_unusable_roots_are_one_line_errors(tmp_path: Path) -> None:
    assert "no such" in _one_line_error(ImageFolderDataset, tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    assert "not a folder" in _one_line_error(ImageFolderDataset, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert "no class folders" in _one_line_error(ImageFolderDataset, tmp_path / "empty")
    (tmp_path / "tree" / "cat").mkdir(parents=True)
    (tmp_path / "tree" / "cat" / "notes.txt").write_text("x")
    _image(tmp_path / "tree" / "dog" / "1.png")
    message = _one_line_error(ImageFolderDataset, tmp_path / "tree")
    assert "class folder 'cat' has no images" in message and str(tmp_path / "tree") in message
    (tmp_path / "tree" / "cow").mkdir()  # every empty folder named at once, not one per try
    message = _one_line_error(ImageFolderDataset, tmp_path / "tree")
    assert "2 class folders have no images: 'cat', 'cow'" in message
    # one class under two Unicode spellings (a macOS copy merged in) was trained as two classes
    _image(tmp_path / "twins" / "caf\u00e9" / "1.png")
    _image(tmp_path / "twins" / "cafe\u0301" / "1.png")
    message = _one_line_error(ImageFolderDataset, tmp_path / "twins")
    assert "'cafe\\u0301' and 'caf\\xe9' have one name" in message
    with pytest.raises(ConfigError):
        ImageFolderDataset(tmp_path / "tree", on_bad="ignore")


def test_symlink_loops_and_broken_links_do_not_hang(tmp_path: Path) -> None:
    _image(tmp_path / "cat" / "1.png")
    os.symlink(tmp_path / "cat", tmp_path / "cat" / "loop")  # a folder link back to itself
    os.symlink(tmp_path / "nowhere.png", tmp_path / "cat" / "broken.png")
    dataset = ImageFolderDataset(tmp_path)
    assert [Path(p).name for p, _ in dataset.samples] == ["1.png", "broken.png"]
    assert dataset[1][0].getpixel((0, 0)) == (0, 0, 0)  # the broken link is skipped


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any folder")
def test_unreadable_folder_is_recorded(tmp_path: Path) -> None:
    _image(tmp_path / "cat" / "1.png")
    locked = tmp_path / "cat" / "locked"
    _image(locked / "2.png")
    locked.chmod(0)
    try:
        dataset = ImageFolderDataset(tmp_path)
    finally:
        locked.chmod(0o755)
    assert len(dataset) == 1 and dataset.unreadable_dirs == [str(locked)]


def test_unlistable_folder_is_recorded_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The same as above without needing a non-root user: listing the folder fails."""
    _image(tmp_path / "cat" / "1.png")
    locked = tmp_path / "cat" / "locked"
    _image(locked / "2.png")
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if isinstance(path, str | os.PathLike) and Path(path) == locked:  # not a descriptor (rmtree's)
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="googlenet.data"):
        dataset = ImageFolderDataset(tmp_path)
    assert len(dataset) == 1 and dataset.unreadable_dirs == [str(locked)]
    assert any(str(locked) in record.getMessage() for record in caplog.records)


def test_skip_mode_reports_a_bad_file_once_and_returns_good_samples(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _image(tmp_path / "cat" / "0.png", 10)
    bad = _truncated(tmp_path / "cat" / "1.jpg")
    _image(tmp_path / "cat" / "2.png", 20)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "3.jpg").write_text("not an image")
    _image(tmp_path / "dog" / "4.png", 40)
    dataset = ImageFolderDataset(tmp_path)
    with caplog.at_level(logging.WARNING, logger="googlenet.data"):
        for _ in range(3):  # three epochs
            samples = [dataset[i] for i in range(len(dataset))]
            values = [(image.getpixel((0, 0))[0], target) for image, target in samples]
    assert values == [(10, 0), (20, 0), (20, 0), (40, 1), (40, 1)]
    assert dataset.bad_files == {str(bad), str(tmp_path / "dog" / "3.jpg")}
    warnings = [r.getMessage() for r in caplog.records if r.name == "googlenet.data"]
    assert len(warnings) == 2
    assert any(str(bad) in w for w in warnings) and all("\n" not in w for w in warnings)


def test_abort_mode_raises_naming_the_file(tmp_path: Path) -> None:
    _image(tmp_path / "cat" / "0.png")
    bad = _truncated(tmp_path / "cat" / "1.jpg")
    dataset = ImageFolderDataset(tmp_path, on_bad="abort")
    assert dataset[0][1] == 0
    assert str(bad) in _one_line_error(dataset.__getitem__, 1)


def test_no_readable_file_at_all(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "0.png").write_bytes(b"")
    dataset = ImageFolderDataset(tmp_path)
    assert "none of its 1 image files" in _one_line_error(dataset.__getitem__, 0)


def test_scan_bad_files_finds_and_drops_them(tmp_path: Path) -> None:
    _image(tmp_path / "cat" / "0.png")
    bad = _truncated(tmp_path / "cat" / "1.jpg")
    _image(tmp_path / "dog" / "2.png")
    (tmp_path / "dog" / "3.png").write_bytes(b"")
    dataset = ImageFolderDataset(tmp_path)
    expected = sorted([str(bad), str(tmp_path / "dog" / "3.png")])
    assert dataset.scan_bad_files(workers=2) == expected
    assert len(dataset) == 4 and dataset.bad_files == set(expected)
    assert dataset.scan_bad_files(drop=True) == expected
    assert [Path(p).name for p, _ in dataset.samples] == ["0.png", "2.png"] and dataset.targets == [0, 1]

    (tmp_path / "dog" / "2.png").write_bytes(b"")
    fresh = ImageFolderDataset(tmp_path)
    assert "'dog' has no readable images" in _one_line_error(fresh.scan_bad_files, drop=True)


def test_scan_bad_files_says_how_far_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`train` checked every image before its first line: half an hour of silence for ImageNet."""
    for k in range(3):
        _image(tmp_path / "cat" / f"{k}.png")
    with caplog.at_level(logging.INFO, logger="googlenet"):
        assert ImageFolderDataset(tmp_path).scan_bad_files(workers=1, progress_every_s=0.0) == []
        lines = [r.getMessage() for r in caplog.records if "images decoded" in r.getMessage()]
        assert len(lines) == 3 and lines[-1].startswith(f"checking {tmp_path}: 3/3 images decoded | ")
        caplog.clear()  # a bar instead of the lines, not both
        assert (
            ImageFolderDataset(tmp_path).scan_bad_files(workers=1, progress=True, progress_every_s=0.0) == []
        )
        assert not [r for r in caplog.records if "images decoded" in r.getMessage()]


def test_loader_processes_ignore_the_hang_up_a_run_counts_as_sigterm() -> None:
    """SIGHUP to the process group: every loader process ran the inherited handler of `train` and
    said "received SIGHUP" too, three times in train.log for -j 2."""
    import signal

    from googlenet.data.datasets import ignore_stop_signals

    saved = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        ignore_stop_signals()
        assert all(signal.getsignal(n) is signal.SIG_IGN for n in saved)
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _first_red(image: Any) -> torch.Tensor:
    """A transform the workers can be sent: a module-level function, not a lambda (workers started by
    forkserver or spawn, Python 3.14's default on Linux and macOS's, receive the dataset pickled)."""
    return torch.tensor(image.getpixel((0, 0))[0])


def test_works_with_dataloader_workers(tmp_path: Path) -> None:
    for i in range(4):
        _image(tmp_path / "cat" / f"{i}.png", i)
    _truncated(tmp_path / "cat" / "9.jpg")
    dataset = ImageFolderDataset(tmp_path, transform=_first_red)
    for context in ("fork", "forkserver"):  # forkserver: Python 3.14's default on Linux
        loader = DataLoader(dataset, batch_size=5, num_workers=1, multiprocessing_context=context)
        values, targets = next(iter(loader))
        assert values.tolist() == [0, 1, 2, 3, 0] and targets.tolist() == [0] * 5, context


def test_an_evaluation_loader_leaves_bad_files_out(tmp_path: Path) -> None:
    for i in range(3):
        _image(tmp_path / "cat" / f"{i}.png", 10 * i)
    _truncated(tmp_path / "cat" / "3.jpg")
    (tmp_path / "dog" / "4.png").parent.mkdir()
    (tmp_path / "dog" / "4.png").write_bytes(b"")
    _image(tmp_path / "dog" / "5.png", 50)
    dataset = ImageFolderDataset(tmp_path, transform=_first_red)
    assert dataset.exact(3) is None and dataset[3][0].item() == 50  # training's substitute: the next one
    for workers in (0, 1):
        loader = DataLoader(datasets.LeftOut(dataset), batch_size=2, num_workers=workers,
                            collate_fn=datasets.collate_decoded)  # fmt: skip
        batches = [(images.tolist(), targets.tolist()) for images, targets in loader]
        assert batches == [([0, 10], [0, 0]), ([20], [0]), ([50], [1])], workers  # 3.jpg and 4.png left out
        assert datasets.collate_decoded([None])[1].shape == (0,)


def test_load_image_folder_uses_train_class_order(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _image(tmp_path / split / "b" / "1.png")
        _image(tmp_path / split / "a" / "1.png")
    train, val = load_image_folder(tmp_path, None, lambda im: "val")
    assert train.classes == val.classes == ["a", "b"]
    assert val[0] == ("val", 0) and train.transform is None


def test_load_image_folder_errors(tmp_path: Path) -> None:
    assert "no such data folder" in _one_line_error(load_image_folder, tmp_path / "none", None, None)
    _image(tmp_path / "train" / "a" / "1.png")
    message = _one_line_error(load_image_folder, tmp_path, None, None)
    assert "missing split folder 'val'" in message
    _image(tmp_path / "train" / "b" / "1.png")
    _image(tmp_path / "val" / "a" / "1.png")
    _image(tmp_path / "val" / "c" / "1.png")
    message = _one_line_error(load_image_folder, tmp_path, None, None)
    assert "val has classes not in train: c" in message and "train has classes not in val: b" in message
    assert "accented" not in message
    # val copied from macOS: its folder names in NFD, train's in NFC
    _image(tmp_path / "train" / "\u00fcber" / "1.png")
    _image(tmp_path / "val" / "u\u0308ber" / "1.png")
    message = _one_line_error(load_image_folder, tmp_path, None, None)
    assert (
        "'u\\u0308ber' in val differ from train's only in how their accented letters are encoded" in message
    )


def test_val_folders_that_differ_from_trains_only_in_unicode_normalisation_are_matched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """val copied from macOS (folder names in NFD, train's in NFC): train stopped and told the user to
    rename them, where `evaluate` matched them; train's names are kept, val's folders read."""
    _image(tmp_path / "train" / "\u00fcber" / "1.png")
    _image(tmp_path / "train" / "a" / "1.png")
    _image(tmp_path / "val" / "u\u0308ber" / "1.png")
    _image(tmp_path / "val" / "a" / "1.png")
    with caplog.at_level(logging.WARNING, logger="googlenet"):
        train, val = load_image_folder(tmp_path, None, None)
    assert train.classes == val.classes == ["a", "\u00fcber"]
    assert val.samples[1] == (str(tmp_path / "val" / "u\u0308ber" / "1.png"), 1)
    assert "matched to train's" in caplog.text and "'u\\u0308ber'" in caplog.text
    # `train --resume RUN --test-only` reads val alone, in the checkpoint's classes (it refused)
    alone = load_val_folder(tmp_path, None, classes=["a", "\u00fcber"])
    assert alone.classes == ["a", "\u00fcber"] and alone.samples[1][0].endswith("u\u0308ber/1.png")
    assert load_val_folder(tmp_path, None, classes=["a", "other"]).classes == [
        "a",
        "u\u0308ber",
    ]  # compared later
    # Twins on both sides of one name (val holds both spellings) are not guessed at.
    _image(tmp_path / "val" / "\u00fcber" / "1.png")
    assert "have one name" in _one_line_error(load_image_folder, tmp_path, None, None)


def test_load_imagenet_from_extracted_folders(tmp_path: Path) -> None:
    wnids = {"n02012849": ("crane",), "n03126707": ("crane",), "n01440764": ("tench", "Tinca tinca")}
    torch.save((wnids, ["n01440764"]), tmp_path / "meta.bin")  # what torchvision writes from the devkit
    for wnid in wnids:
        _image(tmp_path / "val" / wnid / "ILSVRC2012_val_00000001.JPEG")
    dataset = load_imagenet(tmp_path, "val")
    assert dataset.wnids == ["n01440764", "n02012849", "n03126707"]
    assert dataset.classes == ["tench", "crane (n02012849)", "crane (n03126707)"]
    assert dataset.class_synonyms[0] == ("tench", "Tinca tinca")
    assert dataset.wnid_to_idx["n03126707"] == 2 and dataset.class_to_idx["tench"] == 0
    assert dataset[2][1] == 2


def test_imagenet_is_extracted_aside_and_a_half_extracted_split_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import imagenet as tv_imagenet

    torch.save(({"n01440764": ("tench",)}, ["n01440764"]), tmp_path / "meta.bin")
    (tmp_path / "ILSVRC2012_img_val.tar").write_bytes(b"")  # read by the stand-ins below, never

    def interrupted(root: str, file: object = None, wnids: object = None, folder: str = "val") -> None:
        _image(Path(root) / folder / "ILSVRC2012_val_00000001.JPEG")  # unpacked, not yet sorted
        raise KeyboardInterrupt

    monkeypatch.setattr(tv_imagenet, "parse_val_archive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_imagenet(tmp_path, "val")
    assert not (tmp_path / "val").exists()  # nothing that a later run would take as extracted

    def whole(root: str, file: object = None, wnids: object = None, folder: str = "val") -> None:
        _image(Path(root) / folder / "n01440764" / "ILSVRC2012_val_00000001.JPEG")

    monkeypatch.setattr(tv_imagenet, "parse_val_archive", whole)
    assert len(load_imagenet(tmp_path, "val")) == 1 and not (tmp_path / ".val.partial").exists()
    # A split torchvision left half-done in place (before this): loose images, or class archives.
    _image(tmp_path / "val" / "ILSVRC2012_val_00000002.JPEG")
    assert "only partly extracted (1 files such as ILSVRC2012_val_00000002.JPEG" in _one_line_error(
        load_imagenet, tmp_path, "val"
    )
    _image(tmp_path / "train" / "n01440764" / "a.JPEG")
    (tmp_path / "train" / "n01443537.tar").write_bytes(b"")
    assert "remove the folder to extract it again" in _one_line_error(load_imagenet, tmp_path, "train")


def test_load_imagenet_errors(tmp_path: Path) -> None:
    message = _one_line_error(load_imagenet, tmp_path, "train")
    assert "ILSVRC2012_devkit_t12.tar.gz" in message and str(tmp_path) in message
    assert "no such" in _one_line_error(load_imagenet, tmp_path / "nope", "val")
    with pytest.raises(ConfigError):
        load_imagenet(tmp_path, "test")


def _train_data(data_path: Path, dataset: str = "folder") -> Any:
    from googlenet.train import distributed as ddp
    from googlenet.train.config import resolve
    from googlenet.train.inputs import build_data

    config = resolve({}, {"data.data_path": str(data_path), "data.dataset": dataset, "data.workers": 0,
                          "model.input_size": 64})  # fmt: skip
    return build_data(config, ddp.from_environment())


def test_imagenet_train_and_val_must_hold_the_same_classes(tmp_path: Path) -> None:
    wnids = {"n01440764": ("tench",), "n01443537": ("goldfish",), "n02012849": ("crane",)}
    torch.save((wnids, list(wnids)), tmp_path / "meta.bin")
    for wnid in wnids:
        _image(tmp_path / "train" / wnid / f"{wnid}_1.JPEG")
        if wnid != "n01443537":  # val extracted in part: its folders would be numbered 0, 1
            _image(tmp_path / "val" / wnid / "ILSVRC2012_val_00000001.JPEG")
    message = _one_line_error(_train_data, tmp_path, "imagenet")
    assert "train and val folders hold different classes (1, e.g. n01443537)" in message


def test_a_class_whose_every_image_is_bad_is_an_error_not_a_class_without_images(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _image(tmp_path / split / "a" / "1.png")
        (tmp_path / split / "b").mkdir(parents=True)
        (tmp_path / split / "b" / "x.jpg").write_text("not an image")
    assert "class folder 'b' has no readable images" in _one_line_error(_train_data, tmp_path)


class _WorkerSignals(torch.utils.data.Dataset[tuple[int, int]]):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[int, int]:
        import signal

        return int(signal.getsignal(signal.SIGINT)), int(signal.getsignal(signal.SIGTERM))


def test_loader_workers_leave_stop_signals_to_the_main_process() -> None:
    """A group-wide SIGTERM (a scheduler) or Ctrl-C must not kill the workers under a step that saves."""
    import signal

    from googlenet.train.inputs import make_loader

    loader = make_loader(_WorkerSignals(), 2, torch.device("cpu"), batch_size=1)
    seen = {(int(sigint), int(sigterm)) for sigint, sigterm in loader}  # one batch per worker
    assert seen == {(int(signal.SIG_IGN), int(signal.SIG_IGN))}


# ImageNet from its three official files (tests/imagenet_archives.py writes tiny ones in their layout).


def test_imagenet_is_prepared_from_the_official_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from imagenet_archives import LEAVES, TRAIN_PER_CLASS, VAL_LABELS, official_archives

    official_archives(tmp_path, monkeypatch)
    with caplog.at_level(logging.INFO, logger="googlenet.data"):
        assert datasets.prepare_imagenet(tmp_path) == tmp_path
    assert "checking ILSVRC2012_img_train.tar and extracting it to train/" in caplog.text  # hours, said
    val, train = load_imagenet(tmp_path, "val"), load_imagenet(tmp_path, "train")
    assert val.wnids == train.wnids == [wnid for _, wnid, _ in LEAVES]
    assert val.classes == ["tench", "goldfish", "great white shark"]
    assert len(train) == TRAIN_PER_CLASS * len(LEAVES)
    # the ground truth sorts each validation image into its class: image k has label VAL_LABELS[k-1]
    by_image = {Path(path).name: label for path, label in val.samples}
    assert [by_image[f"ILSVRC2012_val_{k:08d}.JPEG"] for k in range(1, 7)] == [i - 1 for i in VAL_LABELS]
    assert not list(tmp_path.glob(".*.partial"))


def test_every_missing_archive_is_named_before_any_extraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing validation archive had been found after the training archive's hours of extraction."""
    from imagenet_archives import official_archives

    official_archives(tmp_path, monkeypatch)["val"].unlink()
    message = _one_line_error(datasets.prepare_imagenet, tmp_path, ("train", "val"))
    assert f"{tmp_path}: no ILSVRC2012_img_val.tar (the official ImageNet 2012 files)" in message
    assert not (tmp_path / "train").exists() and not (tmp_path / "meta.bin").exists()
    (tmp_path / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    assert "no ILSVRC2012_devkit_t12.tar.gz, no ILSVRC2012_img_val.tar" in _one_line_error(
        datasets.prepare_imagenet, tmp_path
    )
    # an extracted tree without the devkit: the error says which --dataset reads it
    _image(tmp_path / "val" / "n01440764" / "a.JPEG")
    assert "is read with --dataset folder" in _one_line_error(load_imagenet, tmp_path, "val")
    # and --dataset folder on the archives says which reads them
    assert "it holds ILSVRC2012_img_train.tar: --dataset imagenet reads" in _one_line_error(
        load_image_folder, tmp_path, None, None
    )


def test_an_unwritable_imagenet_folder_is_named_before_hashing_and_a_prepared_one_is_only_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from imagenet_archives import official_archives

    official_archives(tmp_path, monkeypatch)

    def refused(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:  # a read-only folder (chmod does not stop root, who runs CI)
        patch.setattr(tempfile, "mkstemp", refused)
        message = _one_line_error(load_imagenet, tmp_path, "val")
        assert f"{tmp_path}: not writable (Permission denied); the first run writes meta.bin" in message
    assert len(load_imagenet(tmp_path, "val")) == 6
    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", refused)
        assert len(load_imagenet(tmp_path, "val")) == 6  # prepared: nothing to write


def test_a_broken_meta_bin_is_named_with_the_remedy_before_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagenet_archives import official_archives

    official_archives(tmp_path, monkeypatch)
    for content in (b"", b"PK\x03\x04 half a zip"):
        (tmp_path / "meta.bin").write_bytes(content)
        message = _one_line_error(datasets.prepare_imagenet, tmp_path)
        assert f"{tmp_path / 'meta.bin'}: unreadable (" in message
        assert message.endswith("remove it to read ILSVRC2012_devkit_t12.tar.gz again")
        assert not (tmp_path / "train").exists()
    (tmp_path / "meta.bin").unlink()
    assert datasets.prepare_imagenet(tmp_path, ("val",)) == tmp_path


def test_a_corrupt_archive_or_a_failed_extraction_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from torchvision.datasets import imagenet as tv_imagenet

    from imagenet_archives import official_archives

    files = official_archives(tmp_path, monkeypatch)
    with files["train"].open("r+b") as handle:  # one byte changed: its MD5 is no longer the official one
        handle.seek(600)
        handle.write(b"X")
    message = _one_line_error(datasets.prepare_imagenet, tmp_path, ("train",))
    assert f"{files['train']}: cannot extract it to train/: corrupted, or not ILSVRC 2012's" in message
    assert (tmp_path / "meta.bin").is_file() and not list(tmp_path.glob("*train*/"))

    def disk_full(root: str, file: object = None, wnids: object = None, folder: str = "val") -> None:
        _image(Path(root) / folder / "ILSVRC2012_val_00000001.JPEG")
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(root) / folder / "x.JPEG"))

    monkeypatch.setattr(tv_imagenet, "parse_val_archive", disk_full)
    message = _one_line_error(datasets.prepare_imagenet, tmp_path, ("val",))
    assert message.endswith(
        f"cannot extract it to val/: {tmp_path / '.val.partial' / 'x.JPEG'}: No space left on device"
    )
    assert not (tmp_path / ".val.partial").exists() and not (tmp_path / "val").exists()


def test_a_second_process_waits_for_the_first_to_finish_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two runs started together on a fresh folder had each emptied and refilled `.train.partial`; one
    renamed a silent subset of the training set to train/."""
    import fcntl
    import threading
    import time

    from imagenet_archives import LEAVES, TRAIN_PER_CLASS, official_archives

    official_archives(tmp_path, monkeypatch)
    datasets.prepare_imagenet(tmp_path, ())  # meta.bin only
    outcome: list[object] = []
    with open(tmp_path / ".googlenet-imagenet.lock", "a") as other:  # another process preparing
        fcntl.flock(other, fcntl.LOCK_EX)  # (flock: per open file, so a second open here waits too)
        with caplog.at_level(logging.INFO, logger="googlenet.data"):
            waiter = threading.Thread(target=lambda: outcome.append(datasets.prepare_imagenet(tmp_path)))
            waiter.start()
            deadline = time.monotonic() + 60  # until the waiter says it waits (1 s was not always enough)
            while "another process is preparing ImageNet here; waiting" not in caplog.text:
                assert time.monotonic() < deadline and waiter.is_alive(), caplog.text
                time.sleep(0.05)
            assert waiter.is_alive() and not (tmp_path / "train").exists()
            fcntl.flock(other, fcntl.LOCK_UN)
            waiter.join(60)
    assert outcome == [tmp_path] and "another process is preparing ImageNet here; waiting" in caplog.text
    assert len(load_imagenet(tmp_path, "train")) == TRAIN_PER_CLASS * len(LEAVES)


def test_preparation_goes_on_without_a_lock_where_there_is_none_and_refuses_a_file_as_a_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno
    import fcntl

    from imagenet_archives import official_archives

    official_archives(tmp_path, monkeypatch)
    (tmp_path / "train").write_text("not a folder")  # after hours of extraction the rename would fail
    assert "train: is a file, not the extracted split folder" in _one_line_error(
        datasets.prepare_imagenet, tmp_path
    )
    assert not (tmp_path / "meta.bin").exists()

    def no_locks(*args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)  # a network file system without flock
    with caplog.at_level(logging.WARNING, logger="googlenet.data"):
        assert datasets.prepare_imagenet(tmp_path, ("val",)) == tmp_path
    assert "no file locks here (No locks available); preparing without a lock" in caplog.text
    assert len(load_imagenet(tmp_path, "val")) == 6
