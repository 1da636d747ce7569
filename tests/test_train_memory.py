"""The training-memory estimate that lets `googlenet train` refuse a run the system would kill."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import googlenet.train.memory as memory
from googlenet.cli import main
from googlenet.errors import ConfigError


def test_the_estimate_grows_with_the_batch_and_the_pixels() -> None:
    small = memory.estimate_training_memory("paper", 10, 112, 8)
    assert abs(memory.estimate_training_memory("paper", 10, 112, 16).activations - 2 * small.activations) <= 1
    large = memory.estimate_training_memory("paper", 10, 224, 8)
    assert 3.5 < large.activations / small.activations < 4.5  # four times the pixels
    assert large.weights == small.weights  # the weights do not depend on the input
    bf16 = memory.estimate_training_memory("paper", 10, 224, 8, autocast=True)
    assert bf16.activations < large.activations
    # The summed outputs at 224 px: GoogLeNet's feature maps (conv1 alone is 64 x 112 x 112 floats)
    with torch.device("meta"):
        model = memory.build_model("paper", num_classes=10)
    assert (
        memory.layer_output_bytes(model, 224) > 64 * 112 * 112 * 4 * 3
    )  # conv1, its ReLU, the pool and more


def _available(monkeypatch: pytest.MonkeyPatch, gib: float) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda device: int(gib * 2**30))


def test_a_run_that_cannot_fit_is_refused_and_one_that_comes_close_warned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    need = memory.estimate_training_memory("bn", 1000, 224, 32, loader_batches=1).total / 2**30
    check = dict(aux_logits=True, workers=0, autocast=False)
    _available(monkeypatch, 4 * need)
    assert memory.check_training_memory("bn", 224, 32, 1, cpu, **check) is None
    _available(monkeypatch, need)
    warning = memory.check_training_memory("bn", 224, 32, 1, cpu, **check)
    assert warning is not None and "the run may run out of memory" in warning
    _available(monkeypatch, need / 3)
    with pytest.raises(
        ConfigError, match=r"batch 32, 224 px needs about .* GiB \(estimated\).*lower --batch-size"
    ):
        memory.check_training_memory("bn", 224, 32, 1, cpu, **check)
    # Two processes on one machine share its memory; each takes half the batch.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    _available(monkeypatch, need)
    warning = memory.check_training_memory("bn", 224, 32, 2, cpu, **check)
    assert warning is not None and "for 2 processes" in warning
    # A GPU raises its own out-of-memory error: warned, never refused.
    _available(monkeypatch, need / 3)
    assert memory.check_training_memory("bn", 224, 32, 1, torch.device("cuda"), **check) is not None


def test_cgroup_limits_bound_the_available_memory(tmp_path: Path) -> None:
    assert memory._cgroup_room(tmp_path) is None  # no cgroup files
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("100\n")
    assert memory._cgroup_room(tmp_path) is None
    (tmp_path / "memory.max").write_text(f"{2**30}\n")
    assert memory._cgroup_room(tmp_path) == 2**30 - 100
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    (v1 / "memory" / "memory.usage_in_bytes").write_text("5\n")
    assert memory._cgroup_room(v1) is None
    assert (memory.available_memory(torch.device("cpu")) or 1) > 0


def test_train_refuses_a_batch_no_machine_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--input-size", "4096", "-b", "1024", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("googlenet train: error: a training step at batch 1024, 4096 px needs about")
    assert "\n" not in err and not out.exists()  # refused before the run folder or the data


def test_an_allocation_that_fails_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import googlenet.model.summary as summary

    def allocate(args: object) -> int:
        return int(torch.empty(1 << 50).numel())  # 4 PiB: the allocator refuses it

    monkeypatch.setattr(summary, "run", allocate)
    assert main(["summary"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("googlenet summary: error: out of memory (an allocation of 4194304.0 GiB failed); lower the "
                   "batch size or the input size")  # fmt: skip


def test_the_benchmark_reads_a_childs_peak_memory(load_script) -> None:
    peak_rss = load_script("train_memory").peak_rss
    small = peak_rss([], prelude="pass")
    big = peak_rss([], prelude="b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])")
    assert 250 * 2**20 < big - small < 400 * 2**20  # the child's own peak, not its parent's (pytest's)
    assert peak_rss(["googlenet", "summary"]) > small  # a module run to its end
