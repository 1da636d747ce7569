"""The `googlenet` command: a thin layer that parses flags and calls one library function per subcommand.

Each subcommand lives in the module that owns its concern and exposes `register(subparsers)`, which
adds its parser and sets `func` to a `run(args) -> int` function. User mistakes raise
`GoogLeNetError` below this layer; here they become one line on stderr and exit code 1 (argparse's
usage errors exit with 2). Nothing below the CLI calls `sys.exit`.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import importlib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from googlenet import __version__
from googlenet.console import as_program, closing_line, follow_launcher, leave_exit_code
from googlenet.errors import GoogLeNetError, UsageError
from googlenet.io import drop_unused_claims, forget_claims
from googlenet.signals import Terminated, catchable, signals_held

# Subcommand modules, in the order `googlenet --help` lists them. A module missing from an
# installation (a later issue not yet built) is simply not offered.
SUBCOMMANDS: tuple[str, ...] = (
    "googlenet.model.summary",
    "googlenet.train.command",
    "googlenet.evaluate.command",
    "googlenet.predict",
    "googlenet.bench.command",
    "googlenet.detect.command",
    "googlenet.export",
    "googlenet.ablate.command",
    "googlenet.report.command",
)

# Each subcommand's name, module and one-line help, as `googlenet --help` lists them: the listing (and
# an unknown command's error) comes from this table, so it needs none of the modules, which import
# PyTorch (2-3 s); a command imports its own module only. tests/test_reliability_cli.py checks the table
# against the modules' own `add_parser` calls.
COMMANDS: dict[str, tuple[str, str]] = {
    "summary": ("googlenet.model.summary",
                "print the network as Table 1 (params and multiply-adds measured on the model)"),
    "train": ("googlenet.train.command",
              "train GoogLeNet (section 6 recipe; with no arguments: a short run on the built-in data)"),
    "evaluate": ("googlenet.evaluate.command",
                 "top-1/top-5 error with 1, 10 or 144 crops (section 7), ensembles, Table 3"),
    "predict": ("googlenet.predict",
                "top-5 classes of images (a checkpoint, an ensemble, or a torchvision weight file)"),
    "benchmark": ("googlenet.bench.command",
                  "our inference, training and data paths against torchvision, ONNX Runtime and OpenVINO"),
    "detect": ("googlenet.detect.command", "detection (section 8): proposals, MultiBox, R-CNN training, "
               "prediction, box regression, VOC/ILSVRC AP"),
    "export": ("googlenet.export", "export a checkpoint to ONNX or TorchScript, or convert Caffe / ONNX-zoo / "
               "torchvision weights"),
    "ablate": ("googlenet.ablate.command",
               "ablation study: each ingredient removed, over seeds, with 95%% CIs and paired t-tests"),
    "report": ("googlenet.report.command",
               "one self-contained HTML report of a training, evaluation, ablation or detection run folder"),
}  # fmt: skip


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, exit 2, as argparse does, but without the multi-line usage dump.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None, listing: bool = False) -> argparse.ArgumentParser:
    """The `googlenet` parser, with the subcommands of every module in `SUBCOMMANDS` that is installed.

    `command`: that subcommand's module only (the others are not imported), as `googlenet COMMAND ...`
    needs. `listing`: no module at all, each subcommand a bare entry of `COMMANDS` (its name and help),
    enough for `googlenet --help`, `--version` and an unknown command's error."""
    parser = _Parser(
        prog="googlenet",
        description="GoogLeNet (Szegedy et al., 2014): the network of Table 1, its training (section 6), "
        "test protocol (section 7) and detection (section 8). `googlenet COMMAND --help` for each.",
    )
    parser.add_argument("--version", action="version", version=f"googlenet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    if listing:
        for word, (_, text) in COMMANDS.items():
            subparsers.add_parser(word, help=text)
        return parser
    for name in SUBCOMMANDS if command is None else (COMMANDS[command][0],):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # that subcommand (or its package) is not part of this installation
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `googlenet` with `argv` (default: the process's arguments); the exit code.

    A `GoogLeNetError` or `OSError` is printed as one line and gives 1 (a `UsageError` 2); no subcommand
    prints the help and gives 2, as a usage error does (`--help` and `--version` 0: returned, not raised
    as argparse's SystemExit); Ctrl-C gives 130, SIGTERM 143 (both unwind, so temporary files go and
    child processes stop; a training run saves last.pt first: a program that runs several commands in
    a loop should stop at those codes) and a closed pipe 0.

    A program that calls it gets back its logging (handlers and levels of the root and "googlenet"
    loggers), warnings filters, signal handlers and streams' encoding-error handlers as they were; where
    it prints log records itself (`logging.basicConfig()`), the command's lines go through its handler,
    once, not through one of ours as well (at that handler's level: one set to WARNING shows none of
    the command's progress). Those settings are the process's: run one `main()` at a time, not from
    several threads at once.
    """
    found = _process_settings()  # a program that calls main() gets them back as they were
    _settle_streams()
    _said.clear()  # one closing line per command (a program may run several)
    in_main_thread = threading.current_thread() is threading.main_thread()
    ours = in_main_thread and bool(catchable(signal.SIGTERM))  # an ignored SIGTERM stays ignored
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if ours else None
    try:
        with _quiet_warnings():
            return _main(argv)
    except KeyboardInterrupt as exc:  # a signal while the command reported its outcome (seen under
        return _stopped(_named(argv), exc)  # torchrun, which stops the others when one process fails)
    except SystemExit as exc:  # argparse's --help, --version and usage errors: a code, as any other
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _restore(found)


def _process_settings() -> dict[str, Any]:
    """What a command changes in the process and `main()` puts back: the root and "googlenet" loggers'
    handlers and levels (`setup_console`), and the standard streams' encoding-error handlers."""
    loggers = [logging.getLogger(), logging.getLogger("googlenet")]
    return {
        "loggers": [(logger, list(logger.handlers), logger.level) for logger in loggers],
        "errors": [(stream, getattr(stream, "errors", None)) for stream in (sys.stdout, sys.stderr)],
    }


def _restore(found: dict[str, Any]) -> None:
    """Put back what `_process_settings` found: handlers a command added go, those it removed return."""
    for logger, handlers, level in found["loggers"]:
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)
        for handler in [h for h in handlers if h not in logger.handlers]:
            logger.addHandler(handler)
        logger.setLevel(level)
    for stream, errors in found["errors"]:
        if (
            errors is not None
            and getattr(stream, "errors", None) != errors
            and hasattr(stream, "reconfigure")
        ):
            with contextlib.suppress(OSError, ValueError):  # a stream closed meanwhile
                stream.reconfigure(errors=errors)


def _bytes_or_escapes(exc: UnicodeError) -> tuple[bytes, int]:
    """stdout's encoding-error handler: a file name's bytes that are not UTF-8 (surrogate escapes) as
    those bytes, as `ls` prints them; any other character the encoding lacks (an "é" in a class or file
    name under PYTHONIOENCODING=ascii, which made `predict` a traceback) as a backslash escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        out += (
            bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else char.encode("ascii", "backslashreplace")
        )
    return bytes(out), exc.end


codecs.register_error("googlenet-stdout", _bytes_or_escapes)


def _settle_streams() -> None:
    """Make the standard streams safe to print to, whatever the command's environment.

    A closed stdout or stderr (`>&-`, a daemon) is None in Python, and every command ended in
    "'NoneType' object has no attribute 'flush'", exit 1, with its result lost, or, with stderr closed,
    its errors printed into stdout: such a stream goes to os.devnull. A character the stream's encoding
    lacks is escaped (`_bytes_or_escapes`, backslashes on stderr), not a UnicodeEncodeError."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (lives with the process)
    for stream, errors in ((sys.stdout, "googlenet-stdout"), (sys.stderr, "backslashreplace")):
        if getattr(stream, "errors", None) in ("strict", "surrogateescape") and hasattr(
            stream, "reconfigure"
        ):
            stream.reconfigure(errors=errors)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """Warnings a command does not show: torch's advice against more DataLoader workers than CPUs,
    printed twice per loader across the progress bar and missing from train.log (the worker counts we
    accept are our own choice). Only that filter is added, and removed after: `warnings.catch_warnings()`
    would also drop the filters the libraries a command imports add of their own (PyTorch's)."""
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    ours = warnings.filters[0]
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # a program that reset the filters meanwhile
            warnings.filters.remove(ours)  # type: ignore[attr-defined]
        mutated = getattr(warnings, "_filters_mutated", None)  # as filterwarnings itself tells the
        if mutated is not None:  # per-module caches (a private name; without it they are rebuilt later)
            mutated()


def run() -> None:
    """The `googlenet` program (its console script and `python -m googlenet`): `main()` on the process's
    arguments, then exit with its code, which a signal during the interpreter's exit no longer changes
    (`_leave_at_a_signal`). A program that calls `main()` itself keeps its own signal handlers."""
    follow_launcher()  # a process of `train --nproc-per-node`: stop when the launcher dies
    as_program()  # the console is ours (`setup_console`)
    # Every figure is written to a file, never shown: matplotlib's file backend, whatever the
    # environment names (an unknown MPLBACKEND made the first plot a traceback, mid-run).
    os.environ["MPLBACKEND"] = "Agg"
    try:  # torch and torchvision need one as they are imported: a traceback from deep inside them
        tempfile.gettempdir()
    except FileNotFoundError:
        _settle_streams()
        print(f"googlenet: error: no writable temporary folder (TMPDIR={os.environ.get('TMPDIR', '')!r}, "
              "TEMP, TMP, /tmp, /var/tmp, the working folder); set TMPDIR to a writable folder",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        _leave_at_a_signal(exc.code if isinstance(exc.code, int) else int(exc.code is not None))
        raise
    leave_exit_code(code)  # (for that launcher: a signal from here on is not what ended the command)
    _leave_at_a_signal(code)
    sys.exit(code)


def _main(argv: Sequence[str] | None) -> int:
    try:  # loading the subcommands imports PyTorch and numpy, whose C code a signal must not interrupt
        with signals_held():  # (seen: aborts from C++, RecursionError in numpy, a lost SIGTERM)
            word = _command_word(argv)
            parser = build_parser(word) if word in COMMANDS else build_parser(listing=True)
    except KeyboardInterrupt as exc:
        return _stopped(_named(argv), exc)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # name the subcommand whose usage to read, not just "googlenet"
        hint = getattr(args, "unknown_hint", None)  # a subcommand's advice on flags of other tools
        _innermost(parser, args).error(
            f"unrecognized arguments: {' '.join(unknown)}{hint(unknown) if hint else ''}"
        )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc-per-node` starts it again
    sub = getattr(args, "detect_command", None)
    name = f"{args.command} {sub}" if sub else args.command  # "detect evaluate", as its usage line
    code = 1
    try:
        code = _run_command(args, name)
        return code
    finally:
        if code:  # a failed attempt leaves no empty dated folder of a default name behind
            drop_unused_claims()
        else:
            forget_claims()


def _run_command(args: argparse.Namespace, name: str) -> int:
    """The subcommand's exit code, its errors printed as one line (the tracebacks of our own bugs kept)."""
    try:
        return int(args.func(args) or 0)
    except GoogLeNetError as exc:
        _say(f"googlenet {name}: error: {exc}")
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt as exc:
        return _stopped(f"googlenet {name}", exc)
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the machine's, not ours: a full disk, a read-only folder, a lost mount
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"googlenet {name}: error: {where}{exc.strerror or exc}")
        return 1
    except (RuntimeError, MemoryError) as exc:
        if _out_of_memory(exc):
            _say(
                f"googlenet {name}: error: out of memory{_allocation(exc)}; lower the batch size or the input size"
            )
            return 1
        if not isinstance(exc, RuntimeError) or not _lost_peer(exc):
            raise
        rank = os.environ.get("RANK", "?")
        _say(f"googlenet {name}: error: process {rank} stops because another process of this torchrun job "
             "failed (see that process's error)", cause=False)  # fmt: skip
        return 1


def _out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation that failed: Python's MemoryError, a GPU's OutOfMemoryError, or
    the CPU allocator's "can't allocate memory" (which PyTorch raises as a plain RuntimeError)."""
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    if isinstance(exc, MemoryError) or (isinstance(oom, type) and isinstance(exc, oom)):
        return True
    text = str(exc)
    return "can't allocate memory" in text or "CUDA out of memory" in text


def _allocation(exc: BaseException) -> str:
    """ " (an allocation of 2.0 GiB failed)" from PyTorch's CPU or CUDA out-of-memory text, else ""."""
    found = re.search(r"[Tt]ried to allocate ([\d.]+) ?([KMGT]iB|bytes)", str(exc))
    if found is None:
        return ""
    amount, unit = float(found.group(1)), found.group(2)
    if unit == "bytes":  # "0.0 GiB" said nothing of a 30 MB allocation
        size = f"{amount / 2**30:.1f} GiB" if amount >= 2**30 else f"{amount / 2**20:.0f} MiB"
    else:
        size = f"{amount:g} {unit}"
    return f" (an allocation of {size} failed)"


def _lost_peer(exc: RuntimeError) -> bool:
    """Whether `exc` is a collective that failed because another torchrun process ended: a user
    mistake seen by one process only (a file as --output-dir, a locked run folder, a bad image under
    --on-bad abort) is printed there as one line, and the others then meet a closed connection."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return False
    distributed = sys.modules.get("torch.distributed")
    backend_error = getattr(distributed, "DistBackendError", None)
    if isinstance(backend_error, type) and isinstance(exc, backend_error):
        return True
    text = str(exc)
    return any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset by peer", "Connection closed by peer")
    )


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser that parsed the deepest subcommand in `args`: "googlenet detect evaluate"'s."""
    for action in parser._actions:  # argparse keeps its subparsers here and offers no public accessor
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest or "", None) or "")
            if chosen is not None:
                return _innermost(chosen, args)
    return parser


def _command_word(argv: Sequence[str] | None) -> str | None:
    """The subcommand `argv` (default: the process's arguments) names: its first word that is not an
    option (`googlenet` itself takes no option with a value)."""
    for word in sys.argv[1:] if argv is None else argv:
        if word == "--":
            break
        if not word.startswith("-"):
            return word
    return None


def _named(argv: Sequence[str] | None) -> str:
    """ "googlenet detect predict" from the words that lead `argv` (default: the process's), for a
    message printed before the parser that knows the subcommands exists."""
    words: list[str] = []
    for word in sys.argv[1:] if argv is None else argv:
        if word.startswith("-") or not word.isidentifier() or len(words) == 2:
            break
        words.append(word)
        if word != "detect":
            break
    return " ".join(["googlenet", *words])


def _leave_at_a_signal(code: int) -> None:
    """The command is done: a Ctrl-C or SIGTERM while the interpreter shuts down (its exit handlers and
    PyTorch's finalisers take about a second) ends the process at once with the command's own exit
    code, instead of killing it without a word or printing "Exception ignored ... KeyboardInterrupt".
    Output is flushed first, since `os._exit` does not."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing can reach it
            stream.flush()

    def leave(signum: int, frame: object) -> None:
        os._exit(code)

    for signum in catchable(signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave)


def _stopped(prog: str, exc: KeyboardInterrupt) -> int:
    """Say that a signal stopped `prog`; its exit code, 128 + the signal's number."""
    terminated = isinstance(exc, Terminated)
    _say(f"{prog}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", cause=False)
    return 143 if terminated else 130


_said: list[str] = []  # the closing line this process printed


def _say(line: str, cause: bool = True) -> None:
    """Print the command's closing line on stderr, once: a signal that stops the process after it said
    its error adds nothing. `cause`: False for a line that reports a consequence of something else (a
    signal, another process's failure). Under `train --nproc-per-node` every process leaves it for the
    launcher and only the first prints it, a cause only (`googlenet.console.closing_line`)."""
    if _said:
        return
    if closing_line(line, cause):
        print(line, file=sys.stderr)
    _said.append(line)


if __name__ == "__main__":
    run()
