"""The built-in detection data: scenes with several boxed objects, written as a PASCAL VOC tree.

Section 8 needs images with several labelled boxes. `ensure_builtin_scenes` draws them with the
classification generator's `render_scene` (same ten object kinds, backgrounds, distractors, blur,
noise and JPEG compression), one to `max_objects` objects per scene of 3-25% of the image area each
(scene i always holds one of class i mod 10, so every class appears in every split of 10 or more),
placed so that no two boxes overlap by more than `MAX_PAIR_IOU`, and writes the PASCAL VOC layout
`<dir>/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main/{train,val,trainval}.txt}` that
`googlenet.detect.voc` (and torchvision's `VOCDetection`) read. Like `ensure_builtin` it is drawn once,
cached under a hash of its parameters, and published atomically (a manifest written last).

Boxes in the XML follow VOC's convention: 1-based inclusive pixel coordinates, so an object covering
pixel columns 0..9 (0-based) is written xmin=1, xmax=10.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from googlenet.data.synthetic import (
    CLASSES,
    GENERATOR_VERSION,
    JPEG_QUALITY,
    ObjectSpec,
    PlacedObject,
    _progress_bar,
    available_photos,
    cached_folder,
    render_scene,
)
from googlenet.errors import ConfigError, DataError
from googlenet.io import sha256_file

SCENE_AREA_RANGE = (0.03, 0.25)  # each object's tight box, as a fraction of the image area
SCENE_SIZES: tuple[tuple[int, int], ...] = ((192, 144), (160, 160), (144, 192))  # width, height
MAX_PAIR_IOU = 0.2  # boxes may touch and overlap a little (a small object inside a larger box can
# still be partly hidden by it: see docs/detection.md)
YEAR = "2007"


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one scene: a function of (seed, split, index) only."""
    return np.random.default_rng([seed, 1000 + ("train", "val").index(split), index])


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def render_detection_scene(
    rng: np.random.Generator, max_objects: int = 3, tries: int = 20, first_kind: str | None = None
) -> tuple[Any, list[PlacedObject]]:
    """One scene (PIL image, placed objects); redrawn while two boxes overlap more than MAX_PAIR_IOU.

    `first_kind` fixes the first object's kind (the others are drawn at random)."""
    width, height = SCENE_SIZES[int(rng.integers(len(SCENE_SIZES)))]
    count = int(rng.integers(1, max_objects + 1))
    kinds = [CLASSES[int(k)] for k in rng.integers(len(CLASSES), size=count)]
    if first_kind is not None:
        kinds[0] = first_kind
    for _ in range(tries):
        specs = [ObjectSpec(kind, area=float(rng.uniform(*SCENE_AREA_RANGE))) for kind in kinds]
        image, placed = render_scene(rng, (width, height), specs, distractors=int(rng.integers(1, 4)))
        boxes = [p.box for p in placed]
        if all(_box_iou(boxes[i], boxes[j]) <= MAX_PAIR_IOU for i in range(len(boxes)) for j in range(i)):
            return image, placed
        kinds = kinds[:-1] or kinds  # crowded: try again with one object fewer
    # Still crowded (a large max_objects): one object, drawn alone, so that nothing unannotated is drawn.
    return render_scene(rng, (width, height), [ObjectSpec(kinds[0], area=float(rng.uniform(*SCENE_AREA_RANGE)))],
                        distractors=int(rng.integers(1, 4)))  # fmt: skip


def annotation_xml(image_id: str, width: int, height: int, objects: list[PlacedObject]) -> bytes:
    """A VOC annotation (1-based inclusive boxes, see the module docstring)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = f"VOC{YEAR}"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "googlenet built-in scenes"
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.kind
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = "0"
        box = ET.SubElement(node, "bndbox")
        x0, y0, x1, y1 = obj.box  # 0-based, exclusive end
        for key, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(box, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def ensure_builtin_scenes(
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    train_images: int = 400,
    val_images: int = 100,
    max_objects: int = 3,
    progress: bool = False,
) -> Path:
    """The built-in detection scenes' folder (holding `VOCdevkit/VOC2007`), drawn if needed.

    `<dir>` is `<root or the cache>/scenes-<hash>`; see `googlenet.data.synthetic.ensure_builtin` for
    the caching and atomic publication.
    """
    if train_images < 1 or val_images < 1 or max_objects < 1:
        raise ConfigError("built-in scenes: train_images, val_images and max_objects must be at least 1")
    params = {
        "generator_version": GENERATOR_VERSION,
        "scenes_version": 2,
        "seed": seed,
        "train_images": train_images,
        "val_images": val_images,
        "max_objects": max_objects,
        "classes": list(CLASSES),
        "photos": list(available_photos()),
    }
    return cached_folder(
        root,
        "scenes",
        params,
        "the built-in scenes",
        lambda staging, _: _generate_scenes(staging, params, progress),
    )


def _generate_scenes(folder: Path, params: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Draw the scenes into `folder`; the manifest's fields beyond the parameters."""
    year = folder / "VOCdevkit" / f"VOC{YEAR}"
    counts = {"train": params["train_images"], "val": params["val_images"]}
    bar = _progress_bar(sum(counts.values()), progress)
    digest = hashlib.sha256()
    lists: dict[str, list[str]] = {"train": [], "val": []}
    objects = 0
    try:
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (year / sub).mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            for index in range(counts[split]):
                image_id = f"{split}_{index:05d}"
                # Scene i always holds an object of class i mod 10: every class in every split of >= 10.
                kind = CLASSES[index % len(CLASSES)]
                rng = scene_rng(params["seed"], split, index)
                image, placed = render_detection_scene(rng, params["max_objects"], first_kind=kind)
                jpeg = year / "JPEGImages" / f"{image_id}.jpg"
                image.save(jpeg, "JPEG", quality=JPEG_QUALITY)
                (year / "Annotations" / f"{image_id}.xml").write_bytes(
                    annotation_xml(image_id, image.width, image.height, placed)
                )
                digest.update(f"{image_id}:{sha256_file(jpeg)}:{[tuple(p) for p in placed]}\n".encode())
                lists[split].append(image_id)
                objects += len(placed)
                if bar is not None:
                    bar.update(1)
        main = year / "ImageSets" / "Main"
        for split, ids in (*lists.items(), ("trainval", lists["train"] + lists["val"])):
            (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    except OSError as exc:
        raise DataError(f"{folder}: cannot write the built-in scenes ({exc.strerror or exc})") from None
    finally:
        if bar is not None:
            bar.close()
    return {"counts": counts, "objects": objects, "content_sha256": digest.hexdigest()}
