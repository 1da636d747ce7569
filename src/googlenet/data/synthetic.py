"""The built-in dataset: ten procedurally drawn object classes on photo and texture backgrounds.

Nothing is downloaded. Every image is drawn from a seed: one main object whose kind is the label
(disc, ring, square, ...), its size, stretch, rotation, position and colour all random, so neither
colour nor size nor place gives the class away; a background cropped from the public-domain/CC0
photos shipped inside scikit-image's wheel or a procedural texture; one to three smaller, fainter
distractors (shapes of other kinds, blobs, lines), so the task is not "find any shape"; then mild
blur and noise, and JPEG compression when written.

`render_scene` is the reusable part: it places any list of `ObjectSpec`s on a background and returns
each object's kind and tight box, so the detection data of section 8 can be drawn the same way.
`ensure_builtin` writes the classification set in ImageFolder layout, once, atomically, cached by a
hash of its parameters.
"""

from __future__ import annotations

import colorsys
import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from googlenet.errors import ConfigError, DataError
from googlenet.io import atomic_open, json_loads, sha256_file

logger = logging.getLogger("googlenet.data")

# Bump whenever a change alters any generated pixel: it is part of the cache key.
GENERATOR_VERSION = 1

CLASSES: tuple[str, ...] = (
    "disc", "ring", "square", "triangle", "star", "cross", "crescent", "heart", "arrow", "hexagon",
)  # fmt: skip

AREA_RANGE = (0.10, 0.90)  # main object's tight box, as a fraction of the image area
ASPECT_RANGE = (2 / 3, 3 / 2)  # stretch (width / height) applied before rotation, log-uniform
ROTATION_RANGE = (0.0, 360.0)  # degrees, uniform
DISTRACTOR_AREA_RANGE = (0.005, 0.03)  # distractors stay well below the smallest main object
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down: anti-aliased edges
JPEG_QUALITY = 90
MANIFEST = "manifest.json"
SPLITS = ("train", "val")

# Sample photos inside the scikit-image wheel (see skimage.data's docstrings): astronaut, hubble,
# rocket, text, clock, coins and ihc are public domain or carry no known restrictions; the others are
# CC0. Read straight from the package folder: never through skimage.data's fetcher, which may download.
PHOTOS: tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
    "retina.jpg", "rocket.jpg", "text.png",
)  # fmt: skip


# --- shapes -------------------------------------------------------------------------------------
# Each shape is a list of (polygon, filled) in unit coordinates (about [-1, 1], y down); polygons with
# filled=False are cut out of the ones before them (the hole of the ring, the bite of the crescent).
Polygon = np.ndarray
Shape = list[tuple[Polygon, bool]]


def _circle(radius: float = 1.0, cx: float = 0.0, cy: float = 0.0, n: int = 64) -> Polygon:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def _regular(n: int, radius: float = 1.0, start_deg: float = -90.0) -> Polygon:
    t = np.deg2rad(start_deg) + np.arange(n) * 2 * np.pi / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.45) -> Polygon:
    t = np.deg2rad(-90.0) + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart(n: int = 96) -> Polygon:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) / 16.5


_CROSS_ARM = 0.34
_ARROW = [(-1, -0.22), (0.1, -0.22), (0.1, -0.62), (1, 0), (0.1, 0.62), (0.1, 0.22), (-1, 0.22)]

SHAPES: dict[str, Shape] = {
    "disc": [(_circle(), True)],
    "ring": [(_circle(), True), (_circle(0.58), False)],
    "square": [(np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float), True)],
    "triangle": [(_regular(3), True)],
    "star": [(_star(), True)],
    "cross": [
        (np.array([(-_CROSS_ARM, -1), (_CROSS_ARM, -1), (_CROSS_ARM, 1), (-_CROSS_ARM, 1)]), True),
        (np.array([(-1, -_CROSS_ARM), (1, -_CROSS_ARM), (1, _CROSS_ARM), (-1, _CROSS_ARM)]), True),
    ],
    "crescent": [(_circle(), True), (_circle(0.86, cx=0.5), False)],
    "heart": [(_heart(), True)],
    "arrow": [(np.array(_ARROW, dtype=float), True)],
    "hexagon": [(_regular(6, start_deg=0.0), True)],
}
assert tuple(SHAPES) == CLASSES


# --- scenes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectSpec:
    """One object to place in a scene; every field left as None is drawn at random."""

    kind: str  # one of CLASSES
    area: float | None = None  # tight-box area / image area; None: uniform in AREA_RANGE
    aspect: float | None = None  # width/height stretch before rotation; None: log-uniform ASPECT_RANGE
    rotation: float | None = None  # degrees; None: uniform in [0, 360)
    center: tuple[float, float] | None = None  # (x, y) as fractions of the image; None: anywhere it fits
    color: tuple[int, int, int] | None = None  # None: any hue, contrasting with the background under it
    opacity: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SHAPES:
            raise ConfigError(f"scene object kind: must be one of {', '.join(CLASSES)}, got {self.kind!r}")
        if self.area is not None and not 0 < self.area <= 1:
            raise ConfigError(f"scene object area: must be in (0, 1], got {self.area}")
        if self.aspect is not None and not self.aspect > 0:
            raise ConfigError(f"scene object aspect: must be > 0, got {self.aspect}")
        if not 0 <= self.opacity <= 1:
            raise ConfigError(f"scene object opacity: must be in [0, 1], got {self.opacity}")


class PlacedObject(NamedTuple):
    """An object as drawn: its kind and tight box (xmin, ymin, xmax, ymax) in pixel-edge coordinates.

    The box covers pixel columns xmin .. xmax - 1 whose coverage is at least one half, so its width is
    xmax - xmin (torchvision's XYXY convention). It is the box of the whole object even where a later
    object covers part of it.
    """

    kind: str
    box: tuple[int, int, int, int]


def render_scene(
    rng: np.random.Generator,
    size: int | tuple[int, int],
    objects: Sequence[ObjectSpec],
    *,
    distractors: int = 0,
) -> tuple[Image.Image, list[PlacedObject]]:
    """Draw `objects` (in order, later ones on top) over a random background; returns the RGB image
    and one `PlacedObject` per object.

    `distractors` fainter, smaller things (shapes of kinds not among `objects`, blobs, lines) are drawn
    under the objects first and are not returned. The whole scene is a function of `rng`'s state.
    """
    width, height = (size, size) if isinstance(size, int) else size
    canvas = _background(rng, width, height)
    other_kinds = [kind for kind in CLASSES if kind not in {spec.kind for spec in objects}]
    for _ in range(distractors):
        _draw_distractor(rng, canvas, other_kinds)
    placed = []
    for spec in objects:
        shape = SHAPES[spec.kind]
        alpha = _object_alpha(
            rng,
            shape,
            width,
            height,
            area=spec.area,
            aspect=spec.aspect,
            rotation=spec.rotation,
            center=spec.center,
        )
        color = spec.color if spec.color is not None else _contrasting_color(rng, canvas, alpha)
        _paint(rng, canvas, alpha * spec.opacity, np.asarray(color, dtype=np.float32))
        placed.append(PlacedObject(spec.kind, _tight_box(alpha)))
    return _finish(rng, canvas), placed


def render_example(rng: np.random.Generator, size: int, kind: str) -> Image.Image:
    """One classification image: a main object of `kind` and one to three distractors."""
    distractors = int(rng.integers(1, 4))
    image, _ = render_scene(rng, size, [ObjectSpec(kind)], distractors=distractors)
    return image


def _object_alpha(
    rng: np.random.Generator,
    shape: Shape,
    width: int,
    height: int,
    *,
    area: float | None = None,
    aspect: float | None = None,
    rotation: float | None = None,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """Coverage (0..1, H x W) of `shape` stretched, rotated, scaled to its box area and placed; the
    arguments left as None are drawn as `ObjectSpec` says."""
    aspect = aspect if aspect is not None else math.exp(rng.uniform(*np.log(ASPECT_RANGE)))
    rotation = rotation if rotation is not None else rng.uniform(*ROTATION_RANGE)
    area = area if area is not None else rng.uniform(*AREA_RANGE)
    theta = math.radians(rotation)
    rotate = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    linear = rotate @ np.diag([math.sqrt(aspect), 1 / math.sqrt(aspect)])
    outline = np.concatenate([poly for poly, filled in shape if filled]) @ linear.T
    low, high = outline.min(axis=0), outline.max(axis=0)
    box_w, box_h = high - low
    # Scale to the requested box area, but never past 98% of either side: the object stays whole.
    scale = min(
        math.sqrt(area * width * height / (box_w * box_h)), 0.98 * width / box_w, 0.98 * height / box_h
    )
    lo_x, hi_x = -low[0] * scale, width - high[0] * scale  # allowed offsets keeping the box inside
    lo_y, hi_y = -low[1] * scale, height - high[1] * scale
    if center is None:
        offset = np.array([rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)])
    else:
        middle = (low + high) / 2 * scale
        offset = np.array(
            [
                np.clip(center[0] * width - middle[0], lo_x, hi_x),
                np.clip(center[1] * height - middle[1], lo_y, hi_y),
            ]
        )
    return _rasterize(shape, linear * scale, offset, width, height)


def _rasterize(shape: Shape, linear: np.ndarray, offset: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased coverage: polygons drawn at SUPERSAMPLE x and box-filtered down."""
    mask = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(mask)
    for poly, filled in shape:
        points = (poly @ linear.T + offset) * SUPERSAMPLE
        draw.polygon([(float(x), float(y)) for x, y in points], fill=255 if filled else 0)
    return np.asarray(mask.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _tight_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((alpha >= 0.5).any(axis=1))
    cols = np.flatnonzero((alpha >= 0.5).any(axis=0))
    if rows.size == 0:  # cannot happen for areas >= 0.5 px; keep the contract anyway
        rows = np.flatnonzero((alpha > 0).any(axis=1))
        cols = np.flatnonzero((alpha > 0).any(axis=0))
        if rows.size == 0:
            return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def _paint(rng: np.random.Generator, canvas: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """Composite a shaded (sometimes textured) fill of `color` onto `canvas` through `alpha`, in place."""
    height, width, _ = canvas.shape
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)  # about -1..1
    shading = 1.0 + rng.uniform(0.0, 0.3) * (ramp - ramp.mean())
    fill = color[None, None, :] * shading[..., None]
    if rng.random() < 0.25:  # a textured object, so flat colour is not a cue either
        texture = _value_noise(rng, width, height, int(rng.integers(4, 12)), 1)
        fill = fill * (0.65 + 0.5 * texture)
    a = alpha[..., None]
    canvas *= 1.0 - a
    canvas += np.clip(fill, 0, 255) * a


def _random_color(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.15, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255.0


def _contrasting_color(rng: np.random.Generator, canvas: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background under the object to be seen."""
    weight = alpha.sum()
    under = (canvas * alpha[..., None]).sum(axis=(0, 1)) / weight if weight > 0 else canvas.mean(axis=(0, 1))
    for _ in range(20):
        color = _random_color(rng)
        if np.linalg.norm(color - under) >= 110:  # of 441 (black to white)
            return color
    return np.zeros(3, np.float32) if under.mean() > 127 else np.full(3, 255.0, np.float32)


def _draw_distractor(rng: np.random.Generator, canvas: np.ndarray, kinds: Sequence[str]) -> None:
    """A small, faint shape of another kind, a random blob or a short polyline."""
    height, width, _ = canvas.shape
    pick = rng.random()
    if pick < 0.45 and kinds:
        kind = str(rng.choice(list(kinds)))
        alpha = _object_alpha(rng, SHAPES[kind], width, height, area=rng.uniform(*DISTRACTOR_AREA_RANGE))
    elif pick < 0.75:
        n = 24
        radii = 1.0 + 0.35 * np.convolve(rng.normal(size=n + 4), np.ones(5) / 5, mode="valid")
        t = np.arange(n) * 2 * np.pi / n
        blob: Shape = [(np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1), True)]
        alpha = _object_alpha(rng, blob, width, height, area=rng.uniform(*DISTRACTOR_AREA_RANGE))
    else:
        mask = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
        points = rng.uniform(0, 1, size=(int(rng.integers(2, 4)), 2)) * [width, height] * SUPERSAMPLE
        line_width = max(1, round(rng.uniform(0.8, 2.0) * SUPERSAMPLE))
        ImageDraw.Draw(mask).line([(float(x), float(y)) for x, y in points], fill=255, width=line_width)
        alpha = np.asarray(mask.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0
    _paint(rng, canvas, alpha * rng.uniform(0.35, 0.7), _random_color(rng))


# --- backgrounds --------------------------------------------------------------------------------
def _photo_folder() -> Path | None:
    """scikit-image's bundled data folder, found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def available_photos() -> tuple[str, ...]:
    """Names of the PHOTOS found in this environment (part of the cache key: they change the pixels)."""
    folder = _photo_folder()
    return tuple(name for name in PHOTOS if folder is not None and (folder / name).is_file())


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[Image.Image, ...]:
    """The sample photos available in this environment, as RGB, shorter side at most 384 px."""
    folder = _photo_folder()
    if folder is None:
        return ()
    photos: list[Image.Image] = []
    for name in available_photos():
        try:
            with Image.open(folder / name) as image:
                photo = image.convert("RGB")
        except OSError:
            continue
        photo.thumbnail((384 * photo.width // min(photo.size), 384 * photo.height // min(photo.size)))
        photos.append(photo)
    return tuple(photos)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """H x W x 3 float32 in 0..255: a tinted photo crop (65%) or a procedural texture."""
    photos = _photos()
    canvas = _photo_crop(rng, photos, width, height) if photos and rng.random() < 0.65 else None
    if canvas is None:
        canvas = _texture(rng, width, height)
    elif rng.random() < 0.3:
        mix = rng.uniform(0.1, 0.35)
        canvas = (1 - mix) * canvas + mix * _texture(rng, width, height)
    return np.ascontiguousarray(canvas, dtype=np.float32)


def _photo_crop(
    rng: np.random.Generator, photos: Sequence[Image.Image], width: int, height: int
) -> np.ndarray:
    photo = photos[int(rng.integers(len(photos)))]
    scale = rng.uniform(0.3, 1.0) * min(photo.width / width, photo.height / height)
    crop_w, crop_h = width * scale, height * scale
    left, top = rng.uniform(0, photo.width - crop_w), rng.uniform(0, photo.height - crop_h)
    box = (left, top, left + crop_w, top + crop_h)
    pixels = np.asarray(photo.resize((width, height), Image.Resampling.BILINEAR, box=box), dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    if rng.random() < 0.3:
        pixels = pixels[::-1]
    gains = rng.uniform(0.7, 1.3, size=3).astype(np.float32)  # tint: colour says nothing about class
    mean = pixels.mean()
    pixels = mean + (pixels - mean) * rng.uniform(0.6, 1.15)
    return np.clip(pixels * gains + rng.uniform(-25, 25), 0, 255)


def _value_noise(rng: np.random.Generator, width: int, height: int, cells: int, channels: int) -> np.ndarray:
    """Smooth noise in 0..1, H x W x channels: a random cells x cells grid, bicubically enlarged."""
    grid = (rng.random((cells, cells, channels)) * 255).astype(np.uint8)
    mode = "RGB" if channels == 3 else "L"
    image = Image.fromarray(grid if channels == 3 else grid[..., 0], mode=mode)
    big = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    return big.reshape(height, width, channels)


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A procedural texture between two random colours: clouds, a grating, tiles or a gradient."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = int(rng.integers(4))
    if kind == 0:
        t = _value_noise(rng, width, height, int(rng.integers(3, 12)), 1)[..., 0]
    elif kind == 1:
        angle, cycles = rng.uniform(0, np.pi), rng.uniform(2, 9)
        phase = rng.uniform(0, 2 * np.pi)
        u = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * cycles * u + phase)
    elif kind == 2:
        period = int(rng.integers(max(3, width // 12), max(4, width // 3)))
        t = (((xs // period) + (ys // period)) % 2) * rng.uniform(0.2, 0.6)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        u = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)
        t = (u - u.min()) / max(float(np.ptp(u)), 1e-6)
    low, high = _random_color(rng), _random_color(rng)
    canvas = low + (high - low) * t[..., None]
    grain = _value_noise(rng, width, height, max(4, width // 3), 3) - 0.5
    return np.clip(canvas + grain * rng.uniform(10, 50), 0, 255)


def _finish(rng: np.random.Generator, canvas: np.ndarray) -> Image.Image:
    """Mild blur (sometimes) and sensor-like noise, then 8-bit RGB."""
    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")
    if rng.random() < 0.35:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(0, 6), size=canvas.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")


# --- the dataset on disk ------------------------------------------------------------------------
def example_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    """The generator for one image: a function of (seed, split, class, index) only, so images can be
    drawn in any order or in parallel and still come out identical."""
    return np.random.default_rng([seed, SPLITS.index(split), class_index, index])


def default_cache_dir() -> Path:
    """`$GOOGLENET_CACHE` (a leading "~" expanded, as the shell does not inside quotes), else
    `~/.cache/googlenet`."""
    return Path(os.environ.get("GOOGLENET_CACHE") or Path.home() / ".cache" / "googlenet").expanduser()


class BuiltinSettings(TypedDict):
    """How the built-in data is drawn: `ensure_builtin`'s arguments that choose the images."""

    seed: int
    image_size: int
    train_per_class: int
    val_per_class: int


def ensure_builtin(
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    image_size: int = 96,
    train_per_class: int = 100,
    val_per_class: int = 30,
    progress: bool = False,
) -> Path:
    """The built-in dataset's folder (`<dir>/train/<class>/00000.jpg`, `<dir>/val/...`), drawn if needed.

    `<dir>` is `<root>/synthetic-<hash>`, the hash covering every parameter, the generator version
    and the sample photos found, so different parameters never share a folder. A folder with a
    manifest is complete and returned at once (the manifest is written last, inside a temporary
    sibling folder that is renamed into place only when done, so a crashed or concurrent run never
    leaves a partial folder that looks complete); a folder without one is drawn again.
    """
    if image_size < 16:
        raise ConfigError(f"built-in dataset image_size: must be at least 16, got {image_size}")
    if train_per_class < 1 or val_per_class < 1:
        raise ConfigError(
            f"built-in dataset train_per_class/val_per_class: must be at least 1, "
            f"got {train_per_class} and {val_per_class}"
        )
    params = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "classes": list(CLASSES),
        "photos": list(available_photos()),
    }

    def draw(staging: Path, target: Path) -> dict[str, Any]:
        total = len(CLASSES) * (train_per_class + val_per_class)
        logger.info("drawing the built-in data once: %d images of %d px into %s", total, image_size, target)
        return _generate(staging, params, progress)

    return cached_folder(root, "synthetic", params, "the built-in dataset", draw)


def cached_folder(
    root: str | os.PathLike[str] | None,
    prefix: str,
    params: dict[str, Any],
    what: str,
    draw: Callable[[Path, Path], dict[str, Any]],
) -> Path:
    """`<root or default_cache_dir()>/<prefix>-<hash of params>`, drawn once: the built-in data, its
    detection scenes, the benchmark's photo JPEGs.

    A complete folder (`_is_complete`: its manifest, and the digest of its files) is returned at once.
    Otherwise `draw(staging, target)` fills a temporary sibling folder and returns the manifest's own
    fields; the manifest (params, those fields and `files_sha256`) is written last and the folder renamed
    into place, so a crashed or concurrent run never leaves a partial folder that looks complete.
    """
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(root) if root is not None else default_cache_dir()
    target = cache / f"{prefix}-{key}"
    if _is_complete(target, params):
        return target
    staging = _staging_folder(cache, target.name, what)
    try:
        manifest = {**params, **draw(staging, target), "files_sha256": files_digest(staging)}
        with atomic_open(staging / MANIFEST, "w") as handle:  # written last: its presence means complete
            json.dump(manifest, handle, indent=1, sort_keys=True)
        _publish(staging, target, params)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _generate(folder: Path, params: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Draw the images into `folder`; the manifest's fields beyond the parameters."""
    counts = {"train": params["train_per_class"], "val": params["val_per_class"]}
    jobs = [
        (split, class_index, index)
        for split in SPLITS
        for class_index in range(len(CLASSES))
        for index in range(counts[split])
    ]
    bar = _progress_bar(len(jobs), progress)
    digest = hashlib.sha256()
    try:
        for split, class_index, index in jobs:
            rng = example_rng(params["seed"], split, class_index, index)
            image = render_example(rng, params["image_size"], CLASSES[class_index])
            path = folder / split / CLASSES[class_index] / f"{index:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, "JPEG", quality=JPEG_QUALITY)
            digest.update(f"{path.relative_to(folder).as_posix()}:{sha256_file(path)}\n".encode())
            if bar is not None:
                bar.update(1)
    except OSError as exc:
        raise DataError(f"{folder}: cannot write the built-in dataset ({exc.strerror or exc})") from None
    finally:
        if bar is not None:
            bar.close()
    return {
        "counts": {split: counts[split] * len(CLASSES) for split in SPLITS},
        "content_sha256": digest.hexdigest(),
    }


def _publish(staging: Path, target: Path, params: dict[str, Any]) -> None:
    """Rename the finished folder into place; a complete folder from a concurrent run wins."""
    for _ in range(2):
        try:
            os.rename(staging, target)
            return
        except OSError:
            if _is_complete(target, params):
                return  # another process finished first; ours is removed by the caller
            shutil.rmtree(target, ignore_errors=True)  # a partial folder without a manifest
    raise DataError(f"{target}: cannot move the built-in dataset into place")


def _staging_folder(cache: Path, name: str, what: str) -> Path:
    """A new temporary folder in `cache` to draw `name` into before it is renamed into place; readable
    by others as the umask allows (mkdtemp's 0700 would hide a shared GOOGLENET_CACHE from other users)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(cache, name)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=cache))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
    except OSError as exc:
        raise DataError(
            f"{cache}: cannot create {what} there ({exc.strerror or exc}); set GOOGLENET_CACHE to a writable folder"
        ) from None
    return staging


def files_digest(folder: Path) -> str:
    """SHA-256 over every file below `folder` but the manifest (each one's relative path and SHA-256, in
    path order): what the manifest records so that a changed, missing or added file is noticed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(f"{path.relative_to(folder).as_posix()}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _is_complete(folder: Path, params: dict[str, Any]) -> bool:
    """Whether `folder` holds the data `params` describe: its manifest (written last) says so, and its
    files are those drawn (`files_digest`; a folder whose files were changed, lost or added to, or one
    drawn before the digest was recorded, is drawn again: about a minute)."""
    try:
        manifest = json_loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not (isinstance(manifest, dict) and all(manifest.get(k) == v for k, v in params.items())):
        return False
    if "files_sha256" not in manifest:
        logger.warning("%s: drawn by an earlier version, which recorded no digest of its files; drawing it again",
                       folder)  # fmt: skip
        return False
    try:
        found = files_digest(folder)
    except OSError:
        found = None
    if found != manifest["files_sha256"]:
        counts = manifest.get("counts")
        expected = sum(counts.values()) if isinstance(counts, dict) else "?"
        images = sum(1 for _ in folder.rglob("*.jpg"))
        logger.warning(
            "%s: its files are not those drawn (%d of its %s images there, or one changed or added); drawing "
            "it again", folder, images, expected,
        )  # fmt: skip
        return False
    return True


def _remove_stale_temporaries(cache: Path, name: str, max_age_s: float = 24 * 3600) -> None:
    """Staging folders of runs that crashed long ago (a live run's folder is younger than a day)."""
    now = time.time()
    for stale in cache.glob(f".{name}.tmp-*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="drawing the built-in dataset", unit="img")
