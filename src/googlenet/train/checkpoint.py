"""Exact-resume training checkpoints: everything needed to continue as if never stopped.

`last.pt` is our checkpoint format (`googlenet.model.weights.save_checkpoint`: model config, weights,
metadata) plus the training state, all plain data and tensors so `torch.load(weights_only=True)` reads
it:

    "averaged_state_dict": the averaged network's weights (loadable with `load_weights(key=...)`)
    "train_state": {config, epoch, step (within the epoch), global_step, optimizer, scheduler,
                    scaler, averaged_updates, rng (one entry per process), meter, history,
                    seed, world_size, wall_time, skipped_files}

The RNG entry holds torch's CPU and CUDA generator states (tensors), NumPy's Mersenne-Twister key
(a tensor) and position, and Python's `random` state (a list of ints). Together with the sampling
rules of `googlenet.train.sampling` this makes an interrupted-and-resumed CPU run end with weights
bit-identical to an uninterrupted one under `--deterministic` (tested).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from googlenet.errors import CheckpointError, ConfigError
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.weights import read_checkpoint, same_classes, save_checkpoint
from googlenet.signals import catchable
from googlenet.train.config import TrainConfig
from googlenet.train.distributed import from_environment

# 2 (2026-12-07): written by the code in which metrics.csv's `lr` is the rate each epoch trained at
# (since 2026-12-04) and `--no-photometric` turns AlexNet's lighting noise off too (since 2026-12-07);
# a last.pt of version 1 may predate either, which a resume says (`engine.older_run_notes`).
TRAIN_STATE_VERSION = 2

# Settings that may differ between a checkpoint and the run resuming it; everything else must match,
# or the continuation would not be the same run.
RESUME_MUTABLE: frozenset[str] = frozenset(
    {"run.epochs", "run.device", "run.progress", "run.log_every", "run.stop_after_steps", "run.output_dir",
     "run.test_only", "data.workers", "data.data_path", "data.scan_bad_files"}
)  # fmt: skip

logger = logging.getLogger("googlenet.train")


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states as plain data and tensors."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # The generator of this process's own GPU (the current device), as [state], with its index
        # in "cuda_device": every visible GPU's (get_rng_state_all) could not be restored where fewer
        # are visible (IndexError), and a run resumed on another GPU index went on from that GPU's
        # unused stream. None where CUDA was never initialised (a CPU run): nothing drew from it.
        "cuda": [torch.cuda.get_rng_state(torch.cuda.current_device())] if _cuda_used() else [],
        "cuda_device": torch.cuda.current_device() if _cuda_used() else None,
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "internal": list(py_internal), "gauss_next": py_gauss},
    }
    return state


def _cuda_used() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    saved = list(state.get("cuda") or [])
    if saved and torch.cuda.is_available():
        here = torch.cuda.current_device()
        # this format: the one GPU the process trained on, onto the one it uses now
        if "cuda_device" in state:
            torch.cuda.set_rng_state(saved[0], here)
        elif here < len(saved):  # an older last.pt: one state per GPU visible then; the same index's
            torch.cuda.set_rng_state(saved[here], here)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def gather_rng_states() -> list[dict[str, Any]]:
    """Every process's RNG state, in rank order (one entry when not distributed)."""
    state = capture_rng_state()
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def save_training_state(
    path: str | os.PathLike[str],
    model: GoogLeNet,
    meta: dict[str, Any],
    averaged_state: dict[str, torch.Tensor] | None,
    train_state: dict[str, Any],
    before_replace: Callable[[str, int], None] | None = None,
) -> str:
    """Write `last.pt` atomically; returns its SHA-256 (`before_replace`: see `googlenet.io.atomic_save`)."""
    extra: dict[str, Any] = {"train_state": {"version": TRAIN_STATE_VERSION, **train_state}}
    if averaged_state is not None:
        extra["averaged_state_dict"] = averaged_state
    return save_checkpoint(path, model, meta, before_replace=before_replace, **extra)


def resolve_resume_path(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run folder holding `last.pt`."""
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / "last.pt"
    if not candidate.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from (expected a file or a run folder)")
    return candidate


def load_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint (weights_only=True) and check that it can be resumed from."""
    checkpoint = read_checkpoint(path)
    state = checkpoint.get("train_state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: has no training state (a final.pt cannot be resumed; use last.pt)")
    if state.get("version", 0) > TRAIN_STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {state['version']} is newer than this package")
    for key in ("config", "epoch", "step", "global_step", "optimizer", "scheduler", "rng"):
        if key not in state:
            raise CheckpointError(f"{path}: training state has no {key!r} entry")
    return checkpoint


def check_resume_config(stored: TrainConfig, wanted: TrainConfig, path: Path) -> None:
    """`wanted` may continue the run `stored` began only where RESUME_MUTABLE allows (one-line error)."""
    old, new = _flat(stored), _flat(wanted)
    for key, value in new.items():
        if key not in RESUME_MUTABLE and old.get(key) != value:
            raise ConfigError(
                f"{path}: cannot resume with {key}={value!r}; the run was started with {old.get(key)!r}"
            )
    if stored.run.epochs != wanted.run.epochs and stored.schedule.lr_scheduler == "cosine":
        raise ConfigError(f"{path}: a cosine schedule's length is fixed; cannot change run.epochs on resume")


def _flat(config: TrainConfig) -> dict[str, Any]:
    return {f"{section}.{k}": v for section, values in config.as_dict().items() for k, v in values.items()}


def check_same_classes(
    meta: dict[str, Any], classes: list[str], where: Any, wnids: list[str] | None = None
) -> None:
    """A checkpoint's weights only fit data with the classes it was trained on (one-line error). With
    the data's WordNet ids (`wnids`), the checkpoint's ids, or names that are those ids (a run from
    before class folders named by id were given their ImageNet names), match too."""
    names = meta.get("class_names")
    if names is not None and not same_classes(names, meta.get("wnids"), classes, wnids):
        other = "" if len(names) != len(classes) else " with other names"
        raise CheckpointError(
            f"{where}: trained on {len(names)} classes, the data has {len(classes)}{other} (--data-path)"
        )


class StopSignals:
    """SIGINT/SIGTERM set a flag the loop polls after every step; a second SIGINT stops at once. SIGHUP
    (the ssh session or terminal gone) counts as SIGTERM, as for `--nproc-per-node`'s launcher: it
    used to end the process at once, the epoch's steps unsaved."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            hangup = (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()
            for sig in catchable(signal.SIGINT, signal.SIGTERM, *hangup):  # an ignored signal stays ignored
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Said once for a torchrun job (every process receives the signal): by the first process.
        level = logging.WARNING if from_environment().is_main else logging.INFO
        if self.received is not None and signum == signal.SIGINT:
            logger.log(level, "Ctrl-C while stopping: stopping at once, without saving last.pt (an earlier one, "
                              "if any, stays as it was)")  # fmt: skip
            raise KeyboardInterrupt
        if self.received is not None:  # the same SIGTERM again (Linux sends the parent-death signal of
            # `follow_launcher` once per thread of the dying launcher), or ablate's SIGTERM after the
            # terminal's Ctrl-C: said once; the first is the run's (a Ctrl-C was recorded as SIGTERM)
            return
        self.received = signal.SIGTERM if signum == getattr(signal, "SIGHUP", None) else signum
        again = " (Ctrl-C again stops at once, without saving)" if signum == signal.SIGINT else ""
        logger.log(
            level,
            "received %s: finishing the current step, then saving last.pt%s",
            signal.Signals(signum).name,
            again,
        )

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
