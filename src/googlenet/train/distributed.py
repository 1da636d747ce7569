"""One process, or many under `torchrun` with DistributedDataParallel (gloo on CPU, nccl on GPU).

The paper trained with asynchronous SGD on DistBelief: many model replicas pushed gradients to
parameter servers without waiting for each other (section 6). We use synchronous data-parallel SGD
instead: every process computes the gradient of its share of the global batch, DDP averages the
gradients with an all-reduce, and every replica takes the same step. On a few GPUs or CPU nodes joined
by a fast network this is as fast as asynchronous SGD, has no stale gradients, and, above all, gives
the same result as one process over the same global batch (tested), so runs are reproducible
whatever the number of processes.

What makes N processes equal one process over the same global batch (`--batch-size` is the GLOBAL
batch, split evenly; torchvision's reference uses a per-GPU batch instead): the sampling rules of
`googlenet.train.sampling`, the same initial weights on every process (built from the seed; DDP also
broadcasts rank 0's), and equal per-process shares, so DDP's mean of per-process mean gradients is the
global mean. Two things still differ by design: dropout masks (each process draws from its own stream,
seeded from (data seed, rank), so the masks of a two-process run are not those of a one-process run;
the equivalence test therefore sets dropout to 0), and BatchNorm batch statistics (per process, over
its share; `--sync-bn` computes them over the global batch, on GPUs). Float sums in the all-reduce
come in another order, so agreement is within float tolerance, not bitwise.

`torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; we join through the
"env://" rendezvous, which works the same on one node or across nodes
(`torchrun --nnodes 2 --node-rank 0 --master-addr HOST ...`), with one addition for elastic restarts
(`attempt_store`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from googlenet.data.datasets import usable_cpus
from googlenet.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: rank among `world_size` processes, `local_rank` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    return usable_cpus()


def from_environment() -> DistEnv:
    """Read torchrun's variables; a plain `python` run is rank 0 of 1."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ConfigError(f"malformed torchrun environment variable ({exc})") from None
    return DistEnv(rank=rank, world_size=world, local_rank=local)


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """ "auto" -> cuda if available, else cpu; under torchrun each process takes GPU `local_rank`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is available")
        index = int(name.split(":")[1]) if ":" in name else (env.local_rank if env.distributed else 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device cuda:{index} does not exist ({torch.cuda.device_count()} GPU(s))")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def attempt_store(store: dist.Store, restart_count: str | None) -> dist.Store:
    """`store` seen through a prefix that is new on each torchrun restart (`TORCHELASTIC_RESTART_COUNT`).

    torchrun's agent keeps ONE TCP store for the whole job (its default since torch 2.3,
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=0) and hands it to every restarted worker group unprefixed, while
    torch's env:// handler assumes a fresh store per attempt and adds no prefix. So the addresses gloo's
    workers published on the first attempt are still there on the second, and the rank that comes
    back first reads its peer's dead address: gloo retries "Connection refused" 3 times and fails, or
    hangs. Measured here with 2 CPU workers, rank 1 killed after joining: 4 of 6 restarts failed
    without this prefix (2 errors, 2 hangs), 0 of 6 with it (tests/test_train_distributed.py).
    """
    return store if restart_count is None else dist.PrefixStore(f"googlenet/attempt_{restart_count}", store)


# A wait of hours (the first process extracting ImageNet's archives, drawing the built-in data or
# scanning a training set for bad files while the others wait) outlives the default group's timeout
# (10 min under NCCL, 30 under gloo), after which the waiting processes fail. Such waits go through a
# gloo group of their own with this timeout.
LONG_WAIT = timedelta(hours=48)
_long_group: Any = None


def init_process_group(env: DistEnv, device: torch.device) -> None:
    """Join the process group (nccl for GPUs, gloo for CPUs) when running under torchrun."""
    if not env.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    store, rank, world_size = next(dist.rendezvous("env://", rank=env.rank, world_size=env.world_size))
    store = attempt_store(store, os.environ.get("TORCHELASTIC_RESTART_COUNT"))
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)
    global _long_group  # made now, while every process is there (made later, a process that failed
    _long_group = dist.new_group(backend="gloo", timeout=LONG_WAIT)  # first would leave the others waiting)


# Before torch 2.8 (pytorch/pytorch#154976) a process group's destructor kept the GIL while it joined
# its gloo threads, and a thread that had just finished a collective may still need the GIL to free the
# Python objects of that collective's tensors: each waited for the other for ever. Seen on torch 2.4 in
# 3 of 4 two-node runs refusing their flags (destroyed right after `same_everywhere`'s all_gather_object;
# py-spy: the main thread in ~ProcessGroupGloo, a gloo thread in ~AsyncAllgatherWork taking the GIL).
_DESTRUCTOR_KEEPS_GIL = torch.__version__ < "2.8"


def destroy_process_group() -> None:
    """Leave the process group (a no-op when none is initialised)."""
    global _long_group
    if dist.is_available() and dist.is_initialized():
        if _DESTRUCTOR_KEEPS_GIL:
            time.sleep(0.2)  # the GIL released: the gloo threads finish with the last collective's tensors
        dist.destroy_process_group()  # every group, the long-wait one too
    _long_group = None


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum numbers over all processes (identity when not distributed). Float64 keeps counts exact."""
    if not (dist.is_available() and dist.is_initialized()):
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when `flag` is true on any of them."""
    return all_reduce_sum([1.0 if flag else 0.0], device)[0] > 0


def same_everywhere(values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> None:
    """Refuse, with the same `ConfigError` on every process, `values` that differ from the first
    process's (nothing when not distributed). Under torchrun each node is started with its own command
    line and data: without this, one given another --lr, seed or input size trained on without a word
    (DDP keeps the weights in step, not the recipe), one with other class folders trained on other
    labels, and one with another batch size or variant died in gloo or DDP. `names`: how to call a
    key in the message (its flag)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, dict(values))
    first = gathered[0]
    for rank, theirs in enumerate(gathered[1:], 1):
        for key in sorted(first.keys() | theirs.keys()):
            if first.get(key) != theirs.get(key):
                name = (names or {}).get(key, key)
                raise ConfigError(
                    f"{name}: process {rank} has {_shown(theirs.get(key))}, process 0 has "
                    f"{_shown(first.get(key))}; every process (on every node) must be given the same "
                    "flags and data"
                )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def broadcast_object(value: T) -> T:
    """Rank 0's `value` on every process."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder: list[Any] = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(*, long: bool = False) -> None:
    """Wait until every process gets here (a no-op when not distributed); `long`: the wait may last
    hours (through the `LONG_WAIT` group; every process must pass the same `long`)."""
    global _long_group
    if not (dist.is_available() and dist.is_initialized()):
        return
    if not long:
        dist.barrier()
        return
    if _long_group is None:  # a process group initialised elsewhere than `init_process_group`
        _long_group = dist.new_group(backend="gloo", timeout=LONG_WAIT)
    dist.barrier(group=_long_group)


def average_buffers(module: torch.nn.Module) -> None:
    """Average the BatchNorm statistics (recomputed by each process on its shard) over all processes.
    Other buffers, frozen layers' included, are the same everywhere and are left exactly as they are."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            for buffer in (layer.running_mean, layer.running_var):
                if buffer is not None:
                    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                    buffer.div_(world)
