"""The run folder: one place per training run where everything about it is written.

    <output_dir>/
      config.yaml         the resolved configuration (defaults, preset, file and flags applied)
      metrics.csv         one row per epoch (`METRIC_COLUMNS`), rewritten whole from the history
      tensorboard/        SummaryWriter event files (per-epoch scalars, per-step loss and lr)
      loss.png top1.png lr.png   the curves (matplotlib, Agg)
      train.log           the log of this run
      last.pt             the full training state (exact resume), every epoch and on interruption
      final.pt            the final averaged model with its metadata
      results.json        final metrics, timings, skipped files
      skipped-files.jsonl every image file the run skipped (found bad before it or met bad during it), a
                          JSON line {"path", "reason"} each, appended by whichever process met it
      checkpoints.json    SHA-256 of every checkpoint written
      .lock               held (flock) by the process training in the folder; a second one is refused

An ensemble (`--ensemble N`) writes `member-0/` ... `member-{N-1}/`, each such a folder, and an
`ensemble.json` beside them. Only the main process (rank 0) writes, except that under torchrun the
other processes append their warnings to train.log, marked with their rank.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from googlenet.console import LogFormatter, shell_path
from googlenet.errors import ConfigError
from googlenet.io import (
    atomic_open,
    claim_new_path,
    claimed_here,
    json_loads,
    json_safe,
    leftover_of,
    make_folder,
    record_digest,
)

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not guarded against a second process there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("googlenet.train")

LOCK_FILE = ".lock"
SKIPPED_FILES = "skipped-files.jsonl"  # `googlenet.data.datasets.record_skipped`'s lines

# Per epoch. Raw = the weights being trained; avg = the averaged (Polyak/EMA) weights.
METRIC_COLUMNS: tuple[str, ...] = (
    "epoch",  # from 0, as torchvision's reference scripts log it ("Epoch: [0]"); the log and plots say 1
    "global_step",
    "lr",  # at the last step of the epoch
    "loss_main", "loss_aux1", "loss_aux2", "loss_total",  # training, per head, over the epoch
    "train_top1", "train_top5",  # raw weights on the augmented training batches, in training mode
    # a fixed subset of training images, evaluation transform and mode: raw vs averaged weights
    "train_eval_top1_raw", "train_eval_top5_raw", "train_eval_top1_avg", "train_eval_top5_avg",
    "val_loss_raw", "val_top1_raw", "val_top5_raw",
    "val_loss_avg", "val_top1_avg", "val_top5_avg",
    "averaged_steps",  # weight snapshots in the average so far
    "skipped_steps",  # non-finite steps skipped (--skip-nonfinite)
    "img_per_s", "epoch_time_s",
)  # fmt: skip


def default_output_dir(variant: str, now: datetime | None = None, claim: bool = False) -> Path:
    """runs/<YYYYmmdd-HHMMSS>-<variant>, relative to the working directory; with `claim`, made unique
    ("-2", "-3", ... after it when taken) and created empty (`googlenet.io.claim_new_path`)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{stamp}-{variant}"
    return claim_new_path(path) if claim else path


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def class_balance(counts: Sequence[int]) -> dict[str, Any]:
    """What a network that has learnt nothing scores on a set of `counts` images per class: always
    answering the largest class (top-1) or the five largest (top-5), and predicting the class prior
    (cross-entropy: the prior's entropy). `imbalanced`: the largest class holds over 1.2 times its even
    share, where these differ from 100 / classes % and ln(classes)."""
    total = sum(counts)
    if not counts or total == 0:
        return {"images": total, "classes": len(counts), "imbalanced": False}
    shares = [c / total for c in counts if c]
    return {
        "images": total,
        "classes": len(counts),
        "imbalanced": max(counts) > 1.2 * total / len(counts),
        "largest_class_share": 100.0 * max(counts) / total,
        "five_largest_share": 100.0 * sum(sorted(counts)[-5:]) / total,
        "prior_entropy": -sum(p * math.log(p) for p in shares),
    }


# One look per quantity in every plot of a run (the run folder's and `report`'s), whichever of them has
# data (matplotlib's colour cycle shifted when a series was all NaN, so a colour meant one thing in one
# plot and another in the next): the colour says what is measured, in Okabe and Ito's palette, which
# readers with any common colour-vision deficiency can tell apart, and a marker by what is measured
# (val diamonds, train-subset dots, training's running figures squares); raw weights are drawn solid,
# averaged ones dashed with a cross, so equal values do not hide one another.
_VERMILLION, _BLUE, _ORANGE, _SKY, _GREEN, _BLACK = (
    "#D55E00",
    "#0072B2",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#000000",
)
SERIES_STYLE: dict[str, dict[str, Any]] = {
    "loss_total": {"color": _BLACK, "linestyle": "-", "marker": "s"},
    "loss_main": {"color": _ORANGE, "linestyle": "-", "marker": "o"},
    "loss_aux1": {"color": _SKY, "linestyle": "-", "marker": "^"},
    "loss_aux2": {"color": _GREEN, "linestyle": "-", "marker": "v"},
    "val_loss_raw": {"color": _VERMILLION, "linestyle": "-", "marker": "D"},
    "val_loss_avg": {"color": _VERMILLION, "linestyle": "--", "marker": "x"},
    "val_top1_raw": {"color": _VERMILLION, "linestyle": "-", "marker": "D"},
    "val_top1_avg": {"color": _VERMILLION, "linestyle": "--", "marker": "x"},
    "val_top5_raw": {"color": _VERMILLION, "linestyle": "-", "marker": "D"},
    "val_top5_avg": {"color": _VERMILLION, "linestyle": "--", "marker": "x"},
    "train_eval_top1_raw": {"color": _BLUE, "linestyle": "-", "marker": "o"},
    "train_eval_top1_avg": {"color": _BLUE, "linestyle": "--", "marker": "x"},
    "train_top1": {"color": _ORANGE, "linestyle": ":", "marker": "s"},
    "train_top5": {"color": _ORANGE, "linestyle": ":", "marker": "s"},
    "lr": {"color": _BLACK, "linestyle": "-", "marker": "o"},
}


def chance_levels(
    num_classes: int | None, balance: Mapping[str, Any] | None = None
) -> tuple[tuple[float, str] | None, tuple[float, str] | None]:
    """(value, label) of chance for one head's cross-entropy, ln(classes), and for top-1, 100 / classes %:
    where a network that has learnt nothing sits (the run's plots and the report draw them dashed).

    On an imbalanced validation set (`balance`, `class_balance` of its images per class) a network that
    has learnt nothing sits elsewhere: at the largest class's share (always answering it) and at the
    class prior's entropy, which are drawn instead (a 10 + 1 image validation set drew "chance: 50%"
    41 points under a model that only ever answered the larger class)."""
    if num_classes is None or num_classes < 2:
        return None, None
    if balance and balance.get("imbalanced") and balance.get("classes") == num_classes:
        entropy, majority = float(balance["prior_entropy"]), float(balance["largest_class_share"])
        return (
            (entropy, f"no learning, one head: class-prior entropy {entropy:.2f} (imbalanced val)"),
            (majority, f"majority class: {majority:.3g}% (imbalanced val)"),
        )
    return (
        (math.log(num_classes), f"chance, one head: ln {num_classes} = {math.log(num_classes):.2f}"),
        (100 / num_classes, f"chance: 100/{num_classes} = {100 / num_classes:.3g}%"),
    )


def percent(value: Any) -> str:
    """A metric as "12.34%", or "-" where there is none (None, or NaN: no averaged weights yet)."""
    return f"{value:.2f}%" if isinstance(value, int | float) and math.isfinite(value) else "-"


def summary_line(results: Mapping[str, Any]) -> str:
    """A run's closing line, as `googlenet train` prints it and its train.log ends with."""
    status, epochs = results["status"], int(results.get("epochs") or 0)
    ending = f"{results['wall_time_s']:.0f}s; run folder {results['output_dir']}"
    if status != "completed" and epochs == 0:
        return f"{status} before epoch 1 ended, so nothing was validated yet; {ending}"
    # A run stopped mid-epoch has the figures of the last epoch it finished: say which.
    which = "" if status == "completed" else f" (epoch {epochs}, the last one finished)"
    return (
        f"{status}: val top-1{which} raw {percent(results.get('val_top1_raw'))} / averaged "
        f"{percent(results.get('val_top1_avg'))}, top-5 raw {percent(results.get('val_top5_raw'))} / averaged "
        f"{percent(results.get('val_top5_avg'))}; {ending}"
    )


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path`, atomically; NaN and infinities become null, other values JSON
    lacks become strings."""
    with atomic_open(path, "w") as handle:
        json.dump(json_safe(data), handle, indent=2, sort_keys=False, default=str, allow_nan=False)
        handle.write("\n")


class RunFolder:
    """Writes the files of one run; every method is a no-op when `enabled` is False (non-main ranks)."""

    # what a run writes while it sets up (before its first training step)
    SETUP_ENTRIES = frozenset({"config.yaml", "train.log", "tensorboard", LOCK_FILE, SKIPPED_FILES})

    def __init__(self, path: str | os.PathLike[str], enabled: bool = True, rank: int = 0) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.rank = rank
        self._writer: Any = None
        self._log_handler: logging.Handler | None = None
        self._level_before: int | None = None  # the "googlenet" logger's level before `attach_log`
        self.created = enabled and (not self.path.exists() or claimed_here(self.path))  # a default name
        self.started = False  # set when training begins; `discard_if_unused` keeps the folder after that
        if enabled:
            if self.path.exists() and not self.path.is_dir():
                raise ConfigError(f"{self.path}: is a file, not a run folder (--output-dir)")
            if self.path.is_symlink() and not self.path.exists():  # mkdir said only "File exists"
                raise ConfigError(
                    f"{self.path}: a symbolic link to {os.readlink(self.path)}, which is no folder (a missing "
                    "target, or a loop) (--output-dir)"
                )
            try:
                make_folder(self.path.parent)  # noted: removed again, empty, if the command fails
                self.path.mkdir(exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"{self.path}: cannot create the run folder ({exc.strerror or exc})"
                ) from None
        self._lock = lock_folder(self.path) if enabled else None
        if self._lock is not None:
            self._remove_killed_writes()
        if enabled:
            self._copy_linked_files()

    def _copy_linked_files(self) -> None:
        """Replace each symbolic link among the files a run writes (`RUN_FILES`) by a copy of its target.

        A run branched by linking another run's files (`cp -rs runA runB`, or `ln -s ../runA/last.pt
        runB/`) would otherwise rewrite runA when runB is resumed: checkpoints replaced through the link,
        train.log and metrics appended to. Links with other names (a `data` link to the images, say)
        are not the run's and stay as they are."""
        names = set(RUN_FILES)
        for pattern in RUN_FILE_PATTERNS:
            names.update(p.name for p in self.path.glob(pattern))
        for name in sorted(names):
            entry = self.path / name
            if not entry.is_symlink():
                continue
            link = os.readlink(entry)
            if not entry.exists():  # dangling: nothing to keep, but a write would create its target
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                continue
            if not (entry.is_file() or entry.is_dir()):  # a device or pipe: never copied (/dev/full is
                continue  # endless); the writes refuse it or fail on it, each in one line
            copy = ""
            try:
                if entry.is_dir():  # tensorboard/
                    copy = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.path)
                    shutil.copytree(entry, copy, dirs_exist_ok=True)
                    entry.unlink()
                    os.rename(copy, entry)
                else:
                    fd, copy = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.path)
                    os.close(fd)
                    shutil.copy2(entry, copy)  # the link's target
                    os.replace(copy, entry)  # the link itself, not its target
            except OSError as exc:
                if copy:
                    shutil.rmtree(copy, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        os.unlink(copy)
                raise ConfigError(
                    f"{entry}: a symbolic link to {link}; cannot copy it into the run folder "
                    f"({exc.strerror or exc}), and writing the run through it would change the file it names"
                ) from None
            logger.info(
                "%s was a link to %s: copied, so that this run leaves that file as it was", entry, link
            )

    def _remove_killed_writes(self) -> None:
        """Remove what a training process killed outright (SIGKILL, the out-of-memory killer) while it
        wrote a checkpoint left: `.last.pt.XXXX.tmp` (see `atomic_open`), as large as the model with its
        optimiser state, which no later run would remove. Only the checkpoints' temporary files, and only
        under the folder's lock: no other process writes a checkpoint here, while `googlenet report`
        may be writing its report.html beside us."""
        if not (self.path / "config.yaml").is_file():  # not (yet) a run's folder: not ours to tidy
            return
        for name in ("last.pt", "final.pt"):
            for leftover in self.path.glob(f".{name}.*.tmp"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
                    logger.info("removed %s, left by a checkpoint write that was killed", leftover.name)

    # -- paths -----------------------------------------------------------------------------------
    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def final(self) -> Path:
        return self.path / "final.pt"

    # -- text files ------------------------------------------------------------------------------
    def write_text(self, name: str, text: str) -> None:
        if self.enabled:
            with atomic_open(self.path / name, "w") as handle:
                handle.write(text)

    def write_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite metrics.csv from the whole history (so a resumed run never duplicates a row)."""
        if not self.enabled:
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS)
        for row in history:
            writer.writerow([_fmt(row.get(column)) for column in METRIC_COLUMNS])
        self.write_text("metrics.csv", buffer.getvalue())

    def write_results(self, results: Mapping[str, Any]) -> None:
        if self.enabled:
            write_json(self.path / "results.json", dict(results))

    def record_checkpoint(self, path: Path, sha256: str) -> None:
        """Add or update `path`'s SHA-256 in checkpoints.json (verified whenever the file is loaded)."""
        if self.enabled:
            record_digest(path, sha256, path.stat().st_size)

    def pending_checkpoint(self, path: Path) -> Callable[[str, int], None]:
        """For `atomic_save(before_replace=...)`: record the coming digest, keeping the current one."""

        def record(sha256: str, size: int) -> None:
            if self.enabled:
                record_digest(path, sha256, size, pending=True)

        return record

    # -- logging ---------------------------------------------------------------------------------
    def attach_log(self) -> None:
        """Copy the "googlenet" loggers into train.log (appending, so a resumed run continues it).

        Another torchrun process (`enabled` False) adds its warnings and errors, marked with its rank
        (a bad image its shard met, say), when it sees the run folder; else they stay on its stderr."""
        if self._log_handler is not None:
            return
        if not self.enabled:
            if self.rank > 0:
                self._log_handler = _OtherProcessLog(self.path / "train.log", self.rank)
                logging.getLogger("googlenet").addHandler(self._log_handler)
            return
        handler = _RunLog(self.path / "train.log")
        handler.setFormatter(LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        root = logging.getLogger("googlenet")
        self._level_before = root.level  # given back when the log is detached: a library leaves it as found
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        root.addHandler(handler)
        self._log_handler = handler

    def log_to_file(self, level: int, message: str) -> None:
        """Write one record to train.log only (the console already shows it, e.g. the CLI's error line)."""
        if self.enabled and self._log_handler is not None:
            self._log_handler.handle(
                logging.LogRecord("googlenet.train", level, __file__, 0, message, None, None)
            )

    # -- TensorBoard -----------------------------------------------------------------------------
    def open_tensorboard(self, purge_step: int | None = None) -> None:
        """Start the SummaryWriter; on resume, events after `purge_step` (a crashed tail) are dropped."""
        if not self.enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but the run need not die without it
            logger.warning("tensorboard is not installed; no TensorBoard logs")
            return
        folder = str(self.path / "tensorboard")
        try:
            folder.encode("utf-8")
        except UnicodeEncodeError:  # TensorBoard's file layer takes UTF-8 paths only (it died on them)
            try:
                os.fsencode(folder).decode("utf-8")
                why = (  # valid UTF-8 on disk, undecodable under an ASCII locale (LC_ALL=C without UTF-8 mode)
                    f"the locale's file-name encoding ({sys.getfilesystemencoding()}) cannot spell the name; "
                    "a UTF-8 locale or PYTHONUTF8=1 can"
                )
            except UnicodeDecodeError:
                why = "the name is not valid UTF-8"
            logger.warning("%s: %s; no TensorBoard logs for this run", self.path, why)
            return
        self._writer = SummaryWriter(folder, purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None and value is not None and not math.isnan(value):
            self._writer.add_scalar(tag, value, step)

    def epoch_scalars(self, row: Mapping[str, Any]) -> None:
        """Log an epoch's metrics row to TensorBoard: `epoch/<column>` at step = the epoch, numbers only."""
        epoch = int(row["epoch"])
        for column in METRIC_COLUMNS[2:]:
            value = row.get(column)
            if isinstance(value, int | float):
                self.scalar(f"epoch/{column}", float(value), epoch)
        if self._writer is not None:
            self._writer.flush()

    # -- plots -----------------------------------------------------------------------------------
    def plot(
        self,
        history: Sequence[Mapping[str, Any]],
        num_classes: int | None = None,
        val_balance: Mapping[str, Any] | None = None,
        aux_weight: float | None = None,
    ) -> None:
        """loss.png (per head), top1.png (raw vs averaged, train and val), lr.png.

        With `num_classes`, loss.png and top1.png show chance as a dashed line: a network that has
        learnt nothing sits at ln(classes) and 100 / classes % (`chance_levels`: on an imbalanced
        validation set, given its `val_balance`, at the class prior's entropy and the majority share).
        With `aux_weight` (a model with heads), the total loss's own no-learning level, (1 + 2w) times
        one head's, is drawn dotted beside it.
        """
        if not self.enabled or not history:
            return
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        epochs = [row["epoch"] + 1 for row in history]

        def series(column: str) -> list[float]:
            out = []
            for row in history:
                value = row.get(column)
                out.append(float(value) if isinstance(value, int | float) else math.nan)
            return out

        def draw(
            name: str,
            title: str,
            ylabel: str,
            columns: Sequence[tuple[str, str]],
            chances: Sequence[tuple[float, str, str]] = (),
        ) -> None:
            figure = Figure(figsize=(8.4, 4.2), dpi=100)  # the legend beside the axes, not over the curves
            FigureCanvasAgg(figure)
            axes = figure.add_subplot(1, 1, 1)
            for column, label in columns:
                values = series(column)
                if any(not math.isnan(v) for v in values):
                    axes.plot(epochs, values, markersize=4, label=label, **SERIES_STYLE.get(column, {}))
            if axes.lines:
                for value, label, style in chances:
                    axes.axhline(value, color="0.4", linestyle=style, linewidth=1, label=label)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            axes.set_xlabel("epoch")
            axes.set_ylabel(ylabel)
            axes.set_title(title, fontsize=10)
            axes.grid(True, alpha=0.3)
            if axes.lines:
                axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
            figure.tight_layout()
            with atomic_open(self.path / name, "wb") as handle:
                figure.savefig(handle, format="png")

        loss_chance, top1_chance = chance_levels(num_classes, val_balance)
        loss_lines = [(*loss_chance, "--")] if loss_chance is not None else []
        heads = aux_weight is not None and any(row.get("loss_aux1") is not None for row in history)
        if loss_chance is not None and heads:
            total = (1 + 2 * float(aux_weight or 0.0)) * loss_chance[0]
            loss_lines.append(
                (
                    total,
                    f"no learning, total: (1 + 2 x {aux_weight:g}) x {loss_chance[0]:.2f} = {total:.2f}",
                    ":",
                )
            )
        draw(
            "loss.png",
            "loss per head, and on val\n"
            + (f"(section 5: total = main + {aux_weight:g} x (aux1 + aux2))" if heads else "(no auxiliary heads)"),
            "cross-entropy",
            [("loss_main", "main"), ("loss_aux1", "aux1 (4a)"), ("loss_aux2", "aux2 (4d)"),
             ("loss_total", "total"), ("val_loss_raw", "val (raw)"), ("val_loss_avg", "val (averaged)")],
            loss_lines,
        )  # fmt: skip
        draw(
            "top1.png",
            "top-1 accuracy: raw vs averaged weights",
            "top-1 (%)",
            [("val_top1_raw", "val raw"), ("val_top1_avg", "val averaged"),
             ("train_eval_top1_raw", "train subset raw (eval mode)"),
             ("train_eval_top1_avg", "train subset averaged (eval mode)"),
             ("train_top1", "train running (augmented, train mode)")],
            [(*top1_chance, "--")] if top1_chance is not None else [],
        )  # fmt: skip
        draw("lr.png", "learning rate (each epoch's last step)", "learning rate", [("lr", "lr")])

    # -- teardown --------------------------------------------------------------------------------
    def discard_if_unused(self) -> bool:
        """Remove the folder if this object created it and training never started in it.

        For a run that stopped on bad input (a wrong --data-path, say) while setting up: the user fixes
        the flag and runs again, without a dated folder of setup files per attempt. A folder that
        existed before, one where training started, or one holding anything but setup entries is left
        alone. Call after `close`.
        """
        if not self.created or self.started:
            return False
        try:
            entries = list(self.path.iterdir())
            if any(entry.name not in self.SETUP_ENTRIES for entry in entries):
                return False
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            self.path.rmdir()
        except OSError:
            return False
        return True

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the TensorBoard writer, detach the run's log file and release the folder's lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._log_handler is not None:
            root = logging.getLogger("googlenet")
            root.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
            if self._level_before is not None:
                root.setLevel(self._level_before)


class _RunLog(logging.FileHandler):
    """train.log. A write that fails (a full disk) is said once, on the console, and the log goes on
    there alone; logging's own handling printed "--- Logging error ---" and a traceback per record. The
    run itself goes on: its checkpoints say for themselves whether they could be written."""

    def __init__(self, path: Path, delay: bool = False) -> None:
        # backslashreplace: a file name that is not valid UTF-8 must not break logging
        super().__init__(path, encoding="utf-8", errors="backslashreplace", delay=delay)
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        try:
            super().emit(record)
        except OSError:  # opening the file (delay=True) happens outside logging's own guard
            self.handleError(record)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the last flush failed too (the file itself is closed): said already, or now
            if not self.failed:
                self.failed = True
                logging.getLogger("googlenet").warning("%s: cannot write its last lines", self.baseFilename)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a malformed record (our mistake): logging's report, and on
            super().handleError(record)
            return
        if self.failed:
            return
        self.failed = True
        text = error.strerror or str(error)
        logging.getLogger("googlenet").warning(
            "%s: cannot write (%s); the run's log goes on on the console only", self.baseFilename, text
        )


class _OtherProcessLog(_RunLog):
    """Warnings of a torchrun process other than the first, appended to the first one's train.log as
    "... WARNING googlenet.data.datasets [process 1]: ...". The file is opened at the first warning (by
    then the first process has made the folder) and only if the folder is there: a node that does not
    share the file system keeps its warnings on its own stderr. Each record is one append (O_APPEND)."""

    def __init__(self, path: Path, rank: int) -> None:
        super().__init__(path, delay=True)
        self.setLevel(logging.WARNING)
        self.setFormatter(LogFormatter(f"%(asctime)s %(levelname)s %(name)s [process {rank}]: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None and not os.path.isdir(os.path.dirname(self.baseFilename)):
            return
        super().emit(record)


# `googlenet detect train`'s record of its region set and proposals, written before the training: what
# marks its run folders (`is_detection_run`).
DETECTION_SETUP = "detection-setup.json"
# What `googlenet detect train` prepares in its run folder before the training starts there.
PREPARED_ENTRIES = frozenset({"regions", DETECTION_SETUP})
# Every file (and tensorboard/) a run writes in its folder; one that is a symbolic link is copied
# before the run writes (`RunFolder._copy_linked_files`).
RUN_FILES = frozenset({
    "config.yaml", "metrics.csv", "tensorboard", "loss.png", "top1.png", "lr.png", "train.log", "last.pt",
    "final.pt", "results.json", SKIPPED_FILES, "checkpoints.json", "grad_norms.csv", "grad_norms.json",
    "grad_split.csv", "grad_split.png", "ensemble.json", "detection.json",
})  # fmt: skip
RUN_FILE_PATTERNS = ("detections-*.csv",)  # `detect train`'s detections, one per member and the ensemble


def check_new_run_folder(folder: Path) -> None:
    """A new run starts only in a new or empty folder, or in one a run left before its first checkpoint
    (its config.yaml, with metrics or plots of a first epoch perhaps: nothing to resume from): never over
    a run (its last.pt, or a finished run's final.pt and results.json, which users keep after deleting
    last.pt), an ensemble, or a folder of other files. One-line `ConfigError`."""
    if not folder.is_dir():
        return
    if (folder / "last.pt").exists():
        raise ConfigError(
            f"{folder} already holds a run (last.pt); pass --resume {shell_path(folder)} to continue or pick another --output-dir"
        )
    if (folder / "ensemble.json").exists() or any(folder.glob("member-*")):
        raise ConfigError(
            f"{folder} holds an ensemble; pass --resume {shell_path(folder)} to continue it or pick another --output-dir"
        )
    for name in ("final.pt", "results.json"):
        if (folder / name).exists():
            raise ConfigError(f"{folder} holds a finished run ({name}); pick another --output-dir")
    if _written_by_train(folder / "config.yaml"):
        return  # a run that stopped before its first checkpoint
    others = _not_ours(folder)
    if others:
        raise ConfigError(
            f"{folder} holds other files ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}); "
            "give a new or empty --output-dir"
        )


def check_resume_folder(folder: Path, checkpoint: Path) -> None:
    """A resume writes the run's files beside `checkpoint`: only into a run's folder (its config.yaml,
    which train writes before anything it resumes from), or into one holding nothing but the
    checkpoint (a last.pt moved into a folder of its own). A last.pt saved among other files (a
    downloads folder, say) is refused: results.json, config.yaml, metrics.csv, train.log and the plots
    would replace or append to files of the same names there. One-line `ConfigError`."""
    if _written_by_train(folder / "config.yaml"):
        return
    others = [name for name in _not_ours(folder) if name not in (checkpoint.name, "checkpoints.json")]
    if others:
        raise ConfigError(
            f"{checkpoint}: not in a run folder (no config.yaml written by googlenet train beside it), and "
            f"{folder} holds other files ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}) that "
            "the run would write over; move it into a folder of its own to resume it there"
        )


def _not_ours(folder: Path) -> list[str]:
    """The names in `folder` (sorted) that no run wrote while setting up before its config.yaml: its
    lock, the skipped-files list, its own train.log (a data error stops a run there), `detect train`'s
    complete region set and its record; and what a write killed there left (`.NAME.XXXX.tmp`)."""
    setup = RunFolder.SETUP_ENTRIES | PREPARED_ENTRIES
    return sorted(
        p.name
        for p in folder.iterdir()
        if not _set_up_by_a_run(p) and not leftover_of(p.name, setup.__contains__)
    )


def _set_up_by_a_run(entry: Path) -> bool:
    if entry.is_symlink():  # a run writes none; writing through one would change the file it names
        return False
    name = entry.name
    if name in (LOCK_FILE, SKIPPED_FILES):
        return entry.is_file()
    if name == "train.log":
        return _our_log(entry)
    if name == "regions":  # `build_region_set` renames it into place complete, its manifest inside
        return (entry / "manifest.json").is_file()
    if name == DETECTION_SETUP:
        try:
            setup = json_loads(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # json_loads: nesting too deep is a ValueError too
            return False
        return isinstance(setup, dict) and {"annotations", "proposals", "train_set"} <= setup.keys()
    return False  # config.yaml not written by train, tensorboard/ (written after config.yaml), other files


_LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}(?:[+-]\d{4})? [A-Z]+ googlenet"
)  # offset since 2026-12-07


def _our_log(path: Path) -> bool:
    """Whether `path` is empty or starts as `RunFolder.attach_log` writes a line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline(400)
    except OSError:
        return False
    return not first or bool(_LOG_LINE.match(first))


def _written_by_train(path: Path) -> bool:
    """Whether `path` is a config.yaml that `googlenet train` wrote (its header), not the user's own."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(64).startswith("# googlenet train:")
    except (OSError, UnicodeDecodeError):
        return False


def check_before_locking(folder: Path, *, first: bool, new: bool) -> None:
    """The checks a folder gets before it is locked (locking makes its .lock file, so a folder refused
    here is left as it was): a run still going there is named as such (by the first process only: the
    others would find the lock it takes next held), and a new run's folder must be one it may start in
    (`check_new_run_folder`; every process looks, so that none waits for one that has stopped)."""
    if not folder.is_dir():
        return
    if first:
        refuse_if_in_use(folder)
    if new:
        check_new_run_folder(folder)


def refuse_if_in_use(folder: Path) -> None:
    """`ConfigError` naming the holder when a training process holds `folder`'s lock; nothing is
    written (the lock is tried on the file as it is, and let go at once). Before the checks that run
    before a folder is locked, so that a run still going is named as such, not as a finished one."""
    if fcntl is None:
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # none yet, a link (lock_folder replaces it), or unreadable: lock_folder says
        return
    with os.fdopen(fd, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(folder, handle) from None
        except OSError:
            return


def _in_use(folder: Path, lock: IO[bytes]) -> ConfigError:
    """The refusal of a folder whose lock another process holds, naming the holder its lock file names."""
    lock.seek(0)
    holder = lock.read(200).decode("utf-8", "replace").strip()
    return ConfigError(
        f"{folder}: in use by another googlenet process ({holder or 'unknown'}); "
        "wait for it to end or give another --output-dir"
    )


def lock_folder(folder: Path, command: str = "train") -> IO[bytes] | None:
    """Take the exclusive lock on `folder`/.lock that a training run holds until it ends; the open file.
    (`googlenet ablate` takes it on its study folder, `evaluate --table3` on its output folder: `command`
    is named in the lock file, and so in the refusal another process gets.)

    Two processes training into one folder (the same --output-dir twice, or --resume while the run is
    still going) would interleave their checkpoints and metrics; the second is refused with a one-line
    `ConfigError` naming the holder. The kernel drops a flock when its process ends, however it ends, so
    a killed run never leaves a stale lock. The file itself stays: removing it would race with the next
    process opening it. None where locks are unsupported (Windows, a file system without flock).
    """
    if fcntl is None:
        return None
    path = folder / LOCK_FILE
    if path.is_symlink():  # writing the holder's name through it would overwrite the file it names; a
        try:  # lock file is never anyone's data (a run branched with `cp -rs` links it): its own one
            path.unlink()
        except OSError as exc:
            raise ConfigError(
                f"{path}: a symbolic link, not a run's lock file ({exc.strerror or exc})"
            ) from None
    try:
        # O_APPEND: Python's append mode seeks to the end only on opening, so after truncate(0) the
        # holder's name went to the old end, behind a hole of NUL bytes, growing at every reuse
        flags = (
            os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        )
        fd = os.open(path, flags, 0o666)
        handle = os.fdopen(fd, "a+b")  # held open until RunFolder.close
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot write in the run folder ({exc.strerror or exc})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        refusal = _in_use(folder, handle)
        handle.close()
        raise refusal from None
    except OSError:  # ENOLCK and the like: a network file system without locks; train unguarded
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}: googlenet {command}\n".encode())
    handle.flush()
    return handle


@contextlib.contextmanager
def holding(folder: Path, command: str) -> Iterator[None]:
    """`folder` made if need be and locked (`lock_folder`) for the block: a second `command` writing
    there at the same time is refused, never interleaved. A folder made here that the block leaves
    holding only the lock file (it failed first) is removed."""
    made = [parent for parent in (folder, *folder.parents) if not parent.exists()]  # innermost first
    folder.mkdir(parents=True, exist_ok=True)
    lock = lock_folder(folder, command)
    try:
        yield
    except BaseException:
        if made and {p.name for p in folder.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(folder, ignore_errors=True)
            for parent in made[1:]:  # the folders made above it, as they were left empty
                with contextlib.suppress(OSError):
                    parent.rmdir()
        raise
    finally:
        if lock is not None:
            lock.close()


def write_ensemble(path: Path, members: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]) -> None:
    """ensemble.json: the members (folder, final checkpoint, sampling settings, metrics)."""
    write_json(path / "ensemble.json", {**extra, "members": list(members)})


def finished_results(folder: Path) -> dict[str, Any] | None:
    """A run's results when it completed (its results.json says so and its final.pt is there), else None."""
    done = folder / "results.json"
    if not (done.is_file() and (folder / "final.pt").is_file()):
        return None
    try:
        previous = json_loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable: not a finished run's, so the run is finished again
    return previous if isinstance(previous, dict) and previous.get("status") == "completed" else None


def is_detection_run(folder: Path) -> bool:
    """Whether `folder` was made by `googlenet detect train` (its detection-setup.json, which that command
    writes before training), or is a member (`member-N`) of a detect train ensemble. Only a member's
    parent counts: a classification run kept inside a detect run's folder is a classification run."""
    if (folder / DETECTION_SETUP).is_file():
        return True
    member = folder.name.startswith("member-") and folder.name[len("member-") :].isdigit()
    return member and (folder.parent / DETECTION_SETUP).is_file()
