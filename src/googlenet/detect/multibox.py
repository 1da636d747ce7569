"""MultiBox proposals (section 8; Erhan, Szegedy, Toshev, Anguelov, "Scalable Object Detection using Deep
Neural Networks", CVPR 2014): a class-agnostic box predictor on Inception features.

Section 8 added "the top 200 [boxes] of MultiBox [...] to selective search's" proposals. The design here
follows Erhan et al. 2014 in its essentials and says where it does not:

- Network: the GoogLeNet trunk (any variant; its weights may come from a classification checkpoint, as
  Erhan's network started from an ImageNet classifier) up to the pooled 1024-d features, then two
  linear layers: K x 4 box offsets and K objectness logits. Erhan et al. also regress from the last
  layer of a classification network (theirs was AlexNet-like, ours is Inception, as in section 8).
- Priors: the K box priors are k-means centroids of the training boxes in image-normalised corner
  coordinates (Erhan et al.: "we cluster the ground truth locations ... and use the centroids as priors";
  they used 800 on ILSVRC; we default to 200, so that the top 200 of section 8 are all of them on a
  data set of a few hundred images). Box i is
  prior_i + offset_i, in normalised (x1, y1, x2, y2).
- Matching loss: ground-truth boxes are matched one to one to priors by bipartite matching of the L2
  distance between prior and ground truth (the Hungarian algorithm, `scipy.optimize.linear_sum_assignment`),
  as Erhan et al.'s prior matching; the loss is alpha/2 ||offset_i - (g_j - prior_i)||^2 over matched pairs
  plus the logistic loss of every objectness score (1 for matched priors, 0 for the rest), alpha = 0.3 as
  in the paper. The loss is summed per image and averaged over the batch.
- Input: the whole image warped to S x S (Erhan et al.: the image resized to 220 x 220, plus their
  multi-crop scheme, which we do not do: one crop per image only).
- Inference: the boxes of the `top_k` highest objectness scores, mapped back to the image's 0-based
  pixel coordinates and clipped to it; no NMS (Erhan et al. applied none to the proposals either).

Training is a small loop of its own (SGD with momentum, horizontal flips as the only augmentation,
checkpoint written atomically at the end of every epoch, progress with throughput); it does not go
through the classification engine because its targets are boxes, not labels.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as TF
from torchvision.transforms.v2 import functional as F

from googlenet.data.crops import normalize, to_uint8_tensor
from googlenet.data.decode import load_image
from googlenet.detect.metrics import GroundTruth
from googlenet.errors import CheckpointError, ConfigError, check_values
from googlenet.io import atomic_save, safe_load
from googlenet.model.googlenet import GoogLeNet, build_from_config, build_model
from googlenet.model.weights import IMAGENET_MEAN, IMAGENET_STD
from googlenet.signals import signals_held

logger = logging.getLogger(__name__)

FORMAT = "googlenet-multibox"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class MultiBoxConfig:
    """How MultiBox is built, trained and used (module docstring); a default with a source has it in its
    comment. `ConfigError` for a value out of range."""

    variant: str = "paper"
    input_size: int = 128  # not Erhan's 220: a CPU-sized default for small images
    priors: int = 200  # Erhan et al.: 800 on ILSVRC; 200 = section 8's top 200 when all are kept
    alpha: float = 0.3  # Erhan et al.: weight of the location loss
    epochs: int = 20
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 2e-4
    clip_grad_norm: float = 2.0  # as the built-in preset: keeps the BN-free trunk's first steps bounded
    seed: int = 0
    top_k: int = 200  # section 8: the top 200 MultiBox proposals are added

    def __post_init__(self) -> None:
        check_values(
            (self.input_size >= 32, "--input-size", self.input_size, "at least 32"),
            (self.priors >= 1, "--priors", self.priors, "at least 1"),
            (self.top_k >= 1, "--top-k", self.top_k, "at least 1"),
            (self.epochs >= 1, "--epochs", self.epochs, "at least 1"),
            (self.batch_size >= 1, "--batch-size", self.batch_size, "at least 1"),
            (math.isfinite(self.lr) and self.lr > 0, "--lr", self.lr, "a finite number > 0"),
        )


class MultiBox(nn.Module):
    """GoogLeNet trunk -> pooled features -> (K x 4 offsets, K objectness logits)."""

    priors: Tensor  # a buffer, K x 4

    def __init__(self, trunk: GoogLeNet, priors: Tensor) -> None:
        super().__init__()
        self.trunk = trunk
        self.register_buffer("priors", priors.float().clone())  # K x 4, normalised x1 y1 x2 y2
        k = priors.shape[0]
        self.loc = nn.Linear(trunk.num_features, 4 * k)
        self.conf = nn.Linear(trunk.num_features, k)
        nn.init.zeros_(self.loc.weight)  # start at the priors
        nn.init.zeros_(self.loc.bias)
        nn.init.normal_(self.conf.weight, std=0.01)
        nn.init.constant_(self.conf.bias, -math.log(k))  # about one object per image at the start

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.trunk.forward_features(x)
        offsets = self.loc(features).view(len(x), -1, 4)
        return offsets, self.conf(features)

    def boxes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N x K x 4 normalised boxes, N x K objectness probabilities)."""
        offsets, logits = self(x)
        return self.priors + offsets, torch.sigmoid(logits)


def normalised_boxes(truth: GroundTruth, width: int, height: int) -> np.ndarray:
    """Ground-truth pixel boxes (0-based inclusive) as image-normalised corners (edges of the pixels)."""
    boxes = np.asarray(truth.boxes, dtype=np.float64).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float64)
    return (boxes + np.array([0.0, 0.0, 1.0, 1.0])) / scale


def kmeans_priors(boxes: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means centroids of the normalised training boxes (scipy's kmeans2, k-means++ start)."""
    from scipy.cluster.vq import kmeans2

    if len(boxes) == 0:
        raise ConfigError("multibox: no training boxes to cluster into priors")
    k = min(k, len(np.unique(boxes, axis=0)))
    centroids, _ = kmeans2(boxes.astype(np.float64), k, minit="++", seed=seed)
    return centroids.astype(np.float32)


def match(priors: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """Bipartite matching of ground truth (G x 4) to priors (K x 4) by L2 distance: (prior idx, gt idx)."""
    from scipy.optimize import linear_sum_assignment

    if len(truth) == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    cost = torch.cdist(priors.double(), truth.double()).numpy()
    rows, cols = linear_sum_assignment(cost)
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def multibox_loss(
    offsets: Tensor, logits: Tensor, priors: Tensor, truths: Sequence[Tensor], alpha: float
) -> tuple[Tensor, dict[str, float]]:
    """Erhan et al.'s matching loss, averaged over the images of the batch (module docstring)."""
    target_conf = torch.zeros_like(logits)
    loc_terms = []
    for i, truth in enumerate(truths):
        rows, cols = match(priors.detach().cpu(), truth)
        if len(rows):
            rows, cols = rows.to(logits.device), cols.to(logits.device)
            target_conf[i, rows] = 1.0
            goal = truth.to(offsets.device)[cols] - priors[rows]
            loc_terms.append(0.5 * (offsets[i, rows].float() - goal).pow(2).sum())
    loc = torch.stack(loc_terms).sum() / len(truths) if loc_terms else offsets.sum() * 0.0
    conf = TF.binary_cross_entropy_with_logits(logits.float(), target_conf, reduction="sum") / len(truths)
    return conf + alpha * loc, {"conf": float(conf.detach()), "loc": float(loc.detach())}


class SceneImages(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """Whole images warped to S x S (uint8) with their normalised boxes; random flips when training."""

    def __init__(
        self, images: Sequence[tuple[str, str]], truth: Mapping[str, GroundTruth], size: int, train: bool
    ) -> None:
        self.items = []
        for image_id, path in images:
            pixels = to_uint8_tensor(load_image(path))
            height, width = pixels.shape[-2:]
            boxes = normalised_boxes(truth[image_id], width, height)
            self.items.append(
                (F.resize(pixels, [size, size], antialias=True), torch.as_tensor(boxes).float())
            )
        self.train = train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        pixels, boxes = self.items[index]
        if self.train and torch.rand(()) < 0.5:
            pixels = pixels.flip(-1)
            boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], dim=1)
        return pixels, boxes


def _collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[Tensor]]:
    return torch.stack([p for p, _ in batch]), [b for _, b in batch]


def save_multibox(
    path: str | os.PathLike[str], model: MultiBox, config: MultiBoxConfig, meta: dict[str, Any]
) -> str:
    """Write a MultiBox checkpoint (trunk config, MultiBox config, weights and `meta`) to `path` atomically;
    the SHA-256 of the bytes written."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.trunk.config.as_dict(),
        "multibox_config": asdict(config),
        "state_dict": model.state_dict(),
        "meta": meta,
    }
    return atomic_save(payload, path)


def load_multibox(path: str | os.PathLike[str]) -> tuple[MultiBox, MultiBoxConfig, dict[str, Any]]:
    """A MultiBox checkpoint written by `train_multibox` (safe loading; one-line errors)."""
    obj = safe_load(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a MultiBox checkpoint (no 'format: {FORMAT}' entry)")
    try:
        config = MultiBoxConfig(**obj["multibox_config"])
        trunk = build_from_config(obj["model_config"])
        model = MultiBox(trunk, obj["state_dict"]["priors"])
        model.load_state_dict(obj["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: invalid MultiBox checkpoint ({str(exc).splitlines()[0]})") from None
    return model.eval(), config, dict(obj.get("meta") or {})


def train_multibox(
    voc_root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: MultiBoxConfig,
    init_from: str | None = None,
    train_set: str = "train",
    val_set: str = "val",
    progress: bool = True,
) -> dict[str, Any]:
    """Train MultiBox on a VOC tree; writes `output` (the checkpoint) and returns the summary.

    The summary holds the loss per epoch and, on the validation images, the recall of the top-k
    boxes at IoU 0.5 and 0.7 (the figure that matters for a proposal method).
    """
    from googlenet.detect.training import to_pixel_boxes
    from googlenet.detect.voc import load_voc, voc_images
    from googlenet.train.finetune import init_from as copy_weights

    torch.manual_seed(config.seed)
    truth = to_pixel_boxes(load_voc(voc_root, train_set, "--train-set"))
    images = voc_images(voc_root, train_set, "--train-set")
    val_truth = to_pixel_boxes(load_voc(voc_root, val_set, "--val-set"))  # read before training: a bad
    val_images = voc_images(voc_root, val_set, "--val-set")  # set fails now, not after the epochs
    data = SceneImages(images, truth, config.input_size, train=True)
    priors = kmeans_priors(torch.cat([b for _, b in data.items]).numpy(), config.priors, config.seed)
    trunk = build_model(config.variant, num_classes=1, aux_logits=False)
    if init_from:
        copy_weights(trunk, init_from)
    model = MultiBox(trunk, torch.from_numpy(priors)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    per_epoch = len(data) // config.batch_size
    if per_epoch == 0:
        raise ConfigError(
            f"multibox: batch size {config.batch_size} is larger than the {len(data)} training images"
        )
    steps, warmup = config.epochs * per_epoch, max(1, config.epochs * per_epoch // 10)

    def factor(step: int) -> float:  # linear warm-up over 10% of the steps, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=_collate,
        generator=generator,
        drop_last=True,
    )
    history = []
    meta = {
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "voc_root": str(voc_root),
        "epochs_done": 0,
    }
    existed, saved = os.path.exists(output), 0  # `saved`: the epochs of the model in `output` now
    started = time.perf_counter()
    try:
        for epoch in range(config.epochs):
            model.train()
            total, seen, t0 = 0.0, 0, time.perf_counter()
            bar = _bar(len(loader), f"multibox epoch {epoch + 1}/{config.epochs}", progress)
            for pixels, boxes in loader:
                x = normalize(pixels, IMAGENET_MEAN, IMAGENET_STD).contiguous(
                    memory_format=torch.channels_last
                )
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    offsets, logits = model(x)
                loss, _ = multibox_loss(offsets.float(), logits.float(), model.priors, boxes, config.alpha)
                if not torch.isfinite(loss):
                    raise ConfigError(
                        f"multibox: the loss became {float(loss)} at epoch {epoch + 1}; lower --lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(x)
                seen += len(x)
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{total / seen:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}"
                    )
                    bar.update(1)
            if bar is not None:
                bar.close()
            history.append(
                {
                    "epoch": epoch + 1,
                    "loss": total / max(1, seen),
                    "img_per_s": seen / (time.perf_counter() - t0),
                }
            )
            meta["epochs_done"] = epoch + 1
            with signals_held():  # the file and `saved` agree when a signal stops the run
                save_multibox(output, model, config, meta)
                saved = epoch + 1
            logger.info(
                "multibox epoch %d/%d: loss %.4f, %.0f img/s",
                epoch + 1,
                config.epochs,
                history[-1]["loss"],
                history[-1]["img_per_s"],
            )
        model.eval()
        proposals, seconds = multibox_proposals(model, val_images, config.input_size, config.top_k)
        from googlenet.detect.proposals import proposal_recall

        recall = proposal_recall(proposals, val_truth, seconds)
    except KeyboardInterrupt:  # say what the signal left in --output, then stop as any command does
        logger.info("%s", _stopped_note(output, saved, config.epochs, existed))
        raise
    return {
        "checkpoint": str(output),
        "priors": len(priors),
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
        "val_recall": asdict(recall),
    }


def _stopped_note(output: str | os.PathLike[str], done: int, epochs: int, existed: bool) -> str:
    """What an interrupted `train_multibox` leaves in `output` (each epoch replaces it atomically)."""
    if done == 0:
        return f"{output}: {'left as it was' if existed else 'not written'} (stopped in epoch 1/{epochs})"
    if done < epochs:
        return (
            f"{output}: the model after epoch {done}/{epochs} (a MultiBox run does not resume; run it again)"
        )
    return (
        f"{output}: the model of all {epochs} epochs, complete; only its validation recall was not computed"
    )


@torch.inference_mode()
def multibox_proposals(
    model: MultiBox,
    images: Sequence[tuple[str, str]],
    input_size: int,
    top_k: int = 200,
    batch_size: int = 16,
) -> tuple[dict[str, np.ndarray], float]:
    """Top-k boxes per image (0-based inclusive pixel coordinates) and the seconds spent."""
    model.eval()
    out: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pixels, sizes = [], []
        for _, path in chunk:
            image = to_uint8_tensor(load_image(path))
            sizes.append(image.shape[-2:])
            pixels.append(F.resize(image, [input_size, input_size], antialias=True))
        x = normalize(torch.stack(pixels), IMAGENET_MEAN, IMAGENET_STD).contiguous(
            memory_format=torch.channels_last
        )
        boxes, scores = model.boxes(x)
        for (image_id, _), (height, width), b, s in zip(chunk, sizes, boxes, scores, strict=True):
            order = s.argsort(descending=True)[:top_k]
            scale = torch.tensor([width, height, width, height], dtype=torch.float32)
            pix = b[order].float() * scale - torch.tensor([0.0, 0.0, 1.0, 1.0])
            pix[:, 0::2] = pix[:, 0::2].clamp(0, width - 1)
            pix[:, 1::2] = pix[:, 1::2].clamp(0, height - 1)
            pix[:, 2] = torch.maximum(pix[:, 2], pix[:, 0])
            pix[:, 3] = torch.maximum(pix[:, 3], pix[:, 1])
            out[image_id] = pix.numpy().astype(np.float64)
    return out, time.perf_counter() - started


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False)
