"""Data: robust decoding, image-folder and ImageNet datasets, section-6 augmentation, the built-in set.

decode       any image file -> 8-bit RGB, or a one-line DataError naming the file
datasets     <root>/<class>/... folders and ImageNet 2012, skipping (or refusing) bad files
transforms   section-6 training sampling and the centre-crop eval transform
synthetic    the built-in dataset, drawn from a seed (and `render_scene` for detection scenes)
"""

from googlenet.data.datasets import (
    ON_BAD,
    ImageFolderDataset,
    ImageNetDataset,
    list_class_folders,
    load_image_folder,
    load_imagenet,
    prepare_imagenet,
)
from googlenet.data.decode import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, is_image_file, load_image
from googlenet.data.synthetic import (
    CLASSES,
    ObjectSpec,
    PlacedObject,
    default_cache_dir,
    ensure_builtin,
    render_example,
    render_scene,
)
from googlenet.data.transforms import (
    IMAGENET_MEAN,
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

SYNTHETIC_CLASSES = CLASSES  # the built-in dataset's class names, under a name that says so

__all__ = [
    "CLASSES",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "ON_BAD",
    "SYNTHETIC_CLASSES",
    "AugmentConfig",
    "ImageFolderDataset",
    "ImageNetDataset",
    "ObjectSpec",
    "PCALighting",
    "PlacedObject",
    "RandomResizedCropRandomInterpolation",
    "ResizeRandomInterpolation",
    "build_eval_transform",
    "build_train_transform",
    "default_cache_dir",
    "default_resize_size",
    "ensure_builtin",
    "is_image_file",
    "list_class_folders",
    "load_image",
    "load_image_folder",
    "load_imagenet",
    "prepare_imagenet",
    "render_example",
    "render_scene",
]
