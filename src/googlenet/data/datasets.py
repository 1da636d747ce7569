"""Image datasets that survive real folders: `<root>/<class>/**/<image>` trees and ImageNet 2012.

A dataset tree that cannot be used at all (no root, no classes, an empty class, train and val with
different classes) is a one-line `DataError` at construction. A single bad file inside a good tree is
a different matter: one corrupt JPEG among a million must not kill a week of training, so by default
(`on_bad="skip"`) it is reported once and replaced by the next readable sample; `on_bad="abort"`
raises instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from googlenet.console import ProgressLines
from googlenet.data.decode import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, is_image_file, load_image
from googlenet.errors import ConfigError, DataError
from googlenet.io import json_loads

logger = logging.getLogger("googlenet.data")

ON_BAD = ("skip", "abort")


def max_workers() -> int:
    """The most loader processes a command accepts (`-j`, per process: under torchrun each process has
    its own): 4 per CPU this process may run on, and at least 8. Past that each process only adds memory and start-up time (-j 1000 on 2 cores took 70 s
    to start for 8 images), so a larger number is taken for a typing mistake and refused."""
    return max(8, 4 * usable_cpus())


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity where the system tells it (`taskset`, a
    container's cpuset), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """`worker_init_fn` for DataLoader workers: leave SIGINT and SIGTERM to the main process.

    A Ctrl-C or a SIGTERM sent to the whole process group (a terminal, a batch scheduler) reaches the
    workers too. Killed by it, a worker takes the main process down with PyTorch's "DataLoader worker
    is killed by signal" error in the middle of a step, before the run can save; and the handler a
    training run installs, inherited through fork, would print its message once per worker. Ignoring
    both here, the main process stops as it means to and shuts its workers down itself (a worker also
    exits on its own once the main process is gone).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):  # which a training run counts as SIGTERM (a terminal gone)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


# Files this process has already warned about, so a bad file seen every epoch is reported once.
# DataLoader workers inherit the set as it was when they started and then keep their own.
_warned: set[str] = set()


class ImageFolderDataset(Dataset[tuple[Any, int]]):
    """Images in `<root>/<class>/...` (searched recursively), labelled by their class folder.

    Class folders are the non-hidden sub-folders of `root`, sorted by name, unless `classes` gives
    their names and order; `folders` maps a class name to its folder's name where they differ (the
    same name in another Unicode normalisation, `load_image_folder`). Inside a class folder every non-hidden file with an image extension is a
    sample (sorted by path); other files are skipped, counted in `num_non_image_files` and named in one
    warning (their count by extension, an example). Symbolic
    links to folders are not followed below the class folders (no loops); folders that cannot be
    listed are recorded in `unreadable_dirs` and logged.

    Bad image files (corrupt, truncated, unreadable) are found when `__getitem__` decodes them:

    - `on_bad="skip"`: the file is added to `bad_files`, logged once per process on the
      "googlenet.data" logger, and the next index that decodes is returned instead (with its own label);
      `exact(index)` returns None instead, and `LeftOut(dataset)` with `collate_decoded` makes an
      evaluation loader that leaves such files out rather than count another image twice.
    - `on_bad="abort"`: `DataError` naming the file.

    With `DataLoader(num_workers > 0)` every worker process holds its own copy of the dataset, so
    `bad_files` in the main process does not see what the workers found, and each worker logs a bad
    file once. To know them all up front (and make every worker skip them), call `scan_bad_files()`
    before building the DataLoader. To learn what the workers met after that (a file deleted or a disk
    gone during the run), set `skip_record` to a file path before the workers start: every process
    appends each file it skips there (`record_skipped`; `read_skipped` reads them back).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Any], Any] | None = None,
        classes: Sequence[str] | None = None,
        on_bad: str = "skip",
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        folders: Mapping[str, str] | None = None,
    ) -> None:
        if on_bad not in ON_BAD:
            raise ConfigError(f"on_bad: must be one of {', '.join(ON_BAD)}, got {on_bad!r}")
        self.root = Path(root)
        self.transform = transform
        self.on_bad = on_bad
        self.max_pixels = max_pixels
        self.bad_files: set[str] = set()
        self.bad_reasons: dict[str, str] = {}  # each bad file's one-line error, as decoding gave it
        self.skip_record: str | None = None  # where each process appends the files it skips, if set
        self.unreadable_dirs: list[str] = []
        self.num_non_image_files = 0
        self._non_image_kinds: list[str] = []  # for the warning: each such file's extension
        self._non_image_example = ""

        if classes is None:
            classes = list_class_folders(self.root)
        elif not self.root.is_dir():
            raise DataError(f"{self.root}: no such dataset folder")
        self.classes: list[str] = list(classes)
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        missing, empty = [], []  # every such folder named at once, not one per try
        for name, index in self.class_to_idx.items():
            folder = self.root / (folders or {}).get(name, name)
            if not folder.is_dir():
                missing.append(name)
                continue
            files = self._scan_class(folder)
            if not files:
                empty.append(name)
            self.samples += [(path, index) for path in files]
        if missing:
            raise DataError(f"{self.root}: {_class_folders(missing, 'is missing', 'are missing')}")
        if empty:
            raise DataError(f"{self.root}: {_class_folders(empty, 'has no images', 'have no images')}")
        self.targets: list[int] = [target for _, target in self.samples]
        # once: per process, and under torchrun (every process lists the folder) by the first one only
        first = os.environ.get("RANK", "0") == "0"
        if self.num_non_image_files and first and f"non-images in {self.root}" not in _warned:
            _warned.add(f"non-images in {self.root}")
            kinds = Counter(self._non_image_kinds)
            logger.warning(
                "%s: left out %d file(s) whose names are not of an image type (%s), e.g. %s; the types read "
                "are %s",
                self.root, self.num_non_image_files,
                ", ".join(f"{kind} {count}" for kind, count in kinds.most_common(4)) + (", ..." if len(kinds) > 4 else ""),
                self._non_image_example, " ".join(IMAGE_EXTENSIONS),
            )  # fmt: skip

    def _scan_class(self, folder: Path) -> list[str]:
        """Image files under `folder`, sorted by path; counts the rest, records unlistable folders."""
        files = []
        errors: list[OSError] = []
        for dirpath, dirnames, filenames in os.walk(folder, onerror=errors.append, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if is_image_file(name):
                    files.append(os.path.join(dirpath, name))
                else:
                    self.num_non_image_files += 1
                    self._non_image_kinds.append(os.path.splitext(name)[1].lower() or "no extension")
                    self._non_image_example = self._non_image_example or os.path.join(dirpath, name)
        for error in errors:
            where = error.filename or str(folder)
            self.unreadable_dirs.append(str(where))
            logger.warning("cannot list %s (%s); its images are left out", where, error.strerror or error)
        return sorted(files)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        count = len(self.samples)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {count} samples")
        for step in range(count):
            sample = self.exact((index + step) % count)
            if sample is not None:
                return sample
        raise DataError(f"{self.root}: none of its {count} image files can be decoded")

    def exact(self, index: int) -> tuple[Any, int] | None:
        """The sample at `index` itself, or None when its file cannot be decoded (`on_bad="skip"`; under
        "abort" a `DataError`). What an evaluation reads: `__getitem__`'s substitute keeps a training
        batch full but would count another image twice."""
        path, target = self.samples[index]
        if path in self.bad_files:
            return None
        try:
            image = load_image(path, max_pixels=self.max_pixels)
        except DataError as exc:
            if self.on_bad == "abort":
                raise
            self._record_bad(path, exc)
            return None
        return (self.transform(image) if self.transform is not None else image), target

    def _record_bad(self, path: str, exc: DataError) -> None:
        self.bad_files.add(path)
        self.bad_reasons[path] = str(exc)
        if self.on_bad == "abort":  # the caller raises instead
            return
        if (
            self.skip_record is not None
            and (self.skip_record, path) not in _recorded
            and path in _already_recorded(self.skip_record)
        ):  # named by an earlier loader process of this run (DataLoader starts new ones every epoch):
            # once in the record and the log, not once per epoch
            _recorded.add((self.skip_record, path))
            _warned.add(path)
        if path not in _warned:
            _warned.add(path)
            logger.warning("skipping a bad image: %s", exc)
        # recorded once per record file: an ensemble's next member in this process has its own
        if self.skip_record is not None and (self.skip_record, path) not in _recorded:
            _recorded.add((self.skip_record, path))
            record_skipped(self.skip_record, path, str(exc))

    def scan_bad_files(
        self,
        *,
        drop: bool = False,
        workers: int = 4,
        progress: bool = False,
        progress_every_s: float | None = None,
    ) -> list[str]:
        """Decode every file now; returns the paths that fail, sorted, and adds them to `bad_files`.

        With `drop=True` the bad files are also removed from `samples` and `targets`, so DataLoader
        workers started afterwards never meet them (a class left with no readable image is a
        `DataError`). Decoding runs on `workers` threads (PIL releases the GIL while it decodes).
        `progress` draws a tqdm bar; `progress_every_s` logs a plain line every so many seconds
        instead (ImageNet's 1.28 million images take over half an hour on 2 cores).
        """
        from tqdm import tqdm

        def check(path: str) -> DataError | None:
            try:
                load_image(path, max_pixels=self.max_pixels)
            except DataError as exc:
                return exc
            return None

        paths = [path for path, _ in self.samples]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results: list[DataError | None] = []
            lines = ProgressLines(None if progress else progress_every_s)  # a bar, or else lines
            with tqdm(total=len(paths), desc=f"checking {self.root.name}", unit="img", file=sys.stderr,
                      disable=not progress, dynamic_ncols=True, leave=False) as bar:  # fmt: skip
                for result in pool.map(check, paths):
                    results.append(result)
                    bar.update(1)
                    if lines.due():
                        done = len(results)
                        logger.info(
                            "checking %s: %d/%d images decoded | %.0f img/s | ETA %s", self.root, done,
                            len(paths), done / lines.elapsed, lines.eta(done, len(paths)),
                        )  # fmt: skip
        bad = sorted(path for path, error in zip(paths, results, strict=True) if error is not None)
        for path, error in zip(paths, results, strict=True):
            if error is not None:
                self._record_bad(path, error)
        if drop:
            self.drop_files(bad)
        return bad

    def drop_files(self, paths: Iterable[str]) -> None:
        """Remove `paths` from `samples` and `targets` (and count them bad); a class left with no
        readable image is a `DataError`, as a class folder with no images is."""
        dropped = set(paths)
        if not dropped:
            return
        self.bad_files.update(dropped)
        self.samples = [sample for sample in self.samples if sample[0] not in dropped]
        self.targets = [target for _, target in self.samples]
        present = set(self.targets)
        empty = [name for name, i in self.class_to_idx.items() if i not in present]
        if empty:
            raise DataError(
                f"{self.root}: {_class_folders(empty, 'has no readable images', 'have no readable images')}"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, classes={len(self.classes)}, "
            f"samples={len(self.samples)}, on_bad={self.on_bad!r})"
        )


_recorded: set[tuple[str, str]] = set()  # (record file, path) this process has appended
_seen_in_record: dict[str, tuple[int, set[str]]] = {}  # record file -> (bytes read, paths in them)


def _already_recorded(record: str | os.PathLike[str]) -> set[str]:
    """The paths in `record` (`record_skipped`'s lines), reading only what was appended since this
    process last looked: rereading the whole file at every bad file was quadratic in their number."""
    key = os.fspath(record)
    done, paths = _seen_in_record.get(key, (0, set()))
    try:
        with open(key, "rb") as handle:
            if os.fstat(handle.fileno()).st_size < done:  # written anew (a new run in the same folder)
                done, paths = 0, set()
            handle.seek(done)
            new = handle.read()
    except OSError:
        return paths
    whole = new[: new.rfind(b"\n") + 1]  # a line still being appended is read next time
    paths.update(path for path, _ in _skipped_entries(whole))
    _seen_in_record[key] = (done + len(whole), paths)
    return paths


def record_skipped(record: str | os.PathLike[str], path: str, reason: str) -> None:
    """Append one skipped file to `record`: a JSON line {"path", "reason"}, in one O_APPEND write, so the
    DataLoader workers of every torchrun process on the machine can add to one file (a network file
    system may not keep appends whole: `read_skipped` passes over a torn line). Nothing when the file's folder is not there (a node that does not share it); when it
    cannot be written, one warning per process and the run goes on (the file is a record, not data)."""
    folder = os.path.dirname(os.fspath(record)) or "."
    if not os.path.isdir(folder):
        return
    line = (json.dumps({"path": path, "reason": reason}) + "\n").encode()  # ASCII: \u escapes, even for
    try:  # names that are not valid UTF-8 (their surrogates), which read back as the same str
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        key = f"record {os.fspath(record)}"
        if key not in _warned:
            _warned.add(key)
            logger.warning("%s: cannot record a skipped file there (%s)", record, exc.strerror or exc)


def read_skipped(record: str | os.PathLike[str]) -> dict[str, str]:
    """Path -> reason of each file in a `record_skipped` file, each path once (the first reason); {} when
    there is no such file or it cannot be read. A line that is not a whole record (a process killed while
    it appended) is passed over."""
    try:
        data = Path(record).read_bytes()
    except OSError:
        return {}
    found: dict[str, str] = {}
    for path, reason in _skipped_entries(data):
        found.setdefault(path, reason)
    return found


def _skipped_entries(data: bytes) -> Iterator[tuple[str, str]]:
    """(path, reason) of each whole `record_skipped` line in `data`; a torn line is passed over."""
    for line in data.decode("ascii", errors="replace").splitlines():
        try:
            entry = json_loads(line)
            path, reason = entry["path"], entry["reason"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(path, str) and isinstance(reason, str):
            yield path, reason


class LeftOut(Dataset[Any]):
    """`dataset`'s samples for evaluation: a file that cannot be decoded gives None (left out by
    `collate_decoded`) instead of `ImageFolderDataset.__getitem__`'s next readable image, which would
    count that image twice in top-1."""

    def __init__(self, dataset: ImageFolderDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        return self.dataset.exact(index)


def collate_decoded(items: Sequence[tuple[Any, int] | None]) -> tuple[Tensor, Tensor]:
    """`default_collate` of the samples that were decoded (`LeftOut`'s None dropped); a batch of bad
    files only is a batch of none."""
    present = [item for item in items if item is not None]
    if not present:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    images, targets = default_collate(present)
    return images, targets


def list_class_folders(root: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the non-hidden sub-folders of `root`; `DataError` if there are none."""
    folder = Path(root)
    if not folder.exists():
        raise DataError(f"{folder}: no such dataset folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected one sub-folder per class)")
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".") and _is_dir(e))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list it ({exc.strerror or exc})") from None
    if not names:
        raise DataError(f"{folder}: no class folders (expected <root>/<class>/<image files>)")
    spelled: dict[str, str] = {}
    for name in names:  # a macOS copy merged into a Linux tree: one class under two names
        twin = spelled.setdefault(unicodedata.normalize("NFC", name), name)
        if twin != name:
            raise DataError(
                f"{folder}: class folders {twin!a} and {name!a} have one name, its accented letters "
                "encoded two ways (Unicode NFC and NFD, as macOS writes folder names); merge them into one"
            )
    return names


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows a symlink at class level; a broken one is not a folder
    except OSError:
        return False


def load_image_folder(
    data_path: str | os.PathLike[str],
    transform_train: Callable[[Any], Any] | None,
    transform_val: Callable[[Any], Any] | None,
    on_bad: str = "skip",
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The `<data_path>/train` and `<data_path>/val` image folders, with the same classes in train's order."""
    root = _split_folders(data_path, ("train", "val"))
    train_classes = list_class_folders(root / "train")
    val_classes = list_class_folders(root / "val")
    only_val = sorted(set(val_classes) - set(train_classes))
    only_train = sorted(set(train_classes) - set(val_classes))
    folders = _twin_folders(only_train, only_val)
    if folders is not None:  # every difference is one of Unicode normalisation: val's folders serve
        if folders:
            logger.warning(
                "%s: %d val class folder(s) differ from train's only in how accented letters are encoded "
                "(Unicode NFC and NFD, as macOS writes folder names), e.g. %s; matched to train's",
                root, len(folders), ascii(next(iter(folders.values()))),
            )  # fmt: skip
    else:
        alike = [ascii(n) for n in nfc_twins(only_val, only_train)]
        hint = (
            f"; {_names(alike)} in val differ from train's only in how their accented letters are encoded "
            "(Unicode NFC and NFD, as macOS writes folder names)"
            if alike
            else ""
        )
        raise DataError(
            f"{root}: train and val classes differ: val has classes not in train: {_names(only_val)}, "
            f"train has classes not in val: {_names(only_train)}{hint}"
        )
    train = ImageFolderDataset(root / "train", transform_train, on_bad=on_bad)
    val = ImageFolderDataset(
        root / "val", transform_val, classes=train.classes, on_bad=on_bad, folders=folders
    )
    return train, val


def _twin_folders(train_only: Sequence[str], val_only: Sequence[str]) -> dict[str, str] | None:
    """{train class: its val folder} when each class folder found in one split only has exactly one twin
    in the other, the same name in another Unicode normalisation (NFC/NFD); None when any has not."""

    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name)

    val_by_key: dict[str, list[str]] = {}
    for name in val_only:
        val_by_key.setdefault(key(name), []).append(name)
    train_keys = [key(name) for name in train_only]
    if len(train_only) != len(val_only) or len(set(train_keys)) != len(train_keys):
        return None
    if any(len(val_by_key.get(k, [])) != 1 for k in train_keys):
        return None
    return {name: val_by_key[k][0] for name, k in zip(train_only, train_keys, strict=True)}


def load_val_folder(
    data_path: str | os.PathLike[str],
    transform: Callable[[Any], Any] | None,
    on_bad: str = "skip",
    classes: Sequence[str] | None = None,
) -> ImageFolderDataset:
    """The `<data_path>/val` image folder alone, for evaluation (classes in sorted folder order, as
    `load_image_folder` orders train's). `classes`: a model's class names, in its order, used where
    the folders are those names, some spelled in another Unicode normalisation (as `load_image_folder`
    matches val's to train's); otherwise the folders' own names, for the caller to compare."""
    root = _split_folders(data_path, ("val",)) / "val"
    if classes is not None:
        found = list_class_folders(root)
        model_only = sorted(set(classes) - set(found))
        folders = _twin_folders(model_only, sorted(set(found) - set(classes)))
        if folders is not None and len(set(classes)) == len(classes):
            return ImageFolderDataset(root, transform, classes=list(classes), on_bad=on_bad, folders=folders)
    return ImageFolderDataset(root, transform, on_bad=on_bad)


def nfc_twins(names: Iterable[str], others: Iterable[str]) -> list[str]:
    """Those of `names` that equal one of `others` once both are in Unicode NFC: the same class name,
    its accented letters encoded another way (macOS writes folder names in NFD)."""
    normalised = {unicodedata.normalize("NFC", name) for name in others}
    return [name for name in names if unicodedata.normalize("NFC", name) in normalised]


def _split_folders(data_path: str | os.PathLike[str], splits: Sequence[str]) -> Path:
    """`data_path` as a Path, once it is a folder holding every one of `splits` (else a one-line error)."""
    root = Path(data_path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    for split in splits:
        if not (root / split).is_dir():
            expected = " and ".join(str(root / name) for name in splits)
            each = "each with " if len(splits) > 1 else ""
            archives = sorted(p.name for p in root.glob("ILSVRC2012_*.tar*"))
            hint = (
                f"; it holds {archives[0]}: --dataset imagenet reads the official archives"
                if archives
                else ""
            )
            raise DataError(
                f"{root}: missing split folder {split!r} (expected {expected}, {each}one folder per class){hint}"
            )
    return root


def _class_folders(names: Sequence[str], one: str, many: str) -> str:
    """ "class folder 'a' <one>", or "3 class folders <many>: 'a', 'b', 'c'"."""
    if len(names) == 1:
        return f"class folder {names[0]!r} {one}"
    return f"{len(names)} class folders {many}: {_names([repr(n) for n in names])}"


def _names(names: Sequence[str], limit: int = 5) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


class ImageNetDataset(ImageFolderDataset):
    """An ImageNet 2012 split: an `ImageFolderDataset` over `<root>/<split>/<wnid>/` with readable names.

    `classes` holds readable names (the first synonym of each WordNet id; the two names that repeat,
    "crane" and "maillot", get their WordNet id appended), `wnids` the WordNet ids in the same order,
    `class_synonyms` all synonyms, `wnid_to_idx` the index of each id.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        wnid_to_classes: dict[str, tuple[str, ...]],
        transform: Callable[[Any], Any] | None = None,
        on_bad: str = "skip",
    ) -> None:
        super().__init__(Path(root) / split, transform, on_bad=on_bad)
        self.split = split
        self.wnids: list[str] = list(self.classes)
        self.wnid_to_idx: dict[str, int] = dict(self.class_to_idx)
        self.class_synonyms: list[tuple[str, ...]] = [
            tuple(wnid_to_classes.get(wnid, (wnid,))) for wnid in self.wnids
        ]
        first = [synonyms[0] for synonyms in self.class_synonyms]
        self.classes = [
            name if first.count(name) == 1 else f"{name} ({wnid})"
            for name, wnid in zip(first, self.wnids, strict=True)
        ]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


def _imagenet_file(kind: str) -> str:
    from torchvision.datasets import imagenet as tv_imagenet

    return tv_imagenet.ARCHIVE_META[kind][0]


def _preparation_text(exc: BaseException) -> str:
    """One line for an exception of torchvision's parsers, naming the file where the system did. Its
    "The archive ... is not present ... or is corrupted" is its MD5 check failing: presence was checked
    before (`prepare_imagenet`), so the file is there and not the official one."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    text = str(exc).strip()
    if text.startswith("The archive"):
        return "corrupted, or not ILSVRC 2012's (its MD5 differs from the official file's)"
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _preparation_lock(folder: Path) -> Iterator[None]:
    """Hold `folder/.googlenet-imagenet.lock` (flock) while the archives are extracted: two commands
    started together on a fresh folder (two trainings, a training and an evaluation) had each emptied
    and refilled the same `.train.partial`, and one of them renamed a silent subset to `train/`. The
    second waits for the first, then finds the splits ready. Where flock is missing (not POSIX, a
    network file system without locks) or the lock file cannot be opened: no lock, and a warning."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = folder / ".googlenet-imagenet.lock"
    try:
        handle = open(path, "a")  # noqa: SIM115 - held until the preparation ends
    except OSError as exc:
        logger.warning("%s: cannot open (%s); preparing without a lock", path, exc.strerror or exc)
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("%s: another process is preparing ImageNet here; waiting for it", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system without flock
            logger.warning(
                "%s: no file locks here (%s); preparing without a lock", folder, exc.strerror or exc
            )
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_meta(folder: Path) -> dict[str, tuple[str, ...]]:
    from torchvision.datasets import imagenet as tv_imagenet

    meta = folder / tv_imagenet.META_FILE
    try:
        return tv_imagenet.load_meta_file(str(folder))[0]
    except Exception as exc:  # noqa: BLE001 - a half-written or foreign file fails in many ways
        raise DataError(
            f"{meta}: unreadable ({_preparation_text(exc)}); remove it to read "
            f"{_imagenet_file('devkit')} again"
        ) from None


def _parse_devkit(folder: Path) -> None:
    """`meta.bin` from the devkit, written beside its final name and renamed when whole (torchvision
    writes it in place, and a half-written one had failed every later run after hours of extraction)."""
    from torchvision.datasets import imagenet as tv_imagenet

    devkit = folder / _imagenet_file("devkit")
    aside = folder / ".meta.partial"
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    try:
        logger.info("%s: reading the class list from %s", folder, devkit.name)
        tv_imagenet.parse_devkit_archive(str(aside), file=str(devkit))  # an absolute `file` is read in place
        os.replace(aside / tv_imagenet.META_FILE, folder / tv_imagenet.META_FILE)
    except Exception as exc:  # noqa: BLE001 - archive parsing fails in many ways; all are the user's files
        raise DataError(f"{devkit}: {_preparation_text(exc)}") from None
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _extract_split(folder: Path, split: str) -> None:
    """`folder/<split>/` from its archive, extracted under another name and renamed when whole:
    torchvision's parsers unpack in place, so an interrupted first run had left a `val/` (or
    `train/`) that looked extracted. A failure (a full disk) removes what was extracted."""
    from torchvision.datasets import imagenet as tv_imagenet

    archive = folder / _imagenet_file(split)
    partial = folder / f".{split}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    logger.info(
        "%s: checking %s and extracting it to %s/ (once; for the full archive this takes %s)",
        folder, archive.name, split, "hours and about 140 GB" if split == "train" else "minutes and about 6.5 GB",
    )  # fmt: skip
    parse = tv_imagenet.parse_train_archive if split == "train" else tv_imagenet.parse_val_archive
    try:
        parse(str(folder), folder=partial.name)
        os.rename(partial, folder / split)
    except Exception as exc:  # noqa: BLE001 - archive parsing fails in many ways; all are the user's files
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"{archive}: cannot extract it to {split}/: {_preparation_text(exc)}") from None
    # A Ctrl-C leaves `.<split>.partial` (removing 140 GB would hold the exit for minutes); the next
    # run removes it before extracting.


def prepare_imagenet(root: str | os.PathLike[str], splits: Sequence[str] = ("train", "val")) -> Path:
    """Make ImageNet 2012's `meta.bin` and `<split>/<wnid>/` folders in `root` from the official files,
    once, with torchvision's parsers; nothing is downloaded. Returns the absolute folder.

    Before any work, every archive the splits still need is looked for and `root` is tried for
    writing, so that a missing validation archive is not found after hours of extracting the training
    one. Preparation holds a lock on `root`; a prepared `root` is only read (it may be read-only)."""
    from torchvision.datasets import imagenet as tv_imagenet

    for split in splits:
        if split not in ("train", "val"):
            raise ConfigError(f"ImageNet split: must be 'train' or 'val', got {split!r}")
    folder = Path(root).expanduser().absolute()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such ImageNet folder")
    meta = folder / tv_imagenet.META_FILE

    def needed() -> list[str]:
        files = [] if meta.is_file() else [_imagenet_file("devkit")]
        return files + [_imagenet_file(split) for split in splits if not (folder / split).is_dir()]

    if not needed():
        return folder
    for split in splits:  # after hours of extraction, the rename onto it would fail
        if (folder / split).exists() and not (folder / split).is_dir():
            raise DataError(f"{folder / split}: is a file, not the extracted split folder; move it away")
    missing = [name for name in needed() if not (folder / name).is_file()]
    if missing:
        hint = ""
        if (
            any((folder / split).is_dir() for split in ("train", "val"))
            or _imagenet_file("devkit") in missing
        ):
            hint = "; a tree extracted without the devkit (<split>/<wnid>/ folders) is read with --dataset folder"
        raise DataError(f"{folder}: no {', no '.join(missing)} (the official ImageNet 2012 files){hint}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(
            f"{folder}: not writable ({exc.strerror}); the first run writes meta.bin and the extracted "
            "splits there (a prepared folder may be read-only)"
        ) from None
    with _preparation_lock(folder):
        if not meta.is_file():  # another process may have made it while this one waited
            _parse_devkit(folder)
        _read_meta(folder)  # before extracting for hours
        for split in splits:
            if not (folder / split).is_dir():
                _extract_split(folder, split)
    return folder


def load_imagenet(
    root: str | os.PathLike[str],
    split: str,
    transform: Callable[[Any], Any] | None = None,
    on_bad: str = "skip",
) -> ImageNetDataset:
    """ImageNet 2012 `split` ("train" or "val") from the official files in `root`; nothing is downloaded.

    `root` holds `ILSVRC2012_devkit_t12.tar.gz` and `ILSVRC2012_img_<split>.tar`, or what torchvision's
    `datasets.ImageNet` extracts from them (`meta.bin` and `<split>/<wnid>/*.JPEG`); `prepare_imagenet`
    extracts them with that class's own parsing functions if needed, then our robust
    `ImageFolderDataset` reads the images.
    """
    folder = prepare_imagenet(root, (split,))  # which also refuses a split other than train or val
    wnid_to_classes = _read_meta(folder)
    _check_whole(folder / split)
    return ImageNetDataset(folder, split, wnid_to_classes, transform, on_bad)


def _check_whole(split_folder: Path) -> None:
    """Refuse an ImageNet split folder left half-extracted (by torchvision in place, before we extracted
    aside): validation images not yet sorted into class folders, or class archives not yet unpacked.
    Read as it is, it would be a silent subset of the split."""
    with os.scandir(split_folder) as entries:
        loose = [
            e.name for e in entries if e.is_file() and (is_image_file(e.name) or e.name.endswith(".tar"))
        ]
    if loose:
        raise DataError(
            f"{split_folder}: only partly extracted ({len(loose)} files such as {sorted(loose)[0]} not yet "
            "in class folders); remove the folder to extract it again from the archive"
        )
