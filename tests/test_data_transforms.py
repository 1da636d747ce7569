"""Section-6 sampling checked statistically over many draws, each switch of AugmentConfig really off,
and the eval transform's sizes. Every random test seeds torch, so none of them is flaky."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from googlenet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    IMAGENET_STD,
    INTERPOLATIONS,
    AugmentConfig,
    PCALighting,
    RandomResizedCropRandomInterpolation,
    ResizeRandomInterpolation,
    build_eval_transform,
    build_train_transform,
    default_resize_size,
)
from googlenet.errors import ConfigError

DRAWS = 2000
get_params = RandomResizedCropRandomInterpolation.get_params


def _photo(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _normalised(image: Image.Image) -> torch.Tensor:
    tensor = F.to_dtype(F.to_image(image), torch.float32, scale=True)
    return F.normalize(tensor, list(IMAGENET_MEAN), list(IMAGENET_STD))


def _chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def test_patch_area_lies_in_8_to_100_percent_and_covers_it() -> None:
    generator = torch.Generator().manual_seed(0)
    height, width = 300, 400
    areas, ratios = [], []
    for _ in range(DRAWS):
        top, left, h, w, _mode = get_params(height, width, generator=generator)
        assert 0 <= top <= height - h and 0 <= left <= width - w
        areas.append(h * w / (height * width))
        ratios.append(w / h)
    assert min(areas) >= 0.079 and max(areas) <= 1.0  # rounding to whole pixels allows a hair below 8%
    assert min(areas) < 0.09 and max(areas) > 0.9
    # Area is drawn uniformly; patches that do not fit are redrawn, so large areas are a bit rarer.
    below_half = sum(a < 0.54 for a in areas) / DRAWS
    assert 0.45 < below_half < 0.65
    assert min(ratios) >= 3 / 4 - 0.01 and max(ratios) <= 4 / 3 + 0.01


def test_aspect_ratio_is_uniform_not_log_uniform() -> None:
    generator = torch.Generator().manual_seed(1)
    # Areas small enough that every draw fits: the accepted ratios are the drawn ratios.
    ratios = np.array(
        [
            (lambda p: p[3] / p[2])(get_params(1000, 1000, (0.08, 0.3), generator=generator))
            for _ in range(DRAWS)
        ]
    )
    counts, _ = np.histogram(ratios, bins=4, range=(3 / 4, 4 / 3))
    assert _chi_square(counts.tolist()) < 16.3  # chi-square, 3 dof, p = 0.001
    uniform_mean = (3 / 4 + 4 / 3) / 2  # 1.042; log-uniform would give 1.014
    assert abs(ratios.mean() - uniform_mean) < 0.012


def test_the_configured_area_and_ratio_ranges_reach_the_train_transform() -> None:
    """The ranges the config gives (--scale-min, the ensemble's larger patches) are the ones the
    training pipeline draws from, not get_params' defaults."""
    config = AugmentConfig(scale_min=0.5, scale_max=0.6, ratio_min=1.2, ratio_max=1.3)
    crop = build_train_transform(32, config).transforms[0]
    assert isinstance(crop, RandomResizedCropRandomInterpolation)
    image = _photo(1000, 1000)
    torch.manual_seed(5)
    areas, ratios = [], []
    for _ in range(500):
        params = crop.make_params([image])
        areas.append(params["height"] * params["width"] / 1e6)
        ratios.append(params["width"] / params["height"])
    assert 0.499 <= min(areas) < 0.51 and 0.59 < max(areas) <= 0.601
    assert 1.199 <= min(ratios) < 1.21 and 1.29 < max(ratios) <= 1.301


def test_each_interpolation_is_drawn_a_quarter_of_the_time() -> None:
    generator = torch.Generator().manual_seed(2)
    modes = [get_params(200, 200, generator=generator)[4] for _ in range(DRAWS)]
    counts = [modes.count(mode) for mode in INTERPOLATIONS.values()]
    assert set(modes) == set(INTERPOLATIONS.values())
    assert _chi_square(counts) < 16.3
    assert INTERPOLATIONS["area"] == InterpolationMode.BOX


@pytest.mark.parametrize("name", list(INTERPOLATIONS))
def test_the_drawn_interpolation_is_the_one_used(name: str) -> None:
    crop = RandomResizedCropRandomInterpolation(24, interpolations=(INTERPOLATIONS[name],))
    image = _photo(80, 60)
    torch.manual_seed(3)
    params = crop.make_params([image])
    torch.manual_seed(3)
    out = crop(image)
    box = (params["top"], params["left"], params["height"], params["width"])
    expected = F.resized_crop(image, *box, size=[24, 24], interpolation=INTERPOLATIONS[name], antialias=True)
    assert out.size == (24, 24)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_area_mode_works_on_tensors_too() -> None:
    crop = RandomResizedCropRandomInterpolation(16, interpolations=(InterpolationMode.BOX,))
    tensor = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    out = crop(tensor)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    flat = torch.full((3, 40, 40), 0.25)
    assert torch.allclose(crop(flat), torch.full((3, 16, 16), 0.25))


@pytest.mark.parametrize(
    "transform",
    [
        RandomResizedCropRandomInterpolation(16),
        ResizeRandomInterpolation(20),
        PCALighting(0.1),
    ],
    ids=lambda t: type(t).__name__,
)
def test_each_transform_runs_under_the_older_torchvision_protocol(transform: v2.Transform) -> None:
    # torchvision 0.19 and 0.20 (pyproject accepts them) call a transform's `_get_params` and
    # `_transform`; 0.21 renamed them `make_params` and `transform`. Ours answer to both names alike.
    image = F.to_dtype(F.to_image(_photo(50, 40)), torch.float32, scale=True)
    torch.manual_seed(5)
    new = transform.transform(image, transform.make_params([image]))
    torch.manual_seed(5)
    old = transform._transform(image, transform._get_params([image]))
    assert torch.equal(new, old)


def test_flip_happens_half_the_time_and_can_be_switched_off() -> None:
    image = _photo(32, 32)
    plain = _normalised(image)
    only_flip = AugmentConfig(
        random_crop=False, resize_size=32, random_interpolation=False, photometric=False, lighting=0.0
    )
    torch.manual_seed(4)
    transform = build_train_transform(32, only_flip)
    flips = 0
    for _ in range(400):
        out = transform(image)
        if torch.allclose(out, plain.flip(-1)):
            flips += 1
        else:
            assert torch.allclose(out, plain)
    assert abs(flips - 200) < 40  # binomial(400, 0.5): sd 10

    nothing = build_train_transform(32, AugmentConfig(**{**only_flip.as_dict(), "flip": False}))
    assert all(torch.allclose(nothing(image), plain) for _ in range(20))


def test_photometric_off_also_leaves_out_the_lighting_noise() -> None:
    # --no-photometric (the CLI refuses --lighting with it) kept PCA lighting at its default 0.1.
    kinds = {type(step) for step in build_train_transform(32, AugmentConfig(photometric=False)).transforms}
    assert v2.ColorJitter not in kinds and PCALighting not in kinds
    kinds = {type(step) for step in build_train_transform(32, AugmentConfig()).transforms}
    assert v2.ColorJitter in kinds and PCALighting in kinds


def test_every_switch_off_leaves_a_plain_normalised_image() -> None:
    image = _photo(32, 32, seed=5)
    off = AugmentConfig(
        random_crop=False,
        resize_size=32,
        random_interpolation=False,
        photometric=False,
        lighting=0.0,
        flip=False,
    )
    transform = build_train_transform(32, off)
    kinds = {type(step) for step in transform.transforms}
    assert v2.ColorJitter not in kinds and PCALighting not in kinds and v2.RandomHorizontalFlip not in kinds
    assert RandomResizedCropRandomInterpolation not in kinds
    torch.manual_seed(5)
    assert all(torch.allclose(transform(image), _normalised(image)) for _ in range(10))


def test_photometric_switch() -> None:
    image = _photo(32, 32, seed=6)
    base: dict[str, Any] = {
        "random_crop": False,
        "resize_size": 32,
        "random_interpolation": False,
        "lighting": 0.0,
        "flip": False,
    }
    torch.manual_seed(6)
    on = build_train_transform(32, AugmentConfig(**base, photometric=True))
    outs = [on(image) for _ in range(10)]
    assert all(not torch.allclose(outs[0], other) for other in outs[1:])
    off = build_train_transform(32, AugmentConfig(**base, photometric=False))
    assert torch.allclose(off(image), off(image))


def _photometric_factors(name: str, image: Image.Image, measure: Any, draws: int = DRAWS) -> np.ndarray:
    """The factor one ColorJitter component applied, read back from `draws` outputs on `image`: the
    train transform with only that component on (defaults elsewhere), no crop, flip, lighting or
    normalisation to blur it."""
    others = {key: 0.0 for key in ("brightness", "contrast", "saturation") if key != name}
    config = AugmentConfig(
        random_crop=False,
        resize_size=image.width,
        random_interpolation=False,
        flip=False,
        lighting=0.0,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        **others,
    )
    transform = build_train_transform(image.width, config)
    return np.array([measure(transform(image) * 255) for _ in range(draws)])


def _uniform_on(factors: np.ndarray, low: float, high: float, slack: float = 0.012) -> None:
    """Within [low, high] up to 8-bit rounding, reaching both ends, and uniform over four bins."""
    assert factors.min() >= low - slack and factors.max() <= high + slack
    assert factors.min() < low + 0.03 and factors.max() > high - 0.03
    counts, _ = np.histogram(factors, bins=4, range=(low - slack, high + slack))
    assert _chi_square(list(counts)) < 16.3  # chi-square, 3 degrees of freedom, p = 0.001


def test_photometric_distortion_draws_each_factor_uniformly_in_the_documented_range() -> None:
    """brightness, contrast and saturation factors each uniform on [1 - 0.4, 1 + 0.4] (AugmentConfig's
    documented defaults), measured on images where each factor can be read off exactly."""
    config = AugmentConfig()
    assert (config.brightness, config.contrast, config.saturation, config.lighting) == (0.4, 0.4, 0.4, 0.1)
    low, high = 1 - config.brightness, 1 + config.brightness
    torch.manual_seed(8)
    grey = Image.new("RGB", (4, 4), (100, 100, 100))
    _uniform_on(_photometric_factors("brightness", grey, lambda t: float(t.mean()) / 100), low, high)
    # two grey halves, 60 and 140 (mean 100): contrast scales their difference about the mean
    halves = np.full((4, 4, 3), 60, dtype=np.uint8)
    halves[:, 2:] = 140
    two_tone = Image.fromarray(halves)
    factors = _photometric_factors(
        "contrast", two_tone, lambda t: float(t[:, :, 2:].mean() - t[:, :, :2].mean()) / 80
    )
    _uniform_on(factors, 1 - config.contrast, 1 + config.contrast)
    # one colour: saturation scales each channel's distance from the pixel's grey value
    colour = Image.new("RGB", (4, 4), (150, 100, 50))
    factors = _photometric_factors("saturation", colour, lambda t: float(t[0].mean() - t[2].mean()) / 100)
    _uniform_on(factors, 1 - config.saturation, 1 + config.saturation)


def test_lighting_switch_shifts_each_channel_by_a_constant() -> None:
    image = _photo(16, 16, seed=7)
    base: dict[str, Any] = {
        "random_crop": False,
        "resize_size": 16,
        "random_interpolation": False,
        "brightness": 0.0,  # the lighting noise alone: it is one of the photometric distortions
        "contrast": 0.0,
        "saturation": 0.0,
    }
    torch.manual_seed(7)
    lit = build_train_transform(16, AugmentConfig(**base, flip=False, lighting=0.1))(image)
    shift = (lit - _normalised(image)).flatten(1)
    assert shift.abs().max() > 0
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)


def test_lighting_noise_has_the_expected_spread() -> None:
    torch.manual_seed(8)
    lighting = PCALighting(0.1)
    zeros = torch.zeros(3, 2, 2)
    offsets = torch.stack([lighting(zeros)[:, 0, 0] for _ in range(DRAWS)])
    eigvec, eigval = torch.tensor(IMAGENET_PCA_EIGVEC), torch.tensor(IMAGENET_PCA_EIGVAL)
    expected_std = 0.1 * (eigvec * eigval).pow(2).sum(dim=1).sqrt()  # per channel
    assert torch.allclose(offsets.std(dim=0), expected_std, rtol=0.08)
    assert offsets.mean(dim=0).abs().max() < 4 * expected_std.max() / math.sqrt(DRAWS)
    with pytest.raises(TypeError):
        lighting(torch.zeros(3, 2, 2, dtype=torch.uint8))
    with pytest.raises(TypeError):  # a PIL image would otherwise pass without any noise
        lighting(Image.new("RGB", (2, 2)))


def test_random_interpolation_switch_on_the_fixed_crop_baseline() -> None:
    image = _photo(64, 64, seed=9)
    base: dict[str, Any] = {
        "random_crop": False,
        "resize_size": 24,
        "photometric": False,
        "lighting": 0.0,
        "flip": False,
    }
    torch.manual_seed(9)
    varied = build_train_transform(24, AugmentConfig(**base, random_interpolation=True))
    distinct = {varied(image).numpy().tobytes() for _ in range(60)}
    assert len(distinct) == 4
    fixed = build_train_transform(24, AugmentConfig(**base, random_interpolation=False))
    assert len({fixed(image).numpy().tobytes() for _ in range(20)}) == 1


def test_fixed_crop_baseline_resizes_then_crops() -> None:
    image = _photo(120, 60)
    config = AugmentConfig(random_crop=False, random_interpolation=False, photometric=False, lighting=0.0)
    transform = build_train_transform(56, config)
    resize = transform.transforms[0]
    assert resize(image).size == (128, 64)  # shorter side to round(56 * 256 / 224) = 64
    assert transform(image).shape == (3, 56, 56)


def test_default_train_transform_output() -> None:
    torch.manual_seed(10)
    transform = build_train_transform(48, AugmentConfig())
    for size in [(100, 80), (30, 200), (48, 48)]:
        out = transform(_photo(*size))
        assert out.shape == (3, 48, 48) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize(("input_size", "resize"), [(224, 256), (64, 73), (32, 37)])
def test_eval_transform_sizes(input_size: int, resize: int) -> None:
    assert default_resize_size(input_size) == resize
    transform = build_eval_transform(input_size)
    landscape = _photo(400, 300)
    assert transform.transforms[0](landscape).size == (round(400 * resize / 300), resize)
    assert transform(landscape).shape == (3, input_size, input_size)
    assert transform(_photo(90, 300)).shape == (3, input_size, input_size)


def test_eval_transform_takes_the_centre() -> None:
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    image.paste((255, 255, 255), (16, 16, 48, 48))  # the centre half is white
    out = build_eval_transform(32, resize_size=64, mean=(0, 0, 0), std=(1, 1, 1))(image)
    assert out.shape == (3, 32, 32) and torch.allclose(out, torch.ones_like(out))
    with pytest.raises(ConfigError):
        build_eval_transform(64, resize_size=32)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"scale_min": 0.0}, "scale_min"),
        ({"scale_min": 0.5, "scale_max": 0.4}, "scale_max"),
        ({"scale_max": 1.5}, "scale_max"),
        ({"ratio_min": 0.0}, "ratio_min"),
        ({"ratio_min": 2.0, "ratio_max": 1.0}, "ratio_max"),
        ({"brightness": -0.1}, "brightness"),
        ({"contrast": float("nan")}, "contrast"),
        ({"saturation": -1}, "saturation"),
        ({"lighting": -0.1}, "lighting"),
        ({"resize_size": 0}, "resize_size"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
    ],
)
def test_bad_augment_config_is_a_one_line_config_error(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        AugmentConfig(**changes)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_augment_config_defaults_are_the_papers() -> None:
    config = AugmentConfig()
    assert (config.scale_min, config.scale_max) == (0.08, 1.0)
    assert (config.ratio_min, config.ratio_max) == (3 / 4, 4 / 3)
    assert config.random_crop and config.random_interpolation and config.photometric and config.flip
    assert AugmentConfig(**config.as_dict()) == config


def test_an_empty_interpolation_list_is_a_config_error_not_a_failure_at_the_first_image() -> None:
    with pytest.raises(ConfigError, match="interpolation"):
        RandomResizedCropRandomInterpolation(32, interpolations=())
    with pytest.raises(ConfigError, match="interpolation"):
        ResizeRandomInterpolation(32, interpolations=())
