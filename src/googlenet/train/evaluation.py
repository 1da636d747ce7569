"""`googlenet train --test-only`: the validation loss and top-1/top-5 of a checkpoint's weights, on the
data the configuration names (torchrun shards the validation set as in training)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from googlenet.errors import CheckpointError
from googlenet.model.googlenet import build_from_config
from googlenet.model.weights import read_checkpoint
from googlenet.train import distributed as ddp
from googlenet.train.checkpoint import check_same_classes
from googlenet.train.config import TrainConfig
from googlenet.train.inputs import build_data, loader_workers, make_eval_loader
from googlenet.train.loop import autocast_for, evaluate
from googlenet.train.sampling import ShardedIndices


def evaluate_checkpoint(
    config: TrainConfig, path: str | os.PathLike[str], env: ddp.DistEnv, device: torch.device
) -> dict[str, Any]:
    """Validation loss and top-1/top-5 of the weights in `path`.

    A training checkpoint (`last.pt`) gives "val_*_raw" and, once averaging has started, "val_*_avg"; a
    final checkpoint (`final.pt`, whose weights are the averaged model) gives "val_*" and "weights". A
    run folder means its last.pt, or its final.pt when only that is there (a copied or exported run).
    """
    file = Path(path)
    if file.is_dir():  # a run folder: its last.pt (raw and averaged weights), else its final.pt
        found = [file / name for name in ("last.pt", "final.pt") if (file / name).is_file()]
        members = sorted(file.glob("member-*/final.pt"))
        if not found and members:  # an ensemble's folder: one member at a time here, or all through evaluate
            raise CheckpointError(
                f"{path}: an ensemble; --test-only evaluates one member (--resume {file / 'member-0'}), "
                f"googlenet evaluate --checkpoint {file}/member-*/final.pt all of them as one"
            )
        if not found:
            raise CheckpointError(f"{path}: no last.pt or final.pt to evaluate (--resume with --test-only)")
        file = found[0]
    checkpoint = read_checkpoint(file)
    meta = dict(checkpoint.get("meta") or {})
    config.model.input_size = int(meta.get("input_size", config.model.input_size))
    config.model.resize_size = meta.get("resize_size", config.model.resize_size)
    for name in ("mean", "std"):  # the normalisation the weights were trained with (--mean/--std)
        if name in meta:
            setattr(config.augment, name, [float(v) for v in meta[name]])
    names = meta.get("wnids") or meta.get("class_names")  # an image folder's class folders, in order
    data = build_data(
        config, env, training=False, class_names=list(names) if isinstance(names, list) else None
    )
    check_same_classes(meta, data.classes, file, data.wnids)
    model = build_from_config(dict(checkpoint["model_config"])).to(device)
    sampler = ShardedIndices(range(len(data.val)), env.rank, env.world_size)
    batch = max(1, config.optim.batch_size // env.world_size)  # -b is the global batch, as in training
    loader = make_eval_loader(data.val, loader_workers(config), device, batch_size=batch, sampler=sampler)
    autocast_dtype, _ = autocast_for(device, config.run.amp, config.run.amp_dtype)
    results: dict[str, Any] = {"checkpoint": str(file), "samples": len(data.val)}
    training = "train_state" in checkpoint
    if not training:
        results["weights"] = meta.get("weights", "unknown")
    train_state = checkpoint.get("train_state", {})
    averaged_updates = int(train_state.get("averaged_updates", 0))
    for key, suffix in (("state_dict", "_raw" if training else ""), ("averaged_state_dict", "_avg")):
        if key not in checkpoint or (key == "averaged_state_dict" and averaged_updates == 0):
            continue
        if key == "averaged_state_dict" and train_state.get("averaged_bn_current") is False:
            results["averaged_note"] = (
                "not scored: the run stopped mid-epoch, before the averaged weights' BatchNorm statistics "
                "were recomputed; resume it to the epoch's end (or evaluate its final.pt)"
            )
            continue
        model.load_state_dict(checkpoint[key])
        metrics = evaluate(model, loader, device=device, autocast_dtype=autocast_dtype)
        results.update({f"val_{name}{suffix}": metrics[name] for name in ("loss", "top1", "top5")})
        results["samples"] = int(metrics["samples"])  # the images decoded: a bad file is left out
    return results
