"""Section 8 end to end: proposals (selective search + MultiBox), `detect train`, `detect multibox`, and
the detector's evaluation on a VOC tree.

`--annotations builtin` (the default of `detect train` and `detect multibox`) means the built-in
detection scenes (`googlenet.data.scenes.ensure_builtin_scenes`), drawn on first use.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from googlenet.console import setup_console, shell_path
from googlenet.errors import ConfigError, DataError
from googlenet.io import claim_new_path, claimed_here, json_loads, json_text, make_folder

if TYPE_CHECKING:
    from googlenet.detect.training import RegionSetConfig

logger = logging.getLogger("googlenet.detect")

BUILTIN = "builtin"
SETTINGS: tuple[str, ...] = ("fast", "fast-paper", "quality", "quality-paper")


def resolve_annotations(value: str, progress: bool = False) -> str:
    """A VOC root, or the built-in scenes' folder for "builtin"."""
    if value != BUILTIN:
        return value
    from googlenet.data.scenes import ensure_builtin_scenes

    return str(ensure_builtin_scenes(progress=progress))


def setting_from_name(name: str, max_side: int = 500) -> Any:
    """The `ProposalSetting` of a `SETTINGS` name: its selective-search mode, superpixels doubled for the
    `-paper` names (section 8), images shrunk to `max_side`."""
    from googlenet.detect.proposals import ProposalSetting

    mode, _, paper = name.partition("-")
    return ProposalSetting(mode, 2.0 if paper else 1.0, max_side)


def gather_proposals(
    images: Sequence[tuple[str, str]],
    setting: str | None = "fast-paper",
    max_side: int = 500,
    multibox: str | None = None,
    skipped: list[tuple[str, str]] | None = None,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], float]:
    """Selective search's proposals (`setting`, or none) plus MultiBox's top k (section 8), per image.

    Returns the proposals (0-based pixel boxes) and the seconds spent producing them.
    """
    from googlenet.detect.multibox import load_multibox, multibox_proposals
    from googlenet.detect.proposals import propose_all

    loaded = load_multibox(multibox) if multibox is not None else None  # a bad file fails before the search
    proposals: dict[str, np.ndarray] = {}
    seconds = 0.0
    if setting is not None:
        proposals, seconds = propose_all(
            images, setting_from_name(setting, max_side), progress, skipped=skipped
        )
    if loaded is not None:
        model, config, _ = loaded
        readable = [(i, p) for i, p in images if setting is None or i in proposals]
        boxes, spent = multibox_proposals(model, readable, config.input_size, config.top_k)
        seconds += spent
        for image_id, found in boxes.items():
            old = proposals.get(image_id)
            proposals[image_id] = found if old is None or len(old) == 0 else np.concatenate([old, found])
    return proposals, seconds


def proposal_name(setting: str | None, multibox: str | None) -> str:
    """A label of the proposals' source: the setting, `multibox:<absolute path>`, or both joined by " + "."""
    parts = [setting] if setting else []
    if multibox:
        parts.append(f"multibox:{os.path.abspath(multibox)}")
    return " + ".join(parts)


# --- detect train ----------------------------------------------------------------------------------
# What `detect train` changes from the training engine's defaults: a short fine-tuning run (R-CNN
# fine-tunes at a tenth of the classification learning rate), regions already warped with context (so
# no cropping: the warped region is the input, as R-CNN's window data layer feeds it, mirrored at
# random; see `model.resize_size` below), loading in the training process (2-core machines), and the
# built-in preset's gradient clipping for the BN-free trunk.
DETECT_PRESET: dict[str, Any] = {
    "run.epochs": 6,
    "optim.lr": 0.002,
    "optim.clip_grad_norm": 2.0,
    "augment.random_crop": False,
    "data.workers": 0,
    "data.train_eval_samples": 500,
    "average.start": 0.5,
    "data.balance_class": "background",  # detect.training.BACKGROUND_FOLDER; R-CNN: every batch 32 positives and 96 background (a quarter)
    "data.balance_share": 0.75,
}

# `googlenet train`'s help where detect train differs: DETECT_PRESET's values, its folder name, the region
# size, and the two data flags it refuses (they stay parsed, so the refusal can say why).
DETECT_HELP: dict[str, str] = {
    "run.epochs": "epochs of fine-tuning (default 6)",
    "optim.lr": "base learning rate (default 0.002, for fine-tuning)",
    "optim.clip_grad_norm": "clip the gradient norm (default 2)",
    "run.output_dir": "run folder (default runs/<time>-detect-<variant>)",
    "model.input_size": "region crop (default: --init-from's input size, else 96)",
    "model.resize_size": "evaluation resize (default: the region crop, so regions are seen as warped)",
    "augment.random_crop": "random patches of 8-100%% area (default off: regions are warped already)",
    "data.workers": "data loading processes (default 0: in the training process)",
    "data.train_eval_samples": "training regions evaluated raw vs averaged each epoch (default 500; 0: none)",
    "run.ensemble": "train N region classifiers from the same initial weights, differing by their data seed "
    "and the sampling settings that act on warped regions (docs/detection.md; section 8 ensembles 6 networks)",
    # regions are warped to the input size already: with random patches off these never act
    "augment.scale_min": "smallest patch area fraction (0.08; no effect unless --random-crop)",
    "augment.scale_max": "largest patch area fraction (1.0; no effect unless --random-crop)",
    "augment.ratio_min": "smallest aspect ratio (3/4; no effect unless --random-crop)",
    "augment.ratio_max": "largest aspect ratio (4/3; no effect unless --random-crop)",
    "augment.random_interpolation": "bilinear/area/nearest/cubic at random (no effect unless --random-crop: "
    "the warped regions are resized to their own size)",
    "data.data_path": argparse.SUPPRESS,
    "data.dataset": argparse.SUPPRESS,
    "set_overrides": "any config key by its dotted name, over --config (e.g. --set average.start=0.25)",
}


def register(commands: argparse._SubParsersAction) -> None:
    """`googlenet detect train`'s and `googlenet detect multibox`'s flags, added to `detect`'s subcommands."""
    from googlenet.train.command import add_arguments, add_launch_argument

    tr = commands.add_parser(
        "train",
        help="fine-tune region classifier(s) on warped proposals (R-CNN style) and report their mAP",
        description=(
            "Build the region set (selective search [+ MultiBox] proposals warped with 16 px of context; IoU >= "
            "0.5 positives, background for the rest, 1 positive per 3 background), fine-tune a GoogLeNet from "
            "--init-from through the training engine (every training flag applies: --epochs, --lr, --ensemble, "
            "--resume, torchrun...), then detect on the validation images and report per-class AP and mAP."
        ),
        argument_default=argparse.SUPPRESS,
    )
    g = tr.add_argument_group("detection")
    d = DETECTION_DEFAULTS
    g.add_argument("--annotations", default=d["annotations"], metavar="VOC_ROOT",
                   help="VOC tree with ImageSets/Main/{train,val}.txt (default: the built-in scenes)")  # fmt: skip
    g.add_argument("--train-set", default=d["train_set"], help="VOC image set to train on (default train)")
    g.add_argument(
        "--val-set", default=d["val_set"], help="VOC image set to validate and detect on (default val)"
    )
    g.add_argument("--proposals", choices=SETTINGS, default=d["proposals"], metavar="SETTING",
                   help=f"selective search setting: {', '.join(SETTINGS)} "
                        f"(default {d['proposals']}: fast with superpixels x2, section 8)")  # fmt: skip
    g.add_argument(
        "--multibox",
        default=d["multibox"],
        metavar="FILE",
        help="add this MultiBox model's top proposals (section 8)",
    )
    g.add_argument(
        "--max-side", type=int, default=d["max_side"], help="shrink images to this longer side first (500)"
    )
    g.add_argument("--positives-per-image", type=int, default=d["positives_per_image"],
                   help="IoU >= 0.5 proposals kept per image besides its ground-truth boxes (default 8)")  # fmt: skip
    g.add_argument("--background-per-positive", type=float, default=d["background_per_positive"], metavar="N",
                   help="background regions per positive (R-CNN's 3:1 batches; default 3)")  # fmt: skip
    g.add_argument("--context", type=int, default=d["context"], help="context pixels at 227 (R-CNN: 16)")
    add_arguments(tr)
    add_launch_argument(tr)
    for action in tr._actions:  # the training flags' help, where detect train's defaults differ
        action.help = DETECT_HELP.get(action.dest, action.help)
    tr.set_defaults(func=run_train)

    mb = commands.add_parser(
        "multibox",
        help="train MultiBox (Erhan et al. 2014): class-agnostic boxes from Inception features",
        description="Train a MultiBox proposal model on a VOC tree and report its top-k recall on the validation images.",
    )
    mb.add_argument("--annotations", default=BUILTIN, metavar="VOC_ROOT",
                    help="VOC tree (default: the built-in scenes)")  # fmt: skip
    mb.add_argument("--train-set", default="train", help="VOC image set to train on (default train)")
    mb.add_argument("--val-set", default="val", help="VOC image set to measure recall on (default val)")
    mb.add_argument("--init-from", metavar="CHECKPOINT", help="classification checkpoint for the trunk")
    mb.add_argument("--variant", choices=("paper", "bn", "torchvision"),
                    help="trunk variant (default: --init-from's, else paper)")  # fmt: skip
    mb.add_argument("--input-size", type=int, default=128, help="image side the model sees (default 128)")
    mb.add_argument(
        "--priors", type=int, default=200, help="k-means box priors (default 200; Erhan et al.: 800)"
    )
    mb.add_argument("--top-k", type=int, default=200, help="proposals kept per image (section 8: 200)")
    mb.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    mb.add_argument("-b", "--batch-size", type=int, default=16, help="images per batch (default 16)")
    mb.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    mb.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    mb.add_argument("--output", metavar="FILE.pt", help="checkpoint path (default runs/multibox-<time>.pt)")
    mb.add_argument("--json", action="store_true", help="print one JSON object")
    mb.set_defaults(func=run_multibox)


def _init_info(path: str | None) -> tuple[str | None, int | None]:
    """(variant, input size) of a classification checkpoint, to fine-tune it as it was trained."""
    if not path:
        return None, None
    from googlenet.model.weights import read_checkpoint

    checkpoint = read_checkpoint(path)
    meta = checkpoint.get("meta") or {}
    return checkpoint["model_config"].get("variant"), meta.get("input_size")


def _wait_for(path: Path, timeout_s: float = 6 * 3600) -> None:
    """Other torchrun processes wait while rank 0 builds the region set."""
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise DataError(f"{path}: the region set did not appear")
        time.sleep(2)


def run_train(args: argparse.Namespace) -> int:
    """Run `googlenet detect train` from parsed flags: build the region set (rank 0), fine-tune through the
    training engine, then detect on the validation images and print the mAP; the exit code (128 + the signal's
    number when one interrupted the training, as `googlenet train`, else 0; other processes under torchrun return 0 after training)."""
    from googlenet.detect.training import RegionSetConfig
    from googlenet.train import distributed as ddp
    from googlenet.train.command import (
        _print_summary,
        _refuse_inapplicable,
        _run_folder,
        _setup_logging,
        build_config,
        config_overrides,
        launch_count,
    )
    from googlenet.train.config import resolve
    from googlenet.train.engine import fit
    from googlenet.train.launch import launch
    from googlenet.train.memory import check_run_memory
    from googlenet.train.runs import (
        DETECTION_SETUP,
        check_before_locking,
        check_new_run_folder,
        is_detection_run,
        lock_folder,
    )

    env = ddp.from_environment()
    _setup_logging(env)
    nproc = launch_count(args, env)
    if nproc > 1:  # the processes say what the run does; this one only starts them
        setup_console(logging.WARNING)
    flags = {key: value for key, value in vars(args).items() if "." in key}
    for key, flag in (("data.data_path", "--data-path"), ("data.dataset", "--dataset")):
        if flags.get(key) is not None:
            raise ConfigError(f"{flag} does not apply to detect train: it trains on the region set it "
                              "builds from --annotations")  # fmt: skip
    resume = getattr(args, "resume", None)
    if resume is not None:  # the run's own config (and region set) continue
        config, resume = build_config(args)
        # The folder resumed, wherever it is now: its config.yaml names the folder it was made in, which
        # a copied or moved run no longer is (evaluating there scored another folder's model), and its
        # region set, kept inside it, moved with it.
        output = _run_folder(Path(str(resume)))
        if not (output / DETECTION_SETUP).is_file():  # before any work: it would train on, then fail
            raise ConfigError(
                f"--resume {shell_path(resume)}: a member of the detect train ensemble in "
                f"{shell_path(output.parent)}; resume that folder, which trains every member on and "
                "detects with them"
                if is_detection_run(output)
                else f"--resume {shell_path(resume)}: not a detect train run (no {DETECTION_SETUP}); a "
                f"classification run continues with googlenet train --resume {shell_path(resume)}"
            )
        _refuse_changed_detection(args, output)
        made_in = Path(config.run.output_dir or ".").resolve()
        if config.data.data_path == str(made_in / "regions") and (output / "regions").is_dir():
            config.data.data_path = str(output.resolve() / "regions")
        if nproc > 1:
            return launch(args.argv, nproc, prog="googlenet detect train")
    else:
        file_overrides, settings = config_overrides(
            args, flags
        )  # --config, then --set, over the preset below
        # The run folder and the data are this command's own: -o (or its default) and the region set it
        # builds there. A run's config.yaml given as --config names the old ones: they are left out.
        owned = ("run.output_dir", "data.data_path", "data.dataset")
        for key in owned:
            if key in settings:
                raise ConfigError(f"--set {key}=... does not apply to detect train: it trains in -o's folder "
                                  "on the region set it builds from --annotations")  # fmt: skip
        dropped = sorted(key for key in owned if key in file_overrides)
        if dropped:
            logger.info("--config's %s left out: detect train trains in -o's folder on the region set it builds",
                        ", ".join(dropped))  # fmt: skip
            file_overrides = {k: v for k, v in file_overrides.items() if k not in owned}

        def given(key: str) -> Any:  # a flag, else --set / --config: the region set is sized as the model
            return flags[key] if flags.get(key) is not None else file_overrides.get(key)

        variant, input_size = _init_info(given("model.init_from"))
        variant = given("model.variant") or variant or "paper"
        input_size = int(given("model.input_size") or input_size or 96)
        if flags.get("run.output_dir"):
            output = Path(flags["run.output_dir"])
        else:  # a dated folder, made unique and created by the first process alone
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            output = claim_new_path(f"runs/{stamp}-detect-{variant}") if env.is_main else Path()
            if env.distributed:
                # Each process's clock would name its own dated folder (a second apart, the others would
                # wait hours for a region set built elsewhere): the first process's name for all of them.
                ddp.init_process_group(env, ddp.resolve_device(str(given("run.device") or "auto"), env))
                output = Path(ddp.broadcast_object(str(output)))
        if output.exists() and not output.is_dir():
            raise ConfigError(f"--output-dir {output}: is a file, not a run folder")
        check_before_locking(
            output, first=env.is_main, new=True
        )  # before the region set replaces a run's own
        region_config = RegionSetConfig(
            input_size=input_size,
            context=args.context,
            positives_per_image=args.positives_per_image,
            background_per_positive=args.background_per_positive,
            seed=int(given("run.seed") or 0),
        )
        regions = output.resolve() / "regions"
        preset = {
            **DETECT_PRESET,
            "data.dataset": "folder",
            "data.data_path": str(regions),
            "model.variant": variant,
            "model.input_size": input_size,
            # The evaluation resize equals the region size, so training (resize + random crop with
            # random_crop off), validation (resize + centre crop) and `detect predict` (the warp alone)
            # all see the warped region as it is. At the engine's default (input * 256/224) the first
            # two would zoom in by 14%, cutting most of the context and training on objects bigger
            # than the detector shows them.
            "model.resize_size": input_size,
            "run.output_dir": str(output),
        }
        flags.pop("run.output_dir", None)
        config = resolve({**preset, **file_overrides}, flags)  # every value checked before the region set
        _refuse_inapplicable(
            flags, config, settings
        )  # as `train` does: a flag that cannot apply is not recorded
        # A batch the memory cannot hold is refused before the region set (minutes) is built; the
        # engine checks again, and warns, when training starts.
        check_run_memory(config, max(env.world_size, nproc), ddp.resolve_device(config.run.device, env))
        if nproc > 1:  # checked here once; the processes check again, build the region set and train
            return launch(args.argv, nproc, prog="googlenet detect train")
        # Absolute, so the run resumes and evaluates from any working directory.
        voc = os.path.abspath(
            resolve_annotations(args.annotations, progress=sys.stderr.isatty() and env.is_main)
        )
        lock, created = None, not output.exists() or claimed_here(output)  # a default name is ours
        if env.is_main:
            make_folder(output.parent)  # noted: removed again, empty, if the command fails
            output.mkdir(exist_ok=True)
            lock = lock_folder(output)  # no training may start here while the region set is rebuilt
        try:
            if env.is_main:
                check_new_run_folder(output)  # again under the lock: a run may have ended in between
            _build_regions(args, env, voc, regions, region_config, output)
        except BaseException:
            if env.is_main and created:  # a folder this command made holds nothing of value yet
                shutil.rmtree(output, ignore_errors=True)
            raise
        finally:
            if lock is not None:
                lock.close()
    results = fit(config, resume=resume)
    ddp.destroy_process_group()  # the one joined above for the folder's name (fit leaves one it did not make)
    if not env.is_main:
        return 0
    as_json = getattr(args, "json", False)  # then stdout holds one JSON object, whatever the outcome
    if not as_json:
        _print_summary(results)
    if results.get("status") != "completed":
        if as_json:
            print(json_text(results))  # train's results, "status" and "signal" saying why it stopped
        return 128 + int(signal.Signals[results["signal"]]) if results.get("signal") else 0
    setup = json_loads((output / DETECTION_SETUP).read_text())
    report = evaluate_run(output, setup)
    if as_json:  # train's results, and each member's (and the ensemble's) detection figures
        print(json_text({**results, "detection": report["summary"]}))
    else:
        print(_summary_text(report))
    return 0


def _build_regions(
    args: argparse.Namespace, env: Any, voc: str, regions: Path, region_config: RegionSetConfig, output: Path
) -> None:
    """Proposals and the warped region set of section 8 (main process; the others wait for it), and the
    run's `detection-setup.json`."""
    from googlenet.detect.training import build_region_set, check_region_classes
    from googlenet.detect.voc import voc_images
    from googlenet.io import atomic_open
    from googlenet.train.runs import DETECTION_SETUP

    if not env.is_main:
        _wait_for(regions / "manifest.json")
        return
    splits = (args.train_set, args.val_set)
    listed = {args.train_set: voc_images(voc, args.train_set, "--train-set")}
    listed[args.val_set] = voc_images(voc, args.val_set, "--val-set")  # both checked before any work
    # From the annotations alone: a class with no region in a split fails here, not after the proposals.
    check_region_classes(voc, splits)
    setting_from_name(args.proposals, args.max_side)  # and --max-side, --multibox
    if args.multibox is not None:
        from googlenet.detect.multibox import load_multibox

        load_multibox(args.multibox)
    proposals = {}
    for split in dict.fromkeys(splits):  # one set for both roles: its proposals once
        images = listed[split]
        logger.info(
            "proposals for %d %s images (%s)",
            len(images),
            split,
            proposal_name(args.proposals, args.multibox),
        )
        proposals[split], seconds = gather_proposals(
            images, args.proposals, args.max_side, args.multibox, progress=sys.stderr.isatty()
        )
        logger.info("  %.2f s per image, %.0f proposals per image", seconds / max(1, len(images)),
                    sum(len(p) for p in proposals[split].values()) / max(1, len(images)))  # fmt: skip
    build_region_set(voc, regions, region_config, proposals, splits=splits,
                     proposal_name=proposal_name(args.proposals, args.multibox),
                     progress=sys.stderr.isatty())  # fmt: skip
    detection = {
        "annotations": voc,
        "val_set": args.val_set,
        "proposals": args.proposals,
        "multibox": args.multibox,
        "max_side": args.max_side,
        "context": args.context,  # the detector warps test regions as the classifier was trained on
        # the rest of the region set's settings: what a resume is checked against
        "train_set": args.train_set,
        "positives_per_image": args.positives_per_image,
        "background_per_positive": args.background_per_positive,
    }
    with atomic_open(output / DETECTION_SETUP, "w") as handle:
        json.dump(detection, handle, indent=1)


DEFAULT_CONTEXT = 16  # R-CNN's, and `detect train --context`'s default

# `detect train`'s detection flags and their defaults: a resumed run keeps the ones it started with.
DETECTION_DEFAULTS: dict[str, Any] = {
    "annotations": BUILTIN, "train_set": "train", "val_set": "val", "proposals": "fast-paper", "multibox": None,
    "max_side": 500, "positives_per_image": 8, "background_per_positive": 3.0, "context": DEFAULT_CONTEXT,
}  # fmt: skip


def _given_detection_flags(argv: list[str]) -> list[str]:
    """The detection flags typed in `argv` (their `DETECTION_DEFAULTS` names, abbreviations read as
    argparse reads them): a flag given with its default value is given too."""
    parser = argparse.ArgumentParser(add_help=False)
    for name in DETECTION_DEFAULTS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS)
    known, _ = parser.parse_known_args(argv)
    return [name for name in DETECTION_DEFAULTS if name in vars(known)]


def _refuse_changed_detection(args: argparse.Namespace, output: Path) -> None:
    """`ConfigError` for a detection flag given to a resumed run with another value than the run's own,
    recorded in its detection-setup.json (any value, for a flag a run begun before 2026-12-07 did not
    record): the run keeps the region set and settings it started with, and took such a flag silently
    before."""
    from googlenet.train.runs import DETECTION_SETUP

    try:
        recorded = json_loads((output / DETECTION_SETUP).read_text())
    except (OSError, ValueError):
        recorded = {}
    changed = []
    for name in _given_detection_flags(list(getattr(args, "argv", []) or [])):
        value = getattr(args, name, DETECTION_DEFAULTS[name])
        mine = recorded.get(name)
        if name in ("annotations", "multibox") and isinstance(mine, str) and value is not None:
            where = [Path(str(v)).expanduser().resolve() for v in (value, mine)]  # the same file or folder
            same = value == mine or where[0] == where[1]
        else:  # a flag the run's setup does not record (one begun before 2026-12-07) cannot be checked
            same = name in recorded and mine == value
        if not same:
            changed.append("--" + name.replace("_", "-"))
    if changed:
        raise ConfigError(
            f"{', '.join(changed)}: a resumed detect train run keeps the region set and detection settings it "
            f"started with ({DETECTION_SETUP}); drop {'it' if len(changed) == 1 else 'them'}, or start a new "
            "run with -o"
        )


def run_context(path: str | os.PathLike[str]) -> int | None:
    """The context (pixels at 227) a `detect train` run warped its regions with, for a run folder or a
    checkpoint in one (a member's final.pt: the ensemble's folder above it): its detection-setup.json,
    else its region set's manifest. None when `path` is in no such run."""
    from googlenet.train.runs import DETECTION_SETUP

    path = Path(path)
    for folder in (
        (path, path.parent, path.parent.parent) if path.is_dir() else (path.parent, path.parent.parent)
    ):
        for file, keys in ((folder / DETECTION_SETUP, ("context",)),
                           (folder / "regions" / "manifest.json", ("params", "context"))):  # fmt: skip
            try:
                value: Any = json_loads(file.read_text(encoding="utf-8"))
                for key in keys:
                    value = value[key]
                return int(value)
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return None


def run_members(output: Path) -> list[str]:
    """The final checkpoints of a `detect train` run (one, or one per ensemble member)."""
    members = sorted(output.glob("member-*/final.pt"), key=lambda p: int(p.parent.name.split("-")[1]))
    single = output / "final.pt"
    found = [str(p) for p in members] or ([str(single)] if single.is_file() else [])
    if not found:
        raise DataError(f"{output}: no final.pt (has the run completed?)")
    return found


def evaluate_run(output: Path, setup: dict[str, Any]) -> dict[str, Any]:
    """Detect on the validation images with each member and with the ensemble; write detection.json.
    The CSVs and detection.json are one result: written together at the end, with Ctrl-C held
    (milliseconds), so an interruption leaves the earlier set or none, never some members' CSVs
    without the rest (a folder that looked complete and was not)."""
    from googlenet.detect.training import load_proposals
    from googlenet.detect.voc import write_detections
    from googlenet.signals import signals_held
    from googlenet.train.runs import write_json

    proposals = load_proposals(output / "regions" / f"proposals-{setup['val_set']}.npz")
    members = run_members(output)
    report: dict[str, Any] = {"setup": setup, "members": members, "runs": []}
    groups = [[m] for m in members] + ([members] if len(members) > 1 else [])
    found = run_context(output)  # 0 (no context) is a context: not `or DEFAULT_CONTEXT`
    context = DEFAULT_CONTEXT if found is None else found
    files: list[tuple[Path, list[Any]]] = []
    for group in groups:
        name = "ensemble" if len(group) > 1 else Path(group[0]).parent.name
        result = evaluate_detector(group, setup["annotations"], setup["val_set"], proposals, context=context)
        result["name"] = name
        report["runs"].append(result)
        csv = output / f"detections-{name}.csv"
        files.append((csv, result.pop("detections")))
        result["detections_file"] = str(csv)
    report["summary"] = {
        r["name"]: {"mAP": r["mAP"], "seconds_per_image": r["seconds_per_image"]} for r in report["runs"]
    }
    with signals_held():
        for csv, detections in files:
            write_detections(csv, detections)
        write_json(output / "detection.json", report)  # an undefined AP (NaN) as null
    return report


def evaluate_detector(
    checkpoints: Sequence[str],
    voc_root: str,
    image_set: str,
    proposals: dict[str, np.ndarray],
    context: int = 16,
) -> dict[str, Any]:
    """mAP (VOC rule, all-point, IoU 0.5) and seconds per image of region classifier(s) on a VOC set,
    scoring warped regions; `context`: the pixels of context (at 227) the classifiers' regions were
    warped with."""
    from googlenet.detect.detector import DetectorConfig, detect_images
    from googlenet.detect.metrics import evaluate_detections, mean_ap
    from googlenet.detect.voc import load_voc, voc_images
    from googlenet.evaluate.models import load_ensemble

    config = DetectorConfig(context=context)
    ensemble = load_ensemble(list(checkpoints), engine="eager")
    images = voc_images(voc_root, image_set)
    started = time.perf_counter()
    detections = detect_images(ensemble, images, proposals, config, skip=True, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - started
    truth = load_voc(voc_root, image_set)
    truth = {image: truth[image] for image, _ in images}
    results = evaluate_detections(detections, truth)
    return {
        "mAP": mean_ap(results),
        "per_class": {name: (None if math.isnan(r.ap) else r.ap) for name, r in results.items()},
        "images": len(images),
        "seconds_per_image": seconds / max(1, len(images)),
        "shared_features": False,  # warped regions (a key detection.json has always carried)
        "detections": detections,
    }


def _summary_text(report: dict[str, Any]) -> str:
    lines = ["detection on the validation images (VOC AP at IoU 0.5, all-point):"]
    for r in report["runs"]:
        lines.append(f"  {r['name']:<10} mAP {100 * r['mAP']:.2f}%  ({r['seconds_per_image']:.2f} s/image, "
                     f"{r['images']} images) -> {r['detections_file']}")  # fmt: skip
    return "\n".join(lines)


def run_multibox(args: argparse.Namespace) -> int:
    """Run `googlenet detect multibox` from parsed flags: train MultiBox, save it to `--output` and print its
    recall on the validation images; the exit code."""
    from googlenet.detect.multibox import MultiBoxConfig

    setup_console()
    variant, _ = _init_info(args.init_from)
    if args.variant and variant and args.variant != variant:
        raise ConfigError(f"--variant {args.variant} differs from --init-from's variant {variant}")
    config = MultiBoxConfig(
        variant=args.variant or variant or "paper",
        input_size=args.input_size,
        priors=args.priors,
        top_k=args.top_k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    # the empty file that holds a default name is removed if the command fails (`drop_unused_claims`)
    output = args.output or str(
        claim_new_path(f"runs/multibox-{datetime.now():%Y%m%d-%H%M%S}", ".pt", folder=False)
    )
    return _run_multibox(args, config, output)


def _run_multibox(args: argparse.Namespace, config: Any, output: str) -> int:
    from googlenet.detect.multibox import FORMAT as MULTIBOX_FORMAT
    from googlenet.detect.multibox import train_multibox
    from googlenet.io import check_output, saved_format

    check_output(
        "--output", output, inputs={"--init-from": args.init_from}, kind="a MultiBox checkpoint",
        replaceable=lambda file: saved_format(file) == MULTIBOX_FORMAT,
    )  # fmt: skip
    make_folder(Path(output).parent)  # noted: removed again, empty, if the command fails
    voc = resolve_annotations(args.annotations, progress=sys.stderr.isatty())
    result = train_multibox(voc, output, config, args.init_from, args.train_set, args.val_set)
    if args.json:
        print(json_text(result))
        return 0
    r = result["val_recall"]
    print(
        f"MultiBox ({result['priors']} priors, {config.epochs} epochs, {result['train_seconds']:.0f}s) -> {output}"
    )
    from googlenet.detect.proposals import mabo, percent

    print(f"validation: recall@0.5 {percent(r['recall_50'])}, recall@0.7 {percent(r['recall_70'])}, "
          f"MABO {mabo(r['mabo'])}, {r['proposals_per_image']:.0f} proposals and {r['seconds_per_image'] * 1000:.1f} ms "
          f"per image ({r['objects']} objects)")  # fmt: skip
    return 0
