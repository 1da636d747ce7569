"""The console log handler every command shares: plain message lines on the current `sys.stderr`."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path

# Set by `googlenet train --nproc-per-node` (googlenet.train.launch) in each process it starts: the
# folder where the process leaves its closing line, and the launcher's process id.
LAUNCHED = "GOOGLENET_LAUNCHED"
LAUNCHER = "GOOGLENET_LAUNCHER"


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler that writes to whatever `sys.stderr` is at emit time.

    logging.StreamHandler binds the stream it was created with; a command run inside a host that swaps
    stderr (pytest's capture, a notebook, a redirecting wrapper) would then keep writing to a stream
    that was closed after it. Looking the stream up per record avoids that.
    """

    _googlenet_console = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.pid = os.getpid()  # the process whose progress bars this handler lifts

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        """Write the line with any tqdm bar on stderr lifted first and drawn again after it: a line
        logged mid-epoch ("skipping a bad image", a signal) was written onto the end of the bar."""
        if os.getpid() != self.pid:  # a forked loader process: tqdm's lock may have been copied held
            super().emit(record)
            return
        from tqdm import tqdm

        with tqdm.external_write_mode(file=sys.stderr):
            super().emit(record)


# Control characters as \xNN: a file or class name holding a newline would otherwise print as two lines.
_CONTROL = {code: f"\\x{code:02x}" for code in [*range(32), 127]}


class LogFormatter(logging.Formatter):
    """The log files' formatter: `logging`'s "2026-12-07 20:45:01,123" time followed by the local UTC
    offset ("+0100"), so that lines written on machines in different zones, or either side of a
    daylight-saving change, can be put in order."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = super().formatTime(record, datefmt)
        if datefmt is None:
            stamp += time.strftime("%z", self.converter(record.created))
        return stamp


# Where no progress bar is drawn (stderr a file or pipe: nohup, a batch system's log, CI), a plain
# progress line this often in every long command.
PROGRESS_LINE_EVERY_S = 60.0


class ProgressLines:
    """When a long loop logs its next plain progress line (every `every` seconds; never when None), and
    its rate and ETA from the time since it began: the one pacing of train's epochs, validation and image
    check, `evaluate` and `predict --json` where no bar is drawn."""

    def __init__(self, every: float | None) -> None:
        self.every = every
        self.started = self.said = time.perf_counter()

    def due(self) -> bool:
        """Whether a line is due now (and if so, counted as said)."""
        if self.every is None or time.perf_counter() - self.said < self.every:
            return False
        self.said = time.perf_counter()
        return True

    @property
    def elapsed(self) -> float:
        """Seconds from the start to the last line said."""
        return self.said - self.started

    def eta(self, done: int, total: int) -> str:
        """H:MM:SS left for `total` units at the pace of the `done` so far."""
        return duration((total - done) * self.elapsed / max(done, 1))


def stderr_is_tty() -> bool:
    """Whether stderr is a terminal (a progress bar is drawn there); False when it was replaced by an
    object without `isatty` or closed."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def duration(seconds: float) -> str:
    """H:MM:SS."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def shell_path(path: object) -> str:
    """`path` as one shell word a user can paste after a flag: quoted where needed (`shlex.quote`), and
    "./" put before a relative one that starts with "-", which the flag would take for another flag."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def one_line(text: str) -> str:
    """`text` (a file or class name, or a message naming one) on one line: control characters as \\xNN."""
    return text.translate(_CONTROL)


_program = False  # the process is the `googlenet` program (`googlenet.cli.run`), not one that calls main()


def as_program() -> None:
    """Mark this process as the `googlenet` program: its console is ours to set up (`setup_console`)."""
    global _program
    _program = True


def _host_prints_logs() -> bool:
    """Whether the program that called `googlenet.cli.main()` prints log records to the console itself: a
    handler of its own on the root logger writing to stdout or stderr (`logging.basicConfig()` in a
    notebook or script). "googlenet" lines reach it, and a handler of ours would print each twice."""
    consoles = {id(stream) for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if stream}
    return any(
        isinstance(handler, logging.StreamHandler)
        and not getattr(handler, "_googlenet_console", False)
        and id(getattr(handler, "stream", None)) in consoles
        for handler in logging.getLogger().handlers
    )


def setup_console(level: int = logging.INFO) -> None:
    """Show the "googlenet" loggers' INFO lines on stderr, once, whichever command asks first. A program
    that calls `googlenet.cli.main()` and prints log records itself (`logging.basicConfig()`) gets them
    through its own handler instead, once (`googlenet.cli.main` then leaves logging as it found it)."""
    root = logging.getLogger("googlenet")
    hosted = not _program and _host_prints_logs()
    if not hosted and not any(getattr(h, "_googlenet_console", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    top = logging.getLogger()
    if not top.handlers:
        # Other libraries' warnings as Python's last resort prints them, and a handler there, so that a
        # library's `logging.warning(...)` does not call basicConfig: OpenVINO's, with an unwritable
        # HOME, added one that printed every "googlenet" line a second time ("INFO:googlenet.infer:...").
        others = _StderrHandler()
        others.setLevel(logging.WARNING)
        others.addFilter(lambda record: not record.name.startswith("googlenet"))
        top.addHandler(others)


def is_launched() -> bool:
    """Whether `googlenet train --nproc-per-node` started this process."""
    return bool(os.environ.get(LAUNCHED))


def closing_line(line: str, cause: bool = True) -> bool:
    """Leave a command's closing line (its error, "interrupted") for the launcher when this process is
    one that `googlenet train --nproc-per-node` started; whether to print it here as well: in the first
    process when it is a cause, and in any process that was not launched so (a plain run, or one under
    torchrun). `cause`: False for a line that reports a consequence (a signal, another process's
    failure): the launcher says those, its own stop line or the others' when nobody said what went
    wrong."""
    if not os.environ.get(LAUNCHED):
        return True
    rank = os.environ.get("RANK", "0")
    if launcher_gone():  # killed: nobody reads the folder; the first process says why it stopped
        return rank == "0" or cause
    if _leave("cause" if cause else "after", line):
        return rank == "0" and cause
    return True  # the folder is gone: print it here instead


def leave_resume_hint(hint: str) -> None:
    """In the first process of a `googlenet train --nproc-per-node` run: tell the launcher the run's
    `--resume ...` arguments, which it prints when a process fails and leaves last.pt behind."""
    if os.environ.get("RANK", "0") == "0":
        _leave("resume", hint)


def leave_exit_code(code: int) -> None:
    """In a process of `googlenet train --nproc-per-node`: record the command's exit code as it ends, so
    that the launcher reports that, not the SIGTERM torch's launcher sends whoever is still shutting down
    when another process has exited with a signal's code."""
    _leave("exit", str(code))


def _leave(kind: str, text: str) -> bool:
    """Append a "kind<TAB>text" entry to this process's file in the launcher's folder (read by
    `googlenet.train.launch._read`); whether it was written: not in a process the launcher did not
    start, once the launcher is gone, or without the folder."""
    folder = os.environ.get(LAUNCHED)
    if not folder or launcher_gone():
        return False
    try:
        with open(Path(folder) / f"rank-{os.environ.get('RANK', '0')}", "a", encoding="utf-8") as handle:
            handle.write(f"{kind}\t{text}\n")
    except OSError:
        return False
    return True


def launcher_gone() -> bool:
    """Whether this process was started by `googlenet train --nproc-per-node` or torchrun (and
    `follow_launcher` has run) and its launcher has died: its parent is now another process."""
    return _launcher is not None and os.getppid() != _launcher


_launcher: int | None = None  # the launcher's process id, set by follow_launcher


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def follow_launcher() -> None:
    """In a process that `googlenet train --nproc-per-node` or torchrun started: have Linux send it
    SIGTERM when its launcher dies without passing a signal on (SIGKILL, the out-of-memory killer), so
    that it saves last.pt after its step and stops, as after a SIGTERM to the launcher, instead of
    training on unseen in a run folder it keeps locked. torch's launcher does not ask this of its
    processes, and no library wraps prctl(2), hence ctypes. Elsewhere than Linux: nothing (the processes
    train on)."""
    global _launcher
    pid = os.environ.pop(LAUNCHER, "")  # not for this process's own children (a loader's workers, say)
    if not sys.platform.startswith("linux"):
        return
    if pid.isdigit():
        _launcher = int(pid)
    elif _started_by_torchrun():
        _launcher = os.getppid()
    else:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        asked = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return
    atexit.register(_tidy_after_launcher)
    if asked and launcher_gone():  # it died before the request: nobody will send the signal now
        os.kill(os.getpid(), signal.SIGTERM)


def _started_by_torchrun() -> bool:
    """Whether this process's parent is torchrun's launcher (`torchrun`, `python -m torch.distributed.run`
    or `.launch`) running it as one of its processes; not a process that a torchrun process started in
    turn, which inherits torchrun's environment but has another parent."""
    if not os.environ.get("TORCHELASTIC_RUN_ID"):
        return False
    try:
        words = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(
        Path(os.fsdecode(word)).name == "torchrun"
        or word in (b"torch.distributed.run", b"torch.distributed.launch")
        for word in words[:3]
    )


def _tidy_after_launcher() -> None:
    """At exit, with the launcher gone: remove the folder it made for the closing lines, which it would
    have removed (the last process to leave succeeds; nothing in it is read any more)."""
    folder = os.environ.get(LAUNCHED)
    if folder and launcher_gone():
        with contextlib.suppress(OSError):
            Path(folder, f"rank-{os.environ.get('RANK', '0')}").unlink(missing_ok=True)
            Path(folder).rmdir()
