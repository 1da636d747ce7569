"""A corpus of malformed and unusual image files, generated on the fly (no binaries are committed).

`write_corpus(folder)` writes one file (or link, pipe, folder) per case and returns the `Case`s. Each
case says what the decoder must do with it: "ok" (an RGB image, of `size` when given), "bad" (a one-line
`DataError` naming the file) or "either" (bit-flipped data that may or may not still decode). The
reliability tests push the corpus through the decoder, the datasets and every command that reads
images; `benchmarks/reliability.py` counts the same cases for docs/reliability.md.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Case:
    kind: str  # e.g. "truncated", "mode", "bomb"; docs/reliability.md counts inputs by kind
    path: Path  # may be a bytes-derived name that is not valid UTF-8
    expect: str  # "ok", "bad" or "either"
    size: tuple[int, int] | None = None  # (width, height) an "ok" image must decode to


def sample_image(width: int = 48, height: int = 32, seed: int = 0) -> Image.Image:
    """A small RGB image with structure (gradients and noise), so codecs have something to encode."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x ^ y) & 255], -1)
    pixels = (pixels + rng.integers(0, 24, pixels.shape)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims `width` x `height` RGB pixels, followed by a token IDAT: a decompression bomb."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def flip_bits(data: bytes, seed: int, count: int = 3, keep_header: int = 32) -> bytes:
    """`count` random single-bit flips after the first `keep_header` bytes."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for position in rng.integers(keep_header, len(out), count):
        out[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 48 x 32 JPEG whose EXIF says "rotate 90 degrees" (6): it must decode as 32 x 48."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encoded(sample_image(48, 32), "JPEG", exif=exif.tobytes())


def write_corpus(folder: Path, *, unreadable: bool | None = None) -> list[Case]:
    """Write every case into `folder` (created); returns them in a fixed order.

    `unreadable`: include a chmod-000 file (default: only when not running as root, who reads it anyway).
    """
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(
        name: str | bytes, data: bytes, kind: str, expect: str, size: tuple[int, int] | None = None
    ) -> None:
        path = Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(name))))
        path.write_bytes(data)
        cases.append(Case(kind, path, expect, size))

    base = sample_image()
    jpeg, png = encoded(base, "JPEG", quality=90), encoded(base, "PNG")

    add("good.jpg", jpeg, "good", "ok", (48, 32))
    add("good.png", png, "good", "ok", (48, 32))
    for fraction in (0.1, 0.5, 0.9):
        add(f"truncated-{fraction}.jpg", jpeg[: int(len(jpeg) * fraction)], "truncated", "bad")
        add(f"truncated-{fraction}.png", png[: int(len(png) * fraction)], "truncated", "bad")
    for seed in range(4):
        add(f"bitflip-{seed}.jpg", flip_bits(jpeg, seed), "bit-flipped", "either")
        add(f"bitflip-{seed}.png", flip_bits(png, seed), "bit-flipped", "either")
    add("empty.jpg", b"", "zero-byte", "bad")
    add("empty.png", b"", "zero-byte", "bad")
    add("notes.jpg", b"these are my holiday notes, not a photo\n" * 8, "text", "bad")
    add("readme.png", "# a README saved as .png \u00e9\n".encode(), "text", "bad")
    add("bomb-huge.png", png_header_claiming(100_000, 100_000), "bomb", "bad")
    add("bomb-tall.png", png_header_claiming(1, 2**31 - 1), "bomb", "bad")
    add("cmyk.jpg", encoded(base.convert("CMYK"), "JPEG"), "mode", "ok", (48, 32))
    add("la.png", encoded(base.convert("LA"), "PNG"), "mode", "ok", (48, 32))
    add("palette.png", encoded(base.convert("P"), "PNG"), "mode", "ok", (48, 32))
    grey16 = Image.fromarray((np.arange(48 * 32, dtype=np.uint16) * 40).reshape(32, 48))
    add("grey16.png", encoded(grey16, "PNG"), "mode", "ok", (48, 32))
    add("bilevel.png", encoded(base.convert("1"), "PNG"), "mode", "ok", (48, 32))
    add("rgba.png", encoded(base.convert("RGBA"), "PNG"), "mode", "ok", (48, 32))
    add("exif-rotated.jpg", exif_rotated_jpeg(6), "exif-rotated", "ok", (32, 48))
    add("exif-mirrored.jpg", exif_rotated_jpeg(2), "exif-rotated", "ok", (48, 32))
    add(b"\xff\xfe-latin1-\xe9t\xe9.jpg", jpeg, "non-UTF-8 name", "ok", (48, 32))
    add(b"\xff\xfe-broken-\xe9.png", png[:40], "non-UTF-8 name", "bad")

    loop = folder / "loop.jpg"
    loop.symlink_to("loop.jpg")  # ELOOP when opened
    cases.append(Case("symlink loop", loop, "bad"))
    dangling = folder / "dangling.png"
    dangling.symlink_to("no-such-target.png")
    cases.append(Case("symlink loop", dangling, "bad"))
    pipe = folder / "pipe.jpg"
    os.mkfifo(pipe)  # opening it would block until a writer comes
    cases.append(Case("special file", pipe, "bad"))
    if unreadable is None:
        unreadable = os.geteuid() != 0
    if unreadable:
        add("locked.jpg", jpeg, "unreadable", "bad")
        cases[-1].path.chmod(0)
    return cases


def add_folder_traps(class_folder: Path) -> None:
    """Folder-level traps inside a dataset class folder: a symlink back up the tree (a loop when
    followed) and a folder named like an image."""
    (class_folder / "again").symlink_to("..", target_is_directory=True)
    (class_folder / "folder.jpg").mkdir()
