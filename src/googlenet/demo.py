"""`make demo`: the main job end to end on the built-in data, offline, in a few minutes on 2 CPU cores.

`make demo` first prints `googlenet summary` (Table 1 measured on the `paper` network), then runs this:

1. `googlenet train` with no arguments: generates (once, cached) the built-in data set, trains the
   `paper` variant the section-6 way at 64x64 and writes a run folder (config, metrics.csv, plots,
   TensorBoard logs, checkpoints, results.json).
2. `googlenet evaluate` of the final Polyak-averaged model with 1, then 10 crops (section 7).
3. Prints where the plots and results are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from googlenet.cli import main as cli
from googlenet.io import claim_new_path, drop_unused_claims


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Train on the built-in data, evaluate the final model with 1 and 10 crops, list the run's files; the
    exit code (the first failing step's, else 0)."""
    parser = argparse.ArgumentParser(
        prog="python -m googlenet.demo",
        description="The main job end to end on the built-in data (what `make demo` runs): train the paper "
        "variant at 64x64 (4-8 minutes on 2 cores), evaluate it with 1 and 10 crops, list the run's files.",
    )
    parser.add_argument("-o", "--output-dir", metavar="DIR",
                        help="the run folder (default runs/demo-<date>-<time> in the current folder)")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()
    output = Path(args.output_dir or claim_new_path(Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")))
    _step("1/3 googlenet train  (built-in data, paper variant, 64x64)")
    code = cli(["train", "--output-dir", str(output)])
    if code != 0:
        drop_unused_claims()  # the default folder this call claimed, if that command left it unused
        return code
    results = json.loads((output / "results.json").read_text())
    final = output / "final.pt"
    for crops in (1, 10):
        _step(f"{2 if crops == 1 else 3}/3 googlenet evaluate --crops {crops}  (final averaged model)")
        code = cli(["evaluate", "--checkpoint", str(final), "--dataset", "builtin", "--crops", str(crops)])
        if code != 0:
            return code
    _step("where to look")
    for name in sorted(
        p.name for p in output.iterdir() if p.suffix in (".png", ".csv", ".json", ".yaml", ".log")
    ):
        print(f"  {output / name}")
    print(f"  {final}  (the averaged model; last.pt resumes the run)")
    # `make demo` runs .venv's python, whose bin/ is not on PATH; outside a venv there is nothing to source
    if shutil.which("googlenet") is None and sys.prefix != sys.base_prefix:
        print(
            f"  (the commands below run in this environment: source {Path(sys.prefix) / 'bin' / 'activate'})"
        )
    print(f"  googlenet report {output}  (one HTML page: curves, Table 1, confusion, worst mistakes)")
    print(f"  googlenet predict IMAGE --checkpoint {final}")
    print(f"  tensorboard --logdir {output}")
    top1_raw, top1_avg = results.get("val_top1_raw"), results.get("val_top1_avg")
    print(
        f"\ndemo finished in {time.perf_counter() - started:.0f}s: val top-1 raw {top1_raw:.1f}%, "
        f"Polyak-averaged {top1_avg:.1f}% (chance 10%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
