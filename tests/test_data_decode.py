"""`load_image`: every PIL mode becomes 8-bit RGB, EXIF orientation is applied, and every kind of bad
file is a one-line DataError naming it. All images are made inside the tests."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from googlenet.data import decode
from googlenet.data.decode import IMAGE_EXTENSIONS, is_image_file, load_image
from googlenet.errors import DataError


def _bad(path: Path, **kwargs: int) -> DataError:
    with pytest.raises(DataError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return info.value


@pytest.mark.parametrize(
    ("mode", "ext", "colour", "expected"),
    [
        ("L", "png", 77, (77, 77, 77)),
        ("1", "png", 1, (255, 255, 255)),
        ("CMYK", "tif", (0, 255, 255, 0), (255, 0, 0)),
        ("CMYK", "jpg", (0, 0, 0, 0), (255, 255, 255)),
        ("RGB", "ppm", (1, 2, 3), (1, 2, 3)),
        ("L", "pgm", 200, (200, 200, 200)),
        ("RGB", "bmp", (9, 8, 7), (9, 8, 7)),
        ("RGB", "webp", (0, 0, 0), (0, 0, 0)),
    ],
)
def test_modes_become_rgb(tmp_path: Path, mode: str, ext: str, colour: object, expected: tuple) -> None:
    path = tmp_path / f"image.{ext}"
    Image.new(mode, (8, 6), colour).save(path)  # type: ignore[arg-type]
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (8, 6)
    assert np.abs(np.asarray(image)[3, 4].astype(int) - expected).max() <= 2


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black: must not come out black
    rgba.putpixel((1, 0), (0, 0, 255, 128))  # half-transparent blue over white
    rgba.save(tmp_path / "rgba.png")
    pixels = np.asarray(load_image(tmp_path / "rgba.png")).astype(int)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[1, 0]) == (255, 0, 0)
    assert np.abs(pixels[0, 1] - (127, 127, 255)).max() <= 2

    Image.new("LA", (2, 2), (30, 0)).save(tmp_path / "la.png")
    assert tuple(np.asarray(load_image(tmp_path / "la.png"))[0, 0]) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png")
    assert np.asarray(load_image(tmp_path / "p.png")).tolist() == [[[10, 20, 30], [200, 100, 50]]]

    palette.save(tmp_path / "pt.png", transparency=0)  # index 0 transparent
    assert np.asarray(load_image(tmp_path / "pt.png")).tolist() == [[[255, 255, 255], [200, 100, 50]]]


def test_a_grey_or_rgb_png_with_a_transparent_colour_is_composited_on_white(tmp_path: Path) -> None:
    # PNG's tRNS chunk outside palettes: one grey level, or one RGB triple, is transparent.
    grey = Image.new("L", (2, 1))
    grey.putpixel((1, 0), 90)
    grey.save(tmp_path / "l.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "l.png")).tolist() == [[[255, 255, 255], [90, 90, 90]]]
    colour = Image.new("RGB", (2, 1), (10, 20, 30))
    colour.putpixel((1, 0), (200, 100, 50))
    colour.save(tmp_path / "rgb.png", transparency=(10, 20, 30))
    assert np.asarray(load_image(tmp_path / "rgb.png")).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    bilevel = Image.new("1", (2, 1))
    bilevel.save(tmp_path / "1.png", transparency=0)  # both pixels black, so both transparent
    assert np.asarray(load_image(tmp_path / "1.png")).tolist() == [[[255, 255, 255], [255, 255, 255]]]
    Image.fromarray(np.array([[0, 32896]], dtype=np.uint16)).save(tmp_path / "deep.png", transparency=0)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert np.asarray(load_image(tmp_path / "deep.png")).tolist() == [[[255, 255, 255], [128, 128, 128]]]


def test_16_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    pixels = np.asarray(load_image(tmp_path / "deep.png"))
    assert pixels[..., 0].tolist() == [[0, 1, 128, 255]]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_32_bit_integer_and_float_modes(tmp_path: Path) -> None:
    deep = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), mode="I")
    deep.save(tmp_path / "i.tif")
    assert np.asarray(load_image(tmp_path / "i.tif"))[..., 0].tolist() == [[0, 255]]
    wide = Image.fromarray(np.array([[-5, 0, 5]], dtype=np.int32), mode="I")
    wide.save(tmp_path / "wide.tif")
    assert np.asarray(load_image(tmp_path / "wide.tif"))[..., 0].tolist() == [[0, 128, 255]]
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    assert np.asarray(load_image(tmp_path / "f.tif"))[..., 0].tolist() == [[0, 128, 255]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    image.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[2, 10].astype(int)
    assert top[2] > 200 and top[0] < 60  # the blue left edge is now at the top


def test_missing_empty_and_not_an_image(tmp_path: Path) -> None:
    assert "no such file" in str(_bad(tmp_path / "missing.jpg"))
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in str(_bad(tmp_path / "empty.jpg"))
    (tmp_path / "text.jpg").write_text("this is not a JPEG\nsecond line\n")
    assert "not an image" in str(_bad(tmp_path / "text.jpg"))
    (tmp_path / "folder.jpg").mkdir()
    _bad(tmp_path / "folder.jpg")


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_file_fails_at_load(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / f"cut.{ext}"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in str(_bad(path)) or "corrupt" in str(_bad(path))


def test_corrupt_bytes_after_a_valid_header(tmp_path: Path) -> None:
    path = tmp_path / "garbled.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(path)
    data = bytearray(path.read_bytes())
    data[60:80] = b"\xff" * 20  # inside the compressed data: the CRC check fails
    path.write_bytes(bytes(data))
    _bad(path)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_decompression_bombs_are_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(30_000, 30_000))  # 900 Mpx: over PIL's own hard limit
    assert "decompression bomb" in str(_bad(huge))

    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(10_000, 10_000))  # 100 Mpx: PIL would only warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing may merely warn
        message = str(_bad(big, max_pixels=50_000_000))
    assert "decompression bomb" in message and "50,000,000" in message

    small = tmp_path / "small.png"
    Image.new("L", (100, 100)).save(small)
    assert "decompression bomb" in str(_bad(small, max_pixels=9_999))
    assert load_image(small, max_pixels=10_000).size == (100, 100)


def test_strips_longer_than_100_to_1_are_refused_before_decoding(tmp_path: Path) -> None:
    # Resizing a 1 x 100,000 strip's shorter side to 352 (section 7) would need 35 G pixels.
    strip = tmp_path / "strip.png"
    strip.write_bytes(_png_header_only(100_000, 1))
    assert "100000 x 1 pixels, longer than 100:1" in str(_bad(strip))
    panorama = tmp_path / "panorama.png"
    Image.new("RGB", (1000, 10)).save(panorama)  # 100:1 exactly is still an image
    assert load_image(panorama).size == (1000, 10)


def test_permission_denied_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(decode, "open", refuse, raising=False)  # works even when tests run as root
    assert "permission denied" in str(_bad(path))


def test_image_extensions_are_case_insensitive() -> None:
    assert {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"} == set(
        IMAGE_EXTENSIONS
    )
    assert is_image_file("a/B.JPG") and is_image_file("x.TiFf") and is_image_file(Path("y.webp"))
    assert not is_image_file("notes.txt") and not is_image_file("jpg")
