"""Fast inference: the fused inference network and `optimize`, which picks the fastest backend."""

from googlenet.infer.fused import FusedGoogLeNet, fuse
from googlenet.infer.optimize import (
    BACKENDS,
    PRECISIONS,
    OptimizedModel,
    available_backends,
    export_onnx,
    optimize,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "FusedGoogLeNet",
    "OptimizedModel",
    "available_backends",
    "export_onnx",
    "fuse",
    "optimize",
]
