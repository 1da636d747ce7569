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


def _write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_cgroup_limits_bound_the_available_memory(tmp_path: Path) -> None:
    gib = 2**30
    membership = tmp_path / "cgroup"
    assert memory._cgroup_room(tmp_path / "none", membership) is None  # no cgroup files at all
    # v2: the process's group has no limit, the one above it (a Slurm job, a systemd slice) has 4 GiB,
    # of which 3 GiB are in use, 2 GiB of that reclaimable page cache: 3 GiB of room.
    v2 = tmp_path / "v2"
    _write(v2, **{"cgroup_controllers": "memory\n", "memory_max": "max\n", "memory_current": "1\n"})
    _write(v2 / "job", **{"memory_max": f"{4 * gib}\n", "memory_current": f"{3 * gib}\n",
                          "memory_stat": f"anon 1\ninactive_file {2 * gib}\nactive_file 5\n"})  # fmt: skip
    _write(v2 / "job" / "step", **{"memory_max": "max\n", "memory_current": f"{gib}\n"})
    membership.write_text("0::/job/step\n")
    assert memory._cgroup_room(v2, membership) == 3 * gib
    membership.write_text("0::/\n")  # a container's own cgroup namespace: its group is the root
    assert memory._cgroup_room(v2, membership) is None
    # v1: the limit in the memory hierarchy, "no limit" written as nearly 2^63.
    v1 = tmp_path / "v1"
    _write(v1 / "memory", **{"memory_limit_in_bytes": f"{2**63 - 4096}\n", "memory_usage_in_bytes": "5\n"})
    _write(v1 / "memory" / "box", **{"memory_limit_in_bytes": f"{2 * gib}\n", "memory_usage_in_bytes": f"{gib}\n",
                                     "memory_stat": f"cache 9\ntotal_inactive_file {gib // 2}\n"})  # fmt: skip
    membership.write_text("4:memory:/box\n3:cpu:/\n0::/\n")
    assert memory._cgroup_room(v1, membership) == gib + gib // 2
    membership.write_text("4:memory:/gone\n")  # a group not under this mount: its root
    assert memory._cgroup_room(v1, membership) is None
    assert (memory.available_memory(torch.device("cpu")) or 1) > 0


def test_a_small_input_on_a_batchnorm_variant_is_estimated(tmp_path: Path) -> None:
    # One image gives 1x1 maps in 5b at 32 px, which BatchNorm refuses in training mode.
    assert memory.estimate_training_memory("bn", 10, 32, 8, aux_logits=False).activations > 0
    assert memory.estimate_training_memory("torchvision", 10, 32, 8, aux_logits=False).activations > 0


def test_one_image_per_step_on_1x1_batchnorm_maps_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--variant bn --input-size 32 -b 1` ended its first step in a 28-frame traceback."""
    for variant in ("bn", "torchvision"):
        with pytest.raises(ConfigError, match=f"--variant {variant} at --input-size 32 reaches 1x1 maps"):
            memory.check_batch_norm_batch(variant, 32, 1, 1, aux_logits=False)
    with pytest.raises(ConfigError, match=r"per process \(2 processes\)"):
        memory.check_batch_norm_batch("bn", 32, 2, 2, aux_logits=False)
    memory.check_batch_norm_batch("paper", 32, 1, 1, aux_logits=False)  # no BatchNorm
    memory.check_batch_norm_batch(
        "bn", 32, 2, 2, aux_logits=False, sync_bn_on_gpus=True
    )  # statistics over both
    memory.check_batch_norm_batch("bn", 32, 2, 1, aux_logits=False)  # two values per channel
    memory.check_batch_norm_batch("bn", 64, 1, 1, aux_logits=False)  # 2x2 maps
    out = tmp_path / "run"
    argv = [
        "train",
        "--variant",
        "bn",
        "--input-size",
        "32",
        "--no-aux",
        "-b",
        "1",
        "--epochs",
        "1",
        "-o",
        str(out),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "use a --batch-size of 2 or more per process" in err and not out.exists()


def test_train_refuses_a_batch_no_machine_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--input-size", "4096", "-b", "1024", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("googlenet train: error: a training step at batch 1024, 4096 px needs about")
    assert "\n" not in err and not out.exists()  # refused before the run folder or the data


def test_detect_train_refuses_it_before_its_region_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "det"
    missing = tmp_path / "no-such-voc"  # never read: the refusal comes first
    assert main(["detect", "train", "--annotations", str(missing), "--input-size", "4096", "-b", "1024",
                 "-o", str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "a training step at batch 1024, 4096 px needs about" in err and not out.exists()


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
    from googlenet.cli import _allocation

    small = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 31457280 bytes.")
    assert _allocation(small) == " (an allocation of 30 MiB failed)"  # was "0.0 GiB"


def test_the_benchmark_reads_a_childs_peak_memory(load_script) -> None:
    peak_rss = load_script("train_memory").peak_rss
    small = peak_rss([], prelude="pass")
    big = peak_rss([], prelude="b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])")
    assert 250 * 2**20 < big - small < 400 * 2**20  # the child's own peak, not its parent's (pytest's)
    assert peak_rss(["googlenet", "summary"]) > small  # a module run to its end
