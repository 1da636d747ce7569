"""googlenet: GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", 2014), complete and faithful.

The public API, re-exported flat:

    >>> import googlenet
    >>> model = googlenet.build_model("paper", num_classes=1000)   # Table 1 + Figure 3
    >>> googlenet.load_weights(model, "checkpoint.pt")             # doctest: +SKIP
"""

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

__version__ = "0.1.0"

__all__ = [
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
