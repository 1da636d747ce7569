"""torch.hub entry point for a local clone of this repository; nothing is ever downloaded.

    >>> model = torch.hub.load("path/to/googlenet", "googlenet", source="local", variant="paper",
    ...                        num_classes=1000)                                  # doctest: +SKIP
    >>> model = torch.hub.load("path/to/googlenet", "googlenet", source="local",
    ...                        weights="bvlc_googlenet.caffemodel")               # doctest: +SKIP

`weights` is a local file: our checkpoint, a torchvision GoogLeNet state dict, the reference
`bvlc_googlenet.caffemodel` or the ONNX model zoo's googlenet. Its preprocessing (mean/std, input size,
class names) is what `googlenet.load_weights(model, path)` returns, or `model_meta(weights)` below.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# What `import googlenet` needs; torch.hub checks these are installed before loading.
dependencies = ["torch", "torchvision", "numpy", "PIL", "yaml", "tqdm"]

# The clone's own package wins over any installed copy: the user asked for this checkout.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

import googlenet as _googlenet  # noqa: E402 - after the path set-up above


def googlenet(
    variant: str | None = None,
    num_classes: int | None = None,
    aux_logits: bool | None = None,
    weights: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    **overrides: Any,
) -> Any:
    """GoogLeNet (Szegedy et al. 2014) as `googlenet.build_model` builds it, optionally with local weights.

    Args:
        variant: "paper" (default), "bn" or "torchvision". With `weights`, the file decides and a
            different value here is an error.
        num_classes: default 1000; with `weights`, the file decides (a different value is an error).
        aux_logits: build the section-5 auxiliary heads. Default: True without weights; with weights,
            whatever the file has.
        weights: a local weight file (see the module docstring). URLs are refused: no downloads.
        pretrained: only False; pass `weights=PATH` instead (this repository ships no weights).
        overrides: other `ModelConfig` fields (`dropout=0.5`...), without weights only.
    """
    if pretrained:
        raise _googlenet.ConfigError(
            "no weights are downloaded; pass weights=PATH (a checkpoint, .caffemodel, ONNX zoo or "
            "torchvision file)"
        )
    if weights is None:
        return _googlenet.build_model(
            variant or "paper",
            num_classes=1000 if num_classes is None else num_classes,
            aux_logits=True if aux_logits is None else aux_logits,
            **overrides,
        )
    if "://" in str(weights):
        raise _googlenet.ConfigError(f"weights: {weights} is a URL; this entry point never downloads")
    if overrides:
        raise _googlenet.ConfigError(
            f"model options ({', '.join(sorted(overrides))}) cannot change a model loaded from weights"
        )
    from googlenet.model.weights import model_from_file

    model, _ = model_from_file(weights, aux_logits=aux_logits)
    for name, wanted in (("variant", variant), ("num_classes", num_classes)):
        if wanted is not None and getattr(model.config, name) != wanted:
            raise _googlenet.CheckpointError(
                f"{weights}: the file holds {name}={getattr(model.config, name)!r}, not {wanted!r}"
            )
    return model


def model_meta(weights: str | os.PathLike[str]) -> dict[str, Any]:
    """The preprocessing and classes a weight file carries: class_names, input_size, mean, std..."""
    from googlenet.model.weights import model_from_file

    return model_from_file(weights, aux_logits=False)[1]
