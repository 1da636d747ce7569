"""What a report shows, read from a run folder of any kind.

    training    config.yaml, metrics.csv, results.json, final.pt, grad_norms.csv (`googlenet train`)
    ensemble    ensemble.json and member-*/ (`googlenet train --ensemble N`): the ensemble, then member 0
    evaluation  table3.json (`googlenet evaluate --table3`)
    ablation    ablation.json, ablation.png, gradflow.png/.csv, gradflow-split.png/.csv (`googlenet ablate`)
    detection   detection-setup.json / detection.json and detections-*.csv (`googlenet detect train`)

Sections appear when their files do: the configuration, the curves, the Table 1 summary of the
network, the Table 3 breakdown, a confusion matrix and the most confidently wrong validation images
with their top-5 (the final model run once over the validation images, centre crop), the gradient
norms by depth and each loss's part of them (grad_split.png/.csv of a run with auxiliary heads), the
ablation tables, and detections drawn on validation images.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from googlenet.console import shell_path
from googlenet.errors import DataError, GoogLeNetError
from googlenet.io import json_loads
from googlenet.report.html import (
    Page,
    esc,
    figure_png,
    img,
    mapping_table,
    markdown_table,
    pil_png,
    pre,
    table,
)

logger = logging.getLogger("googlenet.report")

KINDS: tuple[str, ...] = ("training", "ensemble", "evaluation", "ablation", "detection")


def detect_kind(folder: Path) -> str:
    """Which kind of run folder `folder` is (see the module docstring); DataError if none."""
    from googlenet.train.runs import DETECTION_SETUP

    if (folder / "ablation.json").is_file():
        return "ablation"
    if (folder / "detection.json").is_file() or (folder / DETECTION_SETUP).is_file():
        return "detection"
    if (folder / "ensemble.json").is_file():
        return "ensemble"
    if (folder / "table3.json").is_file():
        return "evaluation"
    if (folder / "config.yaml").is_file() and (folder / "metrics.csv").is_file():
        return "training"
    if (folder / "config.yaml").is_file() and (folder / "last.pt").is_file():
        raise DataError(
            f"{folder}: a training run with no finished epoch yet (no metrics.csv); report it after one"
        )
    raise DataError(
        f"{folder}: not a run folder (expected metrics.csv + config.yaml, ensemble.json, table3.json, "
        "ablation.json or detection.json)"
    )


def _json(path: Path) -> dict[str, Any]:
    """A run's JSON record (a JSON object); a `DataError` naming the file if it is anything else."""
    try:
        data = json_loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, found a {type(data).__name__}")
    return data


def _yaml(path: Path) -> tuple[str, dict[str, Any]]:
    """(text, mapping) of a run's config.yaml; a `DataError` naming the file if it is not one."""
    from googlenet.train.config import yaml_load

    try:
        text = path.read_text(encoding="utf-8")
        data = yaml_load(text) or {}
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: UnicodeDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable config file ({first})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of sections, found a {type(data).__name__}")
    return text, data


def _read_csv(path: Path, required: Sequence[str] = ()) -> list[dict[str, str]]:
    """The rows of a CSV file with a header naming `required` columns (an empty file has no rows)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames  # read while the file is open: an empty file's is read here
    except (ValueError, csv.Error) as exc:  # ValueError: UnicodeDecodeError
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    lacking = [name for name in required if header and name not in header]
    if lacking:
        raise DataError(f"{path}: no {lacking[0]} column (is it another program's file?)")
    return rows


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shown_name(name: str) -> str:
    """`name` with the bytes of a file name that are not UTF-8 (Python's surrogate escapes) as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def curves_section(folder: Path, num_classes: int | None = None) -> str:
    """Loss, top-1 and top-5 (raw and averaged) and learning rate by epoch from metrics.csv; chance dashed
    when `num_classes` is known (ln(classes) for one head's loss, 100 / classes % for top-1, 500 /
    classes % for top-5; on an imbalanced validation set, as results.json's `val_balance` says, the
    class prior's entropy and the largest classes' shares: `chance_levels`)."""
    from matplotlib.ticker import MaxNLocator

    from googlenet.train.runs import SERIES_STYLE, chance_levels

    rows = _read_csv(folder / "metrics.csv", required=("epoch",))
    if not rows:
        return '<p class="note">metrics.csv has no epochs yet.</p>'
    try:
        epochs = [int(r["epoch"]) + 1 for r in rows]
    except (KeyError, TypeError, ValueError):  # no epoch column, or a row whose epoch is not a number
        raise DataError(
            f"{folder / 'metrics.csv'}: not a googlenet train metrics file (epoch column)"
        ) from None
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = (
        (("loss_total", "train loss (total)"), ("loss_main", "train loss (main)"),
         ("val_loss_raw", "val loss raw"), ("val_loss_avg", "val loss averaged")),
        (("train_top1", "train top-1 (running)"), ("val_top1_raw", "val top-1 raw"),
         ("val_top1_avg", "val top-1 averaged")),
        (("train_top5", "train top-5 (running)"), ("val_top5_raw", "val top-5 raw"),
         ("val_top5_avg", "val top-5 averaged")),
        (("lr", "learning rate"),),
    )  # fmt: skip
    for ax, columns in zip(axes, panels, strict=True):
        for column, label in columns:
            # the run folder's plots' look for each quantity (`SERIES_STYLE`), so a colour means one thing
            ax.plot(epochs, [_float(r.get(column)) for r in rows], markersize=4, label=label,
                    **SERIES_STYLE.get(column, {}))  # fmt: skip
    balance = None
    with contextlib.suppress(OSError, ValueError, AttributeError):  # an older or odd results.json: uniform
        balance = json_loads((folder / "results.json").read_text(encoding="utf-8")).get("val_balance")
    if not (isinstance(balance, dict) and all(isinstance(v, int | float) for v in balance.values())):
        balance = None
    loss_chance, top1_chance = chance_levels(num_classes, balance)
    top5_chance = None
    if num_classes is not None and num_classes > 5:
        top5_chance = (500 / num_classes, f"chance: 500/{num_classes} = {500 / num_classes:.3g}%")
        if balance and top1_chance is not None and top1_chance[1].startswith("majority"):
            five = float(balance["five_largest_share"])
            top5_chance = (five, f"5 largest classes: {five:.3g}% (imbalanced val)")
    for ax, chance in zip(axes, (loss_chance, top1_chance, top5_chance), strict=False):
        if chance is not None:
            ax.axhline(chance[0], color="0.4", linestyle="--", linewidth=1, label=chance[1])
    titles = ("loss", "top-1 accuracy (%)", "top-5 accuracy (%)", "learning rate (each epoch's last step)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(True, alpha=0.3)
    for ax in axes[:3]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    last = rows[-1]
    keys = ("val_top1_raw", "val_top5_raw", "val_top1_avg", "val_top5_avg", "img_per_s")
    shown = {"epoch": epochs[-1], **{k: last.get(k, "") for k in keys}}  # 1-based, as the plot and the log
    # this epoch's rate, beside the Results table's rate over the whole run under the same name
    shown["img_per_s (this epoch)"] = shown.pop("img_per_s")
    return img(figure_png(fig), "training curves") + mapping_table(shown)


def table1_section(model: Any) -> str:
    """The Table 1 summary (params and ops per row, against the paper's) of the run's network at 224."""
    from googlenet.model.summary import format_table

    return pre(format_table(model, 224)) + (
        "<p class=\"note\">Measured on this run's network at the paper's 224x224 input; the run itself may "
        "use another input size (see the configuration).</p>"
    )


def table3_section(data: dict[str, Any], folder: Path) -> str:
    """Table 3 from an evaluation folder's table3.json (`data`): our rows, the paper's, the evaluation's
    details, and table3.png when the folder has it."""
    rows = [
        (r["models"], r["crops"], r["cost"], _pct(r["top5_error"]), _pct(r.get("delta_top5"), True),
         _pct(r.get("top1_error")))
        for r in data.get("rows", [])
    ]  # fmt: skip
    paper = [(r["models"], r["crops"], r["cost"], _pct(r["top5_error"]), _pct(r.get("delta_top5"), True), "-")
             for r in data.get("paper", [])]  # fmt: skip
    header = ("models", "crops", "cost", "top-5 error", "vs base", "top-1 error")
    body = (
        "<h3>ours</h3>" + table(rows, header) + "<h3>the paper (ILSVRC 2012 val)</h3>" + table(paper, header)
    )
    info = {k: v for k, v in data.items() if k not in ("rows", "paper")}
    body += mapping_table(info)
    if (folder / "table3.png").is_file():
        body += img((folder / "table3.png").read_bytes(), "Table 3 plot")
    return body


def _pct(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.2f}%" if signed else f"{value:.2f}%"


def _names_of(meta: dict[str, Any]) -> tuple[list[str], list[str] | None]:
    """(class names, WordNet ids or None) a checkpoint's metadata records."""
    wnids = meta.get("wnids")
    return [str(n) for n in meta.get("class_names") or []], [str(w) for w in wnids] if wnids else None


def val_samples_from_config(
    config: Any, class_names: Sequence[str] = (), wnids: Sequence[str] | None = None
) -> list[tuple[str, int]] | None:
    """The validation (path, label) pairs a training config used, labelled in `class_names`' order (the
    model's, matched by folder name as `evaluate` does: a `DataError` if the folders are other classes)
    or, without names, in sorted folder order; None for data the report does not read (ImageNet).
    A data folder that is not there any more is a `DataError`."""
    from googlenet.evaluate.evalset import label_eval_images, open_eval_images
    from googlenet.train.config import builtin_settings

    d = config.data
    if d.dataset == "builtin":
        images = open_eval_images("builtin", None, builtin=builtin_settings(d))
    elif d.dataset == "folder" and d.data_path:
        images = open_eval_images("folder", d.data_path)
    else:
        return None
    if class_names:
        return list(label_eval_images(images, class_names, wnids).samples)
    return list(images.data.samples)


def predict_images(
    model: Any, meta: dict[str, Any], samples: list[tuple[str, int]], limit: int
) -> dict[str, Any]:
    """Run a loaded model (its main classifier; `meta` as the weight file records it) over `samples`
    (centre crop): probabilities, targets, class names."""
    import torch

    from googlenet.data.crops import CropSpec, CropTransform, normalize
    from googlenet.data.decode import load_image
    from googlenet.data.transforms import default_resize_size
    from googlenet.evaluate.evalset import limit_samples

    model.eval()
    size = int(meta.get("input_size", 224))
    resize = int(meta.get("resize_size") or default_resize_size(size))
    transform = CropTransform((CropSpec(1, size, (resize,)),), str(meta.get("interpolation", "bilinear")))
    mean, std = meta.get("mean", (0.485, 0.456, 0.406)), meta.get("std", (0.229, 0.224, 0.225))
    chosen = limit_samples(samples, limit)
    probs, targets, paths = [], [], []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if batch:
            with torch.inference_mode():
                probs.append(torch.softmax(model(normalize(torch.cat(batch), mean, std)).float(), dim=-1))
            batch.clear()

    for path, target in chosen:
        try:
            crops, _ = transform(load_image(path))
        except DataError:
            continue
        batch.append(crops[:1])
        targets.append(target)
        paths.append(path)
        if len(batch) == 64:
            flush()
    flush()
    names = [str(n) for n in meta.get("class_names") or []]
    return {"probs": torch.cat(probs) if probs else torch.zeros(0, len(names)), "targets": targets,
            "paths": paths, "names": names}  # fmt: skip


MATRIX_CLASSES = 40
"""The most classes a confusion matrix draws. Its figure grows with the square of the classes: 300
drew a 9616-pixel square (4.3 GB of memory), 1000 (ImageNet) would need about 40 GB. Above this, the
matrix shows the classes with the most mistakes, and a table lists the most frequent confusions."""


def predictions_section(pred: dict[str, Any], wrong: int = 12, pairs: int = 15) -> str:
    """A confusion matrix (at most `MATRIX_CLASSES` classes: those with the most mistakes), the `pairs`
    most frequent confusions, and the most confidently wrong images, each with its top-5."""
    import numpy as np

    from googlenet.data.decode import load_image

    probs, targets, names = pred["probs"], pred["targets"], pred["names"]
    if len(targets) == 0:
        return '<p class="note">No validation image could be read.</p>'
    n = len(names)
    predicted = probs.argmax(dim=1).tolist()
    matrix = np.zeros((n, n), dtype=int)
    for t, p in zip(targets, predicted, strict=True):
        matrix[t, p] += 1
    mistakes_only = matrix - np.diag(np.diag(matrix))
    involved = mistakes_only.sum(axis=0) + mistakes_only.sum(axis=1)  # as true or as predicted class
    shown = list(range(n))
    if n > MATRIX_CLASSES:  # the classes in the most mistakes, in order
        shown = sorted(np.argsort(-involved, kind="stable")[:MATRIX_CLASSES].tolist())
    drawn = matrix[np.ix_(shown, shown)]
    k = len(shown)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.45 * k + 3, 0.45 * k + 2.5))
    image = ax.imshow(drawn, cmap="Blues")
    # the counts as a colour bar: above 30 classes the cells are too small for their numbers
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="images")
    # Class names are the user's folder names: shown as written, not parsed as matplotlib's $TeX$; bytes
    # that are not UTF-8 (surrogate escapes, which matplotlib refuses) as \xNN.
    labels = [shown_name(name) for name in names]
    ax.set_xticks(range(k), [labels[i] for i in shown], rotation=60, ha="right", fontsize=8, parse_math=False)
    ax.set_yticks(range(k), [labels[i] for i in shown], fontsize=8, parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if drawn[i, j]:
                    ax.text(j, i, str(drawn[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if drawn[i, j] > drawn.max() / 2 else "black")  # fmt: skip
    accuracy = 100.0 * sum(int(t == p) for t, p in zip(targets, predicted, strict=True)) / len(targets)
    title = f"{len(targets)} validation images, top-1 accuracy {accuracy:.1f}% (centre crop)"
    if k < n:
        with_mistakes = int((involved > 0).sum())
        title += (
            f"\nthe {k} of {n} classes in the most mistakes"
            if with_mistakes >= k
            else f"\nthe {with_mistakes} of {n} classes in any mistake, and {k - with_mistakes} others"
        )
    ax.set_title(title)
    body = img(figure_png(fig), "confusion matrix")
    if k < n:
        body += (
            f'<p class="note">{n} classes: the matrix shows the {k} in the most mistakes (as the true '
            "or the predicted class); the table below lists the most frequent confusions of all.</p>"
        )
    true_i, predicted_j = np.nonzero(mistakes_only)
    counts = mistakes_only[true_i, predicted_j].tolist()
    frequent = sorted(
        zip(counts, true_i.tolist(), predicted_j.tolist(), strict=True), key=lambda x: (-x[0], x[1], x[2])
    )
    if frequent:
        rows = [(labels[i], labels[j], c, f"{100.0 * c / max(int(matrix[i].sum()), 1):.1f}%")
                for c, i, j in frequent[:pairs]]  # fmt: skip
        body += f"<h3>The {len(rows)} most frequent confusions</h3>"
        body += table(rows, ["true class", "predicted as", "images", "of the true class's images"])
    confidence = probs.max(dim=1).values.tolist()
    mistakes = sorted((i for i, (t, p) in enumerate(zip(targets, predicted, strict=True)) if t != p),
                      key=lambda i: -confidence[i])[:wrong]  # fmt: skip
    body += f"<h3>The {len(mistakes)} most confidently wrong validation images</h3>"
    for i in mistakes:
        top = probs[i].topk(min(5, n))
        lines = [f"{labels[k]} {100 * float(v):.1f}%" for v, k in zip(top.values, top.indices, strict=True)]
        image = load_image(pred["paths"][i]).convert("RGB")
        image.thumbnail((160, 160))
        caption = f"true: {labels[targets[i]]} | top-5: " + ", ".join(lines)
        body += img(pil_png(image), f"wrong: {shown_name(Path(pred['paths'][i]).name)}", caption)
    return body


def gradflow_section(folder: Path) -> str:
    """The plot of gradient norm by depth from the run's grad_norms.csv, with the steps recorded."""
    from googlenet.train.gradflow import load_grad_norms, plot_grad_norms

    rows = load_grad_norms(folder)
    steps = sorted({r["step"] for r in rows})
    plt = _plt()
    with tempfile.TemporaryDirectory() as scratch:  # never in the run folder, which may be read-only
        path = Path(scratch) / "gradflow.png"
        plot_grad_norms({folder.name: rows}, path, f"gradient norm by depth ({len(steps)} recorded steps)")
        data = path.read_bytes()
    plt.close("all")
    aux = [r for r in rows if r["aux"]]
    note = (
        f'<p class="note">Steps recorded: {", ".join(map(str, steps[:20]))}{" ..." if len(steps) > 20 else ""}. '
        f"{len({r['layer'] for r in aux})} auxiliary-head layers recorded (not drawn).</p>"
    )
    return img(data, "gradient flow") + note


def _stage_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a per-stage gradient table (grad_split.csv, gradflow.csv, gradflow-split.csv)
    with its numbers as written (4 significant digits); an empty cell is "-"."""
    rows = _read_csv(path, required=("stage",))
    header = [str(name) for name in rows[0]] if rows else []
    return header, [[row.get(name) or "-" for name in header] for row in rows]


def gradsplit_section(table_path: Path, plot_path: Path) -> str:
    """Each loss's part of the trunk's gradient (`googlenet.train.gradflow.split_stage_table`): the plot
    and the per-stage table a run (grad_split.*) or a study (gradflow-split.*) wrote; "" if neither."""
    body = ""
    if plot_path.is_file():
        body += img(plot_path.read_bytes(), "each loss's part of the gradient")
    if table_path.is_file():
        try:
            header, rows = _stage_csv(table_path)
            body += table(rows, header) + (
                '<p class="note">Each recorded step\'s gradient split in two, on the same weights and '
                "batch: the auxiliary losses' part (as weighted in training) and the main loss's, the rest. "
                "Per trunk stage, the geometric mean over its layers and the recorded steps (the first left "
                "out when later ones exist); cosine: the mean cosine between the two parts; whole/main: how "
                "much larger the whole gradient is than the main loss's part alone. No auxiliary loss "
                "reaches the stages above inception4d (aux 0).</p>"
            )
        except DataError as exc:
            body += f'<p class="note">Left out: {esc(exc)}</p>'
    return body


def detection_section(folder: Path, images: int = 6) -> str:
    """detection.json's summary and the detections of detections-*.csv drawn on validation images."""
    from PIL import ImageDraw

    from googlenet.data.decode import load_image
    from googlenet.train.runs import DETECTION_SETUP

    body = ""
    setup = _json(folder / DETECTION_SETUP) if (folder / DETECTION_SETUP).is_file() else {}
    report = _json(folder / "detection.json") if (folder / "detection.json").is_file() else {}
    setup = report.get("setup", setup)
    if setup:
        body += "<h3>setup</h3>" + mapping_table(setup)
    if report.get("summary"):
        rows = [(name, f"{100 * _float(v.get('mAP')):.2f}%", f"{_float(v.get('seconds_per_image')):.3f}")
                for name, v in report["summary"].items()]  # fmt: skip
        body += "<h3>mean average precision</h3>" + table(rows, ("run", "mAP", "s/image"))
    files = sorted(folder.glob("detections-*.csv"))
    if not files and report.get("summary"):  # finished; its detection files were not kept beside it
        return body + '<p class="note">No detections-*.csv in this folder: nothing to draw.</p>'
    if not files:
        return body + (
            '<p class="note">No detections-*.csv in this folder yet: <code>detect train</code> writes them when '
            f"it finishes; continue it with <code>googlenet detect train --resume {esc(shell_path(folder))}</code>.</p>"
        )
    chosen = next((f for f in files if f.stem == "detections-ensemble"), files[0])
    detections = _read_csv(chosen)
    paths: dict[str, str] = {}
    if setup.get("annotations"):
        try:
            from googlenet.detect.voc import voc_images

            paths = dict(voc_images(setup["annotations"], setup.get("val_set", "val")))
        except (DataError, OSError) as exc:
            logger.warning("detections: cannot list the validation images (%s)", exc)
    by_image: dict[str, list[dict[str, str]]] = {}
    for detection in detections:
        by_image.setdefault(detection["image_id"], []).append(detection)
    shown = 0
    body += f"<h3>{esc(chosen.name)}: the 5 highest-scoring detections on {images} images</h3>"
    for image_id in sorted(by_image)[: images * 3]:
        if image_id not in paths or shown >= images:
            continue
        image = load_image(paths[image_id]).convert("RGB")
        draw = ImageDraw.Draw(image)
        best = sorted(by_image[image_id], key=lambda r: -_float(r["score"]))[:5]
        for row in best:
            box = [_float(row[k]) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]  # VOC is 1-based
            draw.rectangle(box, outline=(255, 0, 0), width=2)
            draw.text(
                (box[0] + 2, box[1] + 1), f"{row['class']} {_float(row['score']):.2f}", fill=(255, 255, 0)
            )
        image.thumbnail((320, 320))
        caption = f"{image_id}: " + ", ".join(f"{r['class']} {_float(r['score']):.2f}" for r in best)
        body += img(pil_png(image), f"detections on {image_id}", caption)
        shown += 1
    if not shown:
        body += '<p class="note">The validation images of these detections were not found.</p>'
    return body


def _training_sections(page: Page, folder: Path, limit: int, predictions: bool, whose: str = "") -> None:
    """The sections of one training run's folder; `whose` ends each heading (an ensemble's report shows
    its first member's: " (member 0)")."""
    from googlenet.train.config import from_dict

    def add(heading: str, content: str) -> None:
        page.add(heading + whose, content)

    config_text, config_data = _yaml(folder / "config.yaml")
    add("Configuration", f"<details><summary>config.yaml (resolved)</summary>{pre(config_text)}</details>")
    if (folder / "results.json").is_file():
        add("Results", mapping_table(_json(folder / "results.json")))
    else:
        add("Results", '<p class="note">No results.json yet: the run is still training, or was killed '
                            "before it could write one (its last.pt resumes it).</p>")  # fmt: skip
    final = folder / "final.pt"
    model = None
    # A run stopped before its end has no final.pt; its last.pt describes the same network (the class
    # count for the curves' chance lines, the heads for Table 1). The file is read once: this model, heads
    # and all, is also the one the predictions below run (its forward is the main classifier).
    described_by = final if final.is_file() else folder / "last.pt"
    if described_by.is_file():
        from googlenet.model.weights import load_checkpoint_model

        model, meta = load_checkpoint_model(described_by, aux_logits=None)
    if (folder / "metrics.csv").is_file():
        try:
            curves = curves_section(folder, model.fc.out_features if model is not None else None)
        except DataError as exc:  # the rest of the report is still worth having
            curves = f'<p class="note">Left out: {esc(exc)}</p>'
        add("Training curves", curves)
    if model is None:
        from googlenet.model.googlenet import build_model

        m = config_data.get("model") or {}
        model = build_model(
            m.get("variant", "paper"), num_classes=1000, aux_logits=bool(m.get("aux_logits", True))
        )
    add("Table 1: the network", table1_section(model))
    flow = ""
    if (folder / "grad_norms.csv").is_file():
        try:
            flow = gradflow_section(folder)
        except DataError as exc:
            flow = f'<p class="note">Left out: {esc(exc)}</p>'
    split = gradsplit_section(folder / "grad_split.csv", folder / "grad_split.png")
    if split:  # a run with auxiliary heads: the one-run answer to "do the heads help gradients flow"
        flow += "<h3>Each loss's part of the gradient</h3>" + split
    if flow:
        add("Gradient flow", flow)
    if predictions and final.is_file():
        title = "Validation: confusion and confident mistakes"
        try:
            config = from_dict(config_data, str(folder / "config.yaml"))
            samples = val_samples_from_config(config, *_names_of(meta))
        except GoogLeNetError as exc:  # moved data, other class folders: the rest of the report stands
            add(title, f'<p class="note">Left out: {esc(exc)}</p>')
            samples = None
        if samples:
            add(title, predictions_section(predict_images(model, meta, samples, limit)))
    elif predictions:
        finished = (_json(folder / "results.json") if (folder / "results.json").is_file() else {}).get(
            "status"
        )
        why = (
            "the run finished, but its final.pt was not kept"
            if finished == "completed"
            else "the run has not finished"
        )
        add(
            "Validation: confusion and confident mistakes",
            f'<p class="note">Left out: no final.pt ({why}).</p>',
        )


def _evaluation_predictions(page: Page, data: dict[str, Any], limit: int) -> None:
    """The first model's Table 1 and its confusion on the evaluated image folder, with the images labelled
    in the model's class order (as `evaluate` matches them); a note where that cannot be done."""
    from googlenet.evaluate.evalset import label_eval_images, open_eval_images
    from googlenet.model.weights import model_from_file

    checkpoints = data.get("checkpoints") or []
    kind, _, where = str(data.get("dataset", "")).partition(" ")
    title = "Validation: confusion and confident mistakes"
    if not checkpoints or not Path(checkpoints[0]).is_file():
        page.add(title, '<p class="note">Left out: the evaluated model file is not there any more.</p>')
        return
    model, meta = model_from_file(checkpoints[0], aux_logits=None)
    page.add("Table 1: the network", table1_section(model))
    # table3.json names the images as "folder DIR" or "builtin DIR" (the drawn data's val folder, an
    # image folder too); ImageNet's val archive is not one the report reads.
    if kind not in ("folder", "builtin"):
        page.add(title, f'<p class="note">Left out: the evaluated images ({esc(kind)} {esc(where)}) are '
                        "not an image folder; the report reads only those.</p>")  # fmt: skip
        return
    if not Path(where).is_dir():
        page.add(title, f'<p class="note">Left out: the evaluated images ({esc(kind)} {esc(where)}) are '
                        "not there any more.</p>")  # fmt: skip
        return
    names = [str(n) for n in meta.get("class_names") or []]
    try:
        labelled = label_eval_images(open_eval_images("folder", where), names, meta.get("wnids"))
    except DataError as exc:
        page.add(title, f'<p class="note">Left out: {esc(exc)}</p>')
        return
    # The first model alone (the members' ensemble is Table 3's rows): named by its path, since every
    # member's file is final.pt
    which = (
        shell_path(checkpoints[0])
        if len(checkpoints) == 1
        else f"{shell_path(checkpoints[0])}, the first of {len(checkpoints)} models"
    )
    page.add(f"Validation of {which}: confusion and confident mistakes",
             predictions_section(predict_images(model, meta, labelled.samples, limit)))  # fmt: skip


def _ablation_gradflow(folder: Path) -> tuple[str, str]:
    """(heading, body) of a study's gradflow.png with its gradflow.csv, whose columns name the curves
    drawn: full and no-aux ("with and without the auxiliary heads"), or the one arm of them that has
    recorded gradient norms."""
    body = img((folder / "gradflow.png").read_bytes(), "gradient flow")
    if not (folder / "gradflow.csv").is_file():
        return "Gradient flow by depth", body
    try:
        header, rows = _stage_csv(folder / "gradflow.csv")
    except DataError as exc:
        return "Gradient flow by depth", body + f'<p class="note">Left out: {esc(exc)}</p>'
    curves = [name for name in header if name not in ("stage", "ratio")]
    if len(curves) == 2:
        title = "Gradient flow with and without the auxiliary heads"
        note = f"{curves[0]} against {curves[1]}; ratio: the first over the second."
    elif len(curves) == 1:
        title = f"Gradient flow by depth, {curves[0]} only"
        note = (f"One curve, {curves[0]}: the study has no runs of the other arm (full or no-aux) with "
                "recorded gradient norms to compare it with.")  # fmt: skip
    else:
        return "Gradient flow by depth", body
    return title, body + table(rows, header) + (
        '<p class="note">Trunk gradient norm per stage: the geometric mean over the stage\'s layers, the '
        f"recorded steps (the first left out when later ones exist) and the seeds. {esc(note)}</p>"
    )


def build_report(folder: str | Path, limit: int = 500, predictions: bool = True) -> Page:
    """The report page of a run folder (`limit`: validation images run through the model at most)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such run folder")
    kind = detect_kind(folder)
    page = Page(f"googlenet report: {folder.name} ({kind})")
    page.add("Run", mapping_table({"folder": str(folder.resolve()), "kind": kind}))
    if kind == "training":
        _training_sections(page, folder, limit, predictions)
    elif kind == "ensemble":
        data = _json(folder / "ensemble.json")
        members = data.get("members", [])
        rows = [(m.get("member"), m.get("folder"), m.get("status"), m.get("val_top1_avg"), m.get("val_top5_avg"),
                 json.dumps(m.get("sampling"))) for m in members]  # fmt: skip
        page.add("Ensemble (section 7)", table(rows, ("member", "folder", "status", "val top-1 avg",
                                                       "val top-5 avg", "sampling")))  # fmt: skip
        if (folder / "member-0" / "metrics.csv").is_file():
            _training_sections(page, folder / "member-0", limit, predictions, whose=" (member 0)")
    elif kind == "evaluation":
        data = _json(folder / "table3.json")
        page.add("Table 3: crops and models", table3_section(data, folder))
        if predictions:
            _evaluation_predictions(page, data, limit)
    elif kind == "ablation":
        if (folder / "ablation.md").is_file():
            page.add("Ablation", markdown_table((folder / "ablation.md").read_text(encoding="utf-8")))
        if (folder / "ablation.png").is_file():
            page.add(
                "Effects with 95% confidence intervals",
                img((folder / "ablation.png").read_bytes(), "effects"),
            )
        if (folder / "gradflow.png").is_file():
            page.add(*_ablation_gradflow(folder))
        split = gradsplit_section(folder / "gradflow-split.csv", folder / "gradflow-split.png")
        if split:
            page.add("Each loss's part of the gradient (the full arm's runs, all seeds)", split)
        data = _json(folder / "ablation.json")
        runs = data.get("runs", {})
        rows = [(name, r.get("status"), (r.get("errors") or {}).get("top1"), (r.get("errors") or {}).get("top5"),
                 r.get("epochs"), r.get("wall_time_s")) for name, r in runs.items()]  # fmt: skip
        page.add("Runs", table(rows, ("run", "status", "top-1 error", "top-5 error", "epochs", "seconds")))
        page.add("Plan", pre(json.dumps(data.get("plan", {}), indent=1)))
    else:  # detection
        page.add("Detection", detection_section(folder))
        if (folder / "config.yaml").is_file() and (folder / "metrics.csv").is_file():
            _training_sections(page, folder, limit, predictions=False)
    return page


def _is_report(file: Path) -> bool:
    """Whether the file is an earlier report of ours (its generator tag, or, before 2026-12-04, our page's
    opening and style), so it may be replaced; any other HTML page is kept."""
    from googlenet.report.html import GENERATOR, STYLE

    try:
        with open(file, "rb") as handle:
            head = handle.read(8192)
    except OSError:
        return False
    return GENERATOR.encode() in head[:512] or (
        head.startswith(b'<!DOCTYPE html>\n<html lang="en">') and STYLE[:80].encode() in head
    )


def write_report(folder: str | Path, output: str | Path | None = None, limit: int = 500,
                 predictions: bool = True) -> Path:  # fmt: skip
    """Build the report of `folder` and write it (default `<folder>/report.html`); returns the path."""
    from googlenet.io import atomic_open, check_output

    if not Path(folder).is_dir():
        raise DataError(
            f"{folder}: " + ("is a file, not a run folder" if Path(folder).exists() else "no such run folder")
        )
    path = Path(output) if output is not None else Path(folder) / "report.html"
    check_output("--output", path, replaceable=_is_report, kind="an HTML report of ours")  # before the work
    page = build_report(folder, limit, predictions)
    with atomic_open(path, "wb") as handle:  # UTF-8, as the page declares, whatever the locale's encoding
        handle.write(page.html().encode("utf-8", "backslashreplace"))
    return path


__all__ = ["KINDS", "build_report", "detect_kind", "write_report"]
