"""Section-6 training augmentation and the single-crop evaluation transform.

Section 6 of the paper: "sampling of various sized patches of the image whose size is distributed
evenly between 8% and 100% of the image area with aspect ratio constrained to the interval [3/4, 4/3]",
"photometric distortions by Andrew Howard", and "random interpolation methods (bilinear, area, nearest
neighbor and cubic, with equal probability) for resizing". The paper gives no ranges for the photometric
distortions and does not mention flips or lighting noise; those defaults say where they come from.

Everything random draws from torch's global generator, which `torch.utils.data.DataLoader` seeds
differently in every worker, so `torch.manual_seed` makes a run repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from googlenet.errors import ConfigError

try:
    from torchvision.transforms.v2 import query_size
except ImportError:  # torchvision < 0.21 kept it private
    from torchvision.transforms.v2._utils import query_size

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Section 6: "bilinear, area, nearest neighbor and cubic, with equal probability". torchvision's "area"
# for PIL images is InterpolationMode.BOX (PIL's BOX filter: each output pixel is the mean of the input
# pixels it covers, i.e. area averaging); for tensors we use torch's "area" mode (see `_resized_crop`).
INTERPOLATIONS: dict[str, InterpolationMode] = {
    "bilinear": InterpolationMode.BILINEAR,
    "area": InterpolationMode.BOX,
    "nearest": InterpolationMode.NEAREST,
    "bicubic": InterpolationMode.BICUBIC,
}

# AlexNet-style lighting noise (Krizhevsky et al. 2012, section 4.1): PCA of ImageNet RGB pixel values
# (in 0..1), as published with fb.resnet.torch. Columns of the matrix are the eigenvectors.
IMAGENET_PCA_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def default_resize_size(input_size: int) -> int:
    """The shorter side to resize to before a centre/fixed crop: 256 for 224, in proportion otherwise."""
    return round(input_size * 256 / 224)


@dataclass
class AugmentConfig:
    """How training images are sampled and distorted; the defaults are the paper's recipe (section 6)."""

    scale_min: float = 0.08  # section 6: patch area "between 8% and 100% of the image area"
    scale_max: float = 1.0  # section 6
    ratio_min: float = 3 / 4  # section 6: aspect ratio "constrained to the interval [3/4, 4/3]"
    ratio_max: float = 4 / 3  # section 6
    # False = the ablation baseline (not in the paper): resize the shorter side to `resize_size` and take
    # a random `input_size` square, the AlexNet/Caffe recipe.
    random_crop: bool = True
    # not in the paper: shorter side for the random_crop=False baseline; None = round(input * 256/224).
    resize_size: int | None = None
    random_interpolation: bool = True  # section 6: bilinear, area, nearest, cubic with equal probability
    photometric: bool = True  # section 6: "photometric distortions by Andrew Howard"
    # not in the paper: ColorJitter factors drawn from [1 - x, 1 + x]; 0.4 is fb.resnet.torch's value
    # for the distortions of Howard (2013), "Some improvements on deep CNN based image classification"
    # (brightness, contrast, colour), which section 6 cites; Howard's own ranges may differ.
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    # not in the paper: AlexNet PCA lighting noise (Krizhevsky et al. 2012), alpha ~ N(0, 0.1); 0 disables
    # it, and so does photometric=False (it is one of the photometric distortions).
    lighting: float = 0.1
    flip: bool = True  # not in the paper: horizontal mirror with p = 0.5 (the Caffe reference uses it)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # not in the paper: ImageNet statistics
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 0 < self.scale_min <= self.scale_max <= 1:
            raise ConfigError(
                f"augment scale_min/scale_max: need 0 < scale_min <= scale_max <= 1, "
                f"got {self.scale_min} and {self.scale_max}"
            )
        if not 0 < self.ratio_min <= self.ratio_max:
            raise ConfigError(
                f"augment ratio_min/ratio_max: need 0 < ratio_min <= ratio_max, "
                f"got {self.ratio_min} and {self.ratio_max}"
            )
        if self.resize_size is not None and self.resize_size < 1:
            raise ConfigError(f"augment resize_size: must be a positive integer, got {self.resize_size}")
        for name in ("brightness", "contrast", "saturation", "lighting"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ConfigError(f"augment {name}: must be a finite number >= 0, got {value!r}")
        for name in ("mean", "std"):
            value = tuple(getattr(self, name))
            if len(value) != 3:
                raise ConfigError(f"augment {name}: needs 3 values (R, G, B), got {len(value)}")
            setattr(self, name, tuple(float(v) for v in value))
        if min(self.std) <= 0:
            raise ConfigError(f"augment std: every value must be > 0, got {self.std}")

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for saving beside a checkpoint."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Transform(v2.Transform):
    """A custom v2 transform that runs on every torchvision this package accepts: 0.21 made the two
    methods a subclass overrides public (`make_params`, `transform`); 0.19 and 0.20 call them by their
    old private names, which forward here."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {}

    def _get_params(self, flat_inputs: list[Any]) -> dict[str, Any]:  # torchvision < 0.21
        return self.make_params(flat_inputs)

    def _transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # torchvision < 0.21
        return self.transform(inpt, params)


class RandomResizedCropRandomInterpolation(_Transform):
    """Section 6 patch sampling: area uniform in `scale`, aspect ratio uniform in `ratio`, and the
    resize interpolation drawn uniformly from `interpolations` on every call.

    torchvision's `RandomResizedCrop` draws the aspect ratio log-uniformly; the paper says the ratio is
    constrained to [3/4, 4/3] with area "distributed evenly", which we read as uniform for both. As in
    torchvision, a draw whose patch does not fit the image is redrawn (up to 10 times, then the largest
    centred patch with an allowed ratio is used), so very large areas are accepted less often than
    small ones: on a square image, area 1.0 fits only when the ratio is exactly 1.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),  # section 6
        ratio: tuple[float, float] = (3 / 4, 4 / 3),  # section 6
        interpolations: Sequence[InterpolationMode] = tuple(INTERPOLATIONS.values()),  # section 6
    ) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale = scale
        self.ratio = ratio
        self.interpolations = tuple(interpolations)
        if not self.interpolations:
            raise ConfigError("random crop: at least one interpolation is needed")

    @staticmethod
    def get_params(
        height: int,
        width: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolations: Sequence[InterpolationMode] = tuple(INTERPOLATIONS.values()),
        generator: torch.Generator | None = None,
    ) -> tuple[int, int, int, int, InterpolationMode]:
        """Draw one patch for an image of `height` x `width`: (top, left, h, w, interpolation)."""
        area = height * width
        for _ in range(10):
            target_area = area * _uniform(scale[0], scale[1], generator)
            aspect = _uniform(ratio[0], ratio[1], generator)  # uniform, not log-uniform (see class doc)
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
                break
        else:  # torchvision's fallback: the largest centred patch whose ratio is allowed
            in_ratio = width / height
            if in_ratio < ratio[0]:
                w, h = width, round(width / ratio[0])
            elif in_ratio > ratio[1]:
                w, h = round(height * ratio[1]), height
            else:
                w, h = width, height
            top, left = (height - h) // 2, (width - w) // 2
        pick = int(torch.randint(0, len(interpolations), (1,), generator=generator).item())
        return top, left, h, w, interpolations[pick]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """This call's patch and interpolation (`get_params` on the input's size, from the global RNG)."""
        height, width = query_size(flat_inputs)
        top, left, h, w, interpolation = self.get_params(
            height, width, self.scale, self.ratio, self.interpolations
        )
        return {"top": top, "left": left, "height": h, "width": w, "interpolation": interpolation}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resized_crop(inpt, params, list(self.size))

    def extra_repr(self) -> str:
        names = [m.value for m in self.interpolations]
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, interpolations={names}"


class ResizeRandomInterpolation(_Transform):
    """Resize the shorter side to `size` with an interpolation drawn uniformly from `interpolations`.

    Used by the random_crop=False baseline, so that switching the patch sampling off does not also
    switch off the random interpolation of section 6.
    """

    def __init__(
        self, size: int, interpolations: Sequence[InterpolationMode] = tuple(INTERPOLATIONS.values())
    ) -> None:
        super().__init__()
        self.size = size
        self.interpolations = tuple(interpolations)
        if not self.interpolations:
            raise ConfigError("resize: at least one interpolation is needed")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """The whole image as the patch, this call's interpolation, the output size (shorter side `size`)."""
        height, width = query_size(flat_inputs)
        pick = int(torch.randint(0, len(self.interpolations), (1,)).item())
        scale = self.size / min(height, width)
        out = [max(1, round(height * scale)), max(1, round(width * scale))]
        whole = {"top": 0, "left": 0, "height": height, "width": width}  # no crop: the whole image
        return {**whole, "interpolation": self.interpolations[pick], "out": out}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resized_crop(inpt, params, params["out"])


class PCALighting(_Transform):
    """AlexNet lighting noise (Krizhevsky et al. 2012, section 4.1) on float images in 0..1.

    Adds `eigvec @ (alpha * eigval)` to every pixel, alpha ~ N(0, alphastd) per image and component:
    the image's colour shifts along the principal components of natural-image RGB values. Values are
    not clipped afterwards, as in the original and in fb.resnet.torch.
    """

    def __init__(
        self,
        alphastd: float,
        eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC,
    ) -> None:
        super().__init__()
        self.alphastd = alphastd
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        alpha = torch.randn(3) * self.alphastd
        return {"offset": self.eigvec @ (alpha * self.eigval)}  # one RGB offset per image

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Add this call's RGB offset to a float image; boxes and masks pass unchanged. A PIL or integer
        image raises `TypeError`: the noise is defined on values in 0..1."""
        if isinstance(inpt, tv_tensors.BoundingBoxes | tv_tensors.Mask):
            return inpt
        if isinstance(inpt, PIL.Image.Image):
            raise TypeError(
                "PCALighting needs a float image in 0..1 (put it after ToImage and ToDtype(scale=True))"
            )
        if not isinstance(inpt, Tensor):
            return inpt
        if not inpt.is_floating_point():
            raise TypeError("PCALighting needs a float image in 0..1 (put it after ToDtype(scale=True))")
        shifted = inpt + params["offset"].to(inpt.dtype).view(3, 1, 1)
        return tv_tensors.wrap(shifted, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else shifted

    def extra_repr(self) -> str:
        return f"alphastd={self.alphastd}"


def build_train_transform(input_size: int, config: AugmentConfig | None = None) -> v2.Compose:
    """PIL image -> normalised float tensor 3 x input_size x input_size, sampled as section 6 says.

    Order: patch sampling and resize (PIL, so "area" is PIL's BOX filter), mirror, photometric
    distortions, to float, lighting noise, normalisation.
    """
    config = config or AugmentConfig()
    interpolations = (
        tuple(INTERPOLATIONS.values()) if config.random_interpolation else (InterpolationMode.BILINEAR,)
    )
    steps: list[Callable[..., Any]]
    if config.random_crop:
        steps = [
            RandomResizedCropRandomInterpolation(
                input_size,
                scale=(config.scale_min, config.scale_max),
                ratio=(config.ratio_min, config.ratio_max),
                interpolations=interpolations,
            )
        ]
    else:
        resize = config.resize_size or default_resize_size(input_size)
        steps = [ResizeRandomInterpolation(resize, interpolations), v2.RandomCrop(input_size)]
    if config.flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if config.photometric:
        steps.append(
            v2.ColorJitter(
                brightness=config.brightness, contrast=config.contrast, saturation=config.saturation
            )
        )
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if config.photometric and config.lighting > 0:  # lighting noise is one of the photometric distortions
        steps.append(PCALighting(config.lighting))
    steps.append(v2.Normalize(mean=list(config.mean), std=list(config.std)))
    return v2.Compose(steps)


def build_eval_transform(
    input_size: int,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """PIL image -> normalised float tensor: shorter side to `resize_size`, centre `input_size` crop.

    `resize_size` defaults to round(input_size * 256 / 224) (224 -> 256, 64 -> 73), the single centre
    crop of section 7's baseline ("1 crop" in Table 3, read as the centre crop).
    """
    resize = resize_size or default_resize_size(input_size)
    if resize < input_size:
        raise ConfigError(f"eval transform: resize_size {resize} is smaller than input_size {input_size}")
    return v2.Compose(
        [
            v2.Resize(resize, interpolation=InterpolationMode.BILINEAR, antialias=True),
            v2.CenterCrop(input_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator).item())


def _resized_crop(inpt: Any, params: dict[str, Any], size: list[int]) -> Any:
    """Crop `params`' box and resize it to `size` with `params`' interpolation, on any v2 input type."""
    interpolation = params["interpolation"]
    box = (params["top"], params["left"], params["height"], params["width"])
    if isinstance(inpt, PIL.Image.Image) or interpolation != InterpolationMode.BOX:
        return F.resized_crop(inpt, *box, size=size, interpolation=interpolation, antialias=True)
    if isinstance(inpt, tv_tensors.BoundingBoxes | tv_tensors.Mask):
        # Boxes ignore the interpolation; masks must stay labels, so nearest.
        return F.resized_crop(inpt, *box, size=size, interpolation=InterpolationMode.NEAREST)
    # Image tensors: torch has no BOX filter, but its "area" mode is the same area averaging.
    cropped = F.crop(inpt, *box)
    dtype = cropped.dtype
    batch = cropped.reshape(-1, *cropped.shape[-3:]).float()
    resized = torch.nn.functional.interpolate(batch, size=size, mode="area")
    if not dtype.is_floating_point:
        resized = resized.round_().clamp_(0, torch.iinfo(dtype).max)
    out = resized.to(dtype).reshape(*cropped.shape[:-2], *size)
    return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out
