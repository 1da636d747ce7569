"""Starting a training run from another checkpoint's weights (fine-tuning, as R-CNN does for section 8).

`init_from` copies every tensor of a classification checkpoint whose name and shape match the new
model; the rest (the classifiers, when the class count differs) keep the fresh initialisation the seed
gave them. torch's `load_state_dict(strict=False)` would refuse mismatched shapes outright, so the
filtering is ours. The checkpoint must be of the same variant: a one-line error otherwise.
"""

from __future__ import annotations

import logging
import os

import torch

from googlenet.errors import CheckpointError
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.weights import read_checkpoint

logger = logging.getLogger(__name__)


def init_from(model: GoogLeNet, path: str | os.PathLike[str]) -> list[str]:
    """Copy the matching weights of checkpoint `path` into `model`; returns the names left as initialised.

    The weights are the checkpoint's "state_dict": in a run's `final.pt` that is the averaged (Polyak)
    model the run reports; in `last.pt` the raw weights.
    """
    checkpoint = read_checkpoint(path)
    stored = checkpoint["model_config"].get("variant")
    if stored != model.config.variant:
        raise CheckpointError(
            f"{path}: --init-from checkpoint is variant {stored!r} but the run trains {model.config.variant!r}"
        )
    if bool(checkpoint["model_config"].get("transform_input")) != model.config.transform_input:
        # e.g. torchvision's weights converted by `export --convert`: trained on [-1, 1] pixels
        logger.warning(
            "%s: its weights were trained with transform_input=%s, this run has %s: the first layer sees "
            "differently scaled input until fine-tuning adapts it",
            path, checkpoint["model_config"].get("transform_input"), model.config.transform_input,
        )  # fmt: skip
    state = checkpoint["state_dict"]
    own = model.state_dict()
    copied, kept = {}, []
    for name, value in own.items():
        source = state.get(name)
        if isinstance(source, torch.Tensor) and tuple(source.shape) == tuple(value.shape):
            copied[name] = source
        else:
            kept.append(name)
    if not copied:
        raise CheckpointError(f"{path}: no tensor of the checkpoint fits the model")
    model.load_state_dict(copied, strict=False)
    logger.info("initialised %d tensors from %s; %d keep their fresh initialisation (%s)",
                len(copied), path, len(kept), ", ".join(kept[:4]) + (" ..." if len(kept) > 4 else ""))  # fmt: skip
    return kept
