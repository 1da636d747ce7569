"""An ablation study: the recipe in full and with each ingredient removed or replaced, over seeds.

Every arm is the training engine's own config (`TrainConfig`) with a few dotted keys overridden
(`ARMS`); each (arm, seed) run is `googlenet train` in its own subprocess (optionally under torchrun),
with its run folder at `<out>/runs/<arm>/seed-<s>/`. A run whose results.json says "completed" is
reused; one with a last.pt is resumed (`--resume`), so an interrupted study continues where it
stopped. Up to `parallel` runs go at once, each with cpus / parallel torch threads.

The test-time arms (section 7) need no training: the full recipe's final.pt of each seed is
evaluated through the evaluate package's protocol (`evaluate_views`) with 1, 10 and 144 crops, and
the ensemble of the runs of that seed that differ from it only in sampling (same initial weights,
as in section 7: full, no-photometric, no-random-interp, fixed-crop) with 1 and 10 crops.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from googlenet.errors import ConfigError
from googlenet.io import atomic_open, check_output_folder, json_loads
from googlenet.train.config import builtin_settings, flatten, load_yaml, resolve, yaml_load
from googlenet.train.distributed import cores

logger = logging.getLogger("googlenet.ablate")

REFERENCE = "full"


@dataclass(frozen=True)
class Arm:
    """One variation of the recipe: config overrides and what they change."""

    name: str
    overrides: Mapping[str, Any]
    description: str
    # An arm that needs no training of its own: it reads the raw (not averaged) final weights' errors
    # from this arm's runs. Only `no-polyak`: averaging draws no random numbers and changes no step
    # (tests/test_ablate.py trains both ways and compares the weights), so its training is the full
    # recipe's, and reading it there costs nothing and pairs each seed with the very same trajectory.
    raw_of: str | None = None


ARMS: tuple[Arm, ...] = (
    Arm("full", {}, "the recipe as configured (section 5-6: aux heads 0.3, Polyak, section 6 sampling)"),
    Arm("no-aux", {"model.aux_logits": False}, "no auxiliary classifiers (section 5)"),
    Arm("aux-weight-1", {"optim.aux_weight": 1.0}, "auxiliary losses weighted 1.0 instead of 0.3"),
    Arm(
        "no-polyak",
        {"average.method": "none"},
        "the raw final weights instead of the Polyak average (read from the full runs, no training)",
        raw_of="full",
    ),
    Arm(
        "no-photometric",
        {"augment.photometric": False, "augment.lighting": 0.0},
        "no photometric distortions (colour jitter and PCA lighting)",
    ),
    Arm("no-random-interp", {"augment.random_interpolation": False}, "bilinear resizing only"),
    Arm(
        "fixed-crop",
        {"augment.random_crop": False},
        "no scale/aspect sampling: resize, then a random fixed-size square crop",
    ),
    Arm("no-lrn", {"model.lrn": False}, "no LRN layers in the stem (Figure 3)"),
    Arm("no-dropout", {"model.dropout": 0.0, "model.aux_dropout": 0.0}, "no dropout (40% main, 70% aux)"),
    Arm("bn", {"model.variant": "bn"}, "BatchNorm after every convolution (and no LRN): the bn variant"),
)
ARM_NAMES: tuple[str, ...] = tuple(a.name for a in ARMS)

# Section 7: ensemble members share the initialisation and differ only in sampling.
ENSEMBLE_ARMS: tuple[str, ...] = ("full", "no-photometric", "no-random-interp", "fixed-crop")
TEST_TIME: dict[str, str] = {
    "crops-10": "10 crops (4 corners + centre, mirrored) instead of 1",
    "crops-144": "144 crops (section 7: 4 scales x 3 squares x 6 crops x 2 mirrors) instead of 1",
    "ensemble-1crop": "softmax averaged over the seed's sampling-only arms (section 7 ensemble), 1 crop",
    "ensemble-10crops": "the same ensemble with 10 crops each",
}
TEST_BASE = "full-1crop"


@dataclass
class StudyPlan:
    """What a study runs: arms x seeds at one budget (`base` overrides applied to every arm)."""

    output_dir: Path
    arms: Sequence[str] = ARM_NAMES
    seeds: Sequence[int] = (0, 1, 2)
    base: Mapping[str, Any] = field(default_factory=dict)
    parallel: int = 1
    torchrun: int = 0  # processes per run under torchrun; 0: a plain process
    test_time: bool = True
    eval_batch: int = 144
    test_limit: int | None = None  # test-time arms on this many validation images (evenly spaced)
    progress: bool = False  # progress bars for the test-time evaluation

    def arm(self, name: str) -> Arm:
        return next(a for a in ARMS if a.name == name)

    def config_of(self, arm: str, seed: int) -> dict[str, Any]:
        """The dotted overrides of one run (base, then the arm's, then the seed)."""
        return {**self.base, **self.arm(arm).overrides, "run.seed": seed}

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.output_dir / "runs" / arm / f"seed-{seed}"

    def check(self) -> None:
        """Refuse, with a `ConfigError`, a plan that cannot run: an unknown arm, no `full` arm, seeds that are
        not distinct non-negative integers, `parallel` < 1 or `torchrun` < 0, or an arm whose config does not
        resolve."""
        unknown = [a for a in self.arms if a not in ARM_NAMES]
        if unknown:
            raise ConfigError(f"unknown arm(s) {', '.join(unknown)}; arms: {', '.join(ARM_NAMES)}")
        repeated = sorted({a for a in self.arms if list(self.arms).count(a) > 1})
        if repeated:
            raise ConfigError(f"arm(s) {', '.join(repeated)} given twice; each arm runs once per seed")
        if REFERENCE not in self.arms:
            raise ConfigError(
                f"the arms must include {REFERENCE!r}, the reference every other is compared with"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.parallel < 1 or self.torchrun < 0:
            raise ConfigError("--parallel must be >= 1 and --torchrun >= 0")
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ConfigError(f"--output-dir {self.output_dir}: is a file, not a study folder")
        configs = {
            arm: resolve({}, self.config_of(arm, self.seeds[0])) for arm in self.arms
        }  # before any run
        reference = _effective(configs[REFERENCE])
        same = [arm for arm in self.arms if arm != REFERENCE and _effective(configs[arm]) == reference]
        if same:  # e.g. `bn` or `no-lrn` on the bn variant, `no-polyak` with averaging off
            raise ConfigError(
                f"arm(s) {', '.join(same)} change nothing in this recipe (the same run as {REFERENCE!r}); "
                "drop them with --arms"
            )
        for arm, config in configs.items():  # each run would fail alone on it
            if self.torchrun > 1 and config.optim.batch_size % self.torchrun:
                raise ConfigError(
                    f"batch size {config.optim.batch_size} (arm {arm}) is not divisible by --torchrun "
                    f"{self.torchrun} processes"
                )
        data = configs[REFERENCE].data
        if data.dataset == "folder":  # the data must be usable before a run starts (each would fail alone)
            from googlenet.data.datasets import load_image_folder

            load_image_folder(str(data.data_path), None, None)


def _effective(config: Any) -> dict[str, Any]:
    """A resolved config with the model's "None: the variant's own" settings filled in, so two arms that
    train the same network compare equal."""
    from googlenet.model.googlenet import VARIANTS
    from googlenet.train.config import flatten

    flat = flatten(config.as_dict())
    variant = VARIANTS[config.model.variant]
    for key in ("lrn", "dropout", "aux_dropout", "init"):
        if flat[f"model.{key}"] is None:
            flat[f"model.{key}"] = getattr(variant, key)
    if flat["average.method"] == "none":  # nothing averaged: the averaging settings do nothing
        flat = {k: v for k, v in flat.items() if not k.startswith("average.")}
    if not flat["model.aux_logits"]:  # no auxiliary heads: their loss weight and dropout do nothing
        flat = {k: v for k, v in flat.items() if k not in ("optim.aux_weight", "model.aux_dropout")}
    if not flat["augment.photometric"]:  # no photometric distortion: its jitter and lighting do nothing
        flat = {k: v for k, v in flat.items()
                if k not in ("augment.brightness", "augment.contrast", "augment.saturation", "augment.lighting")}  # fmt: skip
    return flat


def _nested(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    return nested


def read_results(folder: Path) -> dict[str, Any] | None:
    """A run folder's results.json; None when it is missing or unreadable."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        return json_loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def completed(folder: Path) -> bool:
    """Whether the run in `folder` finished: its results.json says "completed" and its final.pt exists."""
    results = read_results(folder)
    return bool(results and results.get("status") == "completed" and (folder / "final.pt").is_file())


# What a study folder holds (`run` and `googlenet.ablate.results`; report.html is `googlenet report`'s):
# an existing --output-dir with anything else is some other folder, never written into.
STUDY_FILES = frozenset({
    "runs", "test-time", "command.txt", "study.json", "ablation.csv", "ablation.json", "ablation.md",
    "ablation.png", "gradflow.png", "gradflow.csv", "gradflow-split.png", "gradflow-split.csv", "report.html",
    ".lock",  # held while a call runs: a second call on the same folder is refused
})  # fmt: skip


def check_existing(plan: StudyPlan) -> None:
    """`ConfigError` when --output-dir is a folder holding other files than a study's (a training
    run, a data set: the study would write its runs/ and tables among them), or when a run already in
    the study folder (finished or interrupted) was trained with other settings than this call would
    give it: reusing or resuming it would mix budgets or recipes in one table.

    The settings compared are the resolved configs of the overrides the earlier call wrote beside the run
    (`<arm>/seed-<s>.yaml`) and of this call's; the first three differences are named."""
    check_output_folder(  # a file there: refused by StudyPlan.check
        "--output-dir", plan.output_dir, STUDY_FILES.__contains__, "study",
        "give a new folder, or the folder of the study to continue",
    )  # fmt: skip
    for seed in plan.seeds:
        for arm in plan.arms:
            folder = plan.run_dir(arm, seed)
            written = folder.parent / f"seed-{seed}.yaml"
            if plan.arm(arm).raw_of is not None or not written.is_file():
                continue
            if not (completed(folder) or (folder / "last.pt").is_file()):
                continue
            try:
                data = yaml_load(written.read_text(encoding="utf-8")) or {}
                before = resolve({}, flatten(data, str(written)), str(written)).as_dict()
                # The precision the built-in preset picks depends on the machine (bf16 where the CPU
                # has it, since 2026-12-07), which the overrides above do not record: the run's own
                # config.yaml says what it trained in.
                recorded = load_yaml(folder / "config.yaml") if (folder / "config.yaml").is_file() else {}
                for key in ("amp", "amp_dtype"):
                    if f"run.{key}" in recorded:
                        before["run"][key] = recorded[f"run.{key}"]
            except (OSError, yaml.YAMLError, ConfigError) as exc:
                raise ConfigError(f"{written}: cannot read the settings of the run there ({exc})") from None
            now = resolve({}, plan.config_of(arm, seed)).as_dict()
            differences = [
                f"{section}.{key}={before[section].get(key)!r} (this call: {value!r})"
                for section, values in now.items()
                for key, value in values.items()
                if before.get(section, {}).get(key) != value
            ]
            if differences:
                raise ConfigError(
                    f"{folder}: trained with {'; '.join(differences[:3])}; give the study's own settings "
                    "again, or a new --output-dir"
                )


def train_command(plan: StudyPlan, arm: str, seed: int) -> list[str]:
    """The command line of one run: `googlenet train --config <run>.yaml --output-dir <run>` (or --resume)."""
    folder = plan.run_dir(arm, seed)
    config_file = folder.parent / f"seed-{seed}.yaml"
    prefix = [sys.executable, "-m", "googlenet", "train"]
    if plan.torchrun > 0:  # torchrun's launcher, through the command (its log: one line on a failure)
        prefix.append(f"--nproc-per-node={plan.torchrun}")
    where = ["--resume", str(folder)] if (folder / "last.pt").is_file() else ["--output-dir", str(folder)]
    return [*prefix, "--config", str(config_file), *where, "--no-progress", "--json"]


def _epochs_done(folder: Path) -> int:
    path = folder / "metrics.csv"
    try:
        return max(0, len(path.read_text(encoding="utf-8").splitlines()) - 1)
    except OSError:
        return 0


class _Children:
    """The training processes running now, so that an interrupted study stops them instead of leaving
    them to train on (or to outlive it, orphaned, after a SIGTERM)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def interrupt(self) -> None:
        """SIGTERM to every run: each finishes its step, saves last.pt and exits; no new run starts.

        SIGTERM, not SIGINT: after a terminal's Ctrl-C the runs have had a SIGINT already, and a second
        one would stop them at once, without their last.pt."""
        with self.lock:
            self.stopping = True
            for child in self.live:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)


_CHILDREN = _Children()


class _SetupFailures:
    """The study's runs that failed before their first step (no last.pt), by error line. When two arms
    fail with the same line and no run has trained, the error is the study's (data too small for the
    batch, a missing folder), not an arm's: the runs not yet started are left out, said once, instead
    of each starting up to fail alike (30 start-ups for one data error on 10 arms x 3 seeds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self, active: bool = False) -> None:
        """Forget the failures; `active`: count them (during `run_training`, not for a lone `run_one`)."""
        self.active = active
        self.arms: dict[str, set[str]] = {}
        self.trained = False
        self.abandoned: str | None = None

    def record(self, plan: StudyPlan, arm: str, error: str | None, trained: bool) -> None:
        with self.lock:
            if not self.active:
                return
            if trained:
                self.trained = True
            elif error is not None and self.abandoned is None:
                self.arms.setdefault(error, set()).add(arm)
                # a run training now beside the failed ones (-P 2) has got past the setup: not the study's
                if len(self.arms[error]) >= 2 and not self.trained and not _any_began(plan):
                    self.abandoned = f"two arms failed before training with: {error}"
                    logger.warning("%s; the runs not yet started are left out", self.abandoned)


_SETUP_FAILURES = _SetupFailures()


def _any_began(plan: StudyPlan) -> bool:
    """Whether any run of the study has trained a step (a last.pt or an epoch in metrics.csv)."""
    return any((plan.run_dir(arm, seed) / name).is_file() for arm in plan.arms for seed in plan.seeds
               for name in ("last.pt", "metrics.csv"))  # fmt: skip


def run_one(plan: StudyPlan, arm: str, seed: int, threads: int) -> dict[str, Any]:
    """Train (or resume, or reuse) one run; returns {"arm", "seed", "status", "results"}."""
    folder = plan.run_dir(arm, seed)
    if completed(folder):
        return {"arm": arm, "seed": seed, "status": "reused", "results": read_results(folder)}
    if _SETUP_FAILURES.active and _SETUP_FAILURES.abandoned is not None:
        return {
            "arm": arm,
            "seed": seed,
            "status": f"not started ({_SETUP_FAILURES.abandoned})",
            "results": None,
        }
    folder.parent.mkdir(parents=True, exist_ok=True)
    config_file = folder.parent / f"seed-{seed}.yaml"
    with atomic_open(config_file, "w") as handle:
        handle.write(yaml.safe_dump(_nested(plan.config_of(arm, seed)), sort_keys=False))
    command = train_command(plan, arm, seed)
    # the user's own thread counts kept, as `train --nproc-per-node` keeps them
    env = {"OMP_NUM_THREADS": str(threads), **os.environ}
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])  # as OpenMP's, the user's or ours
    log = folder.parent / f"seed-{seed}.log"
    started = time.perf_counter()
    before = log.stat().st_size if log.is_file() else 0  # the log grows by call: this run's lines follow
    with log.open("a", encoding="utf-8") as handle:
        handle.write("$ " + shlex.join(command) + "\n")
        handle.flush()
        with _CHILDREN.lock:
            if _CHILDREN.stopping:  # interrupted before this run started: leave it for the next call
                return {"arm": arm, "seed": seed, "status": "not started (interrupted)", "results": None}
            child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
            _CHILDREN.live.add(child)
        try:
            rc = child.wait()
        finally:
            with _CHILDREN.lock:
                _CHILDREN.live.discard(child)
    results = read_results(folder)
    if completed(folder):
        status = "completed"
    elif rc in (128 + signal.SIGINT, 128 + signal.SIGTERM):  # stopped; the next call resumes it
        status = f"interrupted (exit {rc}, see {log})"
    else:  # the run's own error line, so that the study's output says why without opening the log
        error = _last_error(log, before)
        status = f"failed (exit {rc}{': ' + error if error else ''}; see {log})"
    trained = status == "completed" or (folder / "last.pt").is_file()
    _SETUP_FAILURES.record(
        plan, arm, _last_error(log, before) if status.startswith("failed") else None, trained
    )
    return {"arm": arm, "seed": seed, "status": status, "results": results,
            "seconds": time.perf_counter() - started}  # fmt: skip


def _last_error(log: Path, start: int = 0) -> str | None:
    """The last "googlenet train: error: ..." line of a run's log from byte `start` on (this call's part
    of a log that earlier calls wrote to too), without its prefix."""
    try:
        with log.open("rb") as handle:
            handle.seek(start)
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.split(": error: ", 1)[1] for line in lines if line.startswith("googlenet train: error: ")]
    return errors[-1] if errors else None


def run_training(
    plan: StudyPlan, progress: bool = True, on_done: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Every (arm, seed) run, `plan.parallel` at a time, with one progress bar over the study's epochs."""
    from tqdm import tqdm

    jobs = [(arm, seed) for seed in plan.seeds for arm in plan.arms if plan.arm(arm).raw_of is None]
    epochs = int(resolve({}, plan.config_of(REFERENCE, plan.seeds[0])).run.epochs)
    threads = max(1, cores() // (plan.parallel * max(1, plan.torchrun)))  # the CPUs it may use (taskset)
    outcomes: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs) * epochs, unit="epoch", desc="ablation", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    _CHILDREN.stopping = False
    _SETUP_FAILURES.reset(active=True)
    with ThreadPoolExecutor(max_workers=plan.parallel) as pool:
        futures: dict[Future[dict[str, Any]], tuple[str, int]] = {
            pool.submit(run_one, plan, arm, seed, threads): (arm, seed) for arm, seed in jobs
        }
        pending = set(futures)
        try:
            _watch(plan, jobs, epochs, pending, outcomes, bar, on_done)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM (the CLI turns it into a KeyboardInterrupt), perhaps to this process only
            for future in pending:
                future.cancel()
            _CHILDREN.interrupt()
            raise  # leaving the pool waits for the runs, which save and stop within a step
        finally:
            _SETUP_FAILURES.reset()  # every run has ended (`_watch` returns when none is pending)
    bar.close()
    return outcomes


def _watch(
    plan: StudyPlan,
    jobs: list[tuple[str, int]],
    epochs: int,
    pending: set[Future[dict[str, Any]]],
    outcomes: list[dict[str, Any]],
    bar: Any,
    on_done: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Collect the runs as they finish, moving the progress bar by the epochs written so far."""
    while pending:
        finished = {f for f in pending if f.done()}
        for future in finished:
            outcome = future.result()
            outcomes.append(outcome)
            logger.info("%s seed %d: %s", outcome["arm"], outcome["seed"], outcome["status"])
            if on_done is not None:
                on_done(outcome)
        pending -= finished
        done_epochs = sum(min(epochs, _epochs_done(plan.run_dir(a, s))) for a, s in jobs)
        bar.update(done_epochs - bar.n)
        bar.set_postfix(runs=f"{len(outcomes)}/{len(jobs)}", refresh=False)
        if pending:
            time.sleep(1.0)


def errors_of(results: Mapping[str, Any] | None, raw: bool = False) -> dict[str, float] | None:
    """Top-1/top-5 error (percent) of a run's final model: the averaged weights where there are any
    (`raw`: always the raw weights)."""
    if not results or results.get("status") != "completed":
        return None
    weights = ("raw",) if raw else ("avg", "raw")
    out: dict[str, float] = {}
    for metric in ("top1", "top5"):
        values = [results.get(f"val_{metric}_{w}") for w in weights]
        found = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
        if not found:
            return None
        out[metric] = 100.0 - float(found[0])
    return out


def eval_samples(
    plan: StudyPlan, class_names: Sequence[str], wnids: Sequence[str] | None = None
) -> list[tuple[str, int]]:
    """The validation images the runs were evaluated on, labelled in the checkpoint's class order
    (`wnids`: its WordNet ids, which class folders named by id match)."""
    from googlenet.evaluate.evalset import load_eval_set

    config = resolve({}, plan.config_of(REFERENCE, plan.seeds[0]))
    d = config.data
    if d.dataset == "builtin":
        from googlenet.data.synthetic import ensure_builtin

        root = ensure_builtin(**builtin_settings(d))
    elif d.dataset == "folder":
        root = Path(str(d.data_path))
    else:
        raise ConfigError("test-time arms support the built-in data and image folders")
    from googlenet.evaluate.evalset import limit_samples

    return limit_samples(load_eval_set("folder", root, class_names, wnids).samples, plan.test_limit)


def test_time_errors(plan: StudyPlan, seed: int) -> dict[str, dict[str, float]] | None:
    """Section 7 at test time for one seed: {view: {"top1", "top5"} errors}, cached in test-time/."""
    from googlenet.evaluate.models import load_ensemble
    from googlenet.evaluate.protocol import View, evaluate_views
    from googlenet.evaluate.table3 import table3_specs

    cache = plan.output_dir / "test-time" / f"seed-{seed}.json"
    members = [a for a in ENSEMBLE_ARMS if a in plan.arms and completed(plan.run_dir(a, seed))]
    if REFERENCE not in members:
        return None
    if cache.is_file():
        try:
            stored = json_loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # damaged (an older, non-atomic write cut short): computed again
            stored = {}
        if (
            isinstance(stored, dict)
            and stored.get("members") == members
            and stored.get("limit") == plan.test_limit
        ):
            return dict(stored["errors"])
    ensemble = load_ensemble(
        [plan.run_dir(a, seed) / "final.pt" for a in members], device="cpu", engine="off"
    )
    samples = eval_samples(plan, ensemble.class_names, ensemble.wnids)
    specs = table3_specs(ensemble.input_size, ensemble.resize_size)
    single = [View(TEST_BASE, 0, (0,)), View("crops-10", 1, (0,)), View("crops-144", 2, (0,))]
    started = time.perf_counter()
    result = evaluate_views(ensemble.members[:1], samples, specs, single, ensemble.num_classes,
                            interpolation=ensemble.interpolation, batch_size=plan.eval_batch,
                            progress=plan.progress)  # fmt: skip
    meters = dict(zip([v.name for v in single], result["views"], strict=True))
    if len(members) > 1:
        every = tuple(range(len(members)))
        views = [View("ensemble-1crop", 0, every), View("ensemble-10crops", 1, every)]
        result = evaluate_views(ensemble.members, samples, specs[:2], views, ensemble.num_classes,
                                interpolation=ensemble.interpolation, batch_size=plan.eval_batch,
                                progress=plan.progress)  # fmt: skip
        meters.update(zip([v.name for v in views], result["views"], strict=True))
    errors = {}
    for name, meter in meters.items():
        summary = meter.summary()
        errors[name] = {"top1": float(summary["top1_error"]), "top5": float(summary["top5_error"])}
    from googlenet.io import atomic_open

    with atomic_open(cache, "w") as handle:
        json.dump({"members": members, "limit": plan.test_limit, "images": len(samples), "errors": errors,
                   "seconds": time.perf_counter() - started}, handle, indent=1)  # fmt: skip
    return errors


__all__ = [
    "ARMS",
    "ARM_NAMES",
    "ENSEMBLE_ARMS",
    "REFERENCE",
    "TEST_TIME",
    "Arm",
    "StudyPlan",
    "errors_of",
    "run_training",
    "test_time_errors",
    "train_command",
]
