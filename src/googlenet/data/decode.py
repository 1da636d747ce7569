"""Robust image decoding: any file a dataset may hold becomes an 8-bit RGB `PIL.Image`, or a `DataError`.

`load_image` is the one place where image bytes become pixels. It decodes fully (so a truncated
file fails here, not later inside a DataLoader worker), applies the EXIF orientation, converts every
PIL mode to 8-bit RGB without losing range, and refuses decompression bombs. Every failure is a
one-line `DataError` that names the file.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from googlenet.errors import DataError

# File name endings we treat as images (compared case-insensitively, see `is_image_file`).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
)  # fmt: skip

# PIL refuses to open images above twice `Image.MAX_IMAGE_PIXELS` (89,478,485 px, about a quarter of a
# GiB of 24-bit pixels), so its hard limit is 178,956,970 px; we use the same number as our default.
DEFAULT_MAX_PIXELS = 2 * (1024 * 1024 * 1024 // 4 // 3)

# Every use resizes the shorter side (evaluation to 256, section 7's crops up to 352): a 1 x 100,000
# strip of a few hundred bytes would become 352 x 35 million pixels. No photograph is this elongated;
# at the limit the largest resize is 352 x 35,200 pixels (37 MB).
MAX_ASPECT_RATIO = 100

# Transparent pixels are composited onto white: images with an alpha channel (logos, product shots)
# are almost always drawn for a white page, and merely dropping alpha exposes whatever colour the
# encoder left under transparent pixels (often black or noise).
ALPHA_BACKGROUND = (255, 255, 255)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file name ends in one of `IMAGE_EXTENSIONS` (any letter case)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `path` fully into an 8-bit RGB image with its EXIF orientation applied.

    Images with more than `max_pixels` pixels are refused before their pixel data is decoded.
    PIL's own `DecompressionBombWarning` (above `Image.MAX_IMAGE_PIXELS`) is never merely printed:
    `max_pixels` decides, and PIL's `DecompressionBombError` (above twice that) is a `DataError`
    too, so a `max_pixels` above PIL's hard limit also needs `Image.MAX_IMAGE_PIXELS` raised.
    Multi-frame files (TIFF, animated WebP) give their first frame.

    Raises `DataError` naming the file when it is missing, unreadable, empty, not an image, truncated
    or corrupt, too large, more than `MAX_ASPECT_RATIO` times longer than wide (or wider than long),
    or in a mode that has no RGB meaning.
    """
    file = Path(path)
    try:
        kind = os.stat(file).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):  # opening a FIFO would wait for a writer
            raise DataError(f"{file}: not a regular file (a pipe, socket or device)")
        with open(file, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise DataError(f"{file}: empty file (0 bytes)")
            image = _open_and_decode(handle, file, max_pixels)
    except FileNotFoundError:
        if file.is_symlink():  # the link is there: what it names is not
            raise DataError(f"{file}: a symbolic link to {os.readlink(file)}, which does not exist") from None
        raise DataError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{file}: is a directory, not an image file") from None
    except PermissionError:
        raise DataError(f"{file}: permission denied") from None
    except OSError as exc:  # e.g. an I/O error from the disk or a network file system
        raise DataError(f"{file}: cannot read ({_one_line(exc)})") from None
    return _to_rgb(_apply_exif_orientation(image), file)


def _open_and_decode(handle: BinaryIO, file: Path, max_pixels: int) -> Image.Image:
    """`Image.open` plus a full `load()`, with every PIL failure turned into a `DataError`."""
    try:
        # `catch_warnings` swaps the process-wide filter list; DataLoader workers are processes, and
        # a thread that warns meanwhile at worst loses one warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(handle)  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise DataError(
                    f"{file}: refused as a decompression bomb: {width} x {height} = {width * height:,} "
                    f"pixels is over the limit of {max_pixels:,}"
                )
            if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
                raise DataError(
                    f"{file}: {width} x {height} pixels, longer than {MAX_ASPECT_RATIO}:1 (resizing its "
                    "shorter side to the network's input would make it huge)"
                )
            image.load()  # full decode now, so truncated data fails here
    except Image.DecompressionBombError as exc:
        raise DataError(f"{file}: refused as a decompression bomb ({_one_line(exc)})") from None
    except UnidentifiedImageError:
        raise DataError(f"{file}: not an image (or a format PIL cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        # PIL reports truncated and corrupt data with any of these, depending on the codec.
        raise DataError(f"{file}: corrupt or truncated image data ({_one_line(exc)})") from None
    return image


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says; a malformed EXIF block is ignored, not fatal."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - broken metadata must not lose an otherwise good image
        return image
    return transposed if transposed is not None else image


def to_rgb(image: Image.Image, source: str = "image") -> Image.Image:
    """An image already opened (by a caller of `predict_image` or `cut_crops`) in 8-bit RGB, converted as
    `load_image` converts files: transparency composited on white, 16-bit values scaled, not clipped."""
    return _to_rgb(image, Path(source))


def _to_rgb(image: Image.Image, file: Path) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, scaling high bit depths rather than clipping them."""
    mode = image.mode
    transparent = image.info.get("transparency") if mode != "P" else None
    if mode in ("1", "L", "RGB") and transparent is not None:
        image = image.convert("RGBA")  # a PNG's tRNS colour (one grey level or RGB triple) becomes alpha
    elif mode == "RGB":
        return image
    elif mode.startswith("I;16") or mode in ("I", "F"):
        pixels = np.asarray(image)
        grey = _to_uint8(pixels, mode)
        if not isinstance(transparent, int):
            return Image.fromarray(grey, mode="L").convert("RGB")
        # a 16-bit tRNS grey level: PIL's RGBA conversion would clip first, so the alpha comes from it here
        alpha = np.where(pixels == transparent, 0, 255).astype(np.uint8)
        image = Image.fromarray(np.dstack([grey, grey, grey, alpha]), mode="RGBA")
    elif mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # palette transparency becomes a real alpha channel
    elif mode == "P":
        return image.convert("RGB")
    if mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    try:
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, HSV ...
    except ValueError:
        raise DataError(f"{file}: unsupported image mode {mode!r}") from None


def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Map 16-bit, 32-bit integer or float grey levels onto 0..255.

    16-bit data (`I;16*`, or mode `I` with values in 0..65535, which is how PIL opens most 16-bit
    PNG and TIFF files) is divided by 257 so 65535 -> 255. Float data in 0..1 is multiplied by 255.
    Anything else is stretched from its own minimum and maximum.
    """
    values = pixels.astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
