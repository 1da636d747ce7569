"""Photograph-sized JPEGs for the benchmark's `data` section, cut from scikit-image's sample photos.

Decoding and resizing cost grows with an image's pixels and with the detail its JPEG codes, so the
built-in 96-pixel drawings say little about a pipeline fed ImageNet's photographs (most of them
500x375). Nothing may be downloaded, so these are crops of the colour photographs shipped inside
scikit-image's wheel (public domain or CC0: its `data/README.txt`), each scaled by a random factor
(at most its own size where that covers the crop), cut at 500x375 (a quarter of them 375x500), mirrored at random and saved at JPEG quality 90: one class
folder per photograph, drawn once from a fixed seed and cached beside the built-in data (with a digest
of every file, checked on use, as there).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from googlenet.data.synthetic import _photo_folder, cached_folder
from googlenet.errors import DataError

PHOTO_JPEGS_VERSION = 2
COLOUR_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg",
                 "rocket.jpg")  # fmt: skip
SIZE = (500, 375)  # width, height; portrait crops swap them
QUALITY = 90


def ensure_photo_jpegs(root: str | os.PathLike[str] | None = None, count: int = 520) -> Path:
    """The folder (`<dir>/train/<photo>/00000.jpg`, one `val/` image per photo) of at least `count`
    training JPEGs, drawn if needed; a `DataError` when scikit-image's photographs are not installed."""
    folder = _photo_folder()
    photos = [name for name in COLOUR_PHOTOS if folder is not None and (folder / name).is_file()]
    if folder is None or not photos:
        raise DataError("scikit-image's sample photographs are not installed: give --data-path")
    params = {"photo_jpegs_version": PHOTO_JPEGS_VERSION, "count": count, "photos": photos, "seed": 0}
    source = folder  # a Path here (the closure below does not see the check above narrow `folder`)

    def draw(staging: Path, _: Path) -> dict[str, Any]:
        _draw(staging, source, photos, count)
        return {"counts": {"train": _per_photo(count, photos) * len(photos), "val": len(photos)}}

    return cached_folder(root, "photo-jpegs", params, "the benchmark's photo JPEGs", draw)


def _per_photo(count: int, photos: list[str]) -> int:
    return math.ceil(count / len(photos))


def _draw(out: Path, folder: Path, photos: list[str], count: int) -> None:
    per_photo = _per_photo(count, photos)
    try:
        for p, name in enumerate(photos):
            with Image.open(folder / name) as image:
                photo = image.convert("RGB")
            for split, number in (("train", per_photo), ("val", 1)):
                (out / split / Path(name).stem).mkdir(parents=True)
                for index in range(number):
                    rng = np.random.default_rng([p, index, split == "val"])
                    crop = _crop(photo, rng)
                    crop.save(out / split / Path(name).stem / f"{index:05d}.jpg", "JPEG", quality=QUALITY)
    except OSError as exc:
        raise DataError(f"{out}: cannot write the benchmark's photo JPEGs ({exc.strerror or exc})") from None


def _crop(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A SIZE crop (portrait one time in four) of `photo` scaled by a factor drawn between the one that
    just covers SIZE and 1 (no enlarging beyond the photograph's own detail where it covers SIZE)."""
    width, height = SIZE if rng.random() >= 0.25 else SIZE[::-1]
    cover = max(width / photo.width, height / photo.height)
    scale = rng.uniform(cover, max(cover, 1.0))
    scaled = photo.resize(
        (max(width, round(photo.width * scale)), max(height, round(photo.height * scale))),
        Image.Resampling.BICUBIC,
    )
    x = int(rng.integers(0, scaled.width - width + 1))
    y = int(rng.integers(0, scaled.height - height + 1))
    crop = scaled.crop((x, y, x + width, y + height))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop
