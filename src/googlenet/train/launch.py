"""`googlenet train --nproc-per-node N`: N training processes on this machine, started by torchrun's own
launcher (`torch.distributed.run`, with `--standalone`), reporting as one command does.

torchrun itself is the way to train across nodes, and it stays supported. On one machine this flag gives
the same processes with the command's manners: started as `torchrun --standalone --nproc-per-node N -m
googlenet train ...` would start them, but

- a mistake the processes find (an empty class folder, a locked run folder) is one line, printed by
  the first process alone, and the command exits with that process's code; torchrun adds its
  launcher's `ChildFailedError` traceback and report, and every process prints its own line;
- a Ctrl-C or SIGTERM stops the processes as under torchrun (each saves last.pt after its step) and
  the command exits 130 or 143 without torchrun's `SignalException` traceback;
- a process killed by a signal (the kernel's out-of-memory killer, say) is named in one line;
- each process gets `OMP_NUM_THREADS` = the machine's cores / N (torchrun sets 1, with a banner),
  unless the variable is set already.

The other processes' closing lines are not lost: each process leaves its line in a folder the
launcher names in `googlenet.console.LAUNCHED` (an environment variable; `closing_line` there), and
the launcher prints them when the first process left none. Only torch's public launcher names are
used (`torch.distributed.run`'s `get_args_parser` and `run`, `ChildFailedError`, `SignalException`),
so the launch is torchrun's, in every release we support.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from googlenet.console import LAUNCHED


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def launch(argv: Sequence[str], nproc: int, prog: str = "googlenet train") -> int:
    """Run `googlenet *argv` in `nproc` processes under torchrun's launcher; the command's exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    threads = str(max(1, cores() // nproc))
    with (
        tempfile.TemporaryDirectory(prefix="googlenet-launch-") as lines,
        _environment({LAUNCHED: lines, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}),
        _quiet(),
    ):
        parser = get_args_parser()
        options = ["--standalone", f"--nproc-per-node={nproc}"]
        if any("--signals-to-handle" in action.option_strings for action in parser._actions):
            # Ctrl-C reaches every process from the terminal; torchrun would send each a second SIGINT,
            # which stops a training at once instead of after its step. Left to Python here, it raises
            # KeyboardInterrupt in the launcher, whose shutdown sends SIGTERM: a graceful stop either
            # way. (Where torchrun has no --signals-to-handle, its own handling stays.)
            options.append("--signals-to-handle=SIGTERM,SIGHUP,SIGQUIT")
        try:
            run(parser.parse_args([*options, "-m", "googlenet", *argv]))
        except ChildFailedError as exc:
            return _report(exc.failures, Path(lines), prog)
        except SignalException as exc:  # the launcher's SIGTERM (or SIGINT); the processes have stopped
            return 128 + int(getattr(exc, "sigval", signal.SIGTERM))
        except KeyboardInterrupt:  # Ctrl-C; the processes have stopped (each saved its last.pt)
            return 130
    return 0


def _report(failures: Mapping[int, object], lines: Path, prog: str) -> int:
    """Print what the first process did not say about `failures` (rank -> torch's ProcessFailure); the
    exit code: the first process's, else the first failed one's."""
    codes = {rank: int(getattr(failure, "exitcode", 1)) for rank, failure in sorted(failures.items())}
    said = {rank: _read(lines / f"rank-{rank}") for rank in range(max(codes, default=0) + 1)}
    if not said.get(0):  # the first process printed nothing: the others' lines, each once
        for line in dict.fromkeys(text for rank, text in sorted(said.items()) if rank and text):
            print(line, file=sys.stderr)
    for rank, code in codes.items():
        if code < 0 and not said.get(rank):  # killed without a word: name the signal
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = (
                " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
            )
            print(f"{prog}: error: process {rank} was killed by {name}{hint}", file=sys.stderr)
    code = codes.get(0, next(iter(codes.values()), 1))
    return code if code > 0 else 1


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set `values` in os.environ (which the launched processes inherit) for the block only."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's launcher logs a failed process's report at ERROR and its own steps at INFO/WARNING, through
    loggers of their own levels and handlers; the command's lines say what happened, and the launching
    process logs nothing else, so its logging is off for the block (the processes it starts log as usual)."""
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(before)
