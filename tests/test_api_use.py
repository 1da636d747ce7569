"""The library used from Python as a practitioner uses it (a review of the public API, 2026-12-07):
what a call leaves behind, and the mistakes it names."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import googlenet
from googlenet.evaluate.models import load_ensemble
from googlenet.model.weights import default_meta
from googlenet.predict import predict_files


def test_save_checkpoint_completes_and_checks_its_metadata(tmp_path: Path) -> None:
    """A partial meta replaced the defaults (the file then failed in evaluate: "meta lists 0 class
    names for 10 outputs"); a bad value was refused only when the file was loaded."""
    model = googlenet.build_model("bn", num_classes=10)
    googlenet.save_checkpoint(tmp_path / "a.pt", model, {"input_size": 64})
    _, meta = googlenet.load_checkpoint_model(tmp_path / "a.pt")
    assert meta["input_size"] == 64 and meta["resize_size"] == 73 and len(meta["class_names"]) == 10
    assert len(load_ensemble([tmp_path / "a.pt"]).class_names) == 10
    with pytest.raises(googlenet.CheckpointError, match="input_size must be a whole number"):
        googlenet.save_checkpoint(tmp_path / "b.pt", model, {"input_size": "big"})
    with pytest.raises(googlenet.CheckpointError, match="meta lists 3 class names for 10 outputs"):
        googlenet.save_checkpoint(tmp_path / "c.pt", model, {"class_names": ["a", "b", "c"]})
    assert not (tmp_path / "b.pt").exists() and not (tmp_path / "c.pt").exists()


def test_crop_scales_given_as_numpy_stay_python_ints() -> None:
    """The geometry cache is keyed by value: numpy scales given once came back to every later caller."""
    googlenet.crop_boxes(500, 375, crops=1, scales=np.array([256]))
    crop = googlenet.crop_boxes(500, 375, crops=1)[0]
    assert type(crop.scale) is int
    json.dumps(dataclasses.asdict(crop))


def test_a_single_path_is_not_taken_for_a_list_of_them(tmp_path: Path) -> None:
    model = googlenet.build_model("paper", num_classes=3)
    googlenet.save_checkpoint(tmp_path / "m.pt", model, default_meta(model, 64))
    with pytest.raises(googlenet.ConfigError, match="wrap it in a list"):
        load_ensemble(str(tmp_path / "m.pt"))  # type: ignore[arg-type]  # was "/: given twice"
    ensemble = load_ensemble([tmp_path / "m.pt"])
    with pytest.raises(googlenet.ConfigError, match="wrap it in a list"):
        predict_files(str(tmp_path / "x.jpg"), ensemble)  # one "no such file" per character before
    with pytest.raises(googlenet.ConfigError, match="on_bad: must be skip or abort"):
        predict_files([], ensemble, on_bad="Abort")


def test_the_paper_variant_traces_with_torchs_own_check() -> None:
    """LRN added a step only outside autograd, so `torch.jit.trace`'s check (a second run) saw another
    graph: "Graphs differed across invocations"."""
    model = googlenet.build_model("paper", num_classes=5, aux_logits=False).eval()
    traced = torch.jit.trace(model, torch.randn(2, 3, 64, 64))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=1e-4, atol=1e-5)


def test_fit_gives_the_googlenet_loggers_level_back(tmp_path: Path) -> None:
    from conftest import make_tiny_data
    from googlenet.train import fit, resolve

    data = make_tiny_data(tmp_path)
    logger = logging.getLogger("googlenet")
    before = logger.level
    flags = {"data.data_path": str(data), "data.workers": 0, "data.train_eval_samples": 2, "model.input_size": 64,
             "optim.batch_size": 4, "run.epochs": 1, "run.seed": 0, "run.progress": False,
             "run.output_dir": str(tmp_path / "run")}  # fmt: skip
    fit(resolve({}, flags))
    assert logger.level == before
