"""Tiny stand-ins for ImageNet 2012's three official files, in their exact layout, for the tests that
exercise the preparation path (`googlenet.data.prepare_imagenet`): the devkit (`data/meta.mat` with leaf
and non-leaf synsets, the validation ground truth), the training archive (one tar per WordNet id) and
the flat validation archive. torchvision checks each file's MD5 against the official one;
`official_archives` writes the files and makes torchvision expect theirs."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# (ILSVRC2012_ID, WordNet id, words) of the leaf synsets; ID 5 is a non-leaf above them, as in the
# real meta.mat, whose 1860 synsets include 860 non-leaves that are no class.
LEAVES = ((1, "n01440764", "tench, Tinca tinca"), (2, "n01443537", "goldfish, Carassius auratus"),
          (3, "n01484850", "great white shark, white shark"))  # fmt: skip
VAL_LABELS = (1, 2, 3, 3, 2, 1)  # ILSVRC2012_ID of val images 1..6, as the ground-truth file lists them
TRAIN_PER_CLASS = 4


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 16), (value, 255 - value, value // 2)).save(buffer, "JPEG")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _meta_mat() -> bytes:
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]  # fmt: skip
    rows = [(i, wnid, words, "", 0, np.zeros(0, np.uint8), 0, TRAIN_PER_CLASS) for i, wnid, words in LEAVES]
    rows.append((5, "n01440000", "fish", "", len(LEAVES), np.arange(1, 4, dtype=np.uint8), 1, 0))
    synsets = np.array(rows, dtype=[(field, "O") for field in fields]).reshape(-1, 1)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def write_archives(folder: Path) -> dict[str, Path]:
    """The three files in `folder`; returns them by torchvision's ARCHIVE_META keys."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"devkit": folder / "ILSVRC2012_devkit_t12.tar.gz", "train": folder / "ILSVRC2012_img_train.tar",
             "val": folder / "ILSVRC2012_img_val.tar"}  # fmt: skip
    with tarfile.open(files["devkit"], "w:gz") as devkit:
        _add(devkit, "ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat())
        truth = "".join(f"{label}\n" for label in VAL_LABELS).encode()
        _add(devkit, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    with tarfile.open(files["train"], "w") as train:
        for index, wnid, _ in LEAVES:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as per_class:
                for k in range(TRAIN_PER_CLASS):
                    _add(per_class, f"{wnid}_{k}.JPEG", _jpeg(60 * index + k))
            _add(train, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(files["val"], "w") as val:
        for k, label in enumerate(VAL_LABELS, 1):
            _add(val, f"ILSVRC2012_val_{k:08d}.JPEG", _jpeg(60 * label))
    return files


def official_archives(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """`write_archives`, and torchvision told that their MD5s are the official ones."""
    from torchvision.datasets import imagenet as tv_imagenet

    files = write_archives(folder)
    for kind, path in files.items():
        monkeypatch.setitem(
            tv_imagenet.ARCHIVE_META, kind, (path.name, hashlib.md5(path.read_bytes()).hexdigest())
        )
    return files
