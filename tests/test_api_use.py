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
    # load_weights(model, path) and save_checkpoint(path, model): the other order was an AttributeError
    with pytest.raises(TypeError, match=r"save_checkpoint\(path, model, meta\): model is a str"):
        googlenet.save_checkpoint(model, str(tmp_path / "d.pt"))  # type: ignore[arg-type]


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


def test_main_in_a_program_that_logs_prints_each_line_once_and_leaves_the_process_as_found(
    tmp_path: Path,
) -> None:
    """A notebook's `logging.basicConfig()` before `cli.main(...)` printed every "googlenet" line twice;
    after it, the root logger kept our handler and "googlenet" stayed at INFO (the program's own
    `basicConfig` then did nothing), the DataLoader warning stayed hidden and the stream handlers
    changed; `--help` and a usage error raised SystemExit instead of returning their code."""
    import os
    import subprocess
    import sys

    from conftest import make_tiny_data

    data = make_tiny_data(tmp_path)
    program = f"""
import logging, sys, warnings
logging.basicConfig(level=logging.INFO, format="HOST %(name)s: %(message)s")
from googlenet import cli

def state():
    g = logging.getLogger("googlenet")
    return (list(logging.getLogger().handlers), logging.getLogger().level, list(g.handlers), g.level,
            sys.stdout.errors, sys.stderr.errors)

def dataloader_filter():
    return any(f[1] is not None and "DataLoader will create" in f[1].pattern for f in warnings.filters)

before = state()
code = cli.main(["train", "--data-path", {str(data)!r}, "-o", {str(tmp_path / "run")!r}, "--input-size", "64",
                 "-b", "4", "--epochs", "1", "--stop-after-steps", "1", "-j", "0", "--no-progress"])
codes = [code, cli.main(["--help"]), cli.main(["summary", "--no-such-flag"]), cli.main(["--version"])]
# the command's own filter is gone; PyTorch's, added as the command imported it, stay (they went too)
torch_filters = any("TracerWarning" in str(f[2]) for f in warnings.filters)
print("RESULT", codes, state() == before, dataloader_filter(), torch_filters)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300
    )
    assert "RESULT [0, 0, 2, 0] True False True" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "run folder" in line]
    assert len(lines) == 1 and lines[0].startswith("HOST googlenet.train: run folder"), done.stderr
