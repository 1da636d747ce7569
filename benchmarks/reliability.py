"""Reliability figures for docs/reliability.md: kill trials and the bad-input corpus, measured, not asserted.

    python benchmarks/reliability.py kill --trials 20 [--json benchmarks/results/reliability-kill.json]
    python benchmarks/reliability.py inputs

`kill`: N trials of tests/killtrials.py (alternating a kill during a checkpoint write and at a random
moment, up to 2 SIGKILLs per trial), each resumed to the end and compared bit for bit with an
uninterrupted run. `inputs`: the corpus of tests/badinputs.py by kind, decoded once each, with the
count of outcomes other than an RGB image or a one-line DataError (crashes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import badinputs
import killtrials
from conftest import make_tiny_data


def kill(trials: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="kill-trials-"))
    data = make_tiny_data(root)
    span = killtrials.reference_run(data, root / "reference")
    rows = []
    for k in range(trials):
        started = time.perf_counter()
        mode = ("write", "random")[k % 2]
        trial = killtrials.run_trial(data, root / f"trial-{k}", root / "reference", mode, k, span)
        row = {"trial": k, "mode": mode, "kills": trial.kills, "during_write": trial.during_write,
               "checkpoints_checked": trial.checks, "lost": trial.lost, "identical": trial.identical,
               "error": trial.error, "survived": trial.survived, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {
        "trials": trials,
        "survived": sum(r["survived"] for r in rows),
        "kills": sum(r["kills"] for r in rows),
        "kills_during_checkpoint_write": sum(r["during_write"] for r in rows),
        "checkpoints_checked_after_kills": sum(r["checkpoints_checked"] for r in rows),
        "checkpoints_lost": sum(len(r["lost"]) for r in rows),
        "reference_seconds": round(span, 1),
        "rows": rows,
    }


def inputs() -> dict:
    from googlenet.data.decode import load_image
    from googlenet.errors import DataError

    folder = Path(tempfile.mkdtemp(prefix="corpus-"))
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    crashes = []
    for case in badinputs.write_corpus(folder):
        kinds[case.kind] += 1
        try:
            load_image(case.path)
            outcomes["decoded"] += 1
        except DataError:
            outcomes["one-line DataError"] += 1
        except Exception as exc:  # noqa: BLE001 - this is what we count
            crashes.append(f"{case.path}: {type(exc).__name__}: {exc}")
    return {
        "inputs": sum(kinds.values()),
        "by_kind": dict(kinds),
        "outcomes": dict(outcomes),
        "crashes": crashes,
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("kill", "inputs"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--json", metavar="FILE", help="also save the result here")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    result = kill(args.trials) if args.what == "kill" else inputs()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
