"""The test protocol of section 7: every image's crops through every model, averaged, scored.

Work is shared as much as the protocol allows. Each image is decoded once and its crops for all the
requested crop specs are cut once (`CropTransform`: a crop two specs share, e.g. Table 3's 1 and 10
crops inside the 144, is cut and evaluated once). Each model then runs once per distinct crop, and
every requested `View` (a crop spec and a set of models: one row of Table 3) is scored from those same
softmax probabilities. Decoding and cutting happen in DataLoader workers; crops travel as uint8 and are
normalised on the device.

The models are plain callables (`Member.forward`: normalised float batch -> logits), so an optimised
inference engine can replace the eager network without touching this file.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from googlenet.console import ProgressLines
from googlenet.data.crops import CropSpec, CropTransform, normalize
from googlenet.data.datasets import ignore_stop_signals
from googlenet.data.loading import StoppingLoader, in_worker
from googlenet.errors import CheckpointError, ConfigError, DataError
from googlenet.evaluate.metrics import REDUCTIONS, ClassificationMeter, aggregate_probs
from googlenet.evaluate.models import Member

logger = logging.getLogger("googlenet.evaluate")

ON_BAD: tuple[str, ...] = ("skip", "abort")


@dataclass(frozen=True)
class View:
    """One result row: the crops of `specs[spec]`, averaged over the models `members` (indices)."""

    name: str
    spec: int
    members: tuple[int, ...]


class CropBatch(NamedTuple):
    """Several images' crops: `crops` U x 3 x S x S uint8 (all images' distinct crops, concatenated),
    `indices[k]` images x crops-of-spec-k into `crops`, `targets`, and the (path, message) of images
    that could not be decoded (left out of everything else)."""

    crops: Tensor
    indices: list[Tensor]
    targets: Tensor
    errors: list[tuple[str, str]]


class CropDataset(Dataset[tuple[Any, ...]]):
    """(path, label) samples -> (crops, indices, label), or the decoding error for a bad file.

    A bad file is not replaced by another image (as a training set would do): it is reported and
    left out, so no image is counted twice.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], transform: CropTransform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        from googlenet.data.decode import load_image

        path, target = self.samples[index]
        try:
            image = load_image(path)
        except DataError as exc:  # raised here in a worker it would reach the user as a traceback
            return (None, None, target, path, str(exc))
        crops, indices = self.transform(image)
        return (crops, indices, target, path, None)


def _no_images(errors: Sequence[tuple[str, str]]) -> CropBatch:
    """A batch of no images that carries the (path, message) of files that could not be decoded."""
    empty = torch.empty((0, 3, 1, 1), dtype=torch.uint8)
    return CropBatch(empty, [], torch.empty(0, dtype=torch.long), list(errors))


def collate_crops(items: Sequence[tuple[Any, ...]]) -> CropBatch:
    """The images' crops as one `CropBatch` (`merge_batches` of one batch per image); in a loader
    process, its tensors in shared memory already, as torch's `default_collate` makes them: moved
    there later, by the queue's feeder thread, a full /dev/shm or too few file handles dropped the batch
    with a printed traceback, and the main process waited for it for ever."""
    batch = merge_batches(
        [
            _no_images([(path, error)])
            if error is not None
            else CropBatch(crops, [index.unsqueeze(0) for index in indices], torch.tensor([target]), [])
            for crops, indices, target, path, error in items
        ]
    )
    if in_worker():  # a failure here reaches the main process as the worker's error
        for tensor in (batch.crops, batch.targets, *batch.indices):
            tensor.share_memory_()
    return batch


def merge_batches(batches: Sequence[CropBatch]) -> CropBatch:
    """One `CropBatch` from several: crops concatenated, each batch's indices shifted by the crops
    before it, errors kept."""
    if len(batches) == 1:
        return batches[0]
    crops, targets, errors, per_spec = [], [], [], []
    offset = 0
    for batch in batches:
        errors.extend(batch.errors)
        if not len(batch.targets):
            continue
        crops.append(batch.crops)
        targets.append(batch.targets)
        per_spec.append([index + offset for index in batch.indices])
        offset += len(batch.crops)
    if not crops:
        return _no_images(errors)
    indices = [torch.cat(column) for column in zip(*per_spec, strict=True)]
    return CropBatch(torch.cat(crops), indices, torch.cat(targets), errors)


def fill_calls(batches: Iterable[CropBatch], crops_per_call: int) -> Iterator[CropBatch]:
    """Group consecutive batches into groups of at most `crops_per_call` crops, as full as possible.

    A loader batch is sized by the protocol's widest spec (one image of 144 crops), but the crops a
    square image shares leave 48 distinct ones: grouping images lets each model call see a full batch
    (3 such images make one call of 144 instead of three of 48). A group never exceeds
    `crops_per_call` unless a single batch does (`member_probs` then splits it into calls), so the
    batch size stays the memory bound it is. Errors are passed on at once, in a batch of no images, so
    that `on_bad="abort"` stops at the first bad file.
    """
    pending: list[CropBatch] = []
    held = 0
    for batch in batches:
        if batch.errors:
            yield _no_images(batch.errors)
        if not len(batch.targets):
            continue
        if pending and held + len(batch.crops) > crops_per_call:
            yield merge_batches(pending)
            pending, held = [], 0
        pending.append(batch._replace(errors=[]))
        held += len(batch.crops)
    if pending:
        yield merge_batches(pending)


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode and cut; the model's threads live in the main process
    ignore_stop_signals(worker_id)


def crop_loader(
    samples: Sequence[tuple[str, int]],
    transform: CropTransform,
    *,
    images_per_batch: int,
    workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader[Any]:
    """A DataLoader of `CropBatch`es, decoding and cutting in `workers` processes, in sample order.
    `persistent_workers`: keep the processes between passes (the benchmark times repeated passes)."""
    return StoppingLoader(
        CropDataset(samples, transform),
        batch_size=max(1, images_per_batch),
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_crops,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=persistent_workers and workers > 0,
        # a batch lost between processes (a file handle refused while passing it) is an error, not a
        # wait for ever; a batch is seconds of decoding
        timeout=LOADER_TIMEOUT_S if workers > 0 else 0,
    )


# Seconds `crop_loader` waits for a batch from its processes before it stops with an error.
LOADER_TIMEOUT_S = 600.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def member_probs(member: Member, crops: Tensor, batch_size: int) -> Tensor:
    """Softmax probabilities (float32, U x classes) of one model on uint8 crops, `batch_size` at a time."""
    outputs = [
        torch.softmax(member.forward(normalize(chunk, member.mean, member.std)).float(), dim=-1)
        for chunk in crops.split(batch_size)
    ]
    return torch.cat(outputs)


def check_finite(member: Member, probs: Tensor) -> Tensor:
    """`probs` (`member`'s softmax), or a `CheckpointError` naming the model when any is NaN, as NaN or
    infinite logits make them: broken weights would otherwise score a plausible accuracy (top-k of a
    NaN row picks class 0) and print NaN probabilities. Called where the probabilities are waited for
    anyway, so that a GPU's queued work is not waited for once more."""
    if not bool(torch.isfinite(probs).all()):
        raise CheckpointError(
            f"{member.name}: the model's outputs are not finite (NaN or inf); are its weights broken?"
        )
    return probs


def run_views(
    members: Sequence[Member],
    batches: Iterable[CropBatch],
    views: Sequence[View],
    num_classes: int,
    *,
    device: torch.device,
    reduce: str = "mean",
    batch_size: int = 144,
    on_bad: str = "skip",
    progress: bool = False,
    total: int | None = None,
    progress_every_s: float | None = None,
) -> dict[str, Any]:
    """Score every `View` over `batches`; each model runs once per distinct crop. `progress`: a tqdm
    bar; `progress_every_s`: a plain line every so many seconds instead (a log file, a CI job that
    ends one silent for too long).

    Consecutive batches are grouped into model calls of up to `batch_size` crops (`fill_calls`), so
    each call is as full as the images allow even when their crops coincide.

    Returns {"views": [ClassificationMeter per view], "bad_images": [(path, message)],
    "forward_passes": model calls on single crops, "seconds": wall time, "model_seconds": time in
    normalisation + models + softmax}.
    """
    if reduce not in REDUCTIONS:
        raise ConfigError(f"reduce: must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    if on_bad not in ON_BAD:
        raise ConfigError(f"on_bad: must be one of {', '.join(ON_BAD)}, got {on_bad!r}")
    if batch_size < 1:
        raise ConfigError(f"batch size: must be at least 1, got {batch_size}")
    used = sorted({m for view in views for m in view.members})
    meters = [ClassificationMeter(num_classes) for _ in views]
    bad: list[tuple[str, str]] = []
    forward_passes = 0
    model_seconds = 0.0
    started = time.perf_counter()
    lines, done = ProgressLines(progress_every_s), 0
    bar = tqdm(total=total, unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for batch in fill_calls(batches, batch_size):
                for path, message in batch.errors:
                    if on_bad == "abort":
                        raise DataError(message)
                    logger.warning("skipping a bad image: %s", message)
                    bad.append((path, message))
                if len(batch.targets):
                    crops = batch.crops.to(device, non_blocking=True)
                    t0 = time.perf_counter()
                    probs = {m: member_probs(members[m], crops, batch_size) for m in used}
                    _sync(device)
                    for m in used:
                        check_finite(members[m], probs[m])
                    model_seconds += time.perf_counter() - t0
                    forward_passes += len(crops) * len(used)
                    for view, meter in zip(views, meters, strict=True):
                        index = batch.indices[view.spec].to(device)  # images x crops of this spec
                        stacked = torch.stack([probs[m][index] for m in view.members])
                        meter.update(aggregate_probs(stacked, reduce), batch.targets)
                bar.update(len(batch.targets) + len(batch.errors))
                done += len(batch.targets) + len(batch.errors)
                if lines.due():
                    left = f" | ETA {lines.eta(done, total)}" if total else ""
                    logger.info("evaluated %d/%s images | %.1f img/s%s", done, total or "?",
                                done / lines.elapsed, left)  # fmt: skip
    finally:
        bar.close()
    return {
        "views": meters,
        "bad_images": bad,
        "forward_passes": forward_passes,
        "seconds": time.perf_counter() - started,
        "model_seconds": model_seconds,
    }


def evaluate_views(
    members: Sequence[Member],
    samples: Sequence[tuple[str, int]],
    specs: Sequence[CropSpec],
    views: Sequence[View],
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    interpolation: str = "bilinear",
    reduce: str = "mean",
    batch_size: int = 144,
    workers: int = 0,
    on_bad: str = "skip",
    progress: bool = False,
    progress_every_s: float | None = None,
) -> dict[str, Any]:
    """Evaluate `views` (crop spec + models) on (path, label) `samples`; see `run_views` for the result
    (and for `progress`, `progress_every_s`).

    `batch_size` is the number of crops per model call; whole images are grouped to fill it
    (at least one image per call group, whose crops are then split into calls of `batch_size`).
    """
    device = torch.device(device)
    for view in views:
        if not 0 <= view.spec < len(specs) or not view.members:
            raise ConfigError(f"view {view.name!r}: needs a valid spec index and at least one model")
        if any(not 0 <= m < len(members) for m in view.members):
            raise ConfigError(f"view {view.name!r}: model index out of range ({len(members)} models)")
    transform = CropTransform(specs, interpolation)
    widest = max(spec.crops for spec in specs)
    loader = crop_loader(
        samples,
        transform,
        images_per_batch=max(1, batch_size // widest),
        workers=workers,
        pin_memory=device.type == "cuda",
    )
    return run_views(
        members,
        loader,
        views,
        num_classes,
        device=device,
        reduce=reduce,
        batch_size=batch_size,
        on_bad=on_bad,
        progress=progress,
        total=len(samples),
        progress_every_s=progress_every_s,
    )
