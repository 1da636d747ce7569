"""Ctrl-C and SIGTERM held back while native code that calls into Python runs.

Python delivers a signal as an exception at the next bytecode it runs; inside a C++ library that has
called back into Python (the ONNX exporter tracing the model, a C extension importing numpy while it
loads) that exception crosses C++ frames, where it was seen to abort the process (`terminate called
after throwing an instance of 'python_error'`, exit 134) or to turn into a misleading ImportError
("import numpy failed"). Inside `signals_held()` such a signal is noted and re-raised once the block
ends, so it unwinds from plain Python as every other interruption does. The blocks are seconds long.
The standard library has no such guard (`signal.pthread_sigmask` would keep the signal from Python's
own handler too, and on the main thread only), so this is ours.

A signal the process was started with ignored stays ignored: nothing here or elsewhere in the package
puts a handler over `SIG_IGN` (`catchable`). A shell without job control starts `googlenet train &`
with SIGINT ignored, so that a Ctrl-C meant for the script's foreground leaves it running; Python keeps
that for its own KeyboardInterrupt, and so do we.
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType

HELD = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (outside a training loop, which saves and stops on its own), so
    that it unwinds as Ctrl-C does: temporary files removed, child processes stopped, one line, exit 143."""


def catchable(*signums: int) -> list[int]:
    """Those of `signums` whose handler may be replaced: not ignored (`SIG_IGN`, the process's wish,
    usually inherited from the shell that started it)."""
    return [signum for signum in signums if signal.getsignal(signum) is not signal.SIG_IGN]


@contextmanager
def signals_held() -> Iterator[None]:
    """Note SIGINT/SIGTERM during the block; raise each one received again when it ends (in order, once
    each), through the handlers that were installed before it; an ignored signal stays ignored. Off the
    main thread, a plain block (signals reach only the main thread's handlers, which this cannot replace
    from elsewhere); also where a handler was installed outside Python (`getsignal` gives None: it could
    not be put back)."""
    if threading.current_thread() is not threading.main_thread() or any(
        signal.getsignal(held) is None for held in HELD
    ):
        yield
        return
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {held: signal.signal(held, note) for held in catchable(*HELD)}
    try:
        yield
    finally:
        for held, handler in previous.items():
            signal.signal(held, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


def held_import(name: str) -> ModuleType:
    """`importlib.import_module(name)` with signals held: a C extension's loading (ONNX Runtime's, which
    imports numpy from C) interrupted midway raises ImportError, which would read as "not installed"."""
    with signals_held():
        return importlib.import_module(name)
