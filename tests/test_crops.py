"""Section 7's test crops: geometry against boxes computed here independently, and the fast cutter
against PIL resize + crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

import googlenet
from googlenet.data.crops import (
    CropSpec,
    CropTransform,
    crop_batch,
    crop_boxes,
    cut_crops,
    normalize,
    resized_size,
)
from googlenet.data.transforms import build_eval_transform

SIZES = {"landscape": (500, 375), "portrait": (375, 500), "square": (300, 300), "odd": (333, 251)}


def _resized(width: int, height: int, scale: int) -> tuple[int, int]:
    # torchvision Resize(int): the shorter side becomes `scale`, the longer one is truncated.
    if width <= height:
        return scale, int(scale * height / width)
    return int(scale * width / height), scale


def _centre(extent: int, size: int) -> int:
    return round((extent - size) / 2.0)  # torchvision CenterCrop's rule (checked against it below)


def expected_144(width: int, height: int, crop: int, scales: tuple[int, ...]) -> list[tuple]:
    """Section 7 written out as plainly as possible: (scale, square, position, box, mirrored)."""
    out = []
    for s in scales:
        w, h = _resized(width, height, s)
        if h > w:  # portrait: top, centre, bottom squares
            squares = [("top", 0, 0), ("centre", 0, _centre(h, s)), ("bottom", 0, h - s)]
        else:
            squares = [("left", 0, 0), ("centre", _centre(w, s), 0), ("right", w - s, 0)]
        for name, x, y in squares:
            c = _centre(s, crop)
            boxes = [
                ("top-left", (x, y, x + crop, y + crop)),
                ("top-right", (x + s - crop, y, x + s, y + crop)),
                ("bottom-left", (x, y + s - crop, x + crop, y + s)),
                ("bottom-right", (x + s - crop, y + s - crop, x + s, y + s)),
                ("centre", (x + c, y + c, x + c + crop, y + c + crop)),
                ("whole", (x, y, x + s, y + s)),
            ]
            for position, box in boxes:
                for mirrored in (False, True):
                    out.append((s, name, position, box, mirrored))
    return out


def expected_10(width: int, height: int, crop: int, scale: int) -> list[tuple]:
    w, h = _resized(width, height, scale)
    cx, cy = _centre(w, crop), _centre(h, crop)
    five = [
        ("top-left", (0, 0, crop, crop)),
        ("top-right", (w - crop, 0, w, crop)),
        ("bottom-left", (0, h - crop, crop, h)),
        ("bottom-right", (w - crop, h - crop, w, h)),
        ("centre", (cx, cy, cx + crop, cy + crop)),
    ]
    return [(scale, "image", p, b, m) for m in (False, True) for p, b in five]


def as_tuples(crops: list) -> list[tuple]:
    return [(c.scale, c.square, c.position, c.box, c.mirrored) for c in crops]


@pytest.mark.parametrize("shape", list(SIZES))
@pytest.mark.parametrize("crop_size", [224, 64])
def test_144_crops_match_section_7(shape: str, crop_size: int) -> None:
    width, height = SIZES[shape]
    scales = tuple(round(crop_size * s / 224) for s in (256, 288, 320, 352))
    crops = crop_boxes(width, height, crops=144, crop_size=crop_size)
    assert len(crops) == 4 * 3 * 6 * 2 == 144
    assert sorted(as_tuples(crops)) == sorted(expected_144(width, height, crop_size, scales))
    assert sum(c.mirrored for c in crops) == 72
    for c in crops:
        w, h = _resized(width, height, c.scale)
        left, top, right, bottom = c.box
        assert 0 <= left < right <= w and 0 <= top < bottom <= h, c  # inside the resized image
        side = c.scale if c.position == "whole" else crop_size
        assert (right - left, bottom - top) == (side, side)
        assert c.resized == (c.position == "whole")
    if shape == "portrait":
        assert {c.square for c in crops} == {"top", "centre", "bottom"}
    else:
        assert {c.square for c in crops} == {"left", "centre", "right"}


@pytest.mark.parametrize("shape", list(SIZES))
def test_10_and_1_crops(shape: str) -> None:
    width, height = SIZES[shape]
    ten = crop_boxes(width, height, crops=10)
    assert as_tuples(ten) == expected_10(width, height, 224, 256)
    (one,) = crop_boxes(width, height, crops=1)
    assert (one.scale, one.position, one.mirrored) == (256, "centre", False)
    assert one.box == ten[4].box  # the centre crop of the 10


def test_centre_crop_is_torchvision_center_crop() -> None:
    # Pixel values encode their coordinates, so CenterCrop's top-left pixel gives its offset.
    for width, height in [*SIZES.values(), (341, 256), (256, 343), (97, 73)]:
        w, h = resized_size(width, height, 73)
        grid = torch.arange(h * w, dtype=torch.int64).view(1, h, w)
        corner = int(TF.center_crop(grid, [64, 64])[0, 0, 0])
        (one,) = crop_boxes(width, height, crops=1, crop_size=64)
        assert (one.box[0], one.box[1]) == (corner % w, corner // w)
        assert (w, h) == tuple(reversed(TF.resize(torch.zeros(1, height, width), 73).shape[-2:]))


def test_other_resolutions_scale_with_the_crop() -> None:
    assert sorted({c.scale for c in crop_boxes(400, 300, crop_size=112)}) == [128, 144, 160, 176]
    assert sorted({c.scale for c in crop_boxes(400, 300, crop_size=64)}) == [73, 82, 91, 101]
    assert crop_boxes(400, 300, crops=1, crop_size=64)[0].scale == 73
    custom = crop_boxes(400, 300, crops=144, crop_size=64, scales=[64, 70, 80, 90])
    assert sorted({c.scale for c in custom}) == [64, 70, 80, 90]
    assert getattr(googlenet, "crop_boxes", crop_boxes) is crop_boxes  # the flat re-export, once added


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crops": 5},
        {"crops": 0},
        {"crops": True},
        {"crop_size": 0},
        {"crop_size": -3},
        {"width": 0},
        {"height": -1},
        {"crops": 144, "scales": [256]},
        {"crops": 1, "scales": [256, 288]},
        {"crops": 10, "scales": [200]},
    ],
)
def test_bad_arguments_are_one_line_config_errors(kwargs: dict) -> None:
    args = {"width": 100, "height": 80, **kwargs}
    with pytest.raises(googlenet.ConfigError) as info:
        crop_boxes(**args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scales", [256, "256", {256: 1}], ids=["int", "str", "dict"])
def test_scales_that_are_not_a_list_are_a_config_error_naming_scales(scales: object) -> None:
    # a lone number was "'int' object is not iterable"; a string or a dict was taken apart
    for make in (lambda: crop_boxes(100, 80, crops=1, scales=scales), lambda: CropSpec(1, 64, scales)):
        with pytest.raises(googlenet.ConfigError, match=r"^scales: must be a list of shorter sides"):
            make()


def _pil_reference(image: Image.Image, crop, crop_size: int) -> np.ndarray:
    """The slow, obvious way: PIL resize of the whole image, PIL crop, PIL resize, PIL flip."""
    resized = image.resize(resized_size(*image.size, crop.scale), Image.Resampling.BILINEAR)
    patch = resized.crop(crop.box)
    if crop.resized:
        patch = patch.resize((crop_size, crop_size), Image.Resampling.BILINEAR)
    if crop.mirrored:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(patch, dtype=np.int16).transpose(2, 0, 1)


@pytest.mark.parametrize("size", [(120, 90), (90, 131)])
def test_fast_crops_equal_pil_resize_and_crop(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    # Smooth content (as in photos): a tilted gradient plus low-frequency noise, then some fine noise.
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(image, np.int16) + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255)
    image = Image.fromarray(noisy.astype(np.uint8))
    crops = crop_boxes(*size, crops=144, crop_size=64)
    fast = cut_crops(image, crops, 64).to(torch.int16).numpy()
    assert fast.shape == (144, 3, 64, 64)
    for i, crop in enumerate(crops):
        reference = _pil_reference(image, crop, 64)
        diff = np.abs(fast[i] - reference)
        assert diff.max() <= 2, (crop, diff.max())  # antialiased uint8 resize vs PIL: a level or two
        assert diff.mean() < 0.3, (crop, diff.mean())


def test_mirrors_are_flips_and_tensor_input_matches_pil() -> None:
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    crops = crop_boxes(90, 70, crops=10, crop_size=64)
    from_pil = cut_crops(image, crops, 64)
    from_tensor = cut_crops(torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous(), crops, 64)
    assert torch.equal(from_pil, from_tensor)
    assert torch.equal(from_pil[5:], from_pil[:5].flip(-1))
    with pytest.raises(TypeError):
        cut_crops(torch.zeros(3, 10, 10), crops, 64)  # float, not uint8


def test_one_crop_is_the_eval_transform() -> None:
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (75, 100, 3), dtype=np.uint8))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ours = crop_batch(image, crop_boxes(100, 75, crops=1, crop_size=64), 64, mean, std)[0]
    reference = build_eval_transform(64, 73, mean, std)(image)
    assert ours.shape == reference.shape == (3, 64, 64)
    assert (ours - reference).abs().max() < 2.5 / (255 * 0.224)  # within two grey levels


def test_normalize_does_not_touch_its_input() -> None:
    batch = torch.tensor([[[[0, 255]], [[51, 102]], [[255, 0]]]], dtype=torch.uint8)
    out = normalize(batch, (0.5, 0.4, 0.3), (0.25, 0.2, 0.1))
    expected = (batch.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.25, 0.2, 0.1]
    ).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    floats = batch.float()
    normalize(floats, (0.5, 0.4, 0.3), (0.25, 0.2, 0.1))
    assert torch.equal(floats, batch.float())


def test_crop_transform_cuts_shared_crops_once() -> None:
    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    specs = [CropSpec(1, 64, (73,)), CropSpec(10, 64, (73,)), CropSpec(144, 64)]
    unique, indices = CropTransform(specs)(image)
    # A square image's three squares coincide: 4 scales x 6 positions x 2 = 48 distinct 144-crops.
    assert len(torch.unique(indices[2])) == 48
    assert [len(i) for i in indices] == [1, 10, 144]
    assert len(unique) <= 48 + 11
    for spec, index in zip(specs, indices, strict=True):
        direct = cut_crops(image, spec.boxes(64, 64), 64)
        assert torch.equal(unique[index], direct)


def test_crop_transform_landscape_nests_1_and_10_in_144() -> None:
    # At 224 with the 256 resize, Table 3's 1 and 10 crops are among the 144: nothing extra is cut.
    transform = CropTransform([CropSpec(1), CropSpec(10), CropSpec(144)])
    crops, indices = transform.plan(500, 375)
    assert len(crops) == 144
    assert set(indices[0].tolist()) <= set(indices[1].tolist()) <= set(indices[2].tolist())


def test_an_opened_image_becomes_rgb_as_a_loaded_file_does(tmp_path: Path) -> None:
    """predict_image and cut_crops take opened PIL images: transparency and 16 bits are converted as
    load_image converts files (convert("RGB") dropped the alpha and clipped 16-bit values to white)."""
    from googlenet.data.crops import to_uint8_tensor
    from googlenet.data.decode import load_image

    rgba = Image.new("RGBA", (6, 4), (0, 0, 0, 64))  # mostly transparent black: light grey on white
    grey16 = Image.fromarray(np.full((4, 6), 30000, dtype=np.uint16))
    for image, name in ((rgba, "a.png"), (grey16, "b.png")):
        image.save(tmp_path / name)
        assert torch.equal(to_uint8_tensor(image), to_uint8_tensor(load_image(tmp_path / name)))
    assert int(to_uint8_tensor(rgba)[0, 0, 0]) > 150 and int(to_uint8_tensor(grey16)[0, 0, 0]) < 200
