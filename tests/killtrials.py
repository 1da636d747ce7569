"""Kill trials: SIGKILL `googlenet train` at random moments, resume, and compare with an uninterrupted run.

One trial trains the tiny deterministic run (3 classes, 12 images, 2 epochs of 3 steps at 64 px) in a
real process and kills it with SIGKILL (no handler runs) up to `kills` times: at a random moment
("random"), or inside a checkpoint write ("write": frozen with SIGSTOP while a checkpoint's temporary
file exists, so the kill provably lands mid-write). After each kill the files on disk must be complete:
every checkpoint present loads (with `weights_only=True`) and matches the SHA-256 its run folder
recorded. Then the run is resumed with
`googlenet train --resume DIR` (or started again if no checkpoint was written yet) until it completes,
and its final weights, averaged weights, optimiser state and final.pt must equal the uninterrupted
run's bit for bit.

Used by tests/test_reliability_faults.py (1-2 trials) and benchmarks/reliability.py (20 trials).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--input-size", "64", "-b", "4", "--epochs", "2", "-j", "0", "--train-eval-samples", "2", "--seed", "0",
         "--deterministic", "--no-progress", "--average-start", "0.5"]  # fmt: skip


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def train_argv(data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "googlenet",
        "train",
        "--data-path",
        str(data),
        "--output-dir",
        str(out),
        *FLAGS,
    ]


def resume_argv(out: Path) -> list[str]:
    return [sys.executable, "-m", "googlenet", "train", "--resume", str(out), "--no-progress"]


def reference_run(data: Path, out: Path, timeout: float = 300) -> float:
    """The uninterrupted run; returns its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        train_argv(data, out), env=environment(), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"reference run failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


@dataclass
class Trial:
    mode: str
    kills: int = 0  # SIGKILLs that landed while the trainer was running
    during_write: int = 0  # of those, kills while a temporary checkpoint file existed
    checks: int = 0  # checkpoint files checked after kills
    lost: list[str] = field(default_factory=list)  # checkpoint files found incomplete or unloadable
    identical: bool = False
    error: str = ""

    @property
    def survived(self) -> bool:
        return self.identical and not self.lost and not self.error


def _temporary_files(out: Path) -> list[Path]:
    """The temporary files of checkpoint writes in progress (`googlenet.io.atomic_open`)."""
    if not out.is_dir():
        return []
    return [p for name in ("last.pt", "final.pt", "checkpoints.json") for p in out.glob(f".{name}.*.tmp")]


def check_on_disk(out: Path) -> tuple[int, list[str]]:
    """Load every checkpoint in `out` as a user would (digest verified); returns (checked, failures)."""
    from googlenet.errors import GoogLeNetError
    from googlenet.model.weights import read_checkpoint
    from googlenet.train.checkpoint import load_training_state

    checked, failures = 0, []
    for name, load in (("last.pt", load_training_state), ("final.pt", read_checkpoint)):
        path = out / name
        if not path.exists():
            continue
        checked += 1
        try:
            load(path)
        except GoogLeNetError as exc:
            failures.append(f"{path}: {exc}")
    return checked, failures


def same_weights(a: Path, b: Path) -> bool:
    """last.pt (weights, average, optimiser, step) and final.pt of two run folders are bit-identical."""
    for name in ("last.pt", "final.pt"):
        left = torch.load(a / name, weights_only=True)
        right = torch.load(b / name, weights_only=True)
        for key in ("state_dict", "averaged_state_dict"):
            if (key in left) != (key in right):
                return False
            for tensor_name, tensor in left.get(key, {}).items():
                if not torch.equal(tensor, right[key][tensor_name]):
                    return False
        if "train_state" in left:
            ls, rs = left["train_state"], right["train_state"]
            if (ls["epoch"], ls["global_step"]) != (rs["epoch"], rs["global_step"]):
                return False
            for index, state in ls["optimizer"]["state"].items():
                if not torch.equal(
                    state["momentum_buffer"], rs["optimizer"]["state"][index]["momentum_buffer"]
                ):
                    return False
    return True


def _stop_inside_a_write(process: subprocess.Popen[bytes], out: Path, rng: random.Random) -> None:
    """Freeze `process` (SIGSTOP) inside a checkpoint write: from its n-th write on, 0-20 ms in.

    A write can finish within the delay (on a fast disk most do), so the process is frozen first and the
    temporary file checked while nothing can move; if the write already finished, the process continues
    and the next write is tried with half the delay. A delay of zero stops it within the ~1 ms poll of
    the write's start, so a kill lands inside a write unless the run ends first. The caller kills it.
    """
    target, seen, delay = rng.randrange(6), set(), rng.uniform(0, 0.02)
    while process.poll() is None:
        current = set(_temporary_files(out))
        fresh = current - seen
        seen |= current
        if fresh and len(seen) > target:
            time.sleep(delay)
            process.send_signal(signal.SIGSTOP)
            if _temporary_files(out):
                return
            process.send_signal(signal.SIGCONT)
            delay /= 2
        time.sleep(0.001)


def run_trial(
    data: Path,
    out: Path,
    reference: Path,
    mode: str,
    seed: int,
    span: float,
    kills: int = 2,
    timeout: float = 300,
) -> Trial:
    """One trial (see the module docstring); `span` is the reference run's wall time in seconds."""
    rng = random.Random(seed)
    trial = Trial(mode)
    deadline = time.monotonic() + timeout
    launches = 0
    while time.monotonic() < deadline:
        argv = resume_argv(out) if (out / "last.pt").is_file() else train_argv(data, out)
        process = subprocess.Popen(argv, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        launches += 1
        killed = False
        if trial.kills < kills:
            if mode == "write":
                _stop_inside_a_write(process, out, rng)
            else:
                moment = time.monotonic() + rng.uniform(0.5, span)
                while process.poll() is None and time.monotonic() < moment:
                    time.sleep(0.01)
            if process.poll() is None:
                writing = bool(_temporary_files(out))
                process.send_signal(signal.SIGKILL)
                killed = True
        try:
            _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            trial.error = "timed out"
            return trial
        if killed and process.returncode == -signal.SIGKILL:
            trial.kills += 1
            trial.during_write += writing
            checked, failures = check_on_disk(out)
            trial.checks += checked
            trial.lost += failures
            continue
        if process.returncode != 0:
            trial.error = f"exit {process.returncode} after {launches} launch(es): {stderr.decode(errors='replace')[-800:]}"
            return trial
        trial.identical = same_weights(out, reference)
        return trial
    trial.error = "timed out"
    return trial
