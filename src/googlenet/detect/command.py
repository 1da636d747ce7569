"""`googlenet detect`: section 8's detection entry.

Here: `detect evaluate` (VOC/ILSVRC AP of a detections CSV), `detect proposals` (selective search's
recall, with MultiBox's boxes when given), `detect predict` (proposals scored by region-classifier
checkpoints, per-class NMS) and `detect boxreg` (R-CNN's box regression, beyond the paper). Training
the region classifier (`detect train`) and MultiBox (`detect multibox`) are in `googlenet.detect.pipeline`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

from googlenet.detect.metrics import ClassResult, evaluate_detections, mean_ap
from googlenet.detect.pipeline import SETTINGS, logger, setting_from_name
from googlenet.detect.voc import file_stem, load_voc, read_detections
from googlenet.errors import ConfigError, DataError
from googlenet.evaluate.models import add_engine_arguments
from googlenet.io import check_output_folder, fit_name, json_text
from googlenet.signals import signals_held


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet detect`'s flags: evaluate, proposals, predict and boxreg here, train and multibox from
    `detect.pipeline`."""
    parser = subparsers.add_parser(
        "detect",
        help="detection (section 8): proposals, MultiBox, R-CNN training, prediction, box regression, VOC/ILSVRC AP",
    )
    commands = parser.add_subparsers(dest="detect_command", metavar="COMMAND", required=True)
    ev = commands.add_parser(
        "evaluate",
        help="per-class AP and mAP of a detections CSV against VOC annotations",
        description=(
            "Average precision at IoU >= 0.5 with inclusive (+1) pixel boxes, as the PASCAL VOC and ILSVRC "
            "devkits; difficult objects ignored. Detections: CSV with image_id,class,score,xmin,ymin,xmax,ymax."
        ),
    )
    ev.add_argument("--annotations", required=True, metavar="VOC_ROOT",
                    help="folder holding VOCdevkit/VOC<year> (or that folder itself), or builtin (the "
                         "built-in scenes)")  # fmt: skip
    ev.add_argument(
        "--detections", required=True, metavar="FILE.csv", help="the detections CSV (-: standard input)"
    )
    ev.add_argument("--image-set", default="val", help="ImageSets/Main/<name>.txt (default val)")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU threshold (section 8: 0.5)")
    ev.add_argument("--eleven-point", action="store_true", help="VOC 2007's 11-point interpolated AP")
    ev.add_argument("--ilsvrc-small", action="store_true",
                    help="ILSVRC's rules: each object's threshold min(0.5, wh/((w+10)(h+10))), and a "
                         "detection matched among the objects not yet found")  # fmt: skip
    ev.add_argument("--use-difficult", action="store_true",
                    help="count objects marked difficult as ordinary ones (VOC ignores them)")  # fmt: skip
    ev.add_argument("--plot-dir", metavar="DIR", help="save a precision-recall plot per class (PNG) here")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=run_evaluate)

    pr = commands.add_parser(
        "proposals",
        help="selective-search proposals: recall at IoU 0.5/0.7, mean best overlap, count and time per image",
        description="Run each proposal setting on VOC images and report its coverage of the annotated objects.",
    )
    pr.add_argument("--annotations", required=True, metavar="VOC_ROOT", help="VOC tree, or builtin")
    pr.add_argument("--image-set", default="val", help="ImageSets/Main/<name>.txt (default val)")
    pr.add_argument("--settings", nargs="+", default=["fast", "fast-paper"], choices=SETTINGS, metavar="SETTING",
                    help=f"{', '.join(SETTINGS)}: fast / quality selective search, '-paper' with the superpixel "
                         "size doubled (section 8; default fast fast-paper)")  # fmt: skip
    pr.add_argument("--limit", type=int, metavar="N", help="the first N images only")
    pr.add_argument("--max-side", type=int, default=500, help="shrink images to this longer side first (500)")
    pr.add_argument("--multibox", metavar="FILE",
                    help="also report this MultiBox model alone and added to each setting (section 8)")  # fmt: skip
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    pr.set_defaults(func=run_proposals)

    pd = commands.add_parser(
        "predict",
        help="detections from region classifier checkpoint(s) on selective-search proposals, as CSV",
        description=(
            "Score each image's proposals with the region classifier(s) (first class 'background'; several "
            "are averaged), NMS per class, and write image_id,class,score,xmin,ymin,xmax,ymax."
        ),
    )
    pd.add_argument("--checkpoint", nargs="+", action="extend", required=True, metavar="FILE",
                    help="region classifier(s) of detect train (several: an ensemble)")  # fmt: skip
    pd.add_argument("--annotations", required=True, metavar="VOC_ROOT",
                    help="VOC tree whose images to detect on, or builtin")  # fmt: skip
    pd.add_argument("--image-set", default="val", help="ImageSets/Main/<name>.txt (default val)")
    pd.add_argument("--limit", type=int, metavar="N", help="the first N images only")
    pd.add_argument("--proposals", choices=SETTINGS, default="fast-paper", metavar="SETTING",
                    help=f"selective search setting: {', '.join(SETTINGS)} (default fast-paper)")  # fmt: skip
    pd.add_argument("--max-side", type=int, default=500,
                    help="shrink images to this longer side for the proposals (500)")  # fmt: skip
    pd.add_argument("--score-threshold", type=float, default=0.05,
                    help="drop detections scoring below this before NMS (0.05)")  # fmt: skip
    pd.add_argument("--nms-iou", type=float, default=0.3, help="per-class NMS IoU (R-CNN: 0.3)")
    pd.add_argument("--context", type=int, help="context pixels at 227 to warp regions with (default: what "
                    "the checkpoint's detect train run used, else R-CNN's 16)")  # fmt: skip
    pd.add_argument("--max-per-image", type=int, default=100,
                    help="keep at most this many of an image's highest-scoring detections (100)")  # fmt: skip
    pd.add_argument("--multibox", metavar="FILE", help="add this MultiBox model's top proposals (section 8)")
    pd.add_argument("--shared-features", action="store_true",
                    help="beyond the paper: one trunk pass per image and RoIAlign per proposal (faster)")  # fmt: skip
    pd.add_argument("--box-regression", metavar="FILE",
                    help="beyond the paper: move each detection by this class-specific regression "
                         "(googlenet detect boxreg) and redo NMS")  # fmt: skip
    pd.add_argument("--output", required=True, metavar="FILE.csv",
                    help="the detections CSV to write (-: standard output, for detect evaluate --detections -)")  # fmt: skip
    pd.add_argument(
        "--draw", metavar="DIR", help="also write one PNG per image with its detections drawn and labelled"
    )
    pd.add_argument(
        "--draw-threshold", type=float, default=0.5, help="draw detections scoring at least this (0.5)"
    )
    pd.add_argument(
        "--json", action="store_true", help="print one JSON object: the summary and every detection"
    )
    add_engine_arguments(pd, default="eager")
    pd.set_defaults(func=run_predict)

    br = commands.add_parser(
        "boxreg",
        help="fit R-CNN's class-specific bounding-box regression on a region classifier (beyond the paper)",
        description=(
            "Warp the training images' proposals that overlap an object by IoU >= --min-iou, take the region "
            "classifier's pooled features, and fit one ridge regression per class to R-CNN's box targets "
            "(lambda 1000 on features scaled to norm 20). Use the file with detect predict --box-regression."
        ),
    )
    br.add_argument("--checkpoint", required=True, metavar="FILE", help="the region classifier (one member)")
    br.add_argument("--annotations", required=True, metavar="VOC_ROOT", help="VOC tree, or builtin")
    br.add_argument("--image-set", default="train",
                    help="ImageSets/Main/<name>.txt to fit on (default train, not val: fit and test apart)")  # fmt: skip
    br.add_argument("--limit", type=int, metavar="N", help="the first N images only")
    br.add_argument("--proposals", choices=SETTINGS, default="fast-paper", metavar="SETTING",
                    help=f"selective search setting: {', '.join(SETTINGS)} (default fast-paper)")  # fmt: skip
    br.add_argument("--max-side", type=int, default=500,
                    help="shrink images to this longer side for the proposals (500)")  # fmt: skip
    br.add_argument("--multibox", metavar="FILE", help="add this MultiBox model's top proposals")
    br.add_argument("--min-iou", type=float, default=0.6, help="R-CNN: 0.6")
    br.add_argument("--context", type=int, help="context pixels at 227 to warp regions with (default: what "
                    "the checkpoint's detect train run used, else R-CNN's 16)")  # fmt: skip
    br.add_argument("--ridge", type=float, default=1000.0, help="R-CNN's lambda (1000)")
    br.add_argument("--per-image", type=int, default=32, help="training pairs per image at most")
    br.add_argument("--output", required=True, metavar="FILE.pt",
                    help="the box regression file to write (an earlier one of ours is replaced)")  # fmt: skip
    br.add_argument("--json", action="store_true", help="print one JSON object")
    br.set_defaults(func=run_boxreg)

    from googlenet.detect import pipeline

    pipeline.register(commands)


def run_proposals(args: argparse.Namespace) -> int:
    """Run `googlenet detect proposals` from parsed flags: the recall of each selective-search setting (with
    `--multibox`, also of MultiBox alone and added to each setting); the exit code."""
    from dataclasses import asdict

    from googlenet.detect.proposals import mabo, percent, proposal_recall, propose_all
    from googlenet.detect.voc import voc_images

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {args.limit}")
    settings = [setting_from_name(name, args.max_side) for name in args.settings]
    from googlenet.detect.pipeline import gather_proposals, resolve_annotations
    from googlenet.detect.training import to_pixel_boxes

    args.annotations = resolve_annotations(args.annotations)
    truth = to_pixel_boxes(load_voc(args.annotations, args.image_set))  # proposals are 0-based
    images = voc_images(args.annotations, args.image_set)[: args.limit]
    rows = []
    skipped: list[tuple[str, str]] = []  # undecodable images: reported once, left out of the recall
    multibox: dict[str, np.ndarray] = {}
    if args.multibox:
        multibox, multibox_seconds = gather_proposals(images, None, args.max_side, args.multibox, skipped)
    for setting in settings:
        progress = sys.stderr.isatty() and not args.json
        proposals, seconds = propose_all(images, setting, progress=progress, skipped=skipped)
        scored = {image: truth[image] for image, _ in images if image in proposals}
        rows.append({"setting": setting.name, **asdict(proposal_recall(proposals, scored, seconds))})
        if args.multibox:
            merged = {image: np.concatenate([boxes, multibox[image]]) for image, boxes in proposals.items()}
            recall = proposal_recall(merged, scored, seconds + multibox_seconds)
            rows.append({"setting": f"{setting.name} + MultiBox", **asdict(recall)})
    _check_some_read(args, images, skipped)
    if args.multibox:
        scored = {image: truth[image] for image, _ in images if image in multibox}
        rows.append(
            {"setting": "MultiBox alone", **asdict(proposal_recall(multibox, scored, multibox_seconds))}
        )
    if args.json:
        report = {"images": len(images) - len(skipped), "skipped_images": len(skipped), "settings": rows,
                  "bad_images": [{"image": path, "error": message} for path, message in skipped]}  # fmt: skip
        print(json_text(report))
        return 0
    width = max(28, *(len(r["setting"]) for r in rows))  # "fast, superpixels x2 + MultiBox" is 31
    print(
        f"{'setting':<{width}} {'recall@0.5':>10} {'recall@0.7':>10} {'MABO':>6} {'proposals':>9} {'s/image':>8}"
    )
    for r in rows:
        print(f"{r['setting']:<{width}} {percent(r['recall_50']):>10} {percent(r['recall_70']):>10} {mabo(r['mabo']):>6} "
              f"{r['proposals_per_image']:>9.0f} {r['seconds_per_image']:>8.2f}")  # fmt: skip
    print(f"({len(images) - len(skipped)} images, {rows[0]['objects']} objects that are not difficult"
          + (f"; {len(skipped)} unreadable image(s) skipped)" if skipped else ")"))  # fmt: skip
    return 0


def _check_some_read(
    args: argparse.Namespace, images: list[tuple[str, str]], skipped: list[tuple[str, str]]
) -> None:
    """One line when not one of `images` could be read (`skipped` names each unreadable path once)."""
    if images and len({path for path, _ in skipped}) == len(images):
        raise DataError(f"--annotations {args.annotations}: none of the {len(images)} images of "
                        f"'{args.image_set}' could be read (the first: {skipped[0][1]})")  # fmt: skip


def run_predict(args: argparse.Namespace) -> int:
    """Run `googlenet detect predict` from parsed flags: score each image's proposals, write the detections
    CSV (and, with `--draw`, one PNG per image); the exit code."""
    from googlenet.detect.detector import DetectorConfig, SharedFeatures, detect_images, detection_classes
    from googlenet.detect.pipeline import gather_proposals, resolve_annotations
    from googlenet.detect.voc import is_detections_csv, voc_images, write_detections
    from googlenet.evaluate.models import load_ensemble
    from googlenet.io import check_output
    from googlenet.model.weights import load_checkpoint_model

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {args.limit}")
    if not 0 <= args.draw_threshold <= 1:
        raise ConfigError(f"--draw-threshold: must be in [0, 1], got {args.draw_threshold}")
    if args.draw and os.path.exists(args.draw) and not os.path.isdir(args.draw):  # before the work
        raise ConfigError(f"--draw {args.draw}: is a file, not a folder for the drawn images")
    if args.draw:  # the drawings are named after the images: a folder of the user's (or a class folder
        # of a data set) would have its own files replaced and new ones added; --draw's own is marked
        marked = os.path.isfile(os.path.join(args.draw, DRAWN_MARK))
        check_output_folder(
            "--draw", args.draw, lambda _name: marked, "--draw",
            f"give a new folder (one drawn before 2026-12-07 has no {DRAWN_MARK} mark: add that empty "
            "file to reuse it)",
        )  # fmt: skip
        _check_draw_folder(args.draw)  # writable: found now, not after the proposals and the scoring
    to_stdout = (
        args.output == "-"
    )  # the CSV on standard output: `... | googlenet detect evaluate --detections -`
    if to_stdout and args.json:
        raise ConfigError("--output - prints the detections CSV on standard output; --json would print there too: "
                          "give one")  # fmt: skip
    if not to_stdout:
        check_output(
            "--output", args.output, replaceable=is_detections_csv, kind="a detections CSV",
            inputs={"--checkpoint": args.checkpoint, "--box-regression": args.box_regression,
                    "--multibox": args.multibox},
        )  # fmt: skip
    config = DetectorConfig(
        score_threshold=args.score_threshold, nms_iou=args.nms_iou, max_per_image=args.max_per_image,
        context=_checked_context(args),
    )  # fmt: skip
    ensemble = load_ensemble(args.checkpoint, engine=args.engine, precision=args.precision)
    classes, _ = detection_classes(ensemble)
    regression, regressing = None, None
    if args.box_regression:
        from googlenet.detect.boxreg import BoxRegressor, check_pairing
        from googlenet.model.weights import load_checkpoint_model

        regression = BoxRegressor.load(args.box_regression)
        regressing = load_checkpoint_model(
            args.checkpoint[0], aux_logits=False
        )  # the first member's features
        check_pairing(regression, classes, args.box_regression, regressing[0], args.checkpoint[0])
    scorer = None
    if args.shared_features:
        loaded = [load_checkpoint_model(path, aux_logits=False) for path in args.checkpoint]
        scorer = SharedFeatures([m for m, _ in loaded], [meta for _, meta in loaded], config)
    annotations = resolve_annotations(args.annotations)
    images = voc_images(annotations, args.image_set)[: args.limit]
    skipped: list[tuple[str, str]] = []  # undecodable images: reported once, no detections
    proposals, seconds = gather_proposals(images, args.proposals, args.max_side, args.multibox, skipped)
    started = time.perf_counter()
    detections = detect_images(ensemble, images, proposals, config, skip=True, scorer=scorer,
                               progress=sys.stderr.isatty())  # fmt: skip
    scoring = time.perf_counter() - started
    done = len(images) - len(skipped)
    _check_some_read(args, images, skipped)  # before --output is written: an earlier file stays as it was
    refining, refine_seconds = "", None
    if regression is not None:
        started = time.perf_counter()
        detections = _refine(detections, regression, regressing, images, config)
        refine_seconds = (time.perf_counter() - started) / max(1, done)
        refining = f", box regression {refine_seconds:.2f} s/image"
    # The CSV and the drawings are one result: the PNGs are drawn into a hidden folder beside their own,
    # then the CSV is written and the PNGs moved in with Ctrl-C held (milliseconds), so an interruption
    # leaves the earlier set or the new one, never a new CSV beside old drawings.
    staging = _staging_folder(args.draw) if args.draw else None
    try:
        staged = (
            _draw(detections, images, staging, args.draw_threshold, config.pixel_offset) if staging else []
        )
        staged = list(dict.fromkeys(staged))  # an image listed twice in the set is drawn (and moved) once
        with signals_held():
            write_detections(args.output, detections)
            drawn = [os.path.join(args.draw, os.path.basename(path)) for path in staged]
            for path, target in zip(staged, drawn, strict=True):
                os.replace(path, target)
            if args.draw:  # an earlier run's drawings of images this one did not draw: not this CSV's
                _remove_other_drawings(args.draw, drawn)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    if args.json:
        print(json_text({
            "output": args.output, "images": done, "skipped_images": len(skipped), "models": len(ensemble.members),
            "proposal_seconds_per_image": seconds / max(1, done), "scoring_seconds_per_image": scoring / max(1, done),
            "box_regression_seconds_per_image": refine_seconds, "drawn": drawn,
            "detections": [{"image_id": d.image, "class": d.label, "score": d.score, "box": list(d.box)}
                           for d in detections],
        }, indent=1))  # fmt: skip
        return 0
    found = len({d.label for d in detections})
    print(f"{len(detections)} detections of {found} of the {len(classes)} classes on {done} images by "
          f"{len(ensemble.members)} model(s) -> {'standard output' if to_stdout else args.output} (proposals "
          f"{seconds / max(1, done):.2f} s/image, scoring {scoring / max(1, done):.2f} s/image{refining})"
          + (f"; {len(skipped)} unreadable image(s) skipped" if skipped else ""),
          file=sys.stderr if to_stdout else sys.stdout)  # fmt: skip
    return 0


DRAWN_MARK = ".googlenet-drawings"  # marks a folder --draw made; it lists the drawings of the last run


def _label_font() -> str | None:
    """matplotlib's DejaVu Sans for the labels (Latin with accents, Greek, Cyrillic; CJK still not):
    PIL's default bitmap font, what torchvision draws with otherwise, has ASCII only. None without it."""
    try:
        from matplotlib import font_manager

        return str(font_manager.findfont("DejaVu Sans", fallback_to_default=False))
    except Exception:  # noqa: BLE001 - no such font: the default one
        return None


def _check_draw_folder(folder: str) -> None:
    """`ConfigError` now if `--draw` cannot be written (a read-only file system, an immutable folder),
    leaving no trace: the staging folder made to find out, the folders made for it and a mark it added
    go again."""
    first_made = os.path.abspath(folder)
    while not os.path.exists(os.path.dirname(first_made)) and os.path.dirname(first_made) != first_made:
        first_made = os.path.dirname(first_made)  # the outermost folder makedirs will create
    existed = os.path.isdir(folder)
    marked = os.path.isfile(os.path.join(folder, DRAWN_MARK))
    shutil.rmtree(_staging_folder(folder), ignore_errors=True)
    if not existed:
        shutil.rmtree(first_made, ignore_errors=True)
    elif not marked:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, DRAWN_MARK))


def _remove_other_drawings(folder: str, drawn: list[str]) -> None:
    """Remove the drawings the last run into `folder` listed in its mark that this run did not draw
    again (a user's own files, and drawings from before the list was kept, stay), then list this run's."""
    from googlenet.io import atomic_open

    mark = os.path.join(folder, DRAWN_MARK)
    keep = {os.path.basename(path) for path in drawn}
    try:
        with open(mark, encoding="utf-8", errors="surrogateescape") as handle:
            earlier = {line.rstrip("\n") for line in handle if line.strip()}
    except OSError:
        earlier = set()
    for name in earlier - keep:
        if name == os.path.basename(name) and name.endswith(".png"):  # a name in this folder, nothing else
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
    listing = "".join(f"{name}\n" for name in sorted(keep)).encode("utf-8", "surrogateescape")
    with contextlib.suppress(OSError), atomic_open(mark, "wb") as out:
        out.write(listing)


def _staging_folder(folder: str) -> str:
    """A new hidden folder inside `folder` (made if need be, and marked as --draw's), where `_draw` writes
    before the move."""
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, DRAWN_MARK), "a", encoding="utf-8"):
            pass
        return tempfile.mkdtemp(prefix=".drawing-", dir=folder)
    except OSError as exc:
        raise ConfigError(f"--draw {folder}: cannot create the folder ({exc.strerror or exc})") from None


def _draw(detections: list[Any], images: list[tuple[str, str]], folder: str, threshold: float,
          offset: float) -> list[str]:  # fmt: skip
    """One PNG per image (`folder/<image_id>.png`, a folder `_staging_folder` made) with its detections
    >= `threshold` as labelled boxes."""
    import torch
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    from googlenet.data.crops import to_uint8_tensor
    from googlenet.data.decode import load_image
    from googlenet.io import atomic_open

    by_image: dict[str, list[Any]] = {}
    for d in detections:
        if d.score >= threshold:
            by_image.setdefault(d.image, []).append(d)
    paths = []
    for image_id, path in images:
        try:
            pixels = to_uint8_tensor(load_image(path))
        except Exception:  # noqa: BLE001 - an unreadable image was reported when it was scored
            continue
        found = by_image.get(image_id, [])
        if found:
            boxes = torch.tensor([d.box for d in found], dtype=torch.float32) - offset  # to 0-based pixels
            labels = [f"{d.label} {d.score:.2f}" for d in found]
            font = _label_font()
            pixels = draw_bounding_boxes(
                pixels, boxes, labels=labels, colors="red", width=2, font=font, font_size=12 if font else None
            )
        target = os.path.join(folder, f"{file_stem(image_id)}.png")
        with atomic_open(target, "wb") as handle:
            Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(handle, format="PNG")
        paths.append(target)
    return paths


def _refine(detections: list[Any], regression: Any, regressing: Any, images: list[tuple[str, str]],
            config: Any) -> list[Any]:  # fmt: skip
    """Apply a box regression to each image's detections, with the features of the member it was
    fitted on (`regressing`: that model and its metadata, the first checkpoint's)."""
    from googlenet.data.crops import to_uint8_tensor
    from googlenet.data.decode import load_image
    from googlenet.detect.boxreg import refine_detections

    model, meta = regressing
    model.eval()
    by_image: dict[str, list[Any]] = {}
    for d in detections:
        by_image.setdefault(d.image, []).append(d)
    out: list[Any] = []
    for image_id, path in images:
        if image_id in by_image:
            pixels = to_uint8_tensor(load_image(path))
            out += refine_detections(by_image[image_id], regression, model, meta, pixels, config.nms_iou,
                                     config.pixel_offset, config.batch_size)  # fmt: skip
    return out


def run_boxreg(args: argparse.Namespace) -> int:
    """Run `googlenet detect boxreg` from parsed flags: fit the box regression on the training images'
    proposals and save it to `--output`; the exit code."""
    from googlenet.detect.boxreg import FORMAT, BoxRegConfig, fit_box_regressor
    from googlenet.detect.detector import split_background
    from googlenet.detect.pipeline import gather_proposals, resolve_annotations
    from googlenet.detect.training import to_pixel_boxes
    from googlenet.detect.voc import voc_images
    from googlenet.io import check_output, saved_format
    from googlenet.model.weights import load_checkpoint_model

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {args.limit}")
    check_output(
        "--output", args.output, replaceable=lambda file: saved_format(file) == FORMAT,
        kind="a box regression file", inputs={"--checkpoint": args.checkpoint, "--multibox": args.multibox},
    )  # fmt: skip
    config = BoxRegConfig(
        min_iou=args.min_iou, ridge=args.ridge, per_image=args.per_image, context=_checked_context(args)
    )
    model, meta = load_checkpoint_model(args.checkpoint, aux_logits=False)
    classes, _ = split_background(meta.get("class_names") or [], args.checkpoint)
    annotations = resolve_annotations(args.annotations)
    images = voc_images(annotations, args.image_set)[: args.limit]
    truth = to_pixel_boxes(load_voc(annotations, args.image_set))
    skipped: list[tuple[str, str]] = []
    proposals, _ = gather_proposals(images, args.proposals, args.max_side, args.multibox, skipped)
    started = time.perf_counter()
    regressor = fit_box_regressor(model, meta, [i for i in images if i[0] in proposals], truth, proposals,
                                  classes, config, progress=sys.stderr.isatty())  # fmt: skip
    regressor.save(args.output)
    report = {"output": args.output, "checkpoint": args.checkpoint, "images": len(images) - len(skipped),
              "pairs": regressor.pairs, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    if args.json:
        print(json_text(report))
    else:
        print(f"box regression on {sum(regressor.pairs.values())} proposal/object pairs of "
              f"{report['images']} images -> {args.output} ({report['seconds']} s)")  # fmt: skip
    return 0


def _row(r: ClassResult) -> dict[str, Any]:
    return {"class": r.label, "ap": None if math.isnan(r.ap) else r.ap, "positives": r.positives,
            "detections": r.detections}  # fmt: skip


def save_pr_plots(
    results: dict[str, ClassResult], folder: str, ap_kind: str = "all-point", iou: str = "IoU 0.5"
) -> list[str]:
    """One precision-recall PNG per class with positives; returns the paths. The title gives the AP as
    computed (`ap_kind`: all-point, or VOC 2007's 11-point) and how detections matched (`iou`), and
    the class's detection and object counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from googlenet.detect.metrics import precision_envelope
    from googlenet.io import atomic_open

    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--plot-dir {folder}: cannot create the folder ({exc.strerror or exc})") from None
    paths = []
    for name, r in results.items():
        if r.positives == 0:
            continue
        fig, ax = plt.subplots(figsize=(4, 3.2), dpi=100)
        ax.plot(
            *precision_envelope(r.recall, r.precision),
            drawstyle="steps-pre",
            label="envelope (area: all-point AP)",
        )
        ax.plot(r.recall, r.precision, ".", color="0.5", markersize=3, label="after each detection")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        if r.detections:
            ax.legend(fontsize=7, loc="lower left")
        else:  # empty axes with a legend of nothing read as a drawing that failed
            ax.text(0.5, 0.5, f"no detections of this class\n({r.positives} objects)", ha="center",
                    va="center", fontsize=9, transform=ax.transAxes)  # fmt: skip
        shown = name if len(name) <= 28 else name[:27] + "\u2026"  # a long name pushed the AP off the figure
        ax.set_title(
            f"{shown}: {ap_kind} AP {100 * r.ap:.1f}% ({iou})\n{r.detections} detections, {r.positives} objects",
            fontsize=9,
            parse_math=False,  # a class name, not $TeX$
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(folder, f"pr-{_file_name(name)}.png")
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format="png")
        plt.close(fig)
        paths.append(path)
    # An earlier call's plots of classes this one did not plot would pass for today's: removed (the
    # folder holds nothing but such plots, `check_output_folder`)
    written = {os.path.basename(path) for path in paths}
    for entry in os.scandir(folder):
        if entry.name.startswith("pr-") and entry.name.endswith(".png") and entry.name not in written:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    return paths


def _file_name(label: str) -> str:
    """A class name as one file name: anything but letters, digits, '-', '_' and '.' becomes '_' (a name
    from an annotation must not reach outside --plot-dir, e.g. "a/../../b"); a name that changed, or a
    long one (cut to 100 characters), ends in 8 hex digits of its SHA-256, so `a/b`, `a_b` and `a b` get
    three files."""
    safe = re.sub(r"[^\w.-]", "_", label).lstrip(".") or "_"
    if safe == label and len(os.fsencode(safe)) <= 100:
        return safe
    return f"{fit_name(safe, 100)}-{hashlib.sha256(os.fsencode(label)).hexdigest()[:8]}"


def run_evaluate(args: argparse.Namespace) -> int:
    """Run `googlenet detect evaluate` from parsed flags: per-class AP and mAP of a detections CSV, with a
    warning for rows no annotation can match; the exit code."""
    if not 0 < args.iou <= 1:
        raise ConfigError(f"--iou: must be in (0, 1], got {args.iou}")
    from googlenet.detect.pipeline import resolve_annotations

    if args.plot_dir and os.path.exists(args.plot_dir) and not os.path.isdir(args.plot_dir):
        raise ConfigError(f"--plot-dir {args.plot_dir}: is a file, not a folder")
    if args.plot_dir:  # before the work: the plots would replace a user's files of the same names
        check_output_folder(
            "--plot-dir", args.plot_dir, lambda name: name.startswith("pr-") and name.endswith(".png"),
            "--plot-dir", "give a new folder",
        )  # fmt: skip
    truth = load_voc(resolve_annotations(args.annotations), args.image_set)
    if not truth:
        raise DataError(f"--annotations {args.annotations}: image set {args.image_set!r} lists no images")
    detections = read_detections(args.detections)
    unknown = sorted({d.image for d in detections} - set(truth))
    scored = [d for d in detections if d.image in truth]  # rows on images outside the set are left out
    results = evaluate_detections(
        scored, truth, None, args.iou, args.eleven_point, args.ilsvrc_small, args.use_difficult
    )
    mean = mean_ap(results)
    counted = sum(1 for r in results.values() if r.positives > 0)
    report: dict[str, Any] = {
        "mAP": None if math.isnan(mean) else mean,
        "classes_with_objects": counted,
        "per_class": [_row(r) for r in results.values()],
        "images": len(truth),
        # a file of part of the set (`detect predict --limit`) scores the rest as all missed
        "images_without_detections": len(set(truth) - {d.image for d in scored}),
        "detections": len(detections),
        "detections_on_unknown_images": len(detections) - len(scored),
        "detections_of_unknown_classes": sum(1 for d in detections if d.label not in results),
        "iou_threshold": args.iou,
        "ap": "11-point" if args.eleven_point else "all-point",
        "ilsvrc_small_objects": args.ilsvrc_small,
        "use_difficult": args.use_difficult,
        "difficult_objects": sum(sum(objects.difficult) for objects in truth.values()),
    }
    if args.plot_dir:
        matched = "small objects' own IoU" if args.ilsvrc_small else f"IoU {args.iou:g}"
        report["plots"] = save_pr_plots(results, args.plot_dir, report["ap"], matched)
    # Rows nothing can match are not scored (as the VOC devkit does), but never silently: a misspelt
    # class or image id would otherwise just lower the mAP.
    strays = sorted({d.label for d in detections} - set(results))
    if unknown:
        print(f"googlenet detect evaluate: warning: {report['detections_on_unknown_images']} detection(s) in "
              f"{args.detections} on {len(unknown)} image id(s) not in the annotations' {args.image_set!r} set, "
              f"e.g. {unknown[0]!r}; not scored", file=sys.stderr)  # fmt: skip
    if strays:
        print(f"googlenet detect evaluate: warning: {report['detections_of_unknown_classes']} detection(s) in "
              f"{args.detections} of class(es) with no object in the annotations ({', '.join(map(repr, strays[:5]))}); "
              "not scored", file=sys.stderr)  # fmt: skip
    if args.json:
        print(json_text(report))
        return 0
    print(f"{'class':<14} {'AP':>7} {'objects':>8} {'detections':>11}")
    for row in report["per_class"]:
        ap = "-" if row["ap"] is None else f"{100 * row['ap']:.2f}%"
        print(f"{row['class']:<14} {ap:>7} {row['positives']:>8} {row['detections']:>11}")
    if report["mAP"] is None:
        print(
            f"mAP undefined: no class has an object that counts in {len(truth)} images (only difficult ones?)"
        )
    else:
        match = (f"IoU >= min({args.iou}, wh/((w+10)(h+10))) per object, ILSVRC's rule" if args.ilsvrc_small
                 else f"IoU >= {args.iou}")  # fmt: skip
        bare = report["images_without_detections"]
        images = f"{len(truth)} images" + (f" ({bare} with no detection in the file)" if bare else "")
        print(f"mAP {100 * report['mAP']:.2f}% over the {counted} classes with objects, {images}, "
              f"{len(scored)} detections ({report['ap']} AP, {match})")  # fmt: skip
    if report["difficult_objects"]:
        treated = "counted as ordinary ones (--use-difficult)" if args.use_difficult else (
            "ignored, as VOC's devkit does (--use-difficult counts them)")  # fmt: skip
        print(f"{report['difficult_objects']} object(s) marked difficult: {treated}")
    if args.plot_dir:
        print(f"saved {len(report['plots'])} precision-recall plots in {args.plot_dir}")
    return 0


def _context(args: argparse.Namespace) -> int:
    """--context, else what the (first) checkpoint's `detect train` run warped its regions with, else 16."""
    from googlenet.detect.pipeline import DEFAULT_CONTEXT, run_context

    if args.context is not None:
        return int(args.context)
    checkpoint = args.checkpoint[0] if isinstance(args.checkpoint, list) else args.checkpoint
    found = run_context(checkpoint)
    if found is None:  # a checkpoint copied out of its run folder: its context is not recorded in it
        logger.warning("context %d px (at 227) assumed: no detect train run folder holds %s (give --context "
                       "if its regions were warped with another)", DEFAULT_CONTEXT, checkpoint)  # fmt: skip
    elif found != DEFAULT_CONTEXT:
        logger.info("context %d px (at 227), as %s's detect train run warped its regions", found, checkpoint)
    return DEFAULT_CONTEXT if found is None else found


def _checked_context(args: argparse.Namespace) -> int:
    """`_context(args)`, checked against the (first) checkpoint's input size before any proposal is
    computed: the context is given at 227 pixels and scaled to that size (`regions.check_context`)."""
    from googlenet.detect.pipeline import _init_info
    from googlenet.detect.regions import check_context

    checkpoint = args.checkpoint[0] if isinstance(args.checkpoint, list) else args.checkpoint
    _, input_size = _init_info(checkpoint)  # first: a missing file is the error, not the context's warning
    context = _context(args)
    name = "--context" if args.context is not None else f"the context of {checkpoint}'s detect train run"
    check_context(context, int(input_size or 224), name)  # 224: load_ensemble's default too
    return context
