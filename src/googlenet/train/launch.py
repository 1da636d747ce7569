"""`googlenet train --nproc-per-node N`: N training processes on this machine, started by torchrun's own
launcher (`torch.distributed.run`, with `--standalone`), reporting as one command does.

torchrun itself is the way to train across nodes, and it stays supported. On one machine this flag gives
the same processes with the command's manners: started as `torchrun --standalone --nproc-per-node N -m
googlenet train ...` would start them, but

- a mistake the processes find (an empty class folder, a locked run folder) is one line, printed by
  the first process alone, and the command exits with that process's code; torchrun adds its
  launcher's `ChildFailedError` traceback and report, and every process prints its own line;
- a Ctrl-C or SIGTERM stops the processes as under torchrun (each saves last.pt after its step) and
  the command ends as any does, "googlenet train: interrupted" (130) or "terminated (SIGTERM)" (143),
  after the processes (a second signal cuts torch's wait short; the launcher then waits for them
  itself), without torchrun's `SignalException` traceback;
- a process killed by a signal (the kernel's out-of-memory killer, say) is named in one line;
- the processes stop (saving last.pt after their step) when the launcher is killed without a chance
  to stop them (SIGKILL; Linux only: `googlenet.console.follow_launcher`), as do torchrun's;
- each process gets `OMP_NUM_THREADS` = the machine's cores / N (torchrun sets 1, with a banner),
  unless the variable is set already.

The other processes' closing lines are not lost: each process leaves its line, marked as a cause or
a consequence (a signal, another process's failure), in a folder the launcher names in
`googlenet.console.LAUNCHED` (an environment variable; `closing_line` there). The first process
prints its cause; the launcher prints the causes it did not say, and the consequences only when
nobody gave a cause (a signal to the launcher: its own stop line). Only torch's public launcher names are
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
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from googlenet.console import LAUNCHED, LAUNCHER, LogFormatter, shell_path
from googlenet.signals import Terminated
from googlenet.train.distributed import cores


def launch(argv: Sequence[str], nproc: int, prog: str = "googlenet train") -> int:
    """Run `googlenet *argv` in `nproc` processes under torchrun's launcher; the command's exit code.

    A signal to the launcher reaches the processes as under torchrun (it sends them the same one; each
    saves last.pt after its step) and leaves here as KeyboardInterrupt (SIGTERM: `Terminated`), which
    the CLI reports as for any command, once the processes have ended.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    threads = str(max(1, cores() // nproc))
    handlers = {signum: signal.getsignal(signum) for signum in _HANDLED}
    with (
        tempfile.TemporaryDirectory(prefix="googlenet-launch-") as lines,
        _environment(
            {
                LAUNCHED: lines,
                LAUNCHER: str(os.getpid()),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads),
            }
        ),
        _quiet(),
    ):
        args = get_args_parser().parse_args(
            ["--standalone", f"--nproc-per-node={nproc}", "-m", "googlenet", *argv]
        )
        try:
            run(args)
        except ChildFailedError as exc:
            return _report(exc.failures, Path(lines), prog)
        except (SignalException, KeyboardInterrupt) as exc:
            stop = _first_stop(exc, SignalException)
        else:
            return 0
        finally:
            for signum, handler in handlers.items():  # torch's raise SignalException; a program calling
                if handler is not None:  # `main()` gets its own back
                    signal.signal(signum, handler)
        # A second signal cuts torch's wait for the processes short: wait for them here (a further
        # signal ends this wait too).
        with contextlib.suppress(KeyboardInterrupt):
            _wait_for_children(lines, SHUTDOWN_WAIT_S)
        raise stop


def _first_stop(exc: BaseException, signal_exception: type[BaseException]) -> KeyboardInterrupt:
    """The stop to report for `exc` and the signals before it (a second signal, ablate's SIGTERM after
    a Ctrl-C, say, arrives while torch handles the first): the first one's, as the processes record it.
    SIGINT: KeyboardInterrupt; SIGTERM (and SIGHUP, SIGQUIT): `Terminated`."""
    first: BaseException = exc
    earlier = exc.__context__
    while earlier is not None:
        if isinstance(earlier, (signal_exception, KeyboardInterrupt)):
            first = earlier
        earlier = earlier.__context__
    if isinstance(first, KeyboardInterrupt):
        return Terminated() if isinstance(first, Terminated) else KeyboardInterrupt()
    return KeyboardInterrupt() if getattr(first, "sigval", None) == signal.SIGINT else Terminated()


# The signals torch's launcher takes over while it runs (its default `--signals-to-handle`).
_HANDLED = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)
# How long the launcher waits for its processes after a signal (torch's own shutdown waits 30 s).
SHUTDOWN_WAIT_S = 60.0


def _wait_for_children(lines: str, timeout_s: float) -> None:
    """Wait up to `timeout_s` for the processes this launch started (those whose environment names
    `lines` in `LAUNCHED`) to end; a program's other child processes are none of its business."""
    deadline = time.monotonic() + timeout_s
    while _workers(lines) and time.monotonic() < deadline:
        time.sleep(0.1)


def _workers(lines: str) -> list[int]:
    """The live processes (not zombies) started with `LAUNCHED`=`lines` (Linux: from /proc; elsewhere,
    where torch's own wait is all there is, none are known)."""
    return processes_with(LAUNCHED, lines)


def processes_with(name: str, value: str) -> list[int]:
    """The live processes (not zombies) whose environment, as they were started, sets `name`=`value`
    (Linux: from /proc; elsewhere none are known)."""
    mark = f"{name}={value}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):
            if mark not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # state, after "pid (name)"
                found.append(int(proc.name))
    return found


def _report(failures: Mapping[int, object], lines: Path, prog: str) -> int:
    """Print what the first process did not say about `failures` (rank -> torch's ProcessFailure); the
    exit code: the first process's, else the first failed one's.

    Each process left its closing line, marked as the cause of its failure or a consequence (a signal,
    another process's failure). The first process printed its own cause; here go the other processes'
    causes it did not say, each once (a mistake every process meets is the first one's line already),
    or, when nobody gave a cause, the consequences the processes saw; and the processes killed without
    a word. Once training had begun (the first process left the run's `--resume` arguments), the lines
    go to the run's train.log as well: the first process, which writes it, did not see them.
    """
    codes = {rank: int(getattr(failure, "exitcode", 1)) for rank, failure in sorted(failures.items())}
    left = {rank: _read(lines / f"rank-{rank}") for rank in range(max(codes, default=0) + 1)}
    for rank, code in codes.items():  # ended its command, then met torch's SIGTERM as it shut down
        ended = [text for kind, text in left.get(rank, []) if kind == "exit"]
        if code < 0 and ended and ended[-1].lstrip("-").isdigit():
            codes[rank] = int(ended[-1])
    said = {rank: [(k, t) for k, t in entries if k in ("cause", "after")] for rank, entries in left.items()}
    entries = [(rank, kind, text) for rank in sorted(said) for kind, text in said[rank]]
    first = {text for rank, kind, text in entries if rank == 0 and kind == "cause"}  # printed by it
    shown = [text for rank, kind, text in entries if rank and kind == "cause"]
    if not shown and not first:  # nobody said what went wrong: what the processes saw of it
        shown = [text for _, _, text in entries]
    report = [text for text in dict.fromkeys(shown) if text not in first]
    for rank, code in codes.items():
        if code < 0 and not said.get(rank):  # killed without a word: name the signal
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = (
                " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
            )
            report.append(f"{prog}: error: process {rank} was killed by {name}{hint}")
    code = codes.get(0, next(iter(codes.values()), 1))
    if code == 0:  # the first process ended well; the others' codes say how the command ended
        code = next((c for c in codes.values() if c), 1)
    # A process died after training began (the others could not save after it): last.pt holds the
    # last finished epoch (or the last signal's step). Unless the first process stopped at a signal
    # itself, having said how to resume, say it here.
    hints = [text for kind, text in left.get(0, []) if kind == "resume"]
    folder = Path(hints[-1].split(" --nproc-per-node")[0]) if hints else None
    kept = folder is not None and ((folder / "last.pt").is_file() or any(folder.glob("member-*/last.pt")))
    if kept and code not in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        flags = hints[-1][len(str(folder)) :]  # what follows the folder: --nproc-per-node N
        report.append(f"{prog}: last.pt is kept; resume with {prog} --resume {shell_path(folder)}{flags}")
    for text in report:
        print(text, file=sys.stderr)
    if folder is not None and report:
        _append_to_log(folder / "train.log", report)
    return code if code > 0 else 1


def _append_to_log(log: Path, report: list[str]) -> None:
    """Append the launcher's `report` lines to a run's train.log, in the form of its other entries;
    nothing where there is none (an ensemble keeps one per member) or it cannot be written."""
    if not log.is_file():
        return
    form = LogFormatter("%(asctime)s %(levelname)s %(name)s [launcher]: %(message)s")
    records = [logging.LogRecord(__name__, logging.ERROR, __file__, 0, text, None, None) for text in report]
    with contextlib.suppress(OSError), open(log, "a", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write("".join(form.format(record) + "\n" for record in records))


def _read(path: Path) -> list[tuple[str, str]]:
    """The (kind, line) entries a process left: kind "cause" or "after" (`googlenet.console.closing_line`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    entries = []
    for row in text.splitlines():
        kind, tab, line = row.partition("\t")
        if tab:
            entries.append((kind, line))
    return entries


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set `values` in os.environ (which the launched processes inherit) for the block only; whatever
    torch's launcher sets there meanwhile (TORCHELASTIC_*, its compile cache) goes with it."""
    before = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        for key, value in before.items():
            if os.environ.get(key) != value:
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
