"""Which images an evaluation runs on, and their labels in the model's class order.

Three sources:

    folder     an image-folder root: `<DIR>/val/<class>/<images>` if `<DIR>/val` exists, otherwise
               `<DIR>/<class>/<images>` (a folder of class folders directly)
    builtin    the built-in data's val split (`googlenet.data.synthetic.ensure_builtin`, cached)
    imagenet   ILSVRC 2012 validation (devkit ground truth, through `googlenet.data.load_imagenet`)

The data's classes must be exactly the model's classes (by name, or by WordNet id where the model has
them); their order may differ, and labels are mapped to the model's indices.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from googlenet.data.datasets import nfc_twins
from googlenet.errors import ConfigError, DataError

if TYPE_CHECKING:
    from googlenet.data.synthetic import BuiltinSettings

DATASETS: tuple[str, ...] = ("folder", "builtin", "imagenet")


@dataclass
class EvalSet:
    """Image paths with labels as indices into the model's classes."""

    samples: list[tuple[str, int]]
    description: str  # e.g. "folder data/val", for reports
    total: int  # images in the set before any --limit


_WNID = re.compile(r"n\d{8}")  # a WordNet noun id, as ImageNet's class folders are named


def match_classes(
    data_classes: Sequence[str],
    model_classes: Sequence[str],
    where: str,
    data_ids: Sequence[str] | None = None,
    model_ids: Sequence[str] | None = None,
    *,
    subset: bool = False,
) -> list[int]:
    """For each data class, the model's index of the same class; `DataError` unless the sets are equal
    (with `subset`, unless the data's classes are some of the model's: an Imagenette-style folder of 10
    ImageNet classes scored by a 1000-class model, over all its outputs).

    Classes match by name, or by id (WordNet id) when names do not match: the model's ids against the
    data's ids or folder names, or the data's ids against the model's names (a model trained with
    `--dataset folder` on an extracted ImageNet tree, whose class names are the WordNet ids).
    """
    candidates = [(list(data_classes), list(model_classes))]
    if model_ids:
        candidates.append((list(data_ids) if data_ids else list(data_classes), list(model_ids)))
    if data_ids:
        candidates.append((list(data_ids), list(model_classes)))
    # Names that differ only in Unicode normalisation are the same class: a folder copied from macOS has
    # its accented names in NFD, a model trained on Linux keeps them as typed (NFC). Tried after the
    # exact names, and only where normalising merges no two names of one side.
    nfc_candidates = [([_nfc(n) for n in data], [_nfc(n) for n in model]) for data, model in candidates]
    for data, model in candidates + nfc_candidates:
        same = set(data) == set(model) and len(set(data)) == len(data) == len(model)
        if same or (subset and set(data) <= set(model) and len(set(data)) == len(data)):
            index = {name: i for i, name in enumerate(model)}
            if len(index) == len(model):
                return [index[name] for name in data]
    hint = ""
    for data, model in candidates:
        if set(data) < set(model) and not subset:
            hint = f"; they are {len(set(data))} of its classes: --class-subset scores them over all {len(model)} outputs"
            break
    # The error compares what the user would recognise: ids with ids where both sides have them, the
    # data's ids with a model's WordNet-id names, else names with names.
    if model_ids and data_ids:
        data, model = list(data_ids), list(model_ids)
    elif data_ids and model_classes and all(_WNID.fullmatch(name) for name in model_classes):
        data, model = list(data_ids), list(model_classes)
    else:
        data, model = candidates[0]
    only_data, only_model = sorted(set(data) - set(model)), sorted(set(model) - set(data))
    if only_data and set(only_data) <= _SPLIT_NAMES:
        hint += (
            f"; {_names(only_data)} look like the splits of a data set, not its classes: give the split's "
            "folder itself as --data-path"
        )
    alike = nfc_twins(only_data, only_model)
    if alike:
        hint += (
            "; some names differ only in how their accented letters are encoded (Unicode NFC and NFD, "
            f"as macOS writes folder names): {_names([ascii(n) for n in alike])} in the data; rename "
            "those folders to the checkpoint's names"
        )
    raise DataError(
        f"{where}: its {_count(len(data), 'class does', 'classes do')} not match the checkpoint's {len(model)}: "
        f"in the data only: {_names(only_data)}; "
        f"in the checkpoint only: {_names(only_model)}{hint}"
    )


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


# Folder names that are a data set's splits: a folder of them given where a split was meant
_SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test", "testing", "training"})


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _names(names: Sequence[str], limit: int = 5) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def folder_root(data_path: str | os.PathLike[str]) -> Path:
    """`<DIR>/val` when it exists, else `<DIR>` itself (its sub-folders being the classes)."""
    root = Path(data_path).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: " + ("is a file, not a data folder" if root.exists() else "no such data folder")
        )
    return root / "val" if (root / "val").is_dir() else root


@dataclass
class EvalImages:
    """The images of an evaluation set with the data's own classes, before matching a model's."""

    data: Any  # an ImageFolderDataset (or torchvision's ImageNet through it)
    data_ids: list[str] | None  # ImageNet's wnids, to match a model's by id
    where: str
    dataset: str


def open_eval_images(
    dataset: str,
    data_path: str | os.PathLike[str] | None,
    *,
    progress: bool = False,
    builtin: BuiltinSettings | None = None,
) -> EvalImages:
    """List the images of `dataset` ("folder", "builtin" or "imagenet"); every data error is raised
    here, before any model is loaded or timed. `builtin`: how the built-in data was drawn (a
    checkpoint's recipe records it; default: `ensure_builtin`'s defaults)."""
    from googlenet.data.datasets import ImageFolderDataset, load_imagenet

    if dataset not in DATASETS:
        raise ConfigError(f"dataset: must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if dataset != "builtin" and data_path is None:
        raise ConfigError(f"--dataset {dataset} needs --data-path")
    if dataset == "imagenet":
        assert data_path is not None
        imagenet = load_imagenet(data_path, "val")
        return EvalImages(imagenet, list(imagenet.wnids), f"{data_path} (ImageNet val)", dataset)
    if dataset == "builtin":
        from googlenet.data.synthetic import ensure_builtin

        drawn = ensure_builtin(**builtin, progress=progress) if builtin else ensure_builtin(progress=progress)
        root = drawn / "val"
    else:
        assert data_path is not None
        root = folder_root(data_path)
    # Absolute: table3.json records it, and `googlenet report` reads it back from any working directory.
    return EvalImages(ImageFolderDataset(root), None, os.path.abspath(root), dataset)


def label_eval_images(
    images: EvalImages,
    class_names: Sequence[str],
    wnids: Sequence[str] | None = None,
    *,
    subset: bool = False,
) -> EvalSet:
    """The images labelled in `class_names` order (one-line error when the classes do not match; with
    `subset` the data's may be some of the model's, see `match_classes`)."""
    mapping = match_classes(
        images.data.classes, class_names, images.where, images.data_ids, wnids, subset=subset
    )
    samples = [(path, mapping[target]) for path, target in images.data.samples]
    return EvalSet(samples=samples, description=f"{images.dataset} {images.where}", total=len(samples))


def load_eval_set(
    dataset: str,
    data_path: str | os.PathLike[str] | None,
    class_names: Sequence[str],
    wnids: Sequence[str] | None = None,
    *,
    progress: bool = False,
) -> EvalSet:
    """The images of `dataset` ("folder", "builtin" or "imagenet") labelled in `class_names` order."""
    return label_eval_images(open_eval_images(dataset, data_path, progress=progress), class_names, wnids)


def limit_samples(samples: Sequence[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    """At most `limit` samples, evenly spaced through the (class-sorted) list so every class can appear."""
    if limit is None or limit >= len(samples):
        return list(samples)
    if limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {limit}")
    return [samples[i * len(samples) // limit] for i in range(limit)]
