"""How much of each labelled object stays visible in the built-in detection scenes.

The scenes bound how much two boxes overlap (IoU <= 0.2), not how much of an object a later one
covers: a small object inside a larger one's box can be hidden by it. This redraws the default scenes
(the same generator calls as `ensure_builtin_scenes`, nothing written) and records each object's
coverage mask as it is drawn, then multiplies in the masks of the objects drawn after it.

    .venv/bin/python benchmarks/scene_visibility.py [--seed 0] [--train 400] [--val 100]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from googlenet.bench.command import positive_int
from googlenet.data import scenes, synthetic


def visible_shares(seed: int, counts: dict[str, int]) -> list[tuple[str, int, str, float]]:
    """(split, scene index, kind, visible share of its coverage) for every labelled object."""
    masks: list[np.ndarray] = []
    draw = synthetic._object_alpha  # the one place an object's coverage exists as an array

    def recording(*args: object, **kwargs: object) -> np.ndarray:
        mask = draw(*args, **kwargs)  # type: ignore[arg-type]
        masks.append(mask)
        return mask

    synthetic._object_alpha = recording  # type: ignore[assignment]
    try:
        shares = []
        for split, count in counts.items():
            for index in range(count):
                masks.clear()
                rng = scenes.scene_rng(seed, split, index)
                kind = synthetic.CLASSES[index % len(synthetic.CLASSES)]
                _, placed = scenes.render_detection_scene(rng, 3, first_kind=kind)
                objects = masks[-len(placed) :]  # distractors are drawn first, objects last, in order
                for j, obj in enumerate(placed):
                    uncovered = objects[j].copy()
                    for later in objects[j + 1 :]:
                        uncovered *= 1.0 - later
                    shares.append((split, index, obj.kind, float(uncovered.sum() / objects[j].sum())))
        return shares
    finally:
        synthetic._object_alpha = draw  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=positive_int, default=400)
    parser.add_argument("--val", type=positive_int, default=100)
    args = parser.parse_args()
    shares = visible_shares(args.seed, {"train": args.train, "val": args.val})
    values = np.array([share for *_, share in shares])
    worst = sorted(shares, key=lambda row: row[3])[:5]
    print(json.dumps({
        "objects": len(values),
        "visible_below_90%": int((values < 0.9).sum()),
        "visible_below_50%": int((values < 0.5).sum()),
        "visible_below_20%": int((values < 0.2).sum()),
        "share_below_90%": round(float((values < 0.9).mean()), 4),
        "worst": [f"{split}_{index:05d} {kind} {share:.2f}" for split, index, kind, share in worst],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
