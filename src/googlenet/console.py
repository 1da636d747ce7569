"""The console log handler every command shares: plain message lines on the current `sys.stderr`."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

# Set by `googlenet train --nproc-per-node` (googlenet.train.launch) in each process it starts: the
# folder where the process leaves its closing line.
LAUNCHED = "GOOGLENET_LAUNCHED"


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler that writes to whatever `sys.stderr` is at emit time.

    logging.StreamHandler binds the stream it was created with; a command run inside a host that swaps
    stderr (pytest's capture, a notebook, a redirecting wrapper) would then keep writing to a stream
    that was closed after it. Looking the stream up per record avoids that.
    """

    _googlenet_console = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_console(level: int = logging.INFO) -> None:
    """Show the "googlenet" loggers' INFO lines on stderr, once, whichever command asks first."""
    root = logging.getLogger("googlenet")
    if not any(getattr(h, "_googlenet_console", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


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
    folder = os.environ.get(LAUNCHED)
    if not folder:
        return True
    rank = os.environ.get("RANK", "0")
    with contextlib.suppress(OSError):  # the launcher is gone (killed): print it here instead
        with open(Path(folder) / f"rank-{rank}", "a", encoding="utf-8") as handle:
            handle.write(f"{'cause' if cause else 'after'}\t{line}\n")
        return rank == "0" and cause
    return True
