"""googlenet: GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", 2014), complete and faithful.

The public API, re-exported flat:

    >>> import googlenet
    >>> model = googlenet.build_model("paper", num_classes=1000)   # Table 1 + Figure 3
    >>> googlenet.load_weights(model, "checkpoint.pt")             # doctest: +SKIP

The names are imported on first use (PEP 562), so `import googlenet` itself does not import PyTorch:
the command-line tool starts its parser, and handles Ctrl-C, before the seconds PyTorch takes to load.
The subpackages and modules are attributes the same way: `googlenet.train.fit` works after a plain
`import googlenet`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "Crop": "googlenet.data.crops",
    "CropSpec": "googlenet.data.crops",
    "crop_boxes": "googlenet.data.crops",
    "CheckpointError": "googlenet.errors",
    "ConfigError": "googlenet.errors",
    "DataError": "googlenet.errors",
    "GoogLeNetError": "googlenet.errors",
    "OptimizedModel": "googlenet.infer",
    "optimize": "googlenet.infer",
    "VARIANTS": "googlenet.model.googlenet",
    "GoogLeNet": "googlenet.model.googlenet",
    "GoogLeNetOutputs": "googlenet.model.googlenet",
    "ModelConfig": "googlenet.model.googlenet",
    "build_from_config": "googlenet.model.googlenet",
    "build_model": "googlenet.model.googlenet",
    "load_checkpoint_model": "googlenet.model.weights",
    "load_weights": "googlenet.model.weights",
    "save_checkpoint": "googlenet.model.weights",
    "TrainConfig": "googlenet.train",
    "fit": "googlenet.train",
}

# The package's subpackages and modules, imported as attributes on first use (not `__main__`: importing
# it runs the command-line tool). tests/test_model.py checks the list against the package's folder.
_SUBMODULES: tuple[str, ...] = (
    "ablate", "bench", "cli", "console", "data", "demo", "detect", "errors", "evaluate", "export", "infer",
    "io", "model", "predict", "report", "resources", "signals", "train",
)  # fmt: skip

__all__ = [  # the names of _EXPORTS (tests/test_model.py checks that the two agree)
    "VARIANTS",
    "CheckpointError",
    "ConfigError",
    "Crop",
    "CropSpec",
    "DataError",
    "GoogLeNet",
    "GoogLeNetError",
    "GoogLeNetOutputs",
    "ModelConfig",
    "OptimizedModel",
    "TrainConfig",
    "__version__",
    "build_from_config",
    "build_model",
    "crop_boxes",
    "fit",
    "load_checkpoint_model",
    "load_weights",
    "optimize",
    "save_checkpoint",
]

if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from googlenet.data.crops import Crop, CropSpec, crop_boxes
    from googlenet.errors import CheckpointError, ConfigError, DataError, GoogLeNetError
    from googlenet.infer import OptimizedModel, optimize
    from googlenet.model.googlenet import (
        VARIANTS,
        GoogLeNet,
        GoogLeNetOutputs,
        ModelConfig,
        build_from_config,
        build_model,
    )
    from googlenet.model.weights import load_checkpoint_model, load_weights, save_checkpoint
    from googlenet.train import TrainConfig, fit


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"googlenet.{name}")  # the import makes it an ordinary attribute
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'googlenet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
