"""The data a training run reads: the datasets with section 6's transforms, and their loaders.

`build_data` resolves `TrainConfig.data` (an ImageFolder tree, ImageNet's archives or the built-in set)
into training and validation sets, scanning for undecodable files first when asked; `make_loader` wraps
a dataset or batch sampler in a DataLoader with its own generator, so resumed runs draw the same
worker seeds.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from googlenet.data.datasets import (
    ImageFolderDataset,
    ignore_stop_signals,
    load_image_folder,
    load_imagenet,
    load_val_folder,
)
from googlenet.data.transforms import AugmentConfig, build_eval_transform, build_train_transform
from googlenet.errors import DataError
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


def loader_workers(config: TrainConfig) -> int:
    """Loader processes: the configured number, or min(4, CPUs) when unset."""
    if config.data.workers is not None:
        return config.data.workers
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def make_loader(dataset: Any, workers: int, device: torch.device, **kwargs: Any) -> DataLoader:
    """A DataLoader over `dataset` with `workers` processes, memory pinned on CUDA and a private generator
    seeded 0; `kwargs` go to the DataLoader."""
    # A private generator: a DataLoader without one draws its worker seed from the global RNG when
    # iterated, which would make dropout depend on when a run was resumed.
    return DataLoader(
        dataset,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
        **kwargs,
    )


def build_data(config: TrainConfig, env: ddp.DistEnv, training: bool = True) -> TrainData:
    """Training and validation sets; `training=False` (evaluation only) reads the validation set alone."""
    m, d, a = config.model, config.data, config.augment
    train: ImageFolderDataset
    val: ImageFolderDataset
    augment = AugmentConfig(**asdict(a), resize_size=m.resize_size)  # AugmentSection mirrors its fields
    train_tf = build_train_transform(m.input_size, augment)
    eval_tf = build_eval_transform(m.input_size, m.resize_size)
    # Evaluation alone (`training=False`) reads the validation split only: ImageNet's training archive
    # is not extracted and an image folder needs no train/; `train` is then the validation set, unread.
    if d.dataset == "imagenet":
        assert d.data_path is not None
        splits = ("train", "val") if training else ("val",)
        if env.is_main:  # the first process extracts the archives, if needed
            for split in splits:
                load_imagenet(d.data_path, split, on_bad=d.on_bad)
        ddp.barrier()
        val = load_imagenet(d.data_path, "val", eval_tf, on_bad=d.on_bad)
        train = load_imagenet(d.data_path, "train", train_tf, on_bad=d.on_bad) if training else val
    else:
        if d.dataset == "builtin":
            from googlenet.data.synthetic import ensure_builtin

            def builtin() -> Path:
                return ensure_builtin(**builtin_settings(d), progress=False)

            root: str | Path = builtin() if env.is_main else ""
            ddp.barrier()
            if not env.is_main:
                root = builtin()
        else:
            assert d.data_path is not None
            root = d.data_path
        if training or (Path(root) / "train").is_dir():
            train, val = load_image_folder(root, train_tf, eval_tf, on_bad=d.on_bad)
        else:
            val = train = load_val_folder(root, eval_tf, on_bad=d.on_bad)
    if training and len(train.classes) < 2:  # one class: the loss is 0 from the first step, nothing learnt
        raise DataError(f"{train.root}: a classifier needs at least 2 classes, found 1 ({train.classes[0]})")
    bad: list[str] = []
    if d.scan_bad_files:
        if env.is_main:
            threads = max(1, loader_workers(config))
            bad = (train.scan_bad_files(workers=threads) if training else []) + val.scan_bad_files(
                workers=threads
            )
        bad = ddp.broadcast_object(bad)
        if bad and d.on_bad == "abort":
            raise DataError(f"{bad[0]}: cannot be decoded ({len(bad)} bad file(s); --on-bad skip skips them)")
        for dataset in (train, val):
            dataset.bad_files.update(bad)
            dataset.samples = [s for s in dataset.samples if s[0] not in dataset.bad_files]
            dataset.targets = [t for _, t in dataset.samples]
            if not dataset.samples:
                raise DataError(f"{dataset.root}: no readable images")
    train_eval = copy.copy(train)
    train_eval.transform = eval_tf
    return TrainData(train, val, train_eval, list(train.classes), sorted(bad))
