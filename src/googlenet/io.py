"""Safe file I/O shared by every part of the package: atomic writes and safe checkpoint loading.

A checkpoint is never half-written: we write to a temporary file in the same folder, flush and
fsync it, then `os.replace` it over the target (atomic on POSIX), so a crash or a full disk leaves
the previous file intact. Loading always uses `torch.load(weights_only=True)`, which refuses
pickles that would run code.

A run folder lists the SHA-256 of each checkpoint it wrote in `checkpoints.json` (`record_digest`);
`safe_load` checks a file against that record when there is one, so a checkpoint changed after it
was written is refused. While a checkpoint is being replaced the record also holds the digest(s) of
the file being replaced, so whenever a writer is killed the file on disk matches its record.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import numbers
import os
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from googlenet.errors import CheckpointError

if TYPE_CHECKING:  # torch is imported where a checkpoint is saved or read: report and the CLI's
    import torch  # error paths read JSON and YAML through this module without it

# The digest record of a run folder: {file name: {"sha256", "bytes", "written"[, "previous_sha256"]}}.
DIGESTS_FILE = "checkpoints.json"


def _file_mode() -> int:
    """The mode a plain `open()` would give a new file (0o666 less the umask); mkstemp uses 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fit_name(name: str, limit: int) -> str:
    """`name` cut to at most `limit` bytes as the file system stores it, on a character's edge."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it replaces `path` atomically.

    On any exception the temporary file is removed and `path` is untouched. A write that fails (a full
    disk) is an `OSError` naming `path`, not the temporary file (the system names no file for a failed
    write). A symlink is written through (the file it points to is replaced, the link stays); a
    device, pipe or socket is refused (`OSError`), never replaced by a file. A file replaced keeps its
    permission bits; a new one gets those of a plain `open()`.
    """
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file() and not target.is_dir():
        raise OSError(errno.EINVAL, "not a regular file (a device, pipe or socket)", str(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = fit_name(target.name, 200)  # so that a legal 255-byte name leaves room for the additions
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    try:
        try:  # a file replaced keeps its permissions (a private 0600 report stays private)
            file_mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else _file_mode()
        except OSError:
            file_mode = _file_mode()
        if hasattr(os, "fchmod"):  # Windows has it from Python 3.13 only
            os.fchmod(fd, file_mode)
        else:
            os.chmod(tmp, file_mode)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.errno is not None and exc.filename in (None, tmp):  # the system's, about our file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable.
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_save(
    obj: Any,
    path: str | os.PathLike[str],
    before_replace: Callable[[str, int], None] | None = None,
) -> str:
    """`torch.save` `obj` to `path` atomically; returns the SHA-256 of the bytes written.

    `before_replace(sha256, size)` runs before anything is written (to record the coming digest).
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        if before_replace is not None:
            before_replace(digest, len(data))
        with atomic_open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        if before_replace is not None:
            _forget_unwritten(Path(path))
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
    return digest


def _forget_unwritten(file: Path) -> None:
    """Drop the digest recorded ahead of a first write that failed (a full disk): no entry for no file.

    A file that exists keeps its entry: the pending one still lists the current file's digest.
    """
    index = file.parent / DIGESTS_FILE
    if file.exists() or not index.is_file():
        return
    with contextlib.suppress(CheckpointError, OSError):  # the disk may still be full: best effort
        entries = _read_digests(index)
        if entries.pop(file.name, None) is not None:
            _write_digests(index, entries)


def json_loads(text: str | bytes) -> Any:
    """`json.loads`, where a document nested deeper than the parser's recursion allows (a file of
    thousands of `[`) is a `ValueError`, as any malformed JSON is, not a `RecursionError`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has no NaN); NumPy scalars become Python numbers;
    containers are converted recursively."""
    if isinstance(value, numbers.Integral) and not isinstance(value, int):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, int):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def claim_new_path(stem: str | os.PathLike[str], suffix: str = "", folder: bool = True) -> Path:
    """A default output name made unique: `stem + suffix`, else `stem-2 + suffix`, `stem-3 + suffix`, ...,
    the first that did not exist, created (an empty folder, or an empty file with `folder=False`) so
    that no other process can take it. Two commands started in the same second used to pick the same
    dated name: the second was refused as in use, or wrote over the first's results."""
    base = Path(stem)
    make_folder(base.parent)
    for number in range(1, 10_000):
        path = base.with_name(f"{base.name}{'' if number == 1 else f'-{number}'}{suffix}")
        try:
            if folder:
                path.mkdir()
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        _claimed.add(os.path.abspath(path))
        return path
    raise FileExistsError(errno.EEXIST, "no free name after 9999 tries", str(base))


_claimed: set[str] = set()  # what `claim_new_path` made in this process (absolute paths)
_made_parents: list[str] = []  # folders `make_folder` created above an output (absolute paths)


def make_folder(folder: str | os.PathLike[str]) -> None:
    """`folder.mkdir(parents=True, exist_ok=True)`, noting each folder it creates, so that a command that
    fails leaves none of them behind empty (`drop_unused_claims`): `runs/` of a default name, the `a/b`
    of `-o a/b/c`."""
    path = Path(folder)
    made = [os.path.abspath(p) for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    _made_parents.extend(made)


def claimed_here(path: str | os.PathLike[str]) -> bool:
    """Whether `claim_new_path` made `path` in this process: a folder that is this command's own, as one
    it created itself (removed when the command fails before writing anything of value there)."""
    return os.path.abspath(path) in _claimed


def drop_unused_claims() -> None:
    """Remove what `claim_new_path` made in this process and nothing was written into: a folder holding
    at most a lock file, an empty file. Called when a command fails, so that a failed attempt leaves no
    dated folder behind (a run folder with setup files is `RunFolder.discard_if_unused`'s)."""
    for claimed in sorted(_claimed, reverse=True):
        path = Path(claimed)
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                if {entry.name for entry in path.iterdir()} <= {".lock"}:
                    for entry in path.iterdir():
                        entry.unlink()
                    path.rmdir()
            elif path.is_file() and not path.stat().st_size:
                path.unlink()
        _claimed.discard(claimed)
    for made in sorted(set(_made_parents), key=lambda p: -p.count(os.sep)):  # innermost first
        with contextlib.suppress(OSError):  # only an empty one goes (rmdir)
            os.rmdir(made)
    _made_parents.clear()


def forget_claims() -> None:
    """Count what `claim_new_path` made so far as used (the command that claimed it succeeded)."""
    _claimed.clear()
    _made_parents.clear()


def json_text(value: Any, indent: int | None = 2) -> str:
    """`value` as JSON text that any parser reads: what `json_safe` makes of it, NaN refused (a command's
    `--json` printed NaN, which strict parsers, `JSON.parse` among them, reject); an object JSON has no
    type for (a path) as its text."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False, default=str)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_index(file: Path) -> Path:
    """The `checkpoints.json` beside `file`; something else by that name (a folder, a pipe) is refused
    in one line rather than skipped, which would leave the run's checkpoints unchecked."""
    index = file.parent / DIGESTS_FILE
    if os.path.lexists(index) and not index.is_file():
        raise CheckpointError(
            f"{index}: is not a file, so the checkpoint digests cannot be kept; remove it to go on"
        )
    return index


def _read_digests(index: Path) -> dict[str, Any]:
    try:
        entries = json_loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{index}: cannot read the checkpoint digests ({exc}); restore or delete it to go on"
        ) from None
    if not isinstance(entries, dict):
        raise CheckpointError(f"{index}: not a checkpoint digest record (expected a JSON object)")
    return entries


def record_digest(path: str | os.PathLike[str], sha256: str, size: int, pending: bool = False) -> None:
    """Write `path`'s SHA-256 into the `checkpoints.json` beside it (atomically).

    `pending=True` records a digest before the file is replaced: the digest(s) of the current file
    are kept as "previous_sha256" until the call with `pending=False` after the replacement.
    """
    file = Path(path)
    index = _digest_index(file)
    entries: dict[str, Any] = {}
    if index.is_file():
        with contextlib.suppress(CheckpointError):
            entries = _read_digests(index)
    entry: dict[str, Any] = {
        "sha256": sha256,
        "bytes": size,
        "written": datetime.now().astimezone().isoformat("T", "seconds"),  # with the UTC offset
    }
    if pending:
        old = entries.get(file.name)
        if isinstance(old, dict) and file.exists():
            previous = [old.get("sha256"), *old.get("previous_sha256", [])]
            entry["previous_sha256"] = [
                d for d in dict.fromkeys(previous) if isinstance(d, str) and d != sha256
            ]
    entries[file.name] = entry
    _write_digests(index, entries)


def _write_digests(index: Path, entries: dict[str, Any]) -> None:
    with atomic_open(index, "w") as handle:
        json.dump(entries, handle, indent=2)
        handle.write("\n")


def verify_digest(path: str | os.PathLike[str]) -> bool:
    """Check `path` against the digest its folder's `checkpoints.json` records; False when none is recorded.

    A mismatch is a one-line `CheckpointError`: the file changed after it was written.
    """
    file = Path(path)
    index = _digest_index(file)
    if not index.is_file():
        return False
    entry = _read_digests(index).get(file.name)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        return False
    allowed = {entry["sha256"], *entry.get("previous_sha256", [])}
    actual = sha256_file(file)
    if actual not in allowed:
        raise CheckpointError(
            f"{file}: refused: its SHA-256 {actual[:16]}... differs from the {entry['sha256'][:16]}... "
            f"recorded in {index} (the file changed after it was written)"
        )
    return True


def leftover_of(name: str, ours: Callable[[str], bool]) -> bool:
    """Whether `name` is what `atomic_open` leaves of a file `ours` accepts when the process is killed
    (SIGKILL, power loss) between creating its temporary file and the rename: `.<ours>.<random>.tmp`."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    stem, _, random = name[1:-4].rpartition(".")
    return bool(stem and random) and ours(stem)


def _ours_or_leftover(name: str, ours: Callable[[str], bool]) -> bool:
    return ours(name) or leftover_of(name, ours)


def _refuse_standard_output(flag: str, path: str | os.PathLike[str], kind: str) -> None:
    """`-` as an output that is a file or folder: it made one named "-" (only `benchmark --json -`
    prints, and it does not call the checks with it)."""
    from googlenet.errors import ConfigError

    if str(path) == "-":
        raise ConfigError(f"{flag} -: this output is a {kind}, not standard output; give a {kind} name")


def check_output_folder(
    flag: str, folder: str | os.PathLike[str], ours: Callable[[str], bool], what: str, advice: str
) -> None:
    """Refuse, before any work, an existing output folder holding entries another command or the user
    put there (`ours(name)` false): the command would write among them, or over them where names
    coincide. A new or empty folder, or one holding only `what`'s own entries (and the temporary files
    a killed write of one of them left), passes; the refusal is one `ConfigError` line naming `flag`,
    the first entries and `advice`. (A file at `folder` is each caller's to refuse: their messages say
    what folder they want.)"""
    from googlenet.errors import ConfigError

    _refuse_standard_output(flag, folder, "folder")
    target = Path(folder)
    others = (
        sorted(p.name for p in target.iterdir() if not _ours_or_leftover(p.name, ours))
        if target.is_dir()
        else []
    )
    if others:
        listed = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
        raise ConfigError(f"{flag} {target}: holds other files than an earlier {what}'s ({listed}); {advice}")


def check_output(
    flag: str,
    path: str | os.PathLike[str],
    inputs: dict[str, Any] | None = None,
    replaceable: Callable[[Path], bool] | None = None,
    kind: str = "",
) -> None:
    """Refuse, before any work, an output path that would lose something already written.

    `inputs` maps each input flag to its path(s); writing over one of them is refused, however the
    path is spelled (symlinks and relative paths resolve), and so is writing over a checkpoint that a
    training run lists in the `checkpoints.json` beside it. With `replaceable`, an existing file is
    replaced only when it is empty or an earlier output of the same `kind` (`replaceable(file)` is
    true), so a checkpoint given by mistake as a CSV output survives. A folder, or a place where no file
    can be created (tried with a temporary file), is refused too. Each refusal is one `ConfigError`
    line naming `flag`.
    """
    from googlenet.errors import ConfigError

    _refuse_standard_output(flag, path, "file")
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{flag} {target}: is a folder; give a file name")
    if target.exists() and not target.is_file():
        raise ConfigError(
            f"{flag} {target}: is not a regular file (a device, pipe or socket); give a file name"
        )
    for input_flag, given in (inputs or {}).items():
        for item in [given] if isinstance(given, (str, os.PathLike)) else list(given or []):
            if target.exists() and Path(item).exists() and os.path.samefile(target, item):
                raise ConfigError(f"{flag} {target}: is also {input_flag}; it would be overwritten")
    index = target.parent / DIGESTS_FILE  # a training run's checkpoints belong to the run
    if target.is_file() and index.is_file() and target.name in _read_digests(index):
        raise ConfigError(
            f"{flag} {target}: is a checkpoint of the run in {target.parent} (listed in its {DIGESTS_FILE}); "
            "choose another name"
        )
    if replaceable is not None and target.is_file() and target.stat().st_size and not replaceable(target):
        raise ConfigError(
            f"{flag} {target}: exists and is not {kind or 'an earlier output of this command'}; "
            "choose another name or remove it"
        )
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:  # the one sure test that the file can be written later: write a temporary file there now
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{flag} {target}: cannot write in {parent} ({exc.strerror or exc})") from None


def saved_format(file: str | os.PathLike[str]) -> str | None:
    """The "format" entry of a file torch.save wrote (MultiBox, box regression), else None."""
    try:
        if not looks_like_torch_file(Path(file)):
            return None
        obj = safe_load(file, verify=False)
    except CheckpointError:
        return None
    return obj.get("format") if isinstance(obj, dict) else None


def looks_like_torch_file(file: Path) -> bool:
    """Whether the file starts as torch.save writes: a zip archive, or (legacy) a pickle's PROTO opcode."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read ({exc.strerror or exc})") from None
    return head.startswith(b"PK") or head[:1] == b"\x80"


def _check_archive(file: Path) -> None:
    """`CheckpointError` for the two zip archives torch.load would misreport: a truncated one (torch says
    "Invalid argument" or "failed finding central directory") and a TorchScript module (torch warns, then
    refuses it as code), which is `googlenet export`'s output, not a checkpoint."""
    import zipfile

    with open(file, "rb") as handle:
        if handle.read(2) != b"PK":
            return  # a legacy pickle: torch.load judges it
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        raise CheckpointError(f"{file}: truncated or corrupt (its zip archive is incomplete)") from None
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        raise CheckpointError(
            f"{file}: a TorchScript module (as `googlenet export` writes), not a checkpoint; "
            "give the .pt it was exported from"
        )


def require_file(file: Path) -> None:
    """One-line `CheckpointError` unless `file` is a regular file: missing, or something else (a
    device such as /dev/null, a socket). Callers name a folder their own way first."""
    if not file.is_file():
        raise CheckpointError(f"{file}: " + ("not a regular file" if file.exists() else "no such file"))


def safe_load(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    verify: bool = True,
    allow: Sequence[type] = (),
) -> Any:
    """Load a checkpoint with `weights_only=True`; any failure is a one-line `CheckpointError`.

    With `verify`, a file listed in the `checkpoints.json` beside it must match its recorded SHA-256.
    `allow`: classes the file may hold besides tensors and plain containers (`torch.serialization.
    safe_globals`; torch 2.5 and later), each one that only holds values (`argparse.Namespace`).
    """
    file = Path(path)
    if not file.is_file():
        if file.is_dir():
            raise CheckpointError(
                f"{file}: is a folder; give a checkpoint file (a run's final.pt or last.pt)"
            )
        require_file(file)
    if verify:
        try:
            verify_digest(file)
        except OSError as exc:
            raise CheckpointError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if not looks_like_torch_file(file):
        if file.suffix.lower() == ".onnx":  # an export given back as --checkpoint: say what to give
            raise CheckpointError(
                f"{file}: an ONNX file, not a PyTorch checkpoint; for an export of `googlenet export` give "
                "the .pt it was exported from (the ONNX zoo's GoogLeNet is read by --weights)"
            )
        raise CheckpointError(
            f"{file}: not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle)"
        )
    _check_archive(file)
    import torch

    try:
        with warnings.catch_warnings():  # torch's multi-line note on a pickle protocol: the error says it
            warnings.simplefilter("ignore", UserWarning)
            allowed = getattr(torch.serialization, "safe_globals", None)
            with allowed(list(allow)) if allow and allowed else contextlib.nullcontext():
                return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure mode of unpickling is a user error here
        text = str(exc)
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        if "GLOBAL" in text or "Unsupported global" in text:  # a callable by name: what runs code
            raise CheckpointError(
                f"{file}: refused: the file contains Python objects that could run code "
                "(only tensors and plain containers are loaded)"
            ) from None
        if "weights_only" in text:  # torch's weights-only unpickler: its reason is one line of the text
            reasons = [line.strip() for line in text.splitlines() if line.strip().startswith("Unsupported")]
            reason = reasons[0] if reasons else "not tensors and plain containers"
            raise CheckpointError(  # maybe harmless, maybe not: torch stops before it could tell
                f"{file}: refused: not a checkpoint torch.save wrote ({reason}; a plain pickle?), and only "
                "tensors and plain containers are loaded"
            ) from None
        raise CheckpointError(f"{file}: not a readable checkpoint ({first})") from None
