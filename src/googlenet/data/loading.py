"""A DataLoader that ends cleanly: its worker processes stopped when iteration ends early, and the
failures users meet in containers and on shared nodes said in one line with the remedy.

`StoppingLoader` is what training (`googlenet.train.inputs.make_loader`) and evaluation
(`googlenet.evaluate.protocol.crop_loader`) iterate; torch's DataLoader does the loading.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from googlenet.errors import DataError, GoogLeNetError

# What torch's ExceptionWrapper puts between its header and the worker's traceback.
WORKER_TRACEBACK = "\nOriginal Traceback"


class LoaderResourceError(DataError):
    """The loader processes ran out of what the system lends them: shared memory or file handles."""


class StoppingLoader(DataLoader):
    """A DataLoader whose iteration, when it ends early, stops its worker processes at once, and whose
    workers' `GoogLeNetError`s arrive as the one-line errors they were.

    torch re-raises a worker's exception in the main process with the worker's whole traceback in its
    message, and that traceback keeps the iterator, and so its workers, alive until a garbage
    collection; at exit multiprocessing then waits for workers that ignore SIGTERM (`ignore_stop_signals`)
    for ever. Shutting them down here, and raising the worker's own message, ends both. (torch offers
    no public way to stop an iterator's workers; `_shutdown_workers` is what its own `__del__` calls.)
    A full /dev/shm (Docker's default is 64 MB) or too few file handles (`ulimit -n`) become a
    `LoaderResourceError` naming the remedy instead of a worker's traceback.
    """

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        iterator = super().__iter__()
        try:
            yield from iterator
        except GoogLeNetError as exc:
            self._stop(iterator)
            text = str(exc)
            if WORKER_TRACEBACK in text:  # the last line is "googlenet.errors.DataError: <our message>"
                last = text.rstrip().splitlines()[-1]
                raise type(exc)(last.split(": ", 1)[1] if ": " in last else last) from None
            raise
        except (RuntimeError, OSError) as exc:
            self._stop(iterator)
            said = resource_shortage(exc, self.num_workers)
            if said is None:
                raise
            raise LoaderResourceError(said) from None
        except BaseException:  # another error, a break (GeneratorExit), Ctrl-C: the workers stop now
            self._stop(iterator)
            raise

    def _stop(self, iterator: Any) -> None:
        stop_workers(iterator)
        if self._iterator is iterator:  # kept workers (`persistent_workers`): the next pass starts new ones
            self._iterator = None

    def close(self) -> None:
        """Stop the worker processes that `persistent_workers=True` keeps between passes. A loader that
        keeps them must be closed: at exit multiprocessing would wait for ever for workers that ignore
        SIGTERM (`ignore_stop_signals`)."""
        if self._iterator is not None:
            self._stop(self._iterator)


def stop_workers(iterator: Any) -> None:
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def resource_shortage(exc: BaseException, workers: int) -> str | None:
    """The one-line explanation, with the remedy, of a loader failure for want of shared memory or file
    handles; None for any other error."""
    text = str(exc)
    flag = "-j/--workers"
    # torch: "unable to allocate shared memory(shm) for file </torch_...>: No space left on device",
    # older "unable to write to file </torch_...>", and a worker's Bus error "... out of shared memory"
    if "shared memory" in text or ("</torch_" in text and "No space left" in text):
        try:
            usage = shutil.disk_usage("/dev/shm")
            room = f" (/dev/shm: {usage.total / 2**20:.0f} MiB, {usage.free / 2**20:.0f} MiB free)"
        except OSError:
            room = ""
        return (
            f"the {workers} data loader process(es) could not get shared memory to pass images on{room}; "
            f"give {flag} 0 (no loader processes), or more shared memory (a container: docker run "
            "--shm-size=2g)"
        )
    if "DataLoader timed out" in text:
        return (
            f"no batch came from the {workers} data loader process(es) in time (one may have been lost "
            f"passing it on: see any message above); give {flag} 0 to load in this process"
        )
    if "Too many open files" in text or getattr(exc, "errno", None) == 24:
        try:
            import resource

            limit = f" (ulimit -n is {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
        except (ImportError, OSError, ValueError):
            limit = ""
        return (
            f"the {workers} data loader process(es) ran out of file handles{limit}; raise the limit "
            f"(ulimit -n 4096) or give {flag} 0 (no loader processes)"
        )
    return None


def in_worker() -> bool:
    """Whether this is a DataLoader worker process."""
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None


__all__ = ["LoaderResourceError", "StoppingLoader", "in_worker", "resource_shortage", "stop_workers"]
