"""Data files shipped with the package, and their loaders.

imagenet_classes.tsv   the 1000 ILSVRC 2012 classes in class-index order: index, WordNet id, name.
                       The ids are the sorted synset ids (the order of torchvision's ImageNet class
                       folders and of every public ImageNet checkpoint, torchvision's included); the
                       names are torchvision's (`torchvision.models._meta._IMAGENET_CATEGORIES`),
                       where the two repeated synonyms read "crane bird" and "maillot tank suit".
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

IMAGENET_CLASSES_FILE = "imagenet_classes.tsv"


@lru_cache(maxsize=1)
def _imagenet_table() -> tuple[tuple[str, str], ...]:
    text = resources.files(__name__).joinpath(IMAGENET_CLASSES_FILE).read_text(encoding="utf-8")
    lines = text.splitlines()
    if not lines or lines[0].split("\t") != ["index", "wnid", "name"]:
        raise RuntimeError(f"{IMAGENET_CLASSES_FILE}: unexpected header {lines[:1]}")  # a broken install
    rows = []
    for expected, line in enumerate(lines[1:]):
        index, wnid, name = line.split("\t")
        if int(index) != expected:
            raise RuntimeError(f"{IMAGENET_CLASSES_FILE}: row {expected} has index {index}")
        rows.append((wnid, name))
    return tuple(rows)


def imagenet_classes() -> list[tuple[str, str]]:
    """The 1000 ImageNet classes as (WordNet id, name), index i being class i of an ImageNet model.

    >>> imagenet_classes()[0]
    ('n01440764', 'tench')
    """
    return list(_imagenet_table())


def imagenet_names(wnids: list[str]) -> list[str] | None:
    """The ImageNet names of `wnids` (class folders named by WordNet id, as an extracted ImageNet tree
    has them), or None unless every one is an ILSVRC 2012 class.

    >>> imagenet_names(["n01440764", "n01443537"])
    ['tench', 'goldfish']
    >>> imagenet_names(["n01440764", "cat"]) is None
    True
    """
    names = dict(_imagenet_table())
    if not wnids or any(wnid not in names for wnid in wnids):
        return None
    return [names[wnid] for wnid in wnids]
