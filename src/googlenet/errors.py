"""Exceptions for mistakes a user can fix.

Everything below the CLI raises one of these for bad input (a missing file, an incompatible
checkpoint, a malformed dataset tree, a bad config value). The CLI turns them into a one-line
message and exit code 1 (2 for `UsageError`, as for argparse's own usage errors); anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any


class GoogLeNetError(Exception):
    """Base class: a user-facing error whose message is one line naming the problem."""


class DataError(GoogLeNetError):
    """A dataset tree or an image file cannot be used."""


class CheckpointError(GoogLeNetError):
    """A checkpoint or weight file cannot be read or does not fit the model."""


class ConfigError(GoogLeNetError):
    """A configuration value or combination of options is invalid."""


class UsageError(ConfigError):
    """A command line that is malformed as a whole (what argparse would reject): exit code 2."""


def check_values(*rules: tuple[bool, str, object, str]) -> None:
    """Raise a `ConfigError` for the first `(ok, name, value, rule)` that fails: "NAME: must be RULE, got VALUE".

    `name` is what the user typed (a flag such as "--nms-iou"), so a config that checks several values
    still names the one that is wrong.
    """
    for ok, name, value, rule in rules:
        if not ok:
            raise ConfigError(f"{name}: must be {rule}, got {value}")


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 3, 200, 100, 60
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = _BRIEF.maxfrozenset = 4
BRIEF_CHARACTERS = 240


def brief(value: Any) -> str:
    """`repr(value)` for an error message, cut short (`reprlib`): a value read from a file can be a list
    nested a few levels deep whose elements are shared references (YAML aliases, a pickle's memo), a
    few hundred bytes on disk and gigabytes as a full repr."""
    text = _BRIEF.repr(value)
    return text if len(text) <= BRIEF_CHARACTERS else text[: BRIEF_CHARACTERS - 3] + "..."
