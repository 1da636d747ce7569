"""`googlenet evaluate`: top-1/top-5 error of one model or an ensemble with section 7's crops, or Table 3.

    googlenet evaluate --checkpoint A.pt [B.pt ...] --data-path DIR --crops {1,10,144}
    googlenet evaluate --checkpoint A.pt B.pt ... --data-path DIR --table3 --output-dir OUT
    googlenet evaluate --weights googlenet-1378be20.pth --variant torchvision --dataset imagenet --data-path ROOT

The checkpoints' metadata decide input size, test resize, normalisation and class names.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import typing
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from googlenet.console import PROGRESS_LINE_EVERY_S, one_line, setup_console, stderr_is_tty
from googlenet.data.crops import CROP_COUNTS, CropSpec
from googlenet.data.datasets import max_workers, usable_cpus
from googlenet.errors import CheckpointError, ConfigError, DataError, GoogLeNetError, UsageError
from googlenet.evaluate.evalset import (
    DATASETS,
    EvalSet,
    label_eval_images,
    limit_samples,
    match_classes,
    open_eval_images,
)
from googlenet.evaluate.metrics import REDUCTIONS, top5_trivial
from googlenet.evaluate.models import (
    Ensemble,
    add_engine_arguments,
    add_model_arguments,
    load_ensemble,
    resolve_device,
)
from googlenet.evaluate.protocol import ON_BAD, View, evaluate_views
from googlenet.evaluate.table3 import (
    TABLE3_FILES,
    format_table3,
    save_table3,
    table3_rows,
    table3_specs,
    table3_views,
)
from googlenet.io import check_output, check_output_folder, claim_new_path, json_text
from googlenet.model.weights import read_checkpoint

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

    from googlenet.data.synthetic import BuiltinSettings

PER_CLASS_SHOWN = 30  # print every class up to this many, else the worst ones

logger = logging.getLogger("googlenet.evaluate")


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet evaluate`'s flags."""
    parser = subparsers.add_parser(
        "evaluate",
        help="top-1/top-5 error with 1, 10 or 144 crops (section 7), ensembles, Table 3",
        description=(
            "Evaluate checkpoints on an image folder (DIR/val/<class>/... or DIR/<class>/...), the built-in "
            "data or ImageNet val, with section 7's test crops; softmax averaged over crops and models. "
            "--table3 evaluates 1 and N models with 1, 10 and 144 crops in one pass and compares with the paper."
        ),
    )
    g = parser.add_argument_group("model")
    add_model_arguments(g)
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS,
                   help="folder (default with --data-path), builtin (default without), imagenet")  # fmt: skip
    g.add_argument("--data-path", metavar="DIR",
                   help="folder: DIR/val/<class>/ if present, else DIR/<class>/; imagenet: the ILSVRC 2012 root")  # fmt: skip
    g.add_argument("--limit", type=int, metavar="N", help="evaluate N images, evenly spaced through the set")
    g.add_argument("--class-subset", action="store_true",
                   help="the data's classes may be some of the model's (an Imagenette-style folder of ImageNet "
                        "classes): each image scored over all the model's outputs, per-class rows for the "
                        "data's classes only")  # fmt: skip
    g.add_argument("-j", "--workers", type=int,
                   help="DataLoader processes that decode and cut crops (default: 0 on CPU, where the model uses "
                        "every core and a loader process measured 0.61x against 0.87-0.95x in-process; "
                        "min(4, CPUs) on a GPU)")  # fmt: skip
    g.add_argument("--on-bad", choices=ON_BAD, default="skip",
                   help="an undecodable image: skip it (reported, not counted) or abort")  # fmt: skip
    g = parser.add_argument_group("protocol (section 7)")
    g.add_argument("--crops", type=int, choices=CROP_COUNTS,
                   help="1: centre crop; 10: corners + centre + mirrors; 144: section 7 (default 1)")  # fmt: skip
    g.add_argument("--reduce", choices=REDUCTIONS, default="mean",
                   help="over crops: mean of softmax (paper) or max; models are always averaged")  # fmt: skip
    g.add_argument("--table3", action="store_true",
                   help="1 and N models x 1, 10, 144 crops from one pass; saves JSON, CSV and PNG")  # fmt: skip
    g.add_argument("--output-dir", metavar="DIR",
                   help="where --table3 writes: a new folder or an earlier --table3's (default runs/table3-<time>)")  # fmt: skip
    g = parser.add_argument_group("run")
    g.add_argument("-b", "--batch-size", type=int, default=144,
                   help="crops per model call (default 144); whole images are grouped to fill it")  # fmt: skip
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    add_engine_arguments(g, default="auto")
    g.add_argument("--json", action="store_true", help="print the results as one JSON object")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar with images/s and ETA on stderr (default: when stderr is a terminal, "
                        "else a progress line every 60 s)")  # fmt: skip
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if not args.checkpoint and args.weights is None:  # what argparse would say of a required option: exit 2
        raise UsageError("one of --checkpoint FILE [FILE ...] or --weights FILE is required")
    if args.table3 and args.crops is not None:
        raise ConfigError("--crops and --table3 exclude each other (--table3 runs 1, 10 and 144 crops)")
    if args.output_dir and not args.table3:
        raise ConfigError("--output-dir is only used with --table3")
    if args.reduce == "max" and not args.table3 and (args.crops or 1) == 1:
        raise ConfigError(
            "--reduce max pools over crops; give --crops 10 or 144 (one crop has nothing to pool)"
        )
    if args.output_dir:  # only an earlier --table3's own files may be replaced, never a run's
        folder = Path(args.output_dir)
        ours = {
            *TABLE3_FILES.values(),
            "report.html",
            ".lock",
        }  # report.html: googlenet report's; .lock: run's
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--output-dir {folder}: is a file, not a folder")
        check_output_folder("--output-dir", folder, ours.__contains__, "--table3", "give a new folder")
        check_output("--output-dir", folder / TABLE3_FILES["json"])
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers: must be 0 or more, got {args.workers}")
    if args.workers is not None and args.workers > max_workers():
        raise ConfigError(f"--workers: must be at most {max_workers()} (4 per CPU here), got {args.workers}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {args.limit}")


def _builtin_drawing(checkpoints: Sequence[str] | None) -> BuiltinSettings | None:
    """How the first checkpoint's run drew the built-in data (its recipe's "builtin" entry), so that
    `--dataset builtin` scores the validation images that run held out; None (the default drawing) for
    `--weights`, or a checkpoint from before the entry existed."""
    if not checkpoints:
        return None
    try:
        recipe = read_checkpoint(checkpoints[0])["meta"].get("recipe") or {}
    except CheckpointError:
        return None  # load_ensemble names the file, in order with the others
    from googlenet.data.synthetic import BuiltinSettings

    drawing = recipe.get("builtin") if isinstance(recipe, dict) else None
    if isinstance(drawing, dict) and set(drawing) == set(BuiltinSettings.__annotations__):
        return BuiltinSettings(**{k: int(v) for k, v in drawing.items()})  # type: ignore[typeddict-item]
    # A checkpoint from before the whole entry (2026-12-03/04): the run's config.yaml beside it says how
    # it drew them; without it, the default drawing, said (the run may have held out other images).
    beside = Path(checkpoints[0]).parent / "config.yaml"
    try:
        from googlenet.train.config import builtin_settings, read_run_config

        config = read_run_config(beside) if beside.is_file() else None
    except GoogLeNetError:
        config = None
    if config is not None and config.data.dataset == "builtin":
        return builtin_settings(config.data)
    logger.warning("%s: records no built-in drawing (an older checkpoint) and has no run config.yaml beside "
                   "it; scoring the default drawing", checkpoints[0])  # fmt: skip
    return None


def run(args: argparse.Namespace) -> int:
    """Run `googlenet evaluate` from parsed flags: print the top-1 and top-5 error with the chosen crops (with
    `--table3`, Table 3, also saved); the exit code."""
    _check_args(args)
    if args.table3 and args.output_dir:  # locked to the end: two calls would mix their tables' files
        from googlenet.train.runs import holding

        with holding(Path(args.output_dir), "evaluate --table3"):
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    setup_console()  # the built-in data being drawn, the backend `--engine auto` picks
    progress = args.progress if args.progress is not None else stderr_is_tty()
    device = resolve_device(args.device)
    dataset = args.dataset or ("folder" if args.data_path else "builtin")
    if dataset == "builtin" and args.data_path:
        raise ConfigError("--data-path does not apply to --dataset builtin (it scores the built-in images); "
                          "give one of them")  # fmt: skip
    # A user's data set is opened first, so a wrong path fails before any model is read; the built-in
    # one is drawn (a minute the first time, then cached) once the model is known to have its classes.
    images = None if dataset == "builtin" else open_eval_images(dataset, args.data_path, progress=progress)
    labelled: list[EvalSet] = []  # the images in the model's class order, checked before optimising

    def check_classes(names: list[str], wnids: list[str] | None) -> None:
        nonlocal images
        if images is None:
            from googlenet.data.synthetic import CLASSES

            where = (
                "--dataset builtin" if args.dataset == "builtin" else "evaluated when no --data-path is given"
            )
            match_classes(CLASSES, names, f"the built-in data ({where})", subset=args.class_subset)
            drawing = _builtin_drawing(args.checkpoint)
            images = open_eval_images("builtin", None, progress=progress, builtin=drawing)
        labelled.append(label_eval_images(images, names, wnids, subset=args.class_subset))

    ensemble = load_ensemble(
        args.checkpoint,
        args.weights,
        args.variant,
        device,
        args.engine,
        args.precision,
        min(args.batch_size, 64),
        check_classes=check_classes,
        transform_input=args.transform_input,
    )
    evalset = labelled[0]
    samples = limit_samples(evalset.samples, args.limit)
    n_models = len(ensemble.members)
    if args.table3:
        specs = table3_specs(ensemble.input_size, ensemble.resize_size)
        views = table3_views(n_models)
    else:
        crops = args.crops or 1
        specs = (ensemble.crop_spec(crops),)
        views = [View(f"{n_models} model(s), {crops} crops", 0, tuple(range(n_models)))]
    result = evaluate_views(
        ensemble.members,
        samples,
        specs,
        views,
        ensemble.num_classes,
        device=device,
        interpolation=ensemble.interpolation,
        reduce=args.reduce,
        batch_size=args.batch_size,
        workers=args.workers
        if args.workers is not None
        else (0 if device.type == "cpu" else min(4, usable_cpus())),
        on_bad=args.on_bad,
        progress=progress,
        # no terminal and no --no-progress: a line a minute, as `train` gives (a log, a CI job)
        progress_every_s=PROGRESS_LINE_EVERY_S if args.progress is None and not progress else None,
    )
    final = views[-1]  # the full protocol (Table 3's last row)
    report = _report(ensemble, evalset.description, specs[final.spec], final, result, args, str(device))
    _check_scored(report, samples, ensemble.class_names, evalset.description)
    if args.table3:
        rows = table3_rows(specs, views, result["views"])
        output_dir = args.output_dir or claim_new_path(
            os.path.join("runs", time.strftime("table3-%Y%m%d-%H%M%S"))
        )
        info = {
            key: report[key]
            for key in ("checkpoints", "dataset", "images", "reduce", "seconds", "device", "resize_size")
        }
        info["classes"] = ensemble.num_classes
        paths = save_table3(output_dir, rows, info)
        report["table3"] = [asdict(row) for row in rows]
        report["files"] = {kind: str(path) for kind, path in paths.items()}
        if not args.json:
            print(format_table3(rows))
            if ensemble.num_classes <= 5:
                print(top5_trivial(ensemble.num_classes))
            print(f"saved {', '.join(str(p) for p in paths.values())}")
    if args.json:
        print(json_text(report))
    elif not args.table3:
        _print_report(report)
    else:
        _print_footer(report)
    return 0


def _report(
    ensemble: Ensemble,
    dataset: str,
    spec: CropSpec,
    view: View,
    result: dict[str, Any],
    args: argparse.Namespace,
    device: str,
) -> dict[str, Any]:
    from googlenet.train.runs import class_balance

    summary = result["views"][-1].summary(ensemble.class_names)
    images, seconds = summary["images"], result["seconds"]
    models = len(view.members)
    cost = models * spec.crops  # Table 3's "cost": forward passes per image under the protocol
    # with --class-subset the model's other classes have no images: their rows are left out
    per_class = [row for row in summary["per_class"] if row["images"] or not args.class_subset]
    scored = [row for row in per_class if row["images"]]
    return {
        "top1_error": summary["top1_error"],
        "top5_error": summary["top5_error"],
        "top1_accuracy": summary["top1_accuracy"],
        "top5_accuracy": summary["top5_accuracy"],
        "images": images,
        "crops": spec.crops,
        "models": models,
        "cost": cost,
        "reduce": args.reduce,
        "scales": list(spec.resolved_scales),
        "resize_size": ensemble.resize_size,  # the 1- and 10-crop scale (the 144's are `scales`)
        "crop_size": spec.crop_size,
        "forward_passes": result["forward_passes"],  # actually run: crops shared by views run once
        "protocol_forward_passes": images * cost,
        "seconds": seconds,
        "model_seconds": result["model_seconds"],
        "images_per_s": images / seconds if seconds > 0 else None,
        "crops_per_s": images * cost / seconds if seconds > 0 else None,
        "skipped_images": len(result["bad_images"]),
        "bad_images": [{"image": path, "error": message} for path, message in result["bad_images"]],
        "checkpoints": [os.path.abspath(source) for source in ensemble.sources],  # report reads them back
        "engines": [member.engine for member in ensemble.members],
        "dataset": dataset,
        "device": device,
        # with --class-subset the model's other classes have no images: their rows are left out
        "per_class": per_class,
        "num_classes": ensemble.num_classes,
        # on an imbalanced set top-1 alone misleads (a model naming the largest class everywhere scores
        # its share): the mean of the per-class accuracies, and the set's balance as `train` gives it
        "mean_class_top1_accuracy": (
            sum(row["top1_accuracy"] for row in scored) / len(scored) if scored else None
        ),
        "balance": class_balance([row["images"] for row in scored]),  # (--limit leaves classes out)
    }


def _check_scored(
    report: dict[str, Any], samples: Sequence[tuple[str, int]], names: Sequence[str], where: str
) -> None:
    """Refuse a result with no image scored (its errors would be NaN, printed as "nan%" and exit 0), and
    warn of classes whose listed images were all unreadable: they are missing from the figures."""
    bad = report["bad_images"]
    if report["images"] == 0:
        first = f" (the first: {bad[0]['image']}: {bad[0]['error']})" if bad else ""
        raise DataError(
            f"{where}: none of its {len(samples)} image(s) could be read; nothing to score{first}"
        )
    listed = Counter(target for _, target in samples)
    scored = {row["class"]: row["images"] for row in report["per_class"]}
    # 0 images scored, or no row at all (--class-subset leaves out the rows of classes without images)
    lost = [names[c] for c in sorted(listed) if c < len(names) and not scored.get(names[c])]
    if lost:
        shown = ", ".join(repr(name) for name in lost[:5]) + (
            f" and {len(lost) - 5} more" if len(lost) > 5 else ""
        )
        logger.warning(
            "%d class(es) had every listed image unreadable and are not in the figures: %s", len(lost), shown
        )


def _print_report(r: dict[str, Any]) -> None:
    names = ", ".join(os.path.basename(p) for p in r["checkpoints"])
    print(
        f"{r['models']} model(s) ({names}), {r['crops']} crop(s) per image, reduce {r['reduce']}; {r['dataset']}"
    )
    print(
        f"images       {r['images']}"
        + (f" ({len(r['bad_images'])} unreadable, skipped)" if r["bad_images"] else "")
    )
    print(f"top-1 error  {r['top1_error']:6.2f}%  (accuracy {r['top1_accuracy']:.2f}%)")
    print(f"top-5 error  {r['top5_error']:6.2f}%  (accuracy {r['top5_accuracy']:.2f}%)")
    if r["num_classes"] <= 5:
        print(f"             {top5_trivial(r['num_classes'])}")
    balance = r.get("balance") or {}
    if balance.get("imbalanced") and r.get("mean_class_top1_accuracy") is not None:
        print(
            f"balance      imbalanced: the largest class is {balance['largest_class_share']:.2f}% of the images "
            f"(what naming it for every image scores); mean per-class top-1 accuracy "
            f"{r['mean_class_top1_accuracy']:.2f}%"
        )
    _print_footer(r)
    per_class = r["per_class"]
    shown = per_class
    title = "per-class accuracy (top-1, top-5, images)"
    if len(per_class) > PER_CLASS_SHOWN:
        scored = [c for c in per_class if c["images"]]
        # ties (many classes at 0%) broken by the most images: the classes whose failure costs most
        shown = sorted(scored, key=lambda c: (c["top1_accuracy"], -c["images"], c["class"]))[:10]
        title = (
            f"the 10 classes with the lowest top-1 accuracy of the {len(scored)} with images "
            "(top-1, top-5, images; all of them with --json)"
        )
    print(title + ":")
    shown_names = {id(c): one_line(c["class"]) for c in shown}  # a newline in a folder's name: one row still
    width = min(
        max((len(name) for name in shown_names.values()), default=0), 40
    )  # a 200-character name pads no more
    for c in shown:
        if not c["images"]:
            print(f"  {shown_names[id(c)]:<{width}}       -        -     0")
            continue
        print(
            f"  {shown_names[id(c)]:<{width}}  {c['top1_accuracy']:6.2f}%  {c['top5_accuracy']:6.2f}%  {c['images']:4d}"
        )


def _print_footer(r: dict[str, Any]) -> None:
    print(
        f"cost         {r['cost']} forward passes per image ({r['models']} x {r['crops']}); "
        f"{r['forward_passes']} run in all (identical crops run once)"
    )
    if r["images_per_s"] is not None:
        print(
            f"throughput   {r['images_per_s']:.2f} images/s, {r['crops_per_s']:.1f} crops/s on {r['device']} "
            f"({r['seconds']:.1f} s, {r['model_seconds']:.1f} s in the models)"
        )
    print(f"engine       {', '.join(sorted(set(r['engines'])))} (--engine, --precision)")
