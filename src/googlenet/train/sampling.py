"""Sampling that does not depend on the number of processes, the loader workers or where a run resumed.

Two rules make a run over N processes equal to one process over the same global batch, and a resumed
run equal to an uninterrupted one:

1. Order: every epoch has one global permutation of the training set, drawn from (data seed, epoch)
   alone. Global batch `s` is positions [s*B, (s+1)*B) of it; process `r` of `W` takes the `r`-th
   contiguous slice of B/W of that batch (`ShardedBatchSampler`). The last incomplete global batch is
   dropped so every process takes the same number of equal-sized steps (DDP averages per-process
   mean gradients, which equals the global mean only for equal shares). Resuming at step `k` of an
   epoch simply starts at global batch `k`.
2. Augmentation: the random crop, interpolation, flip and photometric draws for sample `i` in epoch
   `e` come from a generator seeded with (augmentation seed, e, i) (`SeededSamples`), not from a
   worker's or a process's stream, so the same image is distorted the same way wherever it is loaded.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The global order of epoch `epoch`: a permutation of range(num_samples) drawn from (seed, epoch)."""
    generator = torch.Generator()
    generator.manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_samples, generator=generator)


def mix_seed(*values: int) -> int:
    """A 63-bit seed from several integers (NumPy's SeedSequence hashing: no collisions in practice)."""
    state = np.random.SeedSequence([v & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def balanced_permutation(
    flagged: Sequence[bool], global_batch: int, flagged_per_batch: int, seed: int, epoch: int
) -> list[int]:
    """An epoch order whose every global batch holds exactly `flagged_per_batch` samples flagged in
    `flagged` and `global_batch - flagged_per_batch` of the others (R-CNN's fixed share of positives per
    mini-batch). Written here because torch's samplers (WeightedRandomSampler) fix the share only in
    expectation. Each pool is drawn as successive permutations from (seed, epoch, pool, pass), so a pool
    smaller than its share of the epoch repeats (every sample once before any sample twice), and the
    order depends on nothing but its arguments (resume and process count do not change it).
    """
    flagged_pool = [i for i, flag in enumerate(flagged) if flag]
    others = [i for i, flag in enumerate(flagged) if not flag]
    steps = len(flagged) // global_batch
    if not 0 <= flagged_per_batch <= global_batch:
        raise ValueError(f"{flagged_per_batch} per batch of {global_batch}")
    if steps and (
        (flagged_per_batch and not flagged_pool) or (flagged_per_batch < global_batch and not others)
    ):
        raise ValueError("a balanced batch needs samples of both kinds")

    def stream(pool: list[int], tag: int, count: int) -> list[int]:
        drawn: list[int] = []
        passes = 0
        while len(drawn) < count:
            generator = torch.Generator().manual_seed(mix_seed(seed, epoch, tag, passes))
            drawn += [pool[j] for j in torch.randperm(len(pool), generator=generator).tolist()]
            passes += 1
        return drawn[:count]

    flagged_order = stream(flagged_pool, 1, steps * flagged_per_batch)
    others_order = stream(others, 2, steps * (global_batch - flagged_per_batch))
    mixer = torch.Generator().manual_seed(mix_seed(seed, epoch, 3))
    order: list[int] = []
    for step in range(steps):
        batch = flagged_order[step * flagged_per_batch : (step + 1) * flagged_per_batch]
        taken = global_batch - flagged_per_batch
        batch += others_order[step * taken : (step + 1) * taken]
        order += [batch[j] for j in torch.randperm(global_batch, generator=mixer).tolist()]  # mix the shards
    return order


class ShardedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (epoch, index) keys for one process: its slice of every global batch of one epoch.

    `start_step` skips the first global batches (mid-epoch resume). Keys carry the epoch so that
    `SeededSamples` can seed each sample's augmentation from it. With `flagged` and `flagged_share`
    every global batch holds round(share x batch) flagged samples (`balanced_permutation`).
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        flagged: Sequence[bool] | None = None,
        flagged_share: float = 0.25,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} processes")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.start_step = start_step
        self.flagged = flagged
        self.flagged_per_batch = round(flagged_share * global_batch)

    @staticmethod
    def steps_per_epoch(num_samples: int, global_batch: int) -> int:
        """Full global batches per epoch (the last incomplete one is dropped)."""
        return num_samples // global_batch

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch(self.num_samples, self.global_batch) - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.flagged is None:
            order = epoch_permutation(self.num_samples, self.seed, self.epoch).tolist()
        else:
            order = balanced_permutation(
                self.flagged, self.global_batch, self.flagged_per_batch, self.seed, self.epoch
            )
        for step in range(self.start_step, self.steps_per_epoch(self.num_samples, self.global_batch)):
            begin = step * self.global_batch + self.rank * self.local_batch
            yield [(self.epoch, i) for i in order[begin : begin + self.local_batch]]


class CurrentBatches(Sampler[list[tuple[int, int]]]):
    """The batch sampler of a loader kept from epoch to epoch (persistent workers): it iterates whichever
    `ShardedBatchSampler` was set last, since a DataLoader's own sampler cannot be replaced."""

    def __init__(self, sampler: ShardedBatchSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.sampler)


class SeededSamples(Dataset[Any]):
    """Wraps a dataset whose transform draws from the global RNGs; item (epoch, i) is drawn from a
    generator seeded with (seed, epoch, i), and the caller's RNG states are left untouched.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        sample_seed = mix_seed(self.seed, epoch, index)
        python_state = random.getstate()
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only (the transforms draw on the CPU), the same stream as
                # `torch.manual_seed` gives it. That also seeds CUDA, MTIA and XPU, and before CUDA is
                # initialised each of those formats the caller's stack to queue the call: 0.44 ms per
                # sample at the loader's stack depth, against 0.18 ms for all of this method's seeding.
                torch.default_generator.manual_seed(sample_seed)
                random.seed(sample_seed)
                np.random.seed(sample_seed % 2**32)
                return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class ShardedIndices(Sampler[int]):
    """Indices `rank`, `rank + W`, ... of `indices`: an evaluation shard with no padding, so sums over
    processes count every sample exactly once."""

    def __init__(self, indices: Sequence[int], rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(indices)[rank::world_size]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
