"""A training step's memory, estimated before any work starts.

A run whose batch and input size need more memory than the machine has is killed by the system's
out-of-memory killer (exit 137) without a word: on CPU nothing in PyTorch raises first. The estimate
here lets `googlenet train` refuse such a run in one line, and warn when it is close.

PyTorch has no API that predicts a step's peak memory, so this is ours: the network runs once on the
"meta" device (shapes only, no data, no arithmetic), the sizes of every layer's output are summed, and
that sum is scaled by a factor measured on this project's variants; weights, gradients, momentum and
averaged copies, the batches the loader holds and a fixed overhead are added.
`benchmarks/train_memory.py` measures real `googlenet train` steps (`paper` and `bn`, 128-320 px, fp32
and bf16) against it; docs/reliability.md gives its figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from googlenet.errors import ConfigError
from googlenet.model.googlenet import build_model

if TYPE_CHECKING:
    from googlenet.train.config import TrainConfig

# A step's activations over the summed layer outputs: the upper end of what benchmarks/train_memory.py
# measured in two runs (0.81-1.34), so that the estimate errs high.
ACTIVATION_FACTOR = 1.4
# What a training process holds beyond its imports whatever the batch: the data set's index, the
# TensorBoard writer, oneDNN's kernels and workspaces (benchmarks/train_memory.py: about 250 MiB).
FIXED_BYTES = 256 * 2**20
# Under bf16/fp16 autocast the saved outputs take this share of their fp32 bytes: half, and more for
# the layers autocast keeps in fp32 (LRN, softmax) and the casts it caches.
AUTOCAST_SHARE = 0.6
# Copies of the weights a run holds: weights, gradients, momentum, the averaged model.
WEIGHT_COPIES = 4
# Past this share of the available memory a warning; past REFUSE_SHARE a refusal: real steps took
# 0.73-0.93 of the estimate, so at twice what is available none of them would fit.
WARN_SHARE = 0.9
REFUSE_SHARE = 2.0


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one process needs for a training step, in parts."""

    activations: int
    weights: int
    batches: int
    fixed: int = FIXED_BYTES

    @property
    def total(self) -> int:
        return self.activations + self.weights + self.batches + self.fixed


def layer_output_bytes(model: nn.Module, input_size: int) -> int:
    """Bytes of every leaf layer's output for one fp32 image, from a forward pass on the meta device."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * 4

    meta = model.to("meta")
    hooks = [m.register_forward_hook(count) for m in meta.modules() if not list(m.children())]
    try:
        meta.train()
        # Two images: in training mode BatchNorm refuses a single value per channel (a 1x1 map of one
        # image, as small inputs give), which a real batch never is.
        meta(torch.empty(2, 3, input_size, input_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total // 2


def estimate_training_memory(
    variant: str,
    num_classes: int,
    input_size: int,
    batch_per_process: int,
    *,
    aux_logits: bool = True,
    loader_batches: int = 2,
    autocast: bool = False,
) -> MemoryEstimate:
    """What one process needs for a training step at `batch_per_process` images of `input_size` px.

    `loader_batches`: decoded batches held at once by the data loader (workers x prefetch, plus the
    one in use); `autocast`: bf16/fp16 activations (`AUTOCAST_SHARE` of the fp32 bytes)."""
    with torch.device("meta"):
        model = build_model(variant, num_classes=num_classes, aux_logits=aux_logits)
    per_image = layer_output_bytes(model, input_size)
    if autocast:
        per_image = int(per_image * AUTOCAST_SHARE)
    params = sum(p.numel() for p in model.parameters()) * 4
    image = 3 * input_size * input_size * 4
    return MemoryEstimate(
        activations=int(ACTIVATION_FACTOR * per_image * batch_per_process),
        weights=WEIGHT_COPIES * params,
        batches=loader_batches * batch_per_process * image,
    )


def available_memory(device: torch.device) -> int | None:
    """Bytes free for this run on `device`: the GPU's free memory, or on CPU the system's available
    memory bounded by a cgroup (container) limit; None where neither can be read."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    available: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    limit = _cgroup_room()
    if limit is not None:
        available = limit if available is None else min(available, limit)
    return available


def _cgroup_room(
    root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The least room under the memory limits of this process's cgroup and the groups above it (cgroup v2
    or v1), or None where no limit is set. A group's room is its limit less its working set: what it
    uses less the page cache the kernel can reclaim (inactive files), as the kernel counts before it
    kills."""
    rooms = [
        room
        for folder, files in _cgroup_folders(root, membership)
        if (room := _group_room(folder, *files)) is not None
    ]
    return min(rooms) if rooms else None


_V2_FILES = ("memory.max", "memory.current", "inactive_file")
_V1_FILES = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def _cgroup_folders(root: Path, membership: Path) -> list[tuple[Path, tuple[str, str, str]]]:
    """This process's memory cgroup folder and each one above it, up to `root`, with the file names of
    its cgroup version; `root` alone when /proc/self/cgroup cannot be read or names a folder not there
    (a container's own namespace shows its group as "/")."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    found: list[tuple[Path, tuple[str, str, str]]] = []
    for line in lines:
        _hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "" and (root / "cgroup.controllers").is_file():  # "0::/path", v2 mounted at root
            base, files = root, _V2_FILES
        elif "memory" in controllers.split(","):
            base, files = root / "memory", _V1_FILES
        else:
            continue
        folder = base / path.strip("/")
        if not folder.is_dir():
            folder = base
        while True:
            found.append((folder, files))
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    if not found:
        found = [(root, _V2_FILES), (root / "memory", _V1_FILES)]
    return found


def _group_room(folder: Path, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    try:
        limit = (folder / limit_file).read_text().strip()
        usage = int((folder / usage_file).read_text().strip())
    except (OSError, ValueError):
        return None
    if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:  # v1 writes "no limit" as ~2^63
        return None
    inactive = 0
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key and value.strip().isdigit():
                inactive = int(value)
    except OSError:
        pass
    return max(int(limit) - max(usage - inactive, 0), 0)


def local_processes(device: torch.device) -> int:
    """Processes of this job sharing the memory `available_memory` reads: torchrun's per-node count on
    CPU, one per GPU."""
    if device.type == "cuda":
        return 1
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_training_memory(
    variant: str,
    input_size: int,
    batch_size: int,
    world_size: int,
    device: torch.device,
    *,
    aux_logits: bool,
    workers: int,
    autocast: bool,
) -> str | None:
    """Refuse (`ConfigError`) a run whose estimated step cannot fit the memory available; return a
    warning for one that comes close, else None. Nothing is said where the free memory is unknown.

    The classifier is sized for 1000 classes (the data is not read yet; fewer classes need less)."""
    available = available_memory(device)
    if available is None:
        return None
    per_process = estimate_training_memory(
        variant, 1000, input_size, max(batch_size // world_size, 1), aux_logits=aux_logits,
        loader_batches=2 * workers + 1, autocast=autocast,
    )  # fmt: skip
    sharing = local_processes(device)
    need = per_process.total * sharing
    where = "the GPU has" if device.type == "cuda" else "this machine has"
    processes = f" for {sharing} processes" if sharing > 1 else ""
    message = (
        f"a training step at batch {batch_size}, {input_size} px needs about {gib(need)}{processes} "
        f"(estimated) and {where} {gib(available)} available"
    )
    if need > REFUSE_SHARE * available and device.type == "cpu":  # a GPU raises its own out-of-memory error
        raise ConfigError(f"{message}: lower --batch-size or --input-size")
    if need > WARN_SHARE * available:
        return f"{message}: the run may run out of memory"
    return None


def check_batch_norm_batch(variant: str, input_size: int, batch_size: int, world_size: int, *,
                           aux_logits: bool = True, sync_bn_on_gpus: bool = False) -> None:  # fmt: skip
    """Refuse (`ConfigError`) one image per process for a BatchNorm variant at an input size whose last
    maps are 1x1: in training, BatchNorm needs more than one value per channel, and the first step
    ended in a traceback ("Expected more than 1 value per channel when training"). Tried on the meta
    device, so no memory or time is spent. `sync_bn_on_gpus`: SyncBatchNorm over several GPU processes
    takes its statistics over all of them, so one image each is enough."""
    if batch_size // max(world_size, 1) != 1 or (sync_bn_on_gpus and world_size > 1):
        return
    with torch.device("meta"):
        model = build_model(variant, num_classes=2, aux_logits=aux_logits)
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    try:
        model.train()(torch.empty(1, 3, input_size, input_size, device="meta"))
    except ValueError as exc:
        if "more than 1 value per channel" not in str(exc):
            raise
        per_process = f" per process ({world_size} processes)" if world_size > 1 else ""
        raise ConfigError(
            f"--variant {variant} at --input-size {input_size} reaches 1x1 maps, where BatchNorm needs more "
            f"than one image per training step{per_process}: use a --batch-size of 2 or more per process, "
            "or a larger --input-size"
        ) from None


def check_run_memory(config: TrainConfig, world_size: int, device: torch.device) -> str | None:
    """`check_training_memory` for a training config (`googlenet train`, `detect train` before its
    region set is built), after `check_batch_norm_batch`."""
    from googlenet.train.inputs import loader_workers
    from googlenet.train.loop import autocast_for

    m, r = config.model, config.run
    check_batch_norm_batch(m.variant, m.input_size, config.optim.batch_size, world_size, aux_logits=m.aux_logits,
                           sync_bn_on_gpus=m.sync_bn and device.type == "cuda")  # fmt: skip
    return check_training_memory(
        m.variant, m.input_size, config.optim.batch_size, world_size, device, aux_logits=m.aux_logits,
        workers=loader_workers(config), autocast=autocast_for(device, r.amp, r.amp_dtype)[0] is not None,
    )  # fmt: skip
