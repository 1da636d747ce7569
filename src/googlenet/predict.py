"""`googlenet predict`: the top classes of image files, from one checkpoint, an ensemble or a weight file.

    googlenet predict cat.jpg dog.png --checkpoint runs/x/final.pt
    googlenet predict photo.jpg --weights googlenet-1378be20.pth --variant torchvision --crops 144

Class names come from the checkpoint's metadata; a 1000-class weight file without names gets the
ImageNet names shipped with the package. With several checkpoints or several crops, the softmax
probabilities are averaged over crops and models (section 7). An unreadable image gives a one-line
error on stderr and the others are still predicted; the exit status is then 1 (`--on-bad abort`: stop
at the first one; the images before it are already printed, except with `--json`, which prints nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from googlenet.console import PROGRESS_LINE_EVERY_S, ProgressLines, one_line, stderr_is_tty
from googlenet.data.crops import CROP_COUNTS, CropSpec, cut_crops
from googlenet.data.decode import is_image_file
from googlenet.errors import CheckpointError, ConfigError, DataError, UsageError
from googlenet.evaluate.metrics import REDUCTIONS, aggregate_probs
from googlenet.evaluate.models import (
    Ensemble,
    add_engine_arguments,
    add_model_arguments,
    load_ensemble,
    resolve_device,
)
from googlenet.evaluate.protocol import check_finite, member_probs
from googlenet.io import json_text, looks_like_torch_file

# Crops one forward pass of `predict_files` takes (images of 1 crop: 32 at a time; of 10: 3; of 144: 1).
PREDICT_BATCH = 32


def predict_image(
    image: Image.Image,
    ensemble: Ensemble,
    spec: CropSpec,
    *,
    device: torch.device,
    reduce: str = "mean",
    topk: int = 5,
    batch_size: int = 144,
) -> list[dict[str, Any]]:
    """The `topk` classes of one RGB image, best first: rank, index, class (and wnid), probability.

    With reduce="max" the "probability" is the max-pooled score (section 7's alternative), not a
    distribution.
    """
    if topk < 1:
        raise ConfigError(f"topk: must be at least 1, got {topk}")
    crops = cut_crops(image, spec.boxes(image.width, image.height), spec.crop_size, ensemble.interpolation)
    return _predict_crops([crops], ensemble, device=device, reduce=reduce, topk=topk, batch_size=batch_size)[
        0
    ]


def _predict_crops(
    crops: Sequence[torch.Tensor],
    ensemble: Ensemble,
    *,
    device: torch.device,
    reduce: str,
    topk: int,
    batch_size: int,
) -> list[list[dict[str, Any]]]:
    """The top classes of several images at once, from each image's uint8 crops: one forward pass over
    all of them per model (one image per pass was 4.4 times slower than `evaluate` on 1-crop images)."""
    counts = [len(c) for c in crops]
    batch = torch.cat(list(crops)).to(device)
    with torch.inference_mode():
        probs = torch.stack([check_finite(m, member_probs(m, batch, batch_size)) for m in ensemble.members])
    tops = []
    for image_probs in probs.split(counts, dim=1):  # models x crops x classes, one image's
        scores = aggregate_probs(image_probs.unsqueeze(1), reduce)[
            0
        ].cpu()  # models x 1 image x crops x classes
        tops.append(_top_entries(scores, ensemble, topk))
    return tops


def _top_entries(scores: torch.Tensor, ensemble: Ensemble, topk: int) -> list[dict[str, Any]]:
    """The `topk` of one image's class `scores`, best first: rank, index, class (and wnid), probability."""
    values, indices = scores.topk(min(topk, scores.numel()))
    top = []
    for rank, (value, index) in enumerate(zip(values.tolist(), indices.tolist(), strict=True), start=1):
        entry: dict[str, Any] = {"rank": rank, "index": index, "class": ensemble.class_names[index]}
        if ensemble.wnids:
            entry["wnid"] = ensemble.wnids[index]
        entry["probability"] = value
        top.append(entry)
    return top


def predict_files(
    paths: Sequence[str | os.PathLike[str]],
    ensemble: Ensemble,
    *,
    crops: int = 1,
    device: torch.device | str = "cpu",
    reduce: str = "mean",
    topk: int = 5,
    batch_size: int = 144,
    on_bad: str = "skip",
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One result per path, in order: {"image", "top": [...]}, or {"image", "error"} if it cannot be read
    (`on_bad="abort"`: the `DataError` is raised instead). `on_result(result)` sees each, in order, as
    soon as its batch is done (`PREDICT_BATCH` crops, several images at a time; the CLI prints it then,
    so a long folder shows its results as they come)."""
    from googlenet.data.decode import load_image

    if reduce not in REDUCTIONS:
        raise ConfigError(f"reduce: must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    if on_bad not in ("skip", "abort"):
        raise ConfigError(f"on_bad: must be skip or abort, got {on_bad!r}")
    if isinstance(paths, str | bytes | os.PathLike):  # a str is a sequence too: one file per character
        raise ConfigError(
            f"paths: a list of image files, got the one path {os.fsdecode(paths)!r} (wrap it in a list)"
        )
    spec = ensemble.crop_spec(crops)
    device = torch.device(device)
    results: list[dict[str, Any]] = []
    waiting: list[tuple[dict[str, Any], torch.Tensor | None]] = []  # in order: errors wait their turn
    per_pass = max(1, PREDICT_BATCH // spec.crops)  # images whose crops go through the models at once

    def flush() -> None:
        cut = [c for _, c in waiting if c is not None]
        tops = iter(
            _predict_crops(cut, ensemble, device=device, reduce=reduce, topk=topk, batch_size=batch_size)
            if cut
            else []
        )
        for result, image_crops in waiting:
            if image_crops is not None:
                result["top"] = next(tops)
            results.append(result)
            if on_result is not None:
                on_result(result)
        waiting.clear()

    for path in paths:
        try:
            image = load_image(path)
        except DataError as exc:
            if on_bad == "abort":
                flush()  # the images before it are given first
                raise
            waiting.append(({"image": str(path), "error": str(exc)}, None))
        else:
            boxes = spec.boxes(image.width, image.height)
            waiting.append(
                ({"image": str(path)}, cut_crops(image, boxes, spec.crop_size, ensemble.interpolation))
            )
        if sum(c is not None for _, c in waiting) >= per_pass:
            flush()
    flush()
    return results


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet predict`'s flags."""
    parser = subparsers.add_parser(
        "predict",
        help="top-5 classes of images (a checkpoint, an ensemble, or a torchvision weight file)",
        description=(
            "Print the top classes with probabilities for each image. Several --checkpoint files form an "
            "ensemble; --crops 10 or 144 averages over section 7's crops."
        ),
    )
    parser.add_argument(
        "images", nargs="*", metavar="IMAGE", help="image files or folders of them (at least one)"
    )
    add_model_arguments(parser)
    parser.add_argument("--crops", type=int, choices=CROP_COUNTS, default=1,
                        help="1: centre crop (default); 10: corners + centre + mirrors; 144: section 7")  # fmt: skip
    parser.add_argument(
        "--reduce", choices=REDUCTIONS, default="mean", help="over crops: mean (paper) or max"
    )
    parser.add_argument(
        "--topk",
        type=int,
        default=5,
        help="classes shown per image (default 5; at most the number of classes)",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    add_engine_arguments(parser, default="eager")
    parser.add_argument("--on-bad", choices=("skip", "abort"), default="skip",
                        help="an unreadable image: skip it, named on stderr, and exit 1 after predicting the "
                             "others (default); or stop at the first one (earlier results are already printed)")  # fmt: skip
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object, at the end")
    output.add_argument("--jsonl", action="store_true",
                        help="print one JSON object per image as it is done (JSON Lines: "
                             '{"image", "top"} or {"image", "error"})')  # fmt: skip
    parser.set_defaults(func=run)


def _images_after_checkpoints(args: argparse.Namespace) -> tuple[list[str], list[dict[str, str]]]:
    """The IMAGE arguments, including images typed after `--checkpoint A.pt` (the natural order), with
    folders expanded (`_expand_folders`: the images and what could not be used).

    `--checkpoint` takes one or more files (an ensemble), so argparse hands it every path that follows;
    from the first path after the first checkpoint that cannot be one (a file torch.save did not write,
    by its first bytes, or a missing one named as an image) on, the list is the user's images, when an image file (by extension or content) or
    a folder is among them: a file that is not an image there (`notes.txt` in `*`, sorted before or after
    the images) is then reported as such, as it is when given before `--checkpoint`.
    """
    images = list(args.images)
    first = next(
        (i for i in range(1, len(args.checkpoint)) if not _may_be_checkpoint(args.checkpoint[i])), None
    )
    if first is not None and any(_is_image_argument(path) for path in args.checkpoint[first:]):
        images += args.checkpoint[first:]
        args.checkpoint = args.checkpoint[:first]
    if not images and len(args.checkpoint) > 1 and not os.path.isfile(args.checkpoint[-1]):
        last = args.checkpoint[-1]  # a mistyped image folder, say: name it, not a missing IMAGE
        if not os.path.exists(last):
            raise DataError(f"{last}: no such file or folder (an IMAGE, or one of --checkpoint's files)")
        raise DataError(f"{last}: not a regular file, an image or a folder (an IMAGE or a --checkpoint)")
    if not images:
        raise UsageError("the following arguments are required: IMAGE")
    return _expand_folders(images)


def _may_be_checkpoint(path: str) -> bool:
    """Whether `path` may be one of `--checkpoint`'s files: a regular file that begins as torch.save
    writes (a zip archive or a pickle), or a missing one not named as an image (a mistyped member of an
    ensemble must stay one, to be named as missing, not be skipped as an image)."""
    if not os.path.lexists(path):
        return not is_image_file(path)
    try:
        return os.path.isfile(path) and looks_like_torch_file(Path(path))
    except CheckpointError:  # unreadable: not one to load
        return False


def _is_image_argument(path: str) -> bool:
    """Whether `path` is a folder or an image file: by its extension, else (a regular file only, so a
    pipe is never read) by whether Pillow recognises its header; a weight file is none of these."""
    if is_image_file(path) or os.path.isdir(path):
        return True
    if not os.path.isfile(path):
        return False
    try:
        with Image.open(path):
            return True
    except Image.DecompressionBombError:
        return True  # an image, which decoding then refuses by name
    except (OSError, ValueError):
        return False


def _expand_folders(paths: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Each folder among `paths` becomes the image files under it (sorted, subfolders included); an
    image file inside that cannot be decoded is reported and skipped like any other. Files in a folder
    whose names are not of an image type are left out, named in one line per folder. Returns the
    images and, for a folder without any, an error result ({"image", "error"}) in its place; a
    `DataError` when that leaves nothing to predict."""
    images: list[str] = []
    problems: list[dict[str, str]] = []
    for path in paths:
        if not os.path.isdir(path):
            images.append(path)
            continue
        found = []  # symbolic links to folders are not followed (no loops)
        unlisted: list[OSError] = []  # os.walk leaves a folder it cannot list out, silently by default
        others: list[str] = []  # files of other types, left out as the data sets leave them out
        for top, folders, names in os.walk(path, onerror=unlisted.append):
            folders[:] = [f for f in folders if not f.startswith(".")]  # hidden, as datasets skip them
            visible = [n for n in names if not n.startswith(".")]
            found += [os.path.join(top, n) for n in visible if is_image_file(n)]
            others += [os.path.join(top, n) for n in visible if not is_image_file(n)]
        found.sort()
        if others:
            kinds = Counter(os.path.splitext(p)[1].lower() or "no extension" for p in others)
            print(one_line(f"googlenet predict: {path}: left out {len(others)} file(s) whose names are not of an "
                           f"image type ({', '.join(f'{k} {n}' for k, n in kinds.most_common(4))}), e.g. "
                           f"{min(others)}; give such a file by name to try it"), file=sys.stderr)  # fmt: skip
        if unlisted and not found:
            error = unlisted[0]
            problems.append({"image": str(error.filename), "error": f"{error.filename}: cannot list the folder "
                             f"({error.strerror or error})"})  # fmt: skip
            continue
        for error in unlisted:
            print(one_line(f"googlenet predict: cannot list {error.filename} ({error.strerror or error}); its "
                           "images are left out"), file=sys.stderr)  # fmt: skip
        if not found:
            problems.append({"image": path, "error": f"{path}: a folder with no image files"})
            continue
        images += found
    if not images:
        raise DataError(one_line(problems[0]["error"]))
    return images, problems


def run(args: argparse.Namespace) -> int:
    """Run `googlenet predict` from parsed flags: print each image's top classes (or one JSON object); the
    exit code, 1 when an image could not be read."""
    if not args.checkpoint and args.weights is None:  # what argparse would say of a required option: exit 2
        raise UsageError("one of --checkpoint FILE [FILE ...] or --weights FILE is required")
    if args.topk < 1:
        raise ConfigError(f"--topk: must be at least 1, got {args.topk}")
    if args.reduce == "max" and args.crops == 1:
        raise ConfigError(
            "--reduce max pools over crops; give --crops 10 or 144 (one crop has nothing to pool)"
        )
    images, unusable = _images_after_checkpoints(args)
    device = resolve_device(args.device)
    ensemble = load_ensemble(
        args.checkpoint, args.weights, args.variant, device, args.engine, args.precision,
        transform_input=args.transform_input,
    )  # fmt: skip

    # "(skipped)" where the others go on; one image file given has no others
    skipped = "" if len(images) + len(unusable) == 1 and not os.path.isdir(images[0]) else " (skipped)"

    def show(r: dict[str, Any]) -> None:  # each image's result as soon as it is there (JSON: at the end)
        if args.jsonl:  # a line per image, errors too (a script reads them as they come)
            print(json_text(r, indent=None), flush=True)
        if "error" in r:
            print(f"googlenet predict: error: {one_line(r['error'])}{skipped}", file=sys.stderr)
        elif not (args.json or args.jsonl):
            print(one_line(r["image"]))
            for entry in r["top"]:
                wnid = f" ({entry['wnid']})" if "wnid" in entry else ""
                print(
                    f"  {entry['rank']:2d}. {100 * entry['probability']:6.2f}%  {one_line(entry['class'])}{wnid}"
                )
            sys.stdout.flush()

    if unusable and args.on_bad == "abort":
        raise DataError(unusable[0]["error"])
    for problem in unusable:  # a folder without images among others: the rest are predicted
        show(problem)
    # With --json nothing reaches stdout before the end: progress on stderr (a bar on a terminal, else
    # a line a minute, as train's), so that a long folder is not silent.
    bar = tqdm(total=len(images), unit="img", desc="predict", file=sys.stderr, dynamic_ncols=True,
               disable=not (args.json and stderr_is_tty()), leave=False)  # fmt: skip
    lines = ProgressLines(PROGRESS_LINE_EVERY_S if args.json and not stderr_is_tty() else None)
    done = 0

    def shown(r: dict[str, Any]) -> None:
        nonlocal done
        show(r)
        bar.update(1)
        done += 1
        if lines.due():
            print(f"googlenet predict: {done}/{len(images)} images | {done / lines.elapsed:.1f} img/s | "
                  f"ETA {lines.eta(done, len(images))}", file=sys.stderr, flush=True)  # fmt: skip

    with bar:
        results = predict_files(
            images,
            ensemble,
            crops=args.crops,
            device=device,
            reduce=args.reduce,
            topk=args.topk,
            on_bad=args.on_bad,
            on_result=shown,
        )
    failed = unusable + [r for r in results if "error" in r]
    if args.json:
        report = {
            "models": len(ensemble.members),
            "checkpoints": ensemble.sources,
            "crops": args.crops,
            "reduce": args.reduce,
            "predictions": [r for r in results if "top" in r],
            "errors": failed,
            "skipped_images": len(failed),
        }
        print(json_text(report))
    return 1 if failed else 0
