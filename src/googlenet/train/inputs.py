"""The data a training run reads: the datasets with section 6's transforms, and their loaders.

`build_data` resolves `TrainConfig.data` (an ImageFolder tree, ImageNet's archives or the built-in set)
into training and validation sets, scanning for undecodable files first when asked; `make_loader` wraps
a dataset or batch sampler in a DataLoader with its own generator, so resumed runs draw the same
worker seeds.
"""

from __future__ import annotations

import copy
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from googlenet.console import PROGRESS_LINE_EVERY_S, stderr_is_tty
from googlenet.data.datasets import (
    ImageFolderDataset,
    ImageNetDataset,
    LeftOut,
    collate_decoded,
    ignore_stop_signals,
    load_image_folder,
    load_imagenet,
    load_val_folder,
    prepare_imagenet,
)
from googlenet.data.loading import StoppingLoader
from googlenet.data.transforms import AugmentConfig, build_eval_transform, build_train_transform
from googlenet.errors import DataError
from googlenet.resources import imagenet_names
from googlenet.train import distributed as ddp
from googlenet.train.config import TrainConfig, builtin_settings


@dataclass
class TrainData:
    """A run's data (`build_data`): the training and validation sets, the training images with the evaluation
    transform, the class names and the undecodable files left out."""

    train: ImageFolderDataset
    val: ImageFolderDataset
    train_eval: ImageFolderDataset  # the training images with the evaluation transform
    classes: list[str]
    bad_files: list[str]
    wnids: list[str] | None = None  # ImageNet's WordNet ids in class order, kept in the checkpoint's meta
    # (from ImageNet's archives, or class folders that are all ILSVRC 2012 WordNet ids; `classes` then
    # holds their names)


def loader_workers(config: TrainConfig) -> int:
    """Loader processes: the configured number, or min(4, CPUs) when unset."""
    if config.data.workers is not None:
        return config.data.workers
    return min(4, ddp.cores())


def keeps_workers(workers: int) -> bool:
    """Whether a training run keeps its loader processes from epoch to epoch (`persistent_workers`): where
    they start by spawn or forkserver (macOS, Windows, and Linux from Python 3.14), each start imports
    PyTorch anew, seconds for each of three loaders an epoch (training, validation, the training
    subset's evaluation): 7.5 s an epoch of 80 built-in images at 64 px here, 0.8-1.2 s with them kept
    (fork: 1.1 s). A forked process starts in milliseconds, and one kept would hold its memory through
    the evaluation, so under fork each pass starts its own, as before. The batches are the same either
    way: each sample's augmentation is seeded by (seed, epoch, index)."""
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    return workers > 0 and method != "fork"


def make_loader(dataset: Any, workers: int, device: torch.device, **kwargs: Any) -> StoppingLoader:
    """A DataLoader over `dataset` with `workers` processes, memory pinned on CUDA and a private generator
    seeded 0; `kwargs` go to the DataLoader."""
    # A private generator: a DataLoader without one draws its worker seed from the global RNG when
    # iterated, which would make dropout depend on when a run was resumed.
    return StoppingLoader(
        dataset,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
        **kwargs,
    )


def make_eval_loader(
    dataset: ImageFolderDataset, workers: int, device: torch.device, **kwargs: Any
) -> StoppingLoader:
    """`make_loader` for evaluation: a file that cannot be decoded is left out (`LeftOut`), not replaced
    by the next image as in training, so the figures count each readable image once."""
    return make_loader(LeftOut(dataset), workers, device, collate_fn=collate_decoded, **kwargs)


def build_data(
    config: TrainConfig, env: ddp.DistEnv, training: bool = True, class_names: list[str] | None = None
) -> TrainData:
    """Training and validation sets; `training=False` (evaluation only) reads the validation set alone,
    an image folder's in the order of `class_names` (the checkpoint's WordNet ids, or else its class
    names) where its folders are them.

    An image folder whose class folders are all ILSVRC 2012 WordNet ids (an extracted ImageNet tree,
    or a part of one such as Imagenette) gets their ImageNet names as classes and keeps the ids, as
    ImageNet's archives do: a checkpoint then shows "tench", not "n01440764"."""
    m, d, a = config.model, config.data, config.augment
    train: ImageFolderDataset
    val: ImageFolderDataset
    fields = {**asdict(a), "mean": tuple(a.mean), "std": tuple(a.std)}  # AugmentSection mirrors its fields
    train_tf = build_train_transform(m.input_size, AugmentConfig(**fields, resize_size=m.resize_size))
    eval_tf = build_eval_transform(m.input_size, m.resize_size, a.mean, a.std)
    # Evaluation alone (`training=False`) reads the validation split only: ImageNet's training archive
    # is not extracted and an image folder needs no train/; `train` is then the validation set, unread.
    if d.dataset == "imagenet":
        assert d.data_path is not None
        splits = ("train", "val") if training else ("val",)
        if env.is_main:  # the first process extracts the archives, if needed
            prepare_imagenet(d.data_path, splits)
        ddp.barrier(long=True)  # extracting ImageNet's archives takes hours
        val = load_imagenet(d.data_path, "val", eval_tf, on_bad=d.on_bad)
        train = load_imagenet(d.data_path, "train", train_tf, on_bad=d.on_bad) if training else val
        differ = sorted(set(train.wnids) ^ set(val.wnids))
        if differ:  # each split numbers its own folders: validation labels would be wrong
            raise DataError(
                f"{d.data_path}: ImageNet's train and val folders hold different classes ({len(differ)}, "
                f"e.g. {differ[0]}); a split folder extracted only in part? remove it to extract it again"
            )
    else:
        if d.dataset == "builtin":
            from googlenet.data.synthetic import ensure_builtin

            def builtin() -> Path:
                return ensure_builtin(**builtin_settings(d), progress=False)

            root: str | Path = builtin() if env.is_main else ""
            ddp.barrier(long=True)
            if not env.is_main:
                root = builtin()
        else:
            assert d.data_path is not None
            root = d.data_path
        if training:
            train, val = load_image_folder(root, train_tf, eval_tf, on_bad=d.on_bad)
        else:  # sorted class folders, as load_image_folder orders train's; the checkpoint's are compared
            val = train = load_val_folder(root, eval_tf, on_bad=d.on_bad, classes=class_names)
    if training and len(train.classes) < 2:  # one class: the loss is 0 from the first step, nothing learnt
        raise DataError(f"{train.root}: a classifier needs at least 2 classes, found 1 ({train.classes[0]})")
    bad: list[str] = []
    if d.scan_bad_files:
        if env.is_main:
            threads = max(1, loader_workers(config))
            shown = config.run.progress  # a bar on a terminal, else a line a minute (as the epochs)
            bar, every = shown and stderr_is_tty(), PROGRESS_LINE_EVERY_S if shown else None
            bad = (
                train.scan_bad_files(workers=threads, progress=bar, progress_every_s=every)
                if training
                else []
            ) + val.scan_bad_files(workers=threads, progress=bar, progress_every_s=every)
        # Decoding every image of a large training set takes longer than a collective waits.
        ddp.barrier(long=True)
        first = (train.bad_reasons.get(bad[0]) or val.bad_reasons.get(bad[0])) if bad else None
        bad, first = ddp.broadcast_object((bad, first))  # the first process's words: one line for all
        if bad and d.on_bad == "abort":
            reason = first or f"{bad[0]}: cannot be decoded"
            raise DataError(f"{reason} ({len(bad)} bad file(s); --on-bad skip skips them)")
        for dataset in (train, val):  # a class left with no readable image is an error
            dataset.drop_files(bad)
    train_eval = copy.copy(train)
    train_eval.transform = eval_tf
    classes, wnids = list(train.classes), None
    if isinstance(train, ImageNetDataset):
        wnids = list(train.wnids)
    elif (names := imagenet_names(classes)) is not None:
        classes, wnids = names, classes
    return TrainData(train, val, train_eval, classes, sorted(bad), wnids)
