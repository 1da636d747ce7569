"""The console log handler every command shares: plain message lines on the current `sys.stderr`."""

from __future__ import annotations

import logging
import sys


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
