"""How alike the pooled features of different images are at initialisation, per variant and init.

docs/recipe.md explains the `paper` variant's gradient clipping by this: without BatchNorm, the
He-initialised network maps every image to nearly the same pooled 1024-d feature vector, so the
classifier's first steps see no difference between classes. This script builds each model from a seed
(no training), runs validation images (64x64 centre crops, the evaluation transform) in training mode
(BatchNorm with the batch's statistics, as the first step sees them), and reports the
mean pairwise cosine similarity of the pooled features and their mean norm. Measures, never asserts.

    .venv/bin/python benchmarks/init_features.py --json benchmarks/results/init_features.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import googlenet
from googlenet.bench.command import positive_int
from googlenet.data.datasets import load_image_folder
from googlenet.data.transforms import build_eval_transform

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-mini"
MODELS = ("paper", "paper+caffe", "bn", "torchvision")


def features(name: str, images: torch.Tensor, seed: int) -> torch.Tensor:
    """Pooled features of `images` from model `name` ("VARIANT" or "VARIANT+INIT") built from `seed`."""
    variant, _, init = name.partition("+")
    torch.manual_seed(seed)
    extra = {"init": init} if init else {}
    model = googlenet.build_model(variant, num_classes=10, aux_logits=False, **extra)
    model.train()  # as the first training step sees them: BatchNorm normalises with the batch's statistics
    with torch.no_grad():
        return model.forward_features(images)


def similarity(feats: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of rows."""
    unit = F.normalize(feats, dim=1)
    pairs = list(itertools.combinations(range(len(feats)), 2))
    return float(sum((unit[i] @ unit[j]).item() for i, j in pairs) / len(pairs))


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--images", type=positive_int, default=20, help="validation images, spread over the classes"
    )
    parser.add_argument("--input-size", type=positive_int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    _, val = load_image_folder(args.data_path, None, build_eval_transform(args.input_size))
    step = max(1, len(val) // args.images)
    images = torch.stack([val[i][0] for i in range(0, len(val), step)][: args.images])
    rows = []
    for name in args.models:
        for seed in args.seeds:
            feats = features(name, images, seed)
            rows.append(
                {
                    "model": name,
                    "seed": seed,
                    "mean_pairwise_cosine": similarity(feats),
                    "mean_norm": float(feats.norm(dim=1).mean()),
                }
            )
            print(f"{name:12s} seed {seed}: cosine {rows[-1]['mean_pairwise_cosine']:.3f}, "
                  f"norm {rows[-1]['mean_norm']:.1f}")  # fmt: skip
    if args.json:
        summary = {
            "data": str(args.data_path),
            "images": len(images),
            "input_size": args.input_size,
            "rows": rows,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
