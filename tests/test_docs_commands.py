"""The commands that README.md and docs/ show parse with today's command line.

A renamed or removed flag leaves a doc command that fails at the reader's first try. Every command in a
fenced code block (`googlenet ...`, `python -m googlenet ...`, `torchrun ... -m googlenet ...` and
`.venv/bin/python benchmarks/NAME.py ...`) must parse as it stands, unless it is a synopsis (it leaves
parts out with `...` or words in parentheses, or shows optional parts in brackets). In every command,
synopses and those quoted inline in prose included, the subcommand must exist and each flag must be an
existing one spelled in full. Parsing runs nothing, so the files the commands name need not exist.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from extras import missing
from googlenet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PROGRAM = re.compile(
    r"^(?:\$ )?(?:\.venv/bin/)?(?:googlenet|python -m googlenet|torchrun .*-m googlenet|python benchmarks/\w+\.py)(?:\s|$)"
)
INLINE = re.compile(r"`((?:\.venv/bin/)?googlenet [^`]+)`")


@dataclass(frozen=True)
class Command:
    where: str  # file:line, for the failure message
    words: tuple[str, ...]  # the program first: ("googlenet", ...) or ("benchmarks/NAME.py", ...)
    complete: bool  # a whole command line in a code block, not an excerpt

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


def split(text: str) -> tuple[list[str], bool]:
    """Words up to the first shell operator, optional brackets opened; whether nothing was left out."""
    # "...", "(the same flags)" and "[--limit N]" mark a synopsis, whose words need not parse as they are
    complete = not re.search(r"\.\.\.|\(\w[^)]*\)|\[", text)
    text = re.sub(r"\[([^\]]*)\]", r"\1", text)  # an optional part, shown as such
    text = re.sub(r"<([\w-]+)>", r"\1", text)  # "runs/<run>/final.pt": a placeholder, not a redirection
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word[0] in "|&;<>":
            break
        words.append(word)
    return [w for w in words if w != "..."], complete


def program(words: list[str]) -> list[str]:
    """The words from the program on: `googlenet` or `benchmarks/NAME.py`."""
    if words[0] == "$":
        words = words[1:]
    if (words[0].endswith("python") and words[1] == "-m") or words[0] == "torchrun":
        return ["googlenet", *words[words.index("-m") + 2 :]]
    if words[0].endswith("python"):
        return words[1:]
    return ["googlenet", *words[1:]]


def collect() -> list[Command]:
    commands = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        fenced = False
        index = 0
        while index < len(lines):
            line, start = lines[index].strip(), index + 1
            if line.startswith("```"):
                fenced = not fenced
            elif fenced and PROGRAM.match(line):
                while line.endswith("\\") and index + 1 < len(lines):
                    index += 1
                    line = line[:-1] + " " + lines[index].strip()
                words, complete = split(line)
                commands.append(Command(f"{doc.relative_to(ROOT)}:{start}", tuple(program(words)), complete))
            elif not fenced:
                for match in INLINE.finditer(line):
                    words, _ = split(match.group(1))
                    commands.append(Command(f"{doc.relative_to(ROOT)}:{start}", tuple(program(words)), False))
            index += 1
    return commands


COMMANDS = collect()

# What the optional extras of pyproject.toml install (fast, detect, caffe), by import name.
OPTIONAL_PACKAGES = frozenset({"onnx", "onnxscript", "onnxruntime", "openvino", "cv2", "google"})


def parser_for(words: tuple[str, ...], load_script) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser that reads the command's arguments, and those arguments."""
    if words[0].startswith("benchmarks/"):
        try:
            script = load_script(Path(words[0]).stem)
        except ImportError as error:  # an extra's package: torch before 2.6 cannot have `fast`'s
            if error.name not in OPTIONAL_PACKAGES:
                raise
            missing(f"{words[0]} needs {error.name}, not installed here")  # CI's extras: a failure
        return script.build_parser(), list(words[1:])
    parser, rest = build_parser(), list(words[1:])
    while True:  # walk down the subcommands the words name
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or not rest or rest[0] not in subs[0].choices:
            return parser, rest
        parser, rest = subs[0].choices[rest[0]], rest[1:]


def test_the_docs_show_commands_of_every_kind() -> None:
    kinds = {c.words[0] if c.words[0] == "googlenet" else "benchmarks" for c in COMMANDS if c.complete}
    assert kinds == {"googlenet", "benchmarks"}
    assert len(COMMANDS) > 100, len(COMMANDS)
    assert any(c.words[:2] == ("googlenet", "detect") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_a_documented_command_parses(
    command: Command, load_script, capsys: pytest.CaptureFixture[str]
) -> None:
    parser, arguments = parser_for(command.words, load_script)
    if command.words[0] == "googlenet" and len(command.words) > 1:
        assert parser.prog != "googlenet", f"{command}: no such subcommand"
    if command.complete:
        try:
            parser.parse_args(arguments)
        except SystemExit as exc:
            pytest.fail(f"{command}\n  {capsys.readouterr().err.strip()} (exit {exc.code})")
    # every flag spelled out in full: argparse would take "--naiv" for "--naive", a reader's search would not
    known = set(parser._option_string_actions)
    flags = [w.split("=")[0] for w in arguments if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", w)]
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"{command}: unknown {unknown}"
