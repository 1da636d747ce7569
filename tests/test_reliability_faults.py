"""Faults and untrusted files: kills, a full disk, read-only folders, NaN, a killed torchrun worker,
crafted pickles, truncated and tampered checkpoints, bad config files."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import googlenet
import googlenet.io as gio
import googlenet.train.loop as loop
import killtrials
from conftest import make_tiny_data
from googlenet.cli import main
from googlenet.errors import CheckpointError, ConfigError
from googlenet.evaluate.command import _builtin_drawing
from googlenet.io import record_digest, safe_load, sha256_file, verify_digest
from googlenet.model.weights import default_meta, read_checkpoint, save_checkpoint
from googlenet.train import TrainConfig, resolve
from googlenet.train.config import from_dict, validate

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
TINY = ["-j", "0", "--input-size", "64", "-b", "4", "--epochs", "2", "--seed", "0", "--deterministic",
        "--no-progress", "--train-eval-samples", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("tiny"))


def one_line_error(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    last = lines[-1]
    assert "error: " in last, err
    for needle in needles:
        assert needle in last, (needle, last)
    return last


# -- kills ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("reference") / "run"
    return out, killtrials.reference_run(tiny_data, out)


# "random" kills anywhere (20 such trials run in the slow tier too); "write" aims at checkpoint writes;
# both are in the slow tier (about 45 s for "write" alone), which CI runs
@pytest.mark.parametrize("mode", ["write", pytest.param("random", marks=pytest.mark.slow)])
@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_sigkill_then_resume_is_bit_identical_and_no_checkpoint_is_ever_broken(
    tiny_data: Path, reference: tuple[Path, float], tmp_path: Path, mode: str
) -> None:
    trial = killtrials.run_trial(tiny_data, tmp_path / "run", reference[0], mode, seed=7, span=reference[1])
    assert trial.kills >= 1 and not trial.error, trial
    assert trial.lost == [], trial.lost
    assert trial.identical
    if mode == "write":  # the trainer is frozen and the temporary file seen before each kill
        assert trial.during_write == trial.kills


@pytest.mark.slow
def test_twenty_kill_trials(tiny_data: Path, reference: tuple[Path, float], tmp_path: Path) -> None:
    """20 trials (about 6 minutes on 2 cores); CI sets GOOGLENET_KILL_TRIALS lower to fit its budget."""
    count = int(os.environ.get("GOOGLENET_KILL_TRIALS", "20"))
    trials = [
        killtrials.run_trial(
            tiny_data, tmp_path / f"t{k}", reference[0], ("write", "random")[k % 2], k, reference[1]
        )
        for k in range(count)
    ]
    assert sum(t.survived for t in trials) == count, [t for t in trials if not t.survived]


# -- a full disk, a read-only folder ---------------------------------------------------------------------


def _fail_second_checkpoint(monkeypatch: pytest.MonkeyPatch, error: OSError, where: str) -> None:
    """Make the second write of last.pt fail: mid-write ("write") or when creating its temporary file."""
    calls = {"n": 0}
    real_mkstemp, real_fdopen = gio.tempfile.mkstemp, gio.os.fdopen

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if str(kwargs.get("prefix", "")).startswith(".last.pt."):
            calls["n"] += 1
            if calls["n"] == 2 and where == "create":
                raise error
        return real_mkstemp(*args, **kwargs)

    class HalfFull:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> HalfFull:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            self.handle.write(data[: len(data) // 2])  # half of it lands, then the disk is full
            raise error

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_fdopen(fd, mode, *args, **kwargs)
        if where == "write" and calls["n"] == 2 and "b" in mode:
            return HalfFull(handle)
        return handle

    monkeypatch.setattr(gio.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(gio.os, "fdopen", fdopen)


@pytest.mark.parametrize(
    ("error", "where", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "write", "No space left on device"),
        (PermissionError(errno.EACCES, "Permission denied"), "create", "Permission denied"),
        pytest.param(
            OSError(errno.EROFS, "Read-only file system"),
            "create",
            "Read-only file system",
            marks=pytest.mark.slow,
        ),
    ],
    ids=["disk-full", "read-only-folder", "read-only-filesystem"],
)
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_previous_checkpoint(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    error: OSError, where: str, message: str,
) -> None:  # fmt: skip
    out = tmp_path / "run"
    _fail_second_checkpoint(monkeypatch, error, where)
    assert main(["train", "--data-path", str(tiny_data), "--output-dir", str(out), *TINY]) == 1
    one_line_error(capsys.readouterr().err, "last.pt", message, "the previous last.pt is intact")
    assert sorted(p.name for p in out.glob(".*.tmp")) == []  # no temporary file left behind
    state = read_checkpoint(out / "last.pt")["train_state"]  # complete, loadable, digest verified
    assert (state["epoch"], state["step"]) == (1, 0)
    assert verify_digest(out / "last.pt")
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # and the run goes on from it


def test_an_unwritable_output_folder_is_one_line(tiny_data: Path, tmp_path: Path, capsys: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["train", "--data-path", str(tiny_data), "--output-dir", str(blocker / "run"), *TINY]) == 1
    one_line_error(capsys.readouterr().err, str(blocker / "run"))


def test_a_folder_another_process_trains_in_is_refused(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same --output-dir twice, or --resume while the run goes on, must not interleave two runs' files."""
    out = tmp_path / "run"
    argv = ["--data-path", str(tiny_data), "--output-dir", str(out), *TINY]
    assert main(["train", *argv, "--stop-after-steps", "1"]) == 0  # the run "still going": a real last.pt
    files = lambda: sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir() if p.name != ".lock")  # noqa: E731
    before = files()
    hold = "import fcntl, os, sys, time\n" \
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n" \
        "fcntl.flock(fd, fcntl.LOCK_EX)\n" \
        "os.write(fd, b'pid 4242 on elsewhere')\n" \
        "print('held', flush=True)\n" \
        "time.sleep(120)\n"  # fmt: skip
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(out / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for again in (argv, ["--resume", str(out), "--no-progress"], [*argv, "--ensemble", "2"]):
            assert main(["train", *again]) == 1
            one_line_error(capsys.readouterr().err, str(out), "in use by another googlenet process",
                           "pid 4242 on elsewhere")  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert files() == before  # nothing written
    # once the holder has gone (killed: the kernel drops its lock), the run goes on
    assert main(["train", "--resume", str(out), "--no-progress", "--stop-after-steps", "2"]) == 0
    assert read_checkpoint(out / "last.pt")["train_state"]["global_step"] == 2


def test_default_output_names_are_claimed_so_two_commands_in_one_second_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `train`s (or `detect multibox`es, `evaluate --table3`s, demos) started in the same second
    picked one dated name: the second train was refused as in use, the others wrote over the first."""
    from datetime import datetime

    from googlenet.train.runs import default_output_dir

    monkeypatch.chdir(tmp_path)
    now = datetime(2026, 12, 7, 20, 40, 8)
    first, second = (default_output_dir("paper", now, claim=True) for _ in range(2))
    assert (first, second) == (Path("runs/20261207-204008-paper"), Path("runs/20261207-204008-paper-2"))
    assert first.is_dir() and second.is_dir() and not any(first.iterdir())
    files = [gio.claim_new_path("runs/multibox-x", ".pt", folder=False) for _ in range(2)]
    assert files == [Path("runs/multibox-x.pt"), Path("runs/multibox-x-2.pt")]
    assert all(f.is_file() and not f.stat().st_size for f in files)


def test_a_default_folder_of_a_failed_attempt_is_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Claimed default names (above) left a dated folder with train.log and .lock after every failed
    attempt, where the folder a run creates is removed when it fails before training."""
    data = tmp_path / "data"
    for split, classes in (("train", "ab"), ("val", "a")):
        for name in classes:
            folder = data / split / name
            folder.mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(folder / "0.png")
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--ensemble", "2"]):
        assert main(["train", "--data-path", str(data), *TINY, *extra]) == 1
        assert "train and val classes differ" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), extra
    assert main(["detect", "train", "--annotations", str(tmp_path / "none")]) == 1
    capsys.readouterr()
    assert not (tmp_path / "runs").exists()  # nor the runs/ folder made for the dated name


@pytest.mark.parametrize("command", ["ablate", "evaluate"])
def test_a_folder_another_ablate_or_table3_writes_in_is_refused(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two `ablate -o DIR`s, or `evaluate --table3 --output-dir DIR`s, at once: neither was refused;
    their logs interleaved and one's tables silently replaced the other's."""
    from googlenet.train.runs import holding

    out = tmp_path / "out"
    argv = {
        "ablate": ["ablate", "-o", str(out), "--arms", "full", "--seeds", "0", "--epochs", "1"],
        "evaluate": [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "x.pt"),
            "--table3",
            "--output-dir",
            str(out),
        ],
    }[command]
    with holding(out, "ablate" if command == "ablate" else "evaluate --table3"):
        assert main(argv) == 1
        one_line_error(
            capsys.readouterr().err, str(out), "in use by another googlenet process", f"googlenet {argv[0]}"
        )
    assert {p.name for p in out.iterdir()} == {".lock"}  # nothing else written
    if command == "evaluate":  # a failed call leaves no folder it made, nor the folders above it
        assert main([*argv[:-1], str(tmp_path / "new" / "a" / "b")]) == 1
        assert "x.pt" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_tilde_paths_a_drawn_seed_and_a_dash_folder_as_a_script_meets_them(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file's `run.output_dir: ~/runs/t` made a folder named "~" in the working directory; a
    quoted `GOOGLENET_CACHE='~/cache'` was drawn into "./~" and read from $HOME (every built-in run
    failed); the drawn seed had 62 bits, which jq and JavaScript round (the JSON's seed reran another
    run); and a resume hint for a folder named "-run" could not be pasted."""
    from googlenet.console import shell_path
    from googlenet.data.synthetic import default_cache_dir

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.setenv("GOOGLENET_CACHE", "~/cache")
    assert default_cache_dir() == home / "cache"
    (work / "t.yaml").write_text("run: {output_dir: ~/runs/t}\n")
    at = TINY.index("--seed")
    argv = TINY[:at] + TINY[at + 2 :]  # no --seed: one is drawn
    assert (
        main(
            [
                "train",
                "--config",
                "t.yaml",
                "--data-path",
                str(tiny_data),
                *argv,
                "--stop-after-steps",
                "1",
                "--json",
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert (home / "runs" / "t" / "last.pt").is_file() and not (work / "~").exists()
    assert 0 <= results["seed"] < 2**52
    # the same config file resumes it (its "~/runs/t" against the expanded folder recorded)
    assert (
        main(["train", "--config", "t.yaml", "--resume", str(home / "runs" / "t"), "--stop-after-steps", "2"])
        == 0
    )
    capsys.readouterr()
    assert (
        shell_path("-run") == "./-run"
        and shell_path("my run") == "'my run'"
        and shell_path("/a/-b") == "/a/-b"
    )


def test_a_resume_never_writes_over_files_that_are_not_the_runs(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data-path",
                str(tiny_data),
                "--output-dir",
                str(run),
                *TINY,
                "--stop-after-steps",
                "1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    # a last.pt saved among a user's files (a downloads folder): refused, nothing written there
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "last.pt").write_bytes((run / "last.pt").read_bytes())
    mine = {
        "results.json": '{"mine": 1}',
        "config.yaml": "user: yaml\n",
        "metrics.csv": "a,b\n",
        "train.log": "x\n",
    }
    for name, text in mine.items():
        (downloads / name).write_text(text)
    assert main(["train", "--resume", str(downloads / "last.pt"), "--epochs", "3", "--no-progress"]) == 1
    one_line_error(capsys.readouterr().err, "not in a run folder", "move it into a folder of its own")
    assert {p.name for p in downloads.iterdir()} == {"last.pt", *mine}
    assert all((downloads / name).read_text() == text for name, text in mine.items())
    # alone in a folder of its own, it resumes
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "last.pt").write_bytes((run / "last.pt").read_bytes())
    assert main(["train", "--resume", str(alone), "--no-progress", "--stop-after-steps", "2"]) == 0
    # a run branched by linking another's files: resuming it leaves the other run as it was
    branch = tmp_path / "branch"
    branch.mkdir()
    for entry in run.iterdir():  # as `cp -rs run branch` does, the lock file too
        (branch / entry.name).symlink_to(entry)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(branch), "--no-progress", "--stop-after-steps", "2"]) == 0
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert read_checkpoint(branch / "last.pt")["train_state"]["global_step"] == 2
    assert not any(p.is_symlink() for p in branch.iterdir())


def test_a_refused_output_folder_is_left_as_it_was(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("important")
    args = ["train", "--data-path", str(tiny_data), *TINY]
    assert main([*args, "--output-dir", str(home)]) == 1
    one_line_error(capsys.readouterr().err, "holds other files (notes.txt)")
    assert [p.name for p in home.iterdir()] == ["notes.txt"]  # no .lock left behind
    # a .lock that is a link: its target is never written
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".lock").symlink_to(victim)
    assert main([*args, "--output-dir", str(linked)]) == 1
    one_line_error(capsys.readouterr().err, "holds other files (.lock)")
    assert victim.read_text() == "precious"
    run = tmp_path / "run"  # ... nor when a run's own folder has one
    assert main([*args, "--output-dir", str(run), "--stop-after-steps", "1"]) == 0
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    assert main(["train", "--resume", str(run), "--no-progress", "--stop-after-steps", "2"]) == 0
    assert victim.read_text() == "precious" and not (run / ".lock").is_symlink()  # a lock of its own
    # reused, the lock file holds one line naming its holder (it grew NUL bytes at every reuse)
    assert (run / ".lock").read_bytes().startswith(b"pid ") and (run / ".lock").read_bytes().count(b"\n") == 1
    # another tool's train.log and tensorboard/ are not a run's
    other = tmp_path / "other"
    (other / "tensorboard").mkdir(parents=True)
    (other / "tensorboard" / "events.out.tfevents.1.other").write_bytes(b"x")
    (other / "train.log").write_text("epoch 1 loss 0.3\n")
    assert main([*args, "--output-dir", str(other)]) == 1
    one_line_error(capsys.readouterr().err, "holds other files (tensorboard, train.log)")
    assert (other / "train.log").read_text() == "epoch 1 loss 0.3\n"


def test_only_a_complete_region_set_counts_as_a_detect_runs_own(tmp_path: Path) -> None:
    from googlenet.train.runs import check_new_run_folder

    folder = tmp_path / "out"
    (folder / "regions" / "important").mkdir(parents=True)  # a folder of the user's named regions
    with pytest.raises(ConfigError, match=r"holds other files \(regions\)"):
        check_new_run_folder(folder)
    (folder / "regions" / "manifest.json").write_text("{}")  # what build_region_set renames into place
    check_new_run_folder(folder)
    (folder / "detection-setup.json").write_text('{"mine": 1}')
    with pytest.raises(ConfigError, match=r"holds other files \(detection-setup.json\)"):
        check_new_run_folder(folder)


def test_a_failed_command_leaves_no_empty_parent_folders_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o a/b/c` (and `runs/` of a default name) made a/b for the output; a command that failed before
    writing anything left them behind, empty."""
    bad = tmp_path / "data"
    (bad / "train" / "a").mkdir(parents=True)  # no val split
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()  # a folder that was there: left
    for argv in (
        ["train", "--data-path", str(bad), *TINY, "-o", "a/b/c"],
        ["train", "--data-path", str(bad), *TINY, "-o", "kept/b/c"],
        ["detect", "multibox", "--annotations", "none", "--output", "a/b/m.pt"],
        ["detect", "multibox", "--annotations", "none"],
    ):
        assert main(argv) == 1, argv
        capsys.readouterr()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "kept"], argv
    assert not any((tmp_path / "kept").iterdir())


@pytest.mark.parametrize("ensemble", [1, 2])
def test_bad_data_leaves_no_new_run_folder_and_keeps_an_existing_one(
    tmp_path: Path, capsys: Any, ensemble: int
) -> None:
    bad = tmp_path / "data"
    (bad / "train" / "a").mkdir(parents=True)  # no val split
    new = tmp_path / "runs" / "new"
    args = ["train", "--data-path", str(bad), *TINY, "--ensemble", str(ensemble)]
    assert main([*args, "--output-dir", str(new)]) == 1
    one_line_error(capsys.readouterr().err, "missing split folder 'val'")
    assert not (tmp_path / "runs").exists()  # what this run created, runs/ as well, is removed
    existing = tmp_path / "mine"
    existing.mkdir()
    assert main([*args, "--output-dir", str(existing)]) == 1
    assert existing.is_dir()


def test_a_setup_error_discards_the_new_folder_and_a_failed_first_step_keeps_it(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    late = tmp_path / "late"  # found after the TensorBoard writer opened, still before training
    assert main(["train", "--data-path", str(tiny_data), "--output-dir", str(late), *TINY,
                 "--balance-class", "no-such-class"]) == 1  # fmt: skip
    one_line_error(capsys.readouterr().err, "no-such-class")
    assert not late.exists()
    _nan_at(monkeypatch, 1, float("nan"))  # the very first step: training had started
    first = tmp_path / "first"
    assert main(["train", "--data-path", str(tiny_data), "--output-dir", str(first), *TINY]) == 1
    one_line_error(capsys.readouterr().err, "no checkpoint was written yet")
    assert "global step 1" in (first / "train.log").read_text()


@pytest.mark.parametrize(
    ("where", "ensemble"), [("build_data", 1), ("make_eval_loader", 1), ("make_eval_loader", 2)]
)
def test_a_ctrl_c_while_setting_up_discards_the_new_folder_and_keeps_an_existing_one(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, where: str, ensemble: int
) -> None:
    # build_data: with only .lock and train.log in the folder; make_eval_loader: after config.yaml and
    # the TensorBoard log are written, still before the first training step
    import googlenet.train.engine as engine

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, where, interrupted)
    args = ["train", "--data-path", str(tiny_data), *TINY, "--ensemble", str(ensemble)]
    new = tmp_path / "runs" / "new"
    assert main([*args, "--output-dir", str(new)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "googlenet train: interrupted"
    assert not (tmp_path / "runs").exists()  # what this run created, runs/ as well, is removed
    existing = tmp_path / "mine"
    existing.mkdir()
    assert main([*args, "--output-dir", str(existing)]) == 130
    assert existing.is_dir()


# -- NaN / Inf ------------------------------------------------------------------------------------------


def _nan_at(monkeypatch: pytest.MonkeyPatch, at_call: int, value: float) -> None:
    original = loop.head_losses
    calls = {"n": 0}

    def patched(*args: Any, **kwargs: Any) -> list[torch.Tensor]:
        calls["n"] += 1
        losses = original(*args, **kwargs)
        return [losses[0] * value, *losses[1:]] if calls["n"] == at_call else losses

    monkeypatch.setattr(loop, "head_losses", patched)


@pytest.mark.parametrize("value", [float("nan"), pytest.param(float("inf"), marks=pytest.mark.slow)])
def test_nonfinite_loss_from_the_cli_stops_or_skips_per_the_flag(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, value: float
) -> None:
    _nan_at(monkeypatch, 5, value)  # epoch 1, step 1
    out = tmp_path / "stop"
    assert main(["train", "--data-path", str(tiny_data), "--output-dir", str(out), *TINY]) == 1
    line = one_line_error(capsys.readouterr().err, "global step 5", f"last good checkpoint {out / 'last.pt'}")
    assert "nan" in line or "inf" in line
    assert read_checkpoint(out / "last.pt")["train_state"]["global_step"] == 3  # the end of epoch 0

    _nan_at(monkeypatch, 5, value)
    skip = tmp_path / "skip"
    argv = [
        "train",
        "--data-path",
        str(tiny_data),
        "--output-dir",
        str(skip),
        *TINY,
        "--skip-nonfinite",
        "--json",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped_steps"] == 1


# -- torchrun with a worker killed ----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow  # 3 epochs under torchrun, twice; the restart race itself is in test_train_distributed.py
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this Python")
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_torchrun_restarts_a_killed_worker_and_resumes_from_the_last_checkpoint(
    tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "-m", "googlenet",
               "train", "--data-path", str(tiny_data), "--output-dir", str(out), "--json",
               *[a for a in TINY if a != "--deterministic"], "--epochs", "3"]  # fmt: skip
    agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not (out / "last.pt").is_file() and agent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(agent.pid)
        assert agent.poll() is None and len(workers) == 2, "the run ended before a checkpoint could be killed"
        os.kill(max(workers), 9)  # one worker dies; torchrun restarts the group
        stdout, stderr = agent.communicate(timeout=420)  # a restart re-imports torch in 2 processes
    finally:
        if agent.poll() is None:
            agent.kill()
    text = stderr.decode(errors="replace")
    assert agent.returncode == 0, text[-3000:]
    assert re.search(r"elastic restart \d: resuming", text)
    log = (out / "train.log").read_text()
    assert re.search(r"resumed from .*last.pt: [12] of \d+ epoch\(s\) done\n", log), log[-2000:]
    results = json.loads(stdout[stdout.index(b"{") :])
    assert results["status"] == "completed" and results["processes"] == 2 and results["epochs"] == 3
    assert results["global_step"] == 9
    read_checkpoint(out / "final.pt")


# -- untrusted checkpoint files ------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def crafted(tmp_path: Path) -> dict[str, Path]:
    """Checkpoints whose unpickling would run code: torch.save's zip format and a raw pickle."""
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pt"
    torch.save({"format": "googlenet", "state_dict": {}, "x": _Payload(marker)}, zipped)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}))
    assert not marker.exists()
    return {"marker": marker, "zip": zipped, "raw": raw}


def test_crafted_pickles_are_refused_everywhere_and_never_run(
    crafted: dict[str, Path], tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = next((tiny_data / "val" / "disc").iterdir())
    for evil in (crafted["zip"], crafted["raw"]):
        for argv in (
            ["predict", str(image), "--checkpoint", str(evil)],
            ["predict", str(image), "--weights", str(evil)],
            ["evaluate", "--checkpoint", str(evil), "--data-path", str(tiny_data)],
            ["train", "--resume", str(evil)],
            ["train", "--data-path", str(tiny_data), "--resume", str(evil), "--test-only"],
            [
                "detect",
                "predict",
                "--checkpoint",
                str(evil),
                "--annotations",
                str(tmp_path),
                "--output",
                "x.csv",
            ],
        ):
            assert main(argv) == 1, argv
            one_line_error(capsys.readouterr().err, str(evil))
        with pytest.raises(CheckpointError, match="refused"):
            safe_load(evil)
    assert not crafted["marker"].exists()


def test_loading_code_uses_weights_only_everywhere() -> None:
    """Every torch.load in the package passes weights_only=True; nothing unpickles by other means."""
    sources = sorted((ROOT / "src" / "googlenet").rglob("*.py"))
    loads = 0
    for source in sources:
        text = source.read_text()
        assert "weights_only=False" not in text, source
        assert not re.search(r"\bpickle\.loads?\(|\bdill\.|\bjoblib\.load", text), source
        for call in re.finditer(r"torch\.load\(", text):
            loads += 1
            assert "weights_only=True" in text[call.start() : call.start() + 200], source
    assert loads >= 1


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    import googlenet

    torch.manual_seed(0)
    model = googlenet.build_model("paper", num_classes=3, aux_logits=False)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, default_meta(model, 64) | {"class_names": ["a", "b", "c"]})
    return path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_checkpoints_are_one_line_errors(saved: Path, tmp_path: Path, fraction: float) -> None:
    data = saved.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(cut)
    assert "\n" not in str(info.value) and str(cut) in str(info.value)


def _nested_shared(depth: int) -> list[Any]:
    value: list[Any] = [0.0]
    for _ in range(depth):
        value = [value] * 10
    return value


@pytest.mark.parametrize(
    ("entry", "value", "message"),
    [
        ("state_dict", "x", "entry 'state_dict' is a str, not a mapping"),
        ("model_config", "x", "entry 'model_config' is a str, not a mapping"),
        ("meta", ["x"], "entry 'meta' is a list, not a mapping"),
        ("state_dict", {"fc.weight": "x"}, "'state_dict' holds something other than tensors"),
        ("meta.input_size", "big", "meta input_size must be a whole number from 32 to 4096, got 'big'"),
        ("meta.input_size", 60000, "meta input_size must be a whole number from 32 to 4096, got 60000"),
        # below the network's 32 px: `export` was a traceback from inside torch.export
        ("meta.input_size", 16, "meta input_size must be a whole number from 32 to 4096, got 16"),
        ("meta.resize_size", 0, "meta resize_size must be a whole number from 1 to 4681, got 0"),
        # smaller than the crop: `predict` said "scales: each must be ... at least crop_size" without the file
        ("meta.resize_size", 48, "meta resize_size 48 is smaller than its input_size 64"),
        ("meta.mean", "abc", "meta mean must be 3 numbers, got 'abc'"),
        # a few hundred bytes of shared references (pickle's memo) whose full repr is gigabytes
        (
            "meta.mean",
            _nested_shared(8),
            "meta mean must be 3 numbers, got [[[[...], [...], [...], [...], ...], ",
        ),
        ("meta.std", [1, 2], "meta std must be 3 numbers, got [1, 2]"),
        ("meta.class_names", "abc", "meta class_names must be a list of names"),
    ],
)
def test_a_checkpoint_entry_of_the_wrong_type_is_one_line_everywhere(
    saved: Path, tmp_path: Path, capsys: Any, entry: str, value: Any, message: str
) -> None:
    """A hand-edited or foreign file with `format: googlenet` but a mistyped entry: refused where it is
    read, not a traceback later in predict, evaluate, export or train --init-from."""
    checkpoint = torch.load(saved, weights_only=True)
    section, _, key = entry.partition(".")
    if key:
        checkpoint[section] = {**checkpoint[section], key: value}
    else:
        checkpoint[section] = value
    odd = tmp_path / "odd.pt"
    torch.save(checkpoint, odd)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        read_checkpoint(odd)
    with pytest.raises(CheckpointError, match=re.escape(message)):  # the public API, too
        googlenet.load_weights(googlenet.build_model("paper", num_classes=3, aux_logits=False), odd)
    # evaluate's default data (built-in) reads the checkpoint's recipe first: the file is left for
    # load_ensemble to name, as with no --data-path it would be, after the drawing
    assert _builtin_drawing([str(odd)]) is None
    image = tmp_path / "x.png"
    Image.new("RGB", (80, 80)).save(image)
    for argv in (["predict", str(image), "--checkpoint", str(odd)], ["evaluate", "--checkpoint", str(odd), "--data-path", str(make_tiny_data(tmp_path))],
                 ["export", "--checkpoint", str(odd), "--output", str(tmp_path / "x.onnx")]):  # fmt: skip
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_a_tampered_checkpoint_next_to_its_digest_is_refused(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_digest(saved, sha256_file(saved), saved.stat().st_size)
    assert verify_digest(saved)
    read_checkpoint(saved)
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights: still a valid zip, different numbers
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"differs from the .* recorded in .*checkpoints\.json"):
        read_checkpoint(saved)
    image = tmp_path / "x.png"
    from badinputs import sample_image

    sample_image().save(image)
    assert main(["predict", str(image), "--checkpoint", str(saved)]) == 1
    one_line_error(capsys.readouterr().err, str(saved), "SHA-256")
    (tmp_path / "checkpoints.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint digests"):
        read_checkpoint(saved)


def test_a_digest_record_that_is_not_a_file_is_refused_not_skipped(saved: Path) -> None:
    """A `checkpoints.json` folder used to skip the check (and the next write named last.pt)."""
    (saved.parent / gio.DIGESTS_FILE).mkdir()
    for attempt in (lambda: verify_digest(saved), lambda: record_digest(saved, "f" * 64, 1)):
        with pytest.raises(CheckpointError, match=r"checkpoints\.json: is not a file.*remove it"):
            attempt()
    with pytest.raises(CheckpointError, match="is not a file"):
        read_checkpoint(saved)


def test_the_digest_record_matches_the_file_at_every_moment_of_a_replacement(saved: Path) -> None:
    """Killed between recording a new digest and replacing the file, the old file still verifies."""
    old = sha256_file(saved)
    record_digest(saved, old, saved.stat().st_size)
    record_digest(saved, "f" * 64, 123, pending=True)  # the write that is about to happen
    assert verify_digest(saved)  # the old file is still accepted ...
    record_digest(saved, "e" * 64, 123, pending=True)  # ... even after a second interrupted attempt
    assert verify_digest(saved)
    record_digest(saved, "d" * 64, 123)  # a completed write drops the old digests
    with pytest.raises(CheckpointError):
        verify_digest(saved)


def test_a_first_write_that_fails_leaves_no_digest_for_a_file_that_is_not_there(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at a run's first last.pt: checkpoints.json must not list a file that was never written."""
    index = saved.parent / gio.DIGESTS_FILE
    record_digest(saved, sha256_file(saved), saved.stat().st_size)  # another checkpoint of the run
    real_fdopen = gio.os.fdopen

    def full(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "b" in mode:
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(gio.os, "fdopen", full)
    for target in (saved.parent / "last.pt", saved):  # never written; an existing file being replaced
        record = lambda digest, size, t=target: record_digest(t, digest, size, pending=True)  # noqa: E731
        with pytest.raises(CheckpointError, match="No space left on device"):
            gio.atomic_save({"step": 1}, target, before_replace=record)
    entries = json.loads(index.read_text())
    assert "last.pt" not in entries and not (saved.parent / "last.pt").exists()
    monkeypatch.undo()
    assert verify_digest(saved)  # the existing file keeps its entry and still verifies


def test_a_training_run_records_and_resume_verifies_its_checkpoints(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        "train",
        "--data-path",
        str(tiny_data),
        "--output-dir",
        str(out),
        *TINY,
        "--stop-after-steps",
        "3",
    ]
    assert main(argv) == 0
    record = json.loads((out / "checkpoints.json").read_text())
    assert (
        record["last.pt"]["sha256"] == sha256_file(out / "last.pt")
        and "previous_sha256" not in record["last.pt"]
    )
    data = bytearray((out / "last.pt").read_bytes())
    data[-100] ^= 0x01
    (out / "last.pt").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 1
    one_line_error(capsys.readouterr().err, "last.pt", "SHA-256")


# -- bad config files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("optim:\n  learning_rate: 0.1\n", "unknown config key 'optim.learning_rate'"),
        ("optimizer:\n  lr: 0.1\n", "unknown section 'optimizer'"),
        ("optim:\n  lr: fast\n", "optim.lr must be float"),
        ("run:\n  epochs: 2.5\n", "run.epochs must be int"),
        ("run:\n  epochs: true\n", "run.epochs must be int"),
        ("run:\n  epochs: -1\n", "run.epochs must be >= 1"),
        ("run:\n  epochs: 0\n", "run.epochs must be >= 1"),
        ("optim:\n  lr: 0.1\noptim:\n  lr: 0.2\n", "key 'optim' appears twice (line 3)"),
        ("optim:\n  lr: 0.1\n  lr: 0.2\n", "key 'lr' appears twice"),
        ("optim:\n  batch_size: '32'\n", "optim.batch_size must be int"),
        ("optim:\n  lr: -0.1\n", "optim.lr must be > 0"),
        ("optim:\n  lr: .inf\n", "optim.lr must be a finite number"),
        ("optim:\n  weight_decay: .nan\n", "optim.weight_decay must be a finite number"),
        ("optim:\n  momentum: 1.5\n", "optim.momentum must be in [0, 1)"),
        ("augment:\n  scale_min: 0.9\n  scale_max: 0.5\n", "scale_min <= scale_max"),
        ("model:\n  variant: inception-v3\n", "model.variant must be one of"),
        ("run:\n  seed: -1\n", "run.seed must be a non-negative"),
        ("- just\n- a list\n", "expected a mapping of sections"),
        ("optim: 0.1\n", "section 'optim' must be a mapping"),
        ("optim:\n  lr: [0.1\n", "not valid YAML"),
        ("!!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),
        ("\xff\xfe binary", "not a YAML text file"),
    ],
)
def test_bad_config_files_are_rejected_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_bytes(text.encode("latin-1"))
    out = tmp_path / "run"
    assert (
        main(["train", "--config", str(config), "--output-dir", str(out), "--data-path", str(tmp_path)]) == 1
    )
    one_line_error(capsys.readouterr().err, needle)
    assert not out.exists() and not (tmp_path / "pwned").exists()  # nothing was started


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
_KEYS = [f"{s}.{n}" for s, values in TrainConfig().as_dict().items() for n in values] + [
    "optim.nope",
    "nope.lr",
]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4))
def test_any_config_is_valid_or_one_line_config_error(overrides: dict[str, Any]) -> None:
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    try:
        validate(from_dict(nested))
    except ConfigError as exc:
        assert "\n" not in str(exc)
    try:
        resolve({}, overrides)
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_every_file_a_run_writes_is_copied_when_it_is_a_link(tmp_path: Path) -> None:
    from googlenet.train.runs import RunFolder

    other, branch = tmp_path / "other", tmp_path / "branch"
    other.mkdir()
    branch.mkdir()
    names = ["ensemble.json", "detection.json", "detections-ensemble.csv", "metrics.csv", "data"]
    for name in names:
        (other / name).write_text(f"the other run's {name}\n")
        (branch / name).symlink_to(other / name)
    (branch / "results.json").symlink_to(tmp_path / "nowhere.json")  # dangling: a write would create it
    folder = RunFolder(branch)
    folder.close()
    for name in names[:-1]:  # the run's own files: copies now; the other run's stay as they were
        assert not (branch / name).is_symlink() and (branch / name).read_text() == f"the other run's {name}\n"
    assert (branch / "data").is_symlink()  # a link of another name (the images, say) is not the run's
    assert not (branch / "results.json").exists() and not (tmp_path / "nowhere.json").exists()
