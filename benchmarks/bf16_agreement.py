"""How often bf16 inference picks the same top-1 class as fp32, on real images, per backend.

Loads a checkpoint, runs its validation images (centre crop, the checkpoint's own preprocessing)
through the eval-mode fp32 model and through `googlenet.optimize(..., precision="bf16")` for each
available bf16 backend, and prints the top-1 agreement and the largest logit difference. Measures,
never asserts.

    .venv/bin/python benchmarks/bf16_agreement.py --checkpoint runs/<run>/final.pt --data-path DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import googlenet
from googlenet.data.crops import CropTransform, normalize
from googlenet.evaluate.evalset import load_eval_set
from googlenet.evaluate.models import load_ensemble
from googlenet.evaluate.protocol import crop_loader
from googlenet.infer import available_backends


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-path", help="image folder (default: the built-in data)")
    parser.add_argument("--json", type=Path)
    return parser


def agreements(checkpoint: str, data_path: str | None = None) -> dict:
    """{"checkpoint", "images", "backends": {backend: {"top1_agreement", "max_relative_logit_difference"}}}
    for every available bf16 backend but `compile` (tests/test_real_data.py checks these on a trained
    model; `compile` is left out here and there: its fp32 logits are checked in tests/test_infer.py)."""
    ensemble = load_ensemble([checkpoint])  # engine off: the eval-mode model itself
    member = ensemble.members[0]
    model, _ = googlenet.load_checkpoint_model(checkpoint, aux_logits=False)
    model.eval()
    evalset = load_eval_set("folder" if data_path else "builtin", data_path, ensemble.class_names)
    loader = crop_loader(evalset.samples, CropTransform([ensemble.crop_spec(1)], ensemble.interpolation),
                         images_per_batch=64)  # fmt: skip
    batches = [normalize(batch.crops, member.mean, member.std) for batch in loader]
    with torch.inference_mode():
        reference = torch.cat([model(x) for x in batches])
    results: dict = {"checkpoint": checkpoint, "images": len(reference), "backends": {}}
    for backend in [b for b in available_backends("bf16") if b != "compile"]:
        fast = googlenet.optimize(model, "bf16", backend, input_size=ensemble.input_size)
        logits = torch.cat([fast(x) for x in batches])
        agreement = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
        rel = ((logits - reference).abs().max() / reference.abs().max()).item()
        results["backends"][backend] = {"top1_agreement": agreement, "max_relative_logit_difference": rel}
    return results


def main() -> None:
    args = build_parser().parse_args()
    results = agreements(args.checkpoint, args.data_path)
    for backend, figures in results["backends"].items():
        print(f"{backend:<10} bf16 vs fp32: top-1 agreement {100 * figures['top1_agreement']:.2f}% on "
              f"{results['images']} images, max relative logit difference "
              f"{figures['max_relative_logit_difference']:.4f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
