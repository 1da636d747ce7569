"""mAP of `detect predict --shared-features` against the image side the trunk runs at.

    .venv/bin/python benchmarks/shared_side.py --checkpoint runs/det-builtin/member-0/final.pt 128 256 384

`SharedFeatures` resizes each image to a longer side of twice the classifier's input by default; this
scores the built-in scenes' validation images (fast-paper proposals) at each given side and prints the
VOC mAP at IoU 0.5 (docs/detection.md, "Figures on the built-in scenes").
"""

from __future__ import annotations

import argparse
import time

from googlenet.bench.command import positive_int
from googlenet.detect.detector import DetectorConfig, SharedFeatures, detect_images
from googlenet.detect.metrics import evaluate_detections, mean_ap
from googlenet.detect.pipeline import gather_proposals, resolve_annotations
from googlenet.detect.voc import load_voc, voc_images
from googlenet.evaluate.models import load_ensemble
from googlenet.model.weights import load_checkpoint_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--annotations", default="builtin")
    parser.add_argument("sides", nargs="+", type=positive_int)
    args = parser.parse_args()
    config = DetectorConfig()
    ensemble = load_ensemble([args.checkpoint], engine="eager")
    model, meta = load_checkpoint_model(args.checkpoint, aux_logits=False)
    annotations = resolve_annotations(args.annotations)
    images = voc_images(annotations, "val")
    truth = load_voc(annotations, "val")
    proposals, _ = gather_proposals(images, "fast-paper", 500, None, [])
    for side in args.sides:
        scorer = SharedFeatures([model], [meta], config, image_side=side)
        started = time.perf_counter()
        detections = detect_images(ensemble, images, proposals, config, skip=True, scorer=scorer)
        seconds = (time.perf_counter() - started) / len(images)
        found = mean_ap(evaluate_detections(detections, truth))
        print(f"image side {side}: mAP {100 * found:.2f}%, {len(detections)} detections, "
              f"{seconds:.2f} s/image")  # fmt: skip


if __name__ == "__main__":
    main()
