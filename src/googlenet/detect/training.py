"""Fine-tuning the region classifier (section 8, after R-CNN), through the training engine.

R-CNN fine-tunes its classification network on warped proposals: a proposal is a positive of class c
when its IoU with a box of class c is >= 0.5, background otherwise, and mini-batches hold 32 positives
for 96 background regions. We build exactly such a set once, as an image folder, and hand it to
`googlenet.train.engine.fit`, so the region classifier gets everything the classification engine has
(checkpoints every epoch and on signals, exact resume, Polyak averaging, torchrun, progress, ensembles,
plots, `results.json`):

    <run>/regions/{train,val}/<class or "background">/<image>_<k>.jpg   regions warped with context
    <run>/regions/proposals-<set>.npz                                   the proposals they came from
    <run>/regions/manifest.json                                         parameters and counts

`train/` and `val/` are the two roles whatever VOC image sets fill them (`--train-set trainval
--val-set test`, say, or one set for both); the manifest names the sets.

Per image: every ground-truth box (a positive, as R-CNN adds them), up to `positives_per_image`
proposals with IoU >= 0.5, and `background_per_positive` background proposals per positive drawn at
random (seeded). The region folder therefore holds one positive for every three background regions,
and `detect train` has the engine draw every mini-batch with exactly a quarter of positives, R-CNN's
ratio (`data.balance_class`, `googlenet.train.sampling.balanced_permutation`).

The class named "background" is the detector's "no object" output; it may sit anywhere in the class
list (ImageFolder sorts class folders by name).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from googlenet.data.crops import to_uint8_tensor
from googlenet.data.decode import load_image
from googlenet.detect.metrics import GroundTruth
from googlenet.detect.regions import (
    BACKGROUND,
    check_context,
    label_regions,
    pixel_iou,
    scaled_context,
    warp_region,
)
from googlenet.errors import DataError, check_values
from googlenet.io import atomic_open, json_loads

logger = logging.getLogger(__name__)

REGION_SET_VERSION = 1
BACKGROUND_FOLDER = "background"
VOC_OFFSET = 1.0  # VOC annotations are 1-based pixel indices; images and proposals 0-based


@dataclass(frozen=True)
class RegionSetConfig:
    """How `detect train`'s region set is built (module docstring); the comments give the defaults' sources
    (R-CNN, section 8). `ConfigError` for a value out of range."""

    input_size: int = 224  # the region classifier's input (regions are warped to it)
    context: int = 16  # R-CNN: 16 pixels of context at 227, scaled to input_size
    fg_iou: float = 0.5  # section 8 / R-CNN fine-tuning: IoU >= 0.5 makes a positive
    positives_per_image: int = 8  # proposals with IoU >= fg_iou kept per image, besides ground truth
    background_per_positive: float = 3.0  # R-CNN batches: 96 background for 32 positives
    seed: int = 0

    def __post_init__(self) -> None:
        check_values(
            (self.input_size >= 32, "--input-size", self.input_size, "at least 32"),
            (0 < self.fg_iou <= 1, "region set foreground IoU", self.fg_iou, "in (0, 1]"),
            (self.positives_per_image >= 0, "--positives-per-image", self.positives_per_image, ">= 0"),
            (
                math.isfinite(self.background_per_positive) and self.background_per_positive >= 0,
                "--background-per-positive", self.background_per_positive, "a finite number >= 0",
            ),
        )  # fmt: skip
        check_context(self.context, self.input_size)  # its range depends on the input size


def to_pixel_boxes(truth: Mapping[str, GroundTruth]) -> dict[str, GroundTruth]:
    """VOC's 1-based boxes as 0-based pixel indices (the coordinates of images and proposals)."""
    out = {}
    for image, item in truth.items():
        shifted = GroundTruth()
        for label, box, difficult in zip(item.labels, item.boxes, item.difficult, strict=True):
            shifted.add(label, [v - VOC_OFFSET for v in box], difficult)
        out[image] = shifted
    return out


def _only(item: GroundTruth, classes: Sequence[str]) -> GroundTruth:
    kept = GroundTruth()
    for label, box, difficult in zip(item.labels, item.boxes, item.difficult, strict=True):
        if label in classes:
            kept.add(label, box, difficult)
    return kept


def _pick(regions: list[Any], count: int, rng: np.random.Generator) -> list[Any]:
    if count >= len(regions):
        return regions
    return [regions[i] for i in sorted(rng.choice(len(regions), size=count, replace=False).tolist())]


def select_regions(
    image: str, proposals: np.ndarray, truth: GroundTruth, classes: Sequence[str], config: RegionSetConfig,
    rng: np.random.Generator,
) -> list[Any]:  # fmt: skip
    """The regions one image contributes (module docstring); difficult objects are neither positives
    nor made background, as VOC ignores them."""
    kept = GroundTruth()
    hard: list[Sequence[float]] = []  # difficult objects' boxes
    for label, box, difficult in zip(truth.labels, truth.boxes, truth.difficult, strict=True):
        if difficult:
            hard.append(box)
        else:
            kept.add(label, box, False)
    labelled = label_regions(image, proposals, kept, classes, config.fg_iou)
    gt, rest = labelled[: len(kept.labels)], labelled[len(kept.labels) :]  # ground truth comes first
    positives = _pick([r for r in rest if r.label != BACKGROUND], config.positives_per_image, rng)
    background = [r for r in rest if r.label == BACKGROUND and r.iou < config.fg_iou]
    if hard and background:  # a proposal on a difficult object is not background either
        overlaps = pixel_iou(
            torch.tensor([r.box for r in background], dtype=torch.float64),
            torch.tensor(hard, dtype=torch.float64).reshape(-1, 4),
        )
        on_hard = overlaps.max(dim=1).values >= config.fg_iou
        background = [r for r, drop in zip(background, on_hard.tolist(), strict=True) if not drop]
    count = round(config.background_per_positive * max(1, len(gt) + len(positives)))
    return gt + positives + _pick(background, count, rng)


def _check_boxes_inside(truth: GroundTruth, width: int, height: int, image_id: str, path: str) -> None:
    """A `DataError` for an object's box (0-based pixels) wholly outside the decoded image: an
    annotation made for another size of the image (resized since, or rotated by its EXIF orientation,
    which decoding applies) would make a positive region of nothing but the padding's fill."""
    for number, box in enumerate(truth.boxes, start=1):
        if box[0] >= width or box[1] >= height or box[2] < 0 or box[3] < 0:
            raise DataError(
                f"{path}: object {number} of {image_id!r} (box {[round(v + 1, 1) for v in box]} in VOC's "
                f"1-based pixels) lies outside the {width}x{height} image; an annotation made for "
                "another size or orientation of the image?"
            )


ROLES: tuple[str, str] = ("train", "val")  # the region set's folders, filled from the two image sets


def _manifest_matches(folder: Path, params: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        manifest = json_loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("params") != params:
        return None
    # A set written before 2026-12-05 named its folders after the image sets (trainval/, test/): rebuilt.
    return manifest if all((folder / role).is_dir() for role in ROLES) else None


def check_region_classes(
    voc_root: str | os.PathLike[str], splits: Sequence[str], classes: Sequence[str] | None = None
) -> list[str]:
    """The region set's classes (`classes`, default those annotated in the first split) once the
    annotations alone show that every one of them gets a region in both splits; `DataError` otherwise.
    Cheap: `detect train` calls it before computing any proposal (`build_region_set` checks again)."""
    from googlenet.detect.voc import load_voc

    truth = {split: load_voc(voc_root, split) for split in dict.fromkeys(splits)}
    return _checked_classes(voc_root, truth, splits, classes)


def _checked_classes(
    voc_root: str | os.PathLike[str], truth: Mapping[str, Mapping[str, GroundTruth]], splits: Sequence[str],
    classes: Sequence[str] | None,
) -> list[str]:  # fmt: skip
    """`check_region_classes` on annotations already read (`truth[split][image_id]`).

    Every class is a folder of the region set's train/ and val/, and the training engine refuses an
    empty class folder. Every object not marked difficult is a region of its class (`select_regions`),
    and nothing else can be one (a proposal is a positive only by overlapping such an object), so a
    class has a region in a split exactly when the split annotates one of its objects not difficult.
    """
    if len(splits) != len(ROLES):
        raise ValueError(f"splits: one image set for each of {ROLES}, got {list(splits)}")
    if classes is None:
        classes = sorted({label for item in truth[splits[0]].values() for label in item.labels})
    if not classes:
        raise DataError(f"{voc_root}: the {splits[0]} annotations hold no objects")
    if BACKGROUND_FOLDER in classes:
        raise DataError(f"{voc_root}: a class may not be called {BACKGROUND_FOLDER!r}")
    for name in classes:  # each is a folder of the region set, which the training reads back by name
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            where = next(
                (f" (in {image}'s annotation)" for split in splits for image, item in truth[split].items()
                 if name in item.labels), "",
            )  # fmt: skip
            raise DataError(
                f"{voc_root}: class {name!r}{where} cannot name a folder of the region set (a class name "
                "may not be empty, begin with '.' or hold '/' or '\\'); rename it in the annotations"
            )
    for role, split in zip(ROLES, splits, strict=True):
        counted: set[str] = set()
        hard: set[str] = set()
        for item in truth[split].values():
            for label, difficult in zip(item.labels, item.difficult, strict=True):
                (hard if difficult else counted).add(label)
        missing = [name for name in classes if name not in counted]
        if not missing:
            continue
        only_hard = [name for name in missing if name in hard]
        why = (f" ({', '.join(only_hard)}: annotated there only as difficult, and difficult objects, ignored "
               "as in VOC, make no region)")  # fmt: skip
        raise DataError(
            f"{voc_root}: image set {split!r} ({role}) has no object of class(es) {', '.join(missing)} that is "
            f"not marked difficult{why if only_hard else ''}; every class annotated in the training set "
            f"{splits[0]!r} needs such an object in both the training and the validation set, or its region "
            "folder is empty and training cannot start: choose image sets (--train-set, --val-set) that hold "
            "every class"
        )
    return list(classes)


def build_region_set(
    voc_root: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    config: RegionSetConfig,
    proposals: Mapping[str, Mapping[str, np.ndarray]],
    classes: Sequence[str] | None = None,
    splits: Sequence[str] = ("train", "val"),
    proposal_name: str = "",
    progress: bool = False,
) -> dict[str, Any]:
    """Write the region folder for `splits` of the VOC tree (see the module docstring); returns its manifest.

    `proposals[split][image_id]` are 0-based boxes. `classes` defaults to the classes annotated in the
    first split; other splits' objects of other classes are left out. An existing folder with the same parameters is reused; the folder appears complete
    or not at all (written beside, renamed into place, manifest last).
    """
    from googlenet.detect.voc import file_stem, load_voc, voc_images

    target = Path(folder)
    truth = {split: to_pixel_boxes(load_voc(voc_root, split)) for split in splits}
    classes = _checked_classes(voc_root, truth, splits, classes)  # every class gets a region in both splits
    for split in splits[1:]:  # objects of classes never trained on cannot be learnt: left out
        unknown = sorted({label for item in truth[split].values() for label in item.labels} - set(classes))
        if unknown:
            logger.warning(
                "%s: class(es) %s are not in the %s set; their objects are left out",
                split,
                unknown,
                splits[0],
            )
            truth[split] = {image: _only(item, classes) for image, item in truth[split].items()}
    params = {
        "version": REGION_SET_VERSION,
        "voc_root": str(Path(voc_root).resolve()),
        "splits": list(splits),
        "classes": list(classes),
        "proposals": proposal_name,
        **asdict(config),
    }
    existing = _manifest_matches(target, params)
    if existing is not None:
        logger.info("region set %s is up to date (%s)", target, _counts_line(existing["counts"]))
        return existing
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    context = scaled_context(config.context, config.input_size)
    counts: dict[str, dict[str, int]] = {}
    started = time.perf_counter()
    try:
        for index, (role, split) in enumerate(zip(ROLES, splits, strict=True)):
            images = voc_images(voc_root, split)
            counts[role] = dict.fromkeys([BACKGROUND_FOLDER, *classes], 0)
            for name in counts[role]:
                (staging / role / name).mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([config.seed, index])
            bar = _bar(len(images), f"warping {split} regions ({role})", progress)
            for image_id, path in images:
                pixels = to_uint8_tensor(load_image(path))
                _check_boxes_inside(
                    truth[split][image_id], pixels.shape[-1], pixels.shape[-2], image_id, path
                )
                boxes = np.asarray(proposals[split].get(image_id, np.zeros((0, 4))), dtype=np.float64)
                chosen = select_regions(image_id, boxes, truth[split][image_id], classes, config, rng)
                for k, region in enumerate(chosen):
                    name = BACKGROUND_FOLDER if region.label == BACKGROUND else classes[region.label - 1]
                    warped = warp_region(pixels, region.box, config.input_size, context)
                    Image.fromarray(warped.permute(1, 2, 0).numpy()).save(
                        staging / role / name / f"{file_stem(image_id)}_{k:04d}.jpg", "JPEG", quality=95
                    )
                    counts[role][name] += 1
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            # The classes were checked from the annotations (`_checked_classes`); what can still be
            # empty here is background, which depends on the proposals.
            empty = [name for name, n in counts[role].items() if n == 0]
            if empty:
                raise DataError(
                    f"{voc_root}: image set {split!r} gives no {' or '.join(empty)} region for {role}/ "
                    f"(background regions are proposals overlapping no object by IoU >= {config.fg_iou}, "
                    "and every folder of the region set needs one): are there proposals?"
                )
            arrays: dict[str, Any] = {k: np.asarray(v) for k, v in proposals[split].items()}
            np.savez_compressed(staging / f"proposals-{split}.npz", **arrays)
        manifest = {"params": params, "counts": counts, "seconds": round(time.perf_counter() - started, 1)}
        with atomic_open(staging / "manifest.json", "w") as handle:
            json.dump(manifest, handle, indent=1)
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)
    except OSError as exc:
        raise DataError(f"{target}: cannot write the region set ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("region set %s: %s", target, _counts_line(counts))
    return manifest


def _counts_line(counts: Mapping[str, Mapping[str, int]]) -> str:
    parts = []
    for split, per_class in counts.items():
        background = per_class.get(BACKGROUND_FOLDER, 0)
        parts.append(f"{split} {sum(per_class.values()) - background} positive / {background} background")
    return ", ".join(parts)


def load_proposals(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Proposals saved by `build_region_set` (image id -> K x 4 boxes)."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read proposals ({exc})") from None


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img")
