"""Run a `googlenet export --format onnx` file without the googlenet package: NumPy, Pillow and ONNX
Runtime only. It reproduces `googlenet predict --checkpoint THE_SOURCE.pt` (one crop, one model): the
same top-5 and the same probabilities within a few thousandths (Pillow's and torchvision's antialiased
resizes round a pixel a grey level apart here and there; tests/test_export.py -k deploy checks it on an
EXIF-rotated photo, a transparent PNG and a wide picture).

    python examples/onnx_predict.py googlenet.onnx photo.jpg [more images ...]

Every preprocessing number comes from the file's own metadata (`metadata_props["googlenet.meta"]`);
each step below is one `googlenet predict` takes, and leaving one out changes the pixels the network
sees: a phone photo's EXIF orientation (a rotated picture), transparency (PIL's plain RGB conversion
keeps whatever colour the transparent pixels hide; predict puts them on white), an antialiased resize
(PIL's `Image.resize` is; OpenCV's `cv2.resize` with INTER_LINEAR is not, and differs by up to a
hundred grey levels on a downscaled photo), and the rounding of the resized longer side (truncated,
as torchvision's `Resize`) and of the centre crop's offset (Python's `round`).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

RESAMPLING = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def load_rgb(path: str) -> Image.Image:
    """The image as predict decodes it: EXIF orientation applied, 16-bit grey levels scaled to 8 bits
    (not clipped), transparency (an alpha channel, or a PNG's transparent colour) on white, RGB. (predict
    also stretches 32-bit and float images over their own range; not done here.)"""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.asarray(image, dtype=np.float64) / 257.0  # 65535 -> 255
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), mode="L")
    if "transparency" in image.info or image.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def preprocess(image: Image.Image, meta: dict) -> np.ndarray:
    """1 x 3 x S x S float32: the shorter side resized to resize_size (antialiased, longer side
    truncated), the centre S x S square, (pixel / 255 - mean) / std."""
    size, scale = int(meta["input_size"]), int(meta["resize_size"])
    width, height = image.size
    new = (scale, int(scale * height / width)) if width <= height else (int(scale * width / height), scale)
    image = image.resize(new, RESAMPLING[meta.get("interpolation", "bilinear")])
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    crop = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    normalised = (crop - np.array(meta["mean"], dtype=np.float32)) / np.array(meta["std"], dtype=np.float32)
    return normalised.transpose(2, 0, 1)[None].astype(np.float32)


def main(model_path: str, images: list[str]) -> None:
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["googlenet.meta"])
    names = meta["class_names"]
    for path in images:
        (logits,) = session.run(["logits"], {"images": preprocess(load_rgb(path), meta)})
        shifted = np.exp(logits[0] - logits[0].max())
        probabilities = shifted / shifted.sum()  # the output is logits; predict shows their softmax
        top = np.argsort(-probabilities, kind="stable")[:5]
        print(json.dumps({"image": path, "top": [[names[i], float(probabilities[i])] for i in top]}))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python examples/onnx_predict.py MODEL.onnx IMAGE [IMAGE ...]")
    main(sys.argv[1], sys.argv[2:])
