"""The Python blocks of README.md run as written, one after another as a reader would paste them.

The weight files they load by path are written first: torchvision's layout from torchvision's own
(untrained) model, and a .caffemodel in the reference's format and the ONNX zoo's file with random weights
(test_interop's writers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from test_interop import _onnx_zoo_file, random_blobs, write_caffemodel

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[str]:
    return re.findall(
        r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S
    )


def test_readme_shows_python() -> None:
    assert len(readme_blocks()) >= 2


def run_blocks(blocks: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    torch.save(reference.state_dict(), tmp_path / "googlenet-1378be20.pth")
    write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", random_blobs(num_classes=1000), legacy=False)
    _onnx_zoo_file(tmp_path / "googlenet-9.onnx", random_blobs(aux=False, num_classes=1000))
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)
    return scope


def test_readme_model_api_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scope = run_blocks(readme_blocks()[:1], tmp_path, monkeypatch)
    assert scope["out"].aux1.shape == (8, 1000) and scope["features"].shape == (8, 1024)
    assert scope["stages"]["inception4e"].shape == (1, 832, 14, 14)
    assert scope["meta"]["weights"] == "onnx:googlenet-9.onnx" and len(scope["meta"]["class_names"]) == 1000
    assert scope["tv"].config.transform_input


@pytest.mark.slow  # "auto" exports and times every backend: about 40 s here
def test_readme_fast_inference_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scope = run_blocks(readme_blocks(), tmp_path, monkeypatch)
    torch.testing.assert_close(scope["logits"], scope["model"].eval()(scope["images"]), rtol=1e-4, atol=1e-4)
    assert scope["fast"].backend in capsys.readouterr().out
