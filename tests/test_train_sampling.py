"""Sampling independent of process count and resume point; RNG state capture for exact resume."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from googlenet.train.checkpoint import capture_rng_state, restore_rng_state
from googlenet.train.sampling import (
    SeededSamples,
    ShardedBatchSampler,
    ShardedIndices,
    balanced_permutation,
    epoch_permutation,
    mix_seed,
)


def test_shards_of_every_global_batch_are_the_single_process_batch() -> None:
    single = list(ShardedBatchSampler(23, 8, seed=3, epoch=2))
    assert len(single) == 2  # 23 // 8: the incomplete last batch is dropped
    for world in (2, 4):
        shards = [list(ShardedBatchSampler(23, 8, 3, 2, rank=r, world_size=world)) for r in range(world)]
        for step, batch in enumerate(single):
            joined = [key for r in range(world) for key in shards[r][step]]
            assert joined == batch
    assert all(epoch == 2 for batch in single for epoch, _ in batch)


def test_epochs_have_different_orders_and_resume_skips_steps() -> None:
    assert not torch.equal(epoch_permutation(50, 0, 0), epoch_permutation(50, 0, 1))
    assert torch.equal(epoch_permutation(50, 0, 1), epoch_permutation(50, 0, 1))
    full = list(ShardedBatchSampler(40, 4, seed=1, epoch=0))
    resumed = ShardedBatchSampler(40, 4, seed=1, epoch=0, start_step=6)
    assert len(resumed) == 4 and list(resumed) == full[6:]


def test_balanced_batches_hold_exactly_the_share_and_repeat_the_small_pool_evenly() -> None:
    # 10 positives and 90 background regions; batches of 8 with 2 positives (R-CNN's quarter)
    flagged = [i % 10 != 0 for i in range(100)]  # True: background
    order = balanced_permutation(flagged, 8, 6, seed=4, epoch=1)
    assert len(order) == 12 * 8  # 100 // 8 batches, as the uniform order
    for step in range(12):
        batch = order[step * 8 : (step + 1) * 8]
        assert sum(flagged[i] for i in batch) == 6
    positives = [i for i in order if not flagged[i]]
    counts = {i: positives.count(i) for i in range(0, 100, 10)}
    assert (
        set(counts.values()) <= {2, 3} and sum(counts.values()) == 24
    )  # every one twice before a third time
    background = [i for i in order if flagged[i]]
    assert len(set(background)) == len(background) == 72  # the large pool is not repeated
    assert balanced_permutation(flagged, 8, 6, seed=4, epoch=1) == order
    assert balanced_permutation(flagged, 8, 6, seed=4, epoch=2) != order


def test_balanced_sampler_shards_and_resumes_like_the_uniform_one() -> None:
    flagged = [i % 4 == 0 for i in range(64)]
    single = list(ShardedBatchSampler(64, 8, 0, 0, flagged=flagged, flagged_share=0.75))
    assert all(sum(flagged[i] for _, i in batch) == 6 for batch in single)
    shards = [
        list(ShardedBatchSampler(64, 8, 0, 0, r, 2, flagged=flagged, flagged_share=0.75)) for r in range(2)
    ]
    assert [a + b for a, b in zip(*shards, strict=True)] == single
    assert (
        list(ShardedBatchSampler(64, 8, 0, 0, start_step=5, flagged=flagged, flagged_share=0.75))
        == single[5:]
    )
    with pytest.raises(ValueError, match="both kinds"):
        balanced_permutation([True] * 16, 8, 6, 0, 0)


def test_batch_must_split_evenly() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        ShardedBatchSampler(10, 5, 0, 0, rank=0, world_size=2)


def test_evaluation_shards_cover_every_sample_once() -> None:
    shards = [list(ShardedIndices(range(11), r, 3)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))


class _Noisy:
    """A dataset whose 'augmentation' draws from all three global generators."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return torch.rand(1).item(), float(np.random.rand()), random.random()


def test_seeded_samples_do_not_depend_on_or_disturb_the_caller_rng() -> None:
    samples = SeededSamples(_Noisy(), seed=4)
    torch.manual_seed(1)
    first = samples[(0, 3)]
    torch.manual_seed(99)
    np.random.seed(5)
    random.seed(6)
    state = capture_rng_state()
    assert samples[(0, 3)] == first  # the caller's RNG state does not matter
    after = capture_rng_state()
    assert torch.equal(state["torch"], after["torch"])  # ... and is left as it was
    assert state["python"] == after["python"]
    assert torch.equal(state["numpy"]["keys"], after["numpy"]["keys"])
    assert samples[(1, 3)] != first  # another epoch, another draw
    assert samples[(0, 4)] != first


def test_seeded_samples_draw_the_stream_of_torch_manual_seed() -> None:
    """Only the CPU generator is seeded (`torch.manual_seed` would also queue CUDA, MTIA and XPU seeding,
    formatting a stack trace each time); the draws are the ones `torch.manual_seed` gives, so runs and
    checkpoints from before the change continue identically."""
    samples = SeededSamples(_Noisy(), seed=4)
    for epoch, index in [(0, 3), (2, 7)]:
        with torch.random.fork_rng(devices=[]):
            seed = mix_seed(4, epoch, index)
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            expected = _Noisy()[index]
        assert samples[(epoch, index)] == expected


def test_rng_state_round_trip() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    np.random.randn()  # leave a cached Gaussian in NumPy's state
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    restore_rng_state(state)
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2:] == got[2:]


class _FakeGPUs:
    """torch.cuda's RNG calls on `count` simulated GPUs (this CPU build has none), the current one `here`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int, here: int) -> None:
        self.states = {i: torch.tensor([i], dtype=torch.uint8) for i in range(count)}
        self.count, self.here = count, here
        for name, value in {
            "is_available": lambda: True, "is_initialized": lambda: True, "device_count": lambda: self.count,
            "current_device": lambda: self.here, "get_rng_state": self.get, "set_rng_state": self.set,
            "get_rng_state_all": lambda: [self.get(i) for i in range(self.count)],
            "set_rng_state_all": lambda states: [self.set(s, i) for i, s in enumerate(states)],
        }.items():  # fmt: skip
            monkeypatch.setattr(torch.cuda, name, value)

    def get(self, device: int) -> torch.Tensor:
        return self.states[device].clone()

    def set(self, state: torch.Tensor, device: int) -> None:
        if device >= self.count:  # as torch.cuda.default_generators[device] fails
            raise IndexError("tuple index out of range")
        self.states[device] = state.clone()


def test_cuda_rng_state_resumes_on_fewer_or_other_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU run's last.pt keeps its own GPU's generator: it resumes where fewer GPUs are visible (every
    visible GPU's states made set_rng_state_all fail with IndexError on a 1-GPU machine) and, resumed
    on another GPU index (--device is allowed to change), continues the stream it was drawing."""
    gpus = _FakeGPUs(monkeypatch, count=4, here=2)
    gpus.states[2] = torch.tensor([42], dtype=torch.uint8)  # the stream the run drew from
    state = capture_rng_state()
    assert state["cuda_device"] == 2 and len(state["cuda"]) == 1
    gpus = _FakeGPUs(monkeypatch, count=1, here=0)  # a one-GPU machine
    restore_rng_state(state)
    assert gpus.states[0].item() == 42
    old = {**state, "cuda": [torch.tensor([i], dtype=torch.uint8) for i in range(4)]}  # an older last.pt
    del old["cuda_device"]
    restore_rng_state(old)  # one state per GPU visible then: this GPU's index's, no IndexError
    assert gpus.states[0].item() == 0


def test_cpu_run_leaves_cuda_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run on the CPU of a GPU machine does not initialise CUDA to save generators it never drew from."""
    gpus = _FakeGPUs(monkeypatch, count=2, here=0)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda *a: pytest.fail("CUDA asked"))
    state = capture_rng_state()
    assert state["cuda"] == [] and state["cuda_device"] is None
    restore_rng_state(state)
    assert [s.item() for s in gpus.states.values()] == [0, 1]
