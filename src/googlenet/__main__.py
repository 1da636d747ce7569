"""`python -m googlenet` runs the command-line tool."""

from googlenet.cli import run

run()
