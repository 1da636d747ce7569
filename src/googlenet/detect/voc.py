"""Detection data on disk: PASCAL VOC annotations (torchvision's layout, read with ElementTree) and detection CSV files.

A VOC tree is `<root>/VOCdevkit/VOC<year>/{Annotations,ImageSets/Main,JPEGImages}`; `root` may also be
the `VOCdevkit` folder or the `VOC<year>` folder itself (any folder holding Annotations/ and
ImageSets/). Annotations are parsed with ElementTree (`load_voc` says what it checks), without
decoding the images; an image is `JPEGImages/<id>.jpg`, or `<id>` with another image extension.

A detections file is CSV with the header `image_id,class,score,xmin,ymin,xmax,ymax` (inclusive pixel
coordinates, as VOC's annotations); any bad row is a one-line error naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from googlenet.data.decode import IMAGE_EXTENSIONS
from googlenet.detect.metrics import Detection, GroundTruth
from googlenet.errors import DataError
from googlenet.io import fit_name

logger = logging.getLogger("googlenet.detect")

CSV_FIELDS: tuple[str, ...] = ("image_id", "class", "score", "xmin", "ymin", "xmax", "ymax")


def _voc_year_dir(root: Path) -> Path:
    """The `VOC<year>` folder under (or at) `root`: `root` itself when it holds Annotations/ and
    ImageSets/ (whatever its name: a user's own tree), else the one VOCdevkit/VOC* folder holding them."""
    if (root / "Annotations").is_dir() and (root / "ImageSets").is_dir():
        return root
    devkit = root if root.name == "VOCdevkit" else root / "VOCdevkit"
    years = sorted(p for p in devkit.glob("VOC*") if (p / "Annotations").is_dir()) if devkit.is_dir() else []
    if not years:
        if not root.exists():
            raise DataError(f"{root}: no such folder (a VOC root: VOCdevkit/VOC<year>/Annotations inside)")
        raise DataError(
            f"{root}: no VOC tree found (a folder holding Annotations/ and ImageSets/Main/, or "
            "VOCdevkit/VOC<year>/ holding them)"
        )
    if len(years) > 1:  # VOC07+12 trees hold both: scoring one year's set against the other's is silent
        raise DataError(
            f"{devkit}: holds {', '.join(p.name for p in years)}; give the VOC<year> folder to use "
            f"(e.g. {years[0]})"
        )
    return years[0]


@dataclass
class _VOCSet:
    """The ids, image paths and annotation paths of one image set, in its list's order."""

    ids: list[str]
    images: list[str]
    annotations: list[str]


def _image_path(folder: Path, image_id: str) -> str:
    """`<id>.jpg` as VOC names its images, or else the first `<id>.<ext>` there of another image type
    (a user's own PNGs, say); `<id>.jpg` when there is none, for the error that names it."""
    jpg = folder / f"{image_id}.jpg"
    if not jpg.exists():
        for ext in IMAGE_EXTENSIONS:
            for candidate in (folder / f"{image_id}{ext}", folder / f"{image_id}{ext.upper()}"):
                if candidate.exists():
                    return str(candidate)
    return str(jpg)


def _dataset(root: str | os.PathLike[str], image_set: str, flag: str = "--image-set") -> _VOCSet:
    year_dir = _voc_year_dir(Path(root))
    listing = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.is_file():
        raise DataError(f"{flag} {image_set}: {year_dir} has no ImageSets/Main/{image_set}.txt")
    # Read here rather than through VOCDetection(root, year): its constructor looks for
    # <root>/VOCdevkit/VOC<year>, so a VOC<year> folder whose parent is not named VOCdevkit would be
    # read from somewhere else (or not found). The layout below is VOCDetection's, id per line.
    try:  # -sig: a byte-order mark, as some editors write, is not part of the first id
        lines = [line.strip() for line in listing.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{listing}: cannot read it ({exc})") from None
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, image_id in enumerate(lines, start=1):
        if not image_id:  # a blank line is not an image
            continue
        if image_id in first_line:  # its detections would be scored twice, every second one a false positive
            raise DataError(
                f"{listing}:{number}: {image_id!r} is listed again (first on line {first_line[image_id]}); "
                "list each image once"
            )
        first_line[image_id] = number
        ids.append(image_id)
    if not ids:  # every figure of an empty set would be NaN or 0 of 0
        raise DataError(f"{flag} {image_set}: {listing} lists no images")
    images = year_dir / "JPEGImages"
    return _VOCSet(
        ids=ids,
        images=[_image_path(images, i) for i in ids],
        annotations=[str(year_dir / "Annotations" / f"{i}.xml") for i in ids],
    )


def file_stem(image_id: str) -> str:
    """`image_id` as one file name (a region's, a drawing's): an id listed with folders (`sub/x`) keeps
    them, escaped, so two ids never share a file; one longer than 200 bytes so escaped is cut there and
    ends in 8 hex digits of the id's SHA-256 (room left for a suffix within a file name's 255 bytes)."""
    stem = image_id.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    if len(os.fsencode(stem)) <= 200:
        return stem
    return f"{fit_name(stem, 190)}-{hashlib.sha256(os.fsencode(image_id)).hexdigest()[:8]}"


def voc_images(
    root: str | os.PathLike[str], image_set: str = "val", flag: str = "--image-set"
) -> list[tuple[str, str]]:
    """(image id, image path) of the images listed in `ImageSets/Main/<image_set>.txt`, the id as listed;
    `flag` is the option that named the set, for the error when there is no such list."""
    dataset = _dataset(root, image_set, flag)
    return list(zip(dataset.ids, dataset.images, strict=True))


def load_voc(
    root: str | os.PathLike[str], image_set: str = "val", flag: str = "--image-set"
) -> dict[str, GroundTruth]:
    """Ground truth per image id (as listed) for the images listed in `ImageSets/Main/<image_set>.txt`.

    Each `<object>` needs one `<name>` (text) and one `<bndbox>` with finite xmin <= xmax, ymin <= ymax;
    `<difficult>` is 0 or 1 (or false/true; 0 when absent). The image's size is read from its file's
    header where the image is there (as decoding will turn it: EXIF orientation applied), else from a
    valid `<size>`: a box wholly outside the image is an error, and one reaching past its edge is clipped
    to it, with one warning per set (a typo of 9999999 no longer makes a region of gigabytes). A
    `<size>` that is neither the image's size as read nor as stored (another size of it), or that is
    the stored one where its EXIF orientation turns it (annotated on the unturned pixels, which the
    boxes would miss), is an error. Anything else is a one-line `DataError` naming the file and object.
    """
    dataset = _dataset(root, image_set, flag)
    truth: dict[str, GroundTruth] = {}
    clipped: list[str] = []
    oriented: list[str] = []
    for image_id, path, image in zip(dataset.ids, dataset.annotations, dataset.images, strict=True):
        annotation = _read_annotation(path)
        size = _checked_size(path, _image_size(annotation), image, oriented)
        item = GroundTruth()
        for number, obj in enumerate(annotation.findall("object"), start=1):
            where = f"{path}: object {number}"
            name = _text(obj, "name", where)
            difficult = _difficult(obj, where)
            box = _one(obj, "bndbox", where)
            try:
                coords = [float(_text(box, key, where)) for key in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError as exc:
                raise DataError(f"{where}: a box coordinate is not a number ({exc})") from None
            if not all(math.isfinite(v) for v in coords):
                raise DataError(f"{where}: box {coords} is not finite")
            if coords[2] < coords[0] or coords[3] < coords[1]:
                raise DataError(f"{where}: box {coords} has xmax < xmin or ymax < ymin")
            if size is not None:
                coords = _inside(coords, size, where, clipped)
            item.add(name, coords, difficult)
        truth[image_id] = item
    if clipped:
        logger.warning(
            "%d object box(es) in image set %r reach past their image; clipped to it (the first: %s)",
            len(clipped), image_set, clipped[0],
        )  # fmt: skip
    if oriented:  # same sizes either way: which pixels the boxes were drawn on cannot be told
        logger.warning(
            "%d image(s) of image set %r carry an EXIF orientation that mirrors them or turns them by 180 "
            "degrees (the first: %s); boxes are read in the image as decoded, turned: boxes drawn on the "
            "stored pixels would be wrong", len(oriented), image_set, oriented[0],
        )  # fmt: skip
    return truth


def _checked_size(
    path: str, declared: tuple[float, float] | None, image: str, oriented: list[str] | None = None
) -> tuple[float, float] | None:
    """The image's width and height as decoding gives them (read from its header, EXIF orientation
    applied), checked against the annotation's `<size>` (`declared`); `declared` when the image cannot
    be read (scoring a detections file needs no images), None when neither is known. An image whose
    orientation mirrors or turns it by 180 degrees (sizes alike either way) is added to `oriented`."""
    orientation = _orientation_and_size(image)
    if orientation is None:
        return declared
    code, stored = orientation
    turned = code in (5, 6, 7, 8)  # EXIF orientations that swap the sides
    if code in (2, 3, 4) and oriented is not None:
        oriented.append(image)
    read = (stored[1], stored[0]) if turned else stored
    if declared is None or _same(declared, read):
        return float(read[0]), float(read[1])
    w, h = declared
    if turned and _same(declared, stored):
        raise DataError(
            f"{path}: <size> {w:g}x{h:g} is {image}'s stored pixels, which its EXIF orientation turns to "
            f"{read[0]}x{read[1]} when it is read: the boxes would fall on other pixels; remove the "
            "orientation tag, or annotate the turned image"
        )
    raise DataError(
        f"{path}: <size> {w:g}x{h:g} is not the size of {image} ({read[0]}x{read[1]}); annotated on "
        "another size of the image?"
    )


def _orientation_and_size(image: str) -> tuple[int, tuple[int, int]] | None:
    """(EXIF orientation, stored width x height) from the image file's header, without decoding it; None
    for a missing file, one that is not a regular file (a pipe would block), or one PIL cannot open."""
    if not os.path.isfile(image):
        return None
    try:
        with warnings.catch_warnings():  # a large image's DecompressionBombWarning: decoding reports it
            warnings.simplefilter("ignore")
            with Image.open(image) as handle:
                if handle.format == "PNG":  # getexif() would decode a PNG to find a late eXIf chunk
                    exif = Image.Exif()
                    raw = handle.info.get("exif")
                    if isinstance(raw, bytes):
                        exif.load(raw)
                else:
                    exif = handle.getexif()
                code = exif.get(0x0112)
                return (code if isinstance(code, int) else 1), handle.size
    except Exception:  # noqa: BLE001 - a missing or unreadable image is named where it is decoded
        return None


def _same(size: tuple[float, float], other: tuple[int, int]) -> bool:
    return abs(size[0] - other[0]) < 0.5 and abs(size[1] - other[1]) < 0.5


def _read_annotation(path: str) -> ET.Element:
    """The `<annotation>` element of a VOC XML file.

    Parsed with ElementTree itself rather than `VOCDetection.parse_voc_xml`, whose dictionary drops
    empty elements and merges repeated ones (an `<object/>`, a second `<name>` or an empty
    `<difficult>` would pass unseen). A declared encoding that expat cannot read (the multi-byte
    ones: GBK, Shift_JIS, Big5) is decoded by Python's codecs first."""
    try:
        try:
            root = ET.parse(path).getroot()
        except ValueError as exc:
            if "multi-byte" not in str(exc):
                raise
            data = Path(path).read_bytes()
            declared = re.match(rb"\s*<\?xml[^>]*?encoding=[\"']([A-Za-z0-9._-]+)[\"'][^>]*\?>", data)
            if declared is None:
                raise
            root = ET.fromstring(data[declared.end() :].decode(declared.group(1).decode("ascii")))
    except (ET.ParseError, OSError, ValueError, LookupError) as exc:
        raise DataError(f"{path}: not a readable VOC annotation ({exc})") from None
    if root.tag != "annotation":
        raise DataError(f"{path}: not a VOC annotation (its root element is <{root.tag}>, not <annotation>)")
    return root


def _one(element: ET.Element, tag: str, where: str) -> ET.Element:
    found = element.findall(tag)
    if len(found) != 1:
        raise DataError(f"{where}: {len(found)} <{tag}> elements, expected one")
    return found[0]


def _text(element: ET.Element, tag: str, where: str) -> str:
    """The text of `element`'s one `<tag>` child, which must hold text and no elements."""
    child = _one(element, tag, where)
    text = (child.text or "").strip()
    if len(child) or not text:
        raise DataError(
            f"{where}: <{tag}> must hold text only, not {'elements' if len(child) else 'nothing'}"
        )
    return text


def _difficult(obj: ET.Element, where: str) -> bool:
    if not obj.findall("difficult"):
        return False  # VOC's own files all have it; other tools leave it out
    value = _text(obj, "difficult", where).lower()
    if value not in ("0", "1", "false", "true"):
        raise DataError(f"{where}: <difficult> is {value!r}; expected 0 or 1")
    return value in ("1", "true")


def _image_size(annotation: ET.Element) -> tuple[float, float] | None:
    """`<size>`'s width and height when both are positive numbers; None otherwise (not checked then)."""
    try:
        size = annotation.find("size")
        width, height = (float((size.findtext(key) or "").strip()) for key in ("width", "height"))  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        return None
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        return None
    return width, height


def _inside(coords: list[float], size: tuple[float, float], where: str, clipped: list[str]) -> list[float]:
    """`coords` (VOC's 1-based inclusive pixels; 0-based ones pass too) within a `size` image: a box
    wholly outside it is a `DataError` (an annotation made for another size of the image, say); one
    reaching past an edge is clipped to it and noted in `clipped`. Both edges are those of the union
    of the two conventions, [0, width]: the least change to either."""
    width, height = size
    xmin, ymin, xmax, ymax = coords
    if xmin > width or ymin > height or xmax < 0 or ymax < 0:
        raise DataError(
            f"{where}: box {coords} lies outside its {width:g}x{height:g} image; an annotation made for "
            "another size of the image, or a typo?"
        )
    inside = [max(xmin, 0.0), max(ymin, 0.0), min(xmax, width), min(ymax, height)]
    if inside != coords:
        clipped.append(f"{where}: box {coords} in {width:g}x{height:g}")
    return inside


def read_detections(path: str | os.PathLike[str]) -> list[Detection]:
    """Detections from a CSV file (see the module docstring); "-" reads standard input (`detect predict
    --output -` piped in)."""
    stdin = str(path) == "-"
    if stdin:
        path = "standard input"
    elif os.path.exists(path) and not os.path.isfile(path):  # a folder, or a pipe open() would wait on
        raise DataError(f"{path}: not a regular file (a detections CSV)")
    try:
        with (
            io.StringIO(sys.stdin.buffer.read().decode("utf-8-sig"), newline="")
            if stdin
            else open(path, encoding="utf-8-sig", newline="")  # -sig: a BOM, as Excel writes
        ) as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in CSV_FIELDS if name not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(missing)} (need {','.join(CSV_FIELDS)})"
                )
            detections = []
            for line, row in enumerate(reader, start=2):
                if None in row or None in row.values():  # more or fewer values than the header names
                    fields = reader.fieldnames or []
                    count = len(fields) + len(row.get(None) or []) - sum(v is None for v in row.values())
                    raise DataError(
                        f"{path}:{line}: {count} fields, expected {len(fields)} ({','.join(fields)})"
                    )
                try:
                    values = [float(row[k]) for k in ("score", "xmin", "ymin", "xmax", "ymax")]
                except (TypeError, ValueError):
                    raise DataError(f"{path}:{line}: score and box must be numbers") from None
                if not all(math.isfinite(v) for v in values):
                    raise DataError(f"{path}:{line}: score and box must be finite")
                score, x1, y1, x2, y2 = values
                if x2 < x1 or y2 < y1:
                    raise DataError(f"{path}:{line}: box needs xmax >= xmin and ymax >= ymin")
                detections.append(Detection(str(row["image_id"]), str(row["class"]), score, (x1, y1, x2, y2)))
    except OSError as exc:
        raise DataError(f"{path}: cannot read detections ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a CSV file ({exc})") from None
    return detections


def is_detections_csv(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the header `write_detections` writes (an earlier detections file)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return set(CSV_FIELDS) <= set(next(csv.reader(handle), []))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def write_detections(path: str | os.PathLike[str], detections: Sequence[Detection]) -> None:
    """Write detections as CSV, atomically; "-" prints them on standard output."""
    from googlenet.io import atomic_open

    if str(path) == "-":
        _write_rows(sys.stdout, detections)
        sys.stdout.flush()
        return
    with atomic_open(path, "w") as handle:
        _write_rows(handle, detections)


def _write_rows(handle: Any, detections: Sequence[Detection]) -> None:
    writer = csv.writer(handle)
    writer.writerow(CSV_FIELDS)
    for d in detections:
        writer.writerow([d.image, d.label, f"{d.score:.6f}", *(f"{v:.6f}" for v in d.box)])
