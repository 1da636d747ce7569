"""The optional extras (`fast`, `detect`, `caffe`): their tests skip on a user's machine without them
but fail in CI (`GOOGLENET_REQUIRE_EXTRAS=1`, set by .ci/run), so a broken extra is never a quiet skip."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def required() -> bool:
    return os.environ.get("GOOGLENET_REQUIRE_EXTRAS") == "1"


def missing(message: str) -> None:
    """Skip the test for a missing extra, or fail it when the extras are required."""
    if required():
        pytest.fail(f"{message}, but GOOGLENET_REQUIRE_EXTRAS=1 (CI) requires every extra")
    pytest.skip(message, allow_module_level=True)


def require(name: str, reason: str = "") -> ModuleType:
    """`pytest.importorskip`, except that it fails when the extras are required."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        missing(f"could not import {name!r}: {error}" + (f" ({reason})" if reason else ""))
        raise  # not reached: missing() raises
