"""`googlenet ablate`: train the recipe in full and without each ingredient over seeds; tables and plots.

    googlenet ablate --output-dir runs/ablation --seeds 0 1 2 --epochs 8 -P 1
    googlenet ablate --data-path DIR --arms full no-aux bn --set model.input_size=64 ...
    googlenet ablate --output-dir runs/ablation --report-only      # tables from the runs there

Rerunning the same command continues the study: finished runs are reused, interrupted ones resumed;
a run trained with other settings than the command gives it is refused (`check_existing`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from googlenet.ablate.stats import format_markdown
from googlenet.console import setup_console, stderr_is_tty
from googlenet.errors import ConfigError
from googlenet.io import json_text

if TYPE_CHECKING:
    from googlenet.ablate.study import StudyPlan


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet ablate`'s flags."""
    from googlenet.ablate.study import ARMS

    arms = "; ".join(f"{a.name}: {a.description}" for a in ARMS)
    parser = subparsers.add_parser(
        "ablate",
        help="ablation study: each ingredient removed, over seeds, with 95%% CIs and paired t-tests",
        description=(
            "Train the recipe once in full and once per arm (each removing or replacing one ingredient) for "
            "every seed at the same budget, then evaluate section 7's test-time crops and ensembles, and "
            f"report each effect with a 95% CI and a paired t-test. Arms: {arms}."
        ),
    )
    g = parser.add_argument_group("study")
    g.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="study folder (runs/ inside)")
    g.add_argument("--arms", nargs="+", metavar="ARM", help="arms to run (default: all; 'full' is required)")
    g.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S", help="seeds (default 0 1 2)"
    )
    g.add_argument("--epochs", type=int,
                   help="epochs per run, the same for every arm (default: train's, 30 on the built-in data "
                        "and 250, the reference solver's, with --data-path: give it)")  # fmt: skip
    g.add_argument("--data-path", metavar="DIR", help="image folder with train/ and val/ (default: built-in)")
    g.add_argument("--config", metavar="FILE", help="YAML config applied to every arm (as for train)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every arm, e.g. --set data.builtin_train_per_class=40")  # fmt: skip
    g.add_argument("--grad-norms-every", type=int, default=10, metavar="N",
                   help="record per-layer gradient norms every N steps in every run (default 10; 0: off)")  # fmt: skip
    g.add_argument("--no-test-time", dest="test_time", action="store_false",
                   help="skip the 10/144-crop and ensemble evaluation")  # fmt: skip
    g.add_argument("--test-limit", type=int, metavar="N",
                   help="evaluate the test-time arms on N validation images, evenly spaced (default: all)")  # fmt: skip
    g = parser.add_argument_group("execution")
    g.add_argument("-P", "--parallel", type=int, default=1, metavar="N", help="runs at once (default 1)")
    g.add_argument("--torchrun", type=int, default=0, metavar="NPROC",
                   help="run each training under torchrun with NPROC processes (default: a plain process)")  # fmt: skip
    g.add_argument("--report-only", action="store_true",
                   help="train nothing: the tables from finished runs (the test-time arms are still evaluated "
                        "from their final.pt files, minutes; --no-test-time skips them)")  # fmt: skip
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar over the study's epochs (default: when stderr is a terminal)")  # fmt: skip
    g.add_argument("--json", action="store_true", help="print the summary rows as JSON")
    parser.set_defaults(func=run)


def build_plan(args: argparse.Namespace) -> Any:
    """The checked `StudyPlan` of the flags, `--config`, `--data-path`, `--epochs` and `--set` merged into the
    overrides every arm shares.

    `ConfigError` for a missing data folder, a negative `--grad-norms-every`, a `--test-limit` below 1, a key
    given both by `--set` and by its own flag, or a key the study sets per run (`run.seed`, `run.output_dir`,
    `run.ensemble`).
    """
    from googlenet.ablate.study import ARM_NAMES, StudyPlan
    from googlenet.train.config import load_yaml, parse_set

    base: dict[str, Any] = load_yaml(args.config) if args.config else {}
    if args.data_path:
        if not Path(args.data_path).expanduser().is_dir():
            raise ConfigError(f"{args.data_path}: no such data folder (--data-path)")
        base["data.data_path"] = str(Path(args.data_path).expanduser().resolve())
    if args.epochs is not None:
        base["run.epochs"] = args.epochs
    if args.grad_norms_every < 0:
        raise ConfigError(f"--grad-norms-every must be >= 0, got {args.grad_norms_every}")
    base["run.grad_norms_every"] = args.grad_norms_every
    if args.test_limit is not None and args.test_limit < 1:
        raise ConfigError(f"--test-limit must be at least 1, got {args.test_limit}")
    if args.test_limit is not None and not args.test_time:
        raise ConfigError("--test-limit does not apply: --no-test-time skips the test-time arms")
    if args.report_only and (args.parallel != 1 or args.torchrun != 0):
        raise ConfigError("--parallel and --torchrun do not apply: --report-only trains nothing")
    settings = parse_set(args.set)
    for key, flag, given in (
        ("run.epochs", "--epochs", args.epochs),
        ("data.data_path", "--data-path", args.data_path),
    ):
        if key in settings and given is not None:
            raise ConfigError(f"--set {key}=... and {flag} both set {key}; give one")
    base.update(settings)
    for key in ("run.stop_after_steps", "run.test_only"):  # a study compares finished runs
        if base.get(key) not in (None, False, 0):
            raise ConfigError(f"{key} does not apply to a study: each run trains its whole budget; drop it")
    for key in ("run.seed", "run.output_dir", "run.ensemble"):
        if key in base:
            raise ConfigError(f"{key} is set by the study for each run; drop it")
    plan = StudyPlan(
        output_dir=Path(args.output_dir), arms=tuple(args.arms or ARM_NAMES), seeds=tuple(args.seeds),
        base=base, parallel=args.parallel, torchrun=args.torchrun, test_time=args.test_time,
        test_limit=args.test_limit,
    )  # fmt: skip
    plan.check()
    return plan


def study_title(base: Mapping[str, Any], seeds: int) -> str:
    """A study's title (its tables and plots): seeds, data, and the variant and epochs where the call set
    them, so that two studies of one data set are told apart."""
    title = f"ablation: {seeds} seed(s), " + (
        f"data {base['data.data_path']}" if "data.data_path" in base else "built-in data"
    )
    for key, say in (("model.variant", "variant {}"), ("run.epochs", "epochs {}")):
        if key in base:
            title += ", " + say.format(base[key])
    return title


def run(args: argparse.Namespace) -> int:
    """Run `googlenet ablate` from parsed flags: train the runs not yet finished (none with `--report-only`),
    then write and print the tables; the exit code, 1 when a run did not complete."""
    from googlenet.ablate.study import check_existing, completed, read_results
    from googlenet.train.runs import holding, refuse_if_in_use

    def seeds_done() -> list[int]:
        return [s for s in plan.seeds if any(completed(plan.run_dir(arm, s)) for arm in plan.arms)]

    setup_console()
    plan = build_plan(args)
    if plan.output_dir.is_dir():  # a call still going there is named as such, before its half-made state
        refuse_if_in_use(plan.output_dir)
    check_existing(plan)
    kept_without_model = [
        plan.run_dir(arm, seed) for arm in plan.arms for seed in plan.seeds
        if (read_results(plan.run_dir(arm, seed)) or {}).get("status") == "completed"
        and not (plan.run_dir(arm, seed) / "final.pt").is_file()
    ]  # fmt: skip
    if kept_without_model:  # a saved copy without its checkpoints: training there again is refused
        raise ConfigError(
            f"{kept_without_model[0]}: finished (results.json) but its final.pt is not there"
            f"{f' (nor {len(kept_without_model) - 1} more runs)' if len(kept_without_model) > 1 else ''}; "
            "the study can neither use nor retrain it: restore the checkpoints or give another --output-dir "
            "(the saved tables are ablation.md, .csv and .json)"
        )
    if args.report_only and not seeds_done():
        raise ConfigError(
            f"--output-dir {plan.output_dir}: no finished run of this study to report "
            "(run it first, without --report-only)"
        )
    with holding(plan.output_dir, "ablate"):  # locked to the end: a second call here is refused
        return _run_study(args, plan, seeds_done)


def _run_study(args: argparse.Namespace, plan: StudyPlan, seeds_done: Callable[[], list[int]]) -> int:
    """`run` once the study folder is locked: train, then write and print the tables."""
    from googlenet.ablate.results import write_study
    from googlenet.ablate.study import run_training

    with (plan.output_dir / "command.txt").open("a", encoding="utf-8") as handle:  # every call, in order
        handle.write(shlex.join(["googlenet", *sys.argv[1:]]) + "\n")  # quoted: it can be run again
    progress = args.progress if args.progress is not None else stderr_is_tty()
    plan.progress = progress
    failed = 0
    if not args.report_only:
        try:
            outcomes = run_training(plan, progress=progress)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runs saved last.pt and stopped
            print(f"the study in {plan.output_dir} stopped: its finished runs are kept and the others saved "
                  "last.pt; run the same command again to continue it", file=sys.stderr)  # fmt: skip
            raise
        failed = sum(1 for o in outcomes if o["status"] not in ("completed", "reused"))
    done = seeds_done()
    missing = [s for s in plan.seeds if s not in done]
    if missing and args.report_only:
        print(f"googlenet ablate: warning: seed(s) {', '.join(map(str, missing))} have no finished run; "
              "the tables leave them out", file=sys.stderr)  # fmt: skip
    if not done and failed:  # empty tables say nothing, and would replace an earlier call's
        print(f"googlenet ablate: no seed has a finished run, so no tables were written; {failed} run(s) did not "
              "complete: fix what their error says (above), then rerun the command", file=sys.stderr)  # fmt: skip
        return 1
    title = study_title(plan.base, len(done))
    summary = write_study(plan, title)
    if args.json:
        print(json_text({"rows": summary["rows"], "runs": summary["runs"]}, indent=1))  # NaN as null
    else:
        print(format_markdown(summary["rows"], title))
        print(f"tables, plots and study.json in {plan.output_dir}")
    if failed:
        broken = sum(1 for o in outcomes if o["status"].startswith("failed"))
        advice = (
            "fix what their error says (above), then rerun the command: finished runs are reused"
            if broken
            else "rerun the command to resume them"
        )
        print(f"googlenet ablate: {failed} run(s) did not complete; {advice}", file=sys.stderr)
        return 1
    return 0
