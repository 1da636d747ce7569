"""Safe file I/O shared by every part of the package: atomic writes and safe checkpoint loading.

A checkpoint is never half-written: we write to a temporary file in the same folder, flush and
fsync it, then `os.replace` it over the target (atomic on POSIX), so a crash or a full disk leaves
the previous file intact. Loading always uses `torch.load(weights_only=True)`, which refuses
pickles that would run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

from googlenet.errors import CheckpointError


def _file_mode() -> int:
    """The mode a plain `open()` would give a new file (0o666 less the umask); mkstemp uses 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it replaces `path` atomically.

    On any exception the temporary file is removed and `path` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
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


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> str:
    """`torch.save` `obj` to `path` atomically; returns the SHA-256 of the bytes written."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    try:
        with atomic_open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with `weights_only=True`; any failure is a one-line `CheckpointError`."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{file}: no such file")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure mode of unpickling is a user error here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{file}: refused: the file contains Python objects that could run code "
                "(only tensors and plain containers are loaded)"
            ) from None
        raise CheckpointError(f"{file}: not a readable checkpoint ({first})") from None
