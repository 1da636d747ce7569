"""Print requirements/constraints.txt without torch, torchvision and everything they require, for
`make test-torch`: another torch release brings its own pins (torch 2.6 requires sympy 1.13.1, the
pinned file a later one), and pip would otherwise quietly upgrade torch to satisfy ours.

Run with the Python of the venv that already holds the torch release under test:
    python requirements/constraints_beside_torch.py requirements/constraints.txt > OUT
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_of(name: str) -> list[str]:
    """The names `name`'s installed distribution requires, leaving out those of its extras."""
    try:
        declared = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for line in declared:
        if re.search(r"\bextra\s*==", line):
            continue
        match = NAME.match(line)
        if match:
            names.append(canonical(match.group()))
    return names


def torch_closure() -> set[str]:
    """torch, torchvision and what they require, transitively, as installed here."""
    seen: set[str] = set()
    todo = ["torch", "torchvision"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(requirements_of(name))
    return seen


def main(path: str) -> None:
    skip = torch_closure()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = NAME.match(line)
            if match and canonical(match.group()) in skip:
                continue
            sys.stdout.write(line)


if __name__ == "__main__":
    main(sys.argv[1])
