"""Detection data on disk: PASCAL VOC annotations (through torchvision) and detection CSV files.

A VOC tree is `<root>/VOCdevkit/VOC<year>/{Annotations,ImageSets/Main,JPEGImages}`; `root` may also be
the `VOCdevkit` folder or the `VOC<year>` folder itself. Annotations are parsed with
`torchvision.datasets.VOCDetection.parse_voc_xml`, without decoding the images.

A detections file is CSV with the header `image_id,class,score,xmin,ymin,xmax,ymax` (inclusive pixel
coordinates, as VOC's annotations); any bad row is a one-line error naming the file and line.
"""

from __future__ import annotations

import csv
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets import VOCDetection

from googlenet.detect.metrics import Detection, GroundTruth
from googlenet.errors import ConfigError, DataError

CSV_FIELDS: tuple[str, ...] = ("image_id", "class", "score", "xmin", "ymin", "xmax", "ymax")


def _voc_year_dir(root: Path) -> Path:
    """The `VOC<year>` folder under (or at) `root`."""
    if re.fullmatch(r"VOC\d{4}", root.name) and (root / "Annotations").is_dir():
        return root
    devkit = root if root.name == "VOCdevkit" else root / "VOCdevkit"
    years = sorted(p for p in devkit.glob("VOC*") if (p / "Annotations").is_dir()) if devkit.is_dir() else []
    if not years:
        if not root.exists():
            raise DataError(f"{root}: no such folder (a VOC root: VOCdevkit/VOC<year>/Annotations inside)")
        raise DataError(f"{root}: no VOCdevkit/VOC<year>/Annotations folder found")
    if len(years) > 1:  # VOC07+12 trees hold both: scoring one year's set against the other's is silent
        raise DataError(
            f"{devkit}: holds {', '.join(p.name for p in years)}; give the VOC<year> folder to use "
            f"(e.g. {years[0]})"
        )
    return years[0]


@dataclass
class _VOCSet:
    """The JPEG and annotation paths of one image set, in its list's order."""

    images: list[str]
    annotations: list[str]


def _dataset(root: str | os.PathLike[str], image_set: str, flag: str = "--image-set") -> _VOCSet:
    year_dir = _voc_year_dir(Path(root))
    listing = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.is_file():
        raise DataError(f"{flag} {image_set}: {year_dir} has no ImageSets/Main/{image_set}.txt")
    # Read here rather than through VOCDetection(root, year): its constructor looks for
    # <root>/VOCdevkit/VOC<year>, so a VOC<year> folder whose parent is not named VOCdevkit would be
    # read from somewhere else (or not found). The layout below is VOCDetection's, id per line.
    try:
        ids = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{listing}: cannot read it ({exc})") from None
    ids = [i for i in ids if i]  # a blank line is not an image
    if not ids:  # every figure of an empty set would be NaN or 0 of 0
        raise DataError(f"{flag} {image_set}: {listing} lists no images")
    return _VOCSet(
        images=[str(year_dir / "JPEGImages" / f"{i}.jpg") for i in ids],
        annotations=[str(year_dir / "Annotations" / f"{i}.xml") for i in ids],
    )


def voc_images(
    root: str | os.PathLike[str], image_set: str = "val", flag: str = "--image-set"
) -> list[tuple[str, str]]:
    """(image id, JPEG path) of the images listed in `ImageSets/Main/<image_set>.txt`; `flag` is the
    option that named the set, for the error when there is no such list."""
    return [(Path(path).stem, str(path)) for path in _dataset(root, image_set, flag).images]


def load_voc(
    root: str | os.PathLike[str], image_set: str = "val", flag: str = "--image-set"
) -> dict[str, GroundTruth]:
    """Ground truth per image id for the images listed in `ImageSets/Main/<image_set>.txt`."""
    dataset = _dataset(root, image_set, flag)
    truth: dict[str, GroundTruth] = {}
    for path in dataset.annotations:
        try:
            parsed = VOCDetection.parse_voc_xml(ET.parse(path).getroot())["annotation"]
        except (ET.ParseError, OSError) as exc:
            raise DataError(f"{path}: not a readable VOC annotation ({exc})") from None
        image = Path(path).stem
        objects = parsed.get("object", [])
        if isinstance(objects, dict):
            objects = [objects]
        item = GroundTruth()
        for obj in objects:
            try:
                box = obj["bndbox"]
                coords = [float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
                if not all(math.isfinite(v) for v in coords):
                    raise ValueError(f"box {coords} is not finite")
                item.add(str(obj["name"]).strip(), coords, str(obj.get("difficult", "0")).strip() == "1")
            except (KeyError, ValueError, TypeError, ConfigError) as exc:
                raise DataError(f"{path}: an object without a valid name and bndbox ({exc})") from None
        truth[image] = item
    return truth


def read_detections(path: str | os.PathLike[str]) -> list[Detection]:
    """Detections from a CSV file (see the module docstring)."""
    if os.path.exists(path) and not os.path.isfile(path):  # a folder, or a pipe that open() would wait on
        raise DataError(f"{path}: not a regular file (a detections CSV)")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: a BOM, as Excel writes
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
    """Write detections as CSV, atomically."""
    from googlenet.io import atomic_open

    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for d in detections:
            writer.writerow([d.image, d.label, f"{d.score:.6f}", *(f"{v:.6f}" for v in d.box)])
