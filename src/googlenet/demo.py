"""`make demo`: the main job end to end on data that ships with the installation.

For now (foundation): a forward pass of the `paper` network on a real photograph (the CC0 cat photo
shipped inside scikit-image's wheel), printing the output shapes of every stage and of every head.
The weights are freshly initialised, so the class scores mean nothing yet; training comes next.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from googlenet.model.googlenet import build_model
from googlenet.model.weights import IMAGENET_MEAN, IMAGENET_STD


def photo_batch(size: int = 224) -> torch.Tensor:
    """skimage's `chelsea` photo resized (shorter side 256) and centre-cropped to 224, normalised."""
    from skimage import data  # the photo is inside the wheel: no download

    image = Image.fromarray(data.chelsea())
    scale = round(size * 256 / 224) / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def main() -> None:
    torch.manual_seed(0)
    model = build_model("paper").eval()
    x = photo_batch()
    print(f"\nforward pass of the untrained 'paper' network on a real photo, input {tuple(x.shape)}")
    with torch.no_grad():
        start = time.perf_counter()
        stages = model.forward_stages(x)
        outputs = model.forward_train(x)
        elapsed = time.perf_counter() - start
    for name, value in stages.items():
        print(f"  {name:<12} {tuple(value.shape)}")
    for name, value in outputs._asdict().items():
        shape = None if value is None else tuple(value.shape)
        print(f"  head {name:<7} {shape}")
    probs = outputs.logits.softmax(1)[0]
    print(
        f"  softmax sums to {probs.sum():.4f}; entropy {-(probs * probs.log()).sum():.3f} "
        f"(ln 1000 = {np.log(1000):.3f} for an untrained net); {elapsed * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
