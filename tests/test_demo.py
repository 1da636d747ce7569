"""`make demo` (`googlenet.demo`) end to end, on a tiny drawing of the built-in data: train, evaluate
with 1 and 10 crops, then the summary the README promises. The real demo differs only in the size of
the data and the number of epochs."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import googlenet.demo as demo
from googlenet.cli import main as cli

TINY = ["--set", "data.builtin_train_per_class=2", "--set", "data.builtin_val_per_class=1",
        "--epochs", "1", "-b", "4", "-j", "0", "--no-progress"]  # fmt: skip


def test_demo_trains_evaluates_and_says_where_everything_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOOGLENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    calls: list[list[str]] = []

    def tiny(argv: Sequence[str]) -> int:
        calls.append(list(argv))
        # evaluate: the fused network in eager mode, not auto's timing of every backend (tested elsewhere)
        return cli([*argv, *TINY] if argv[0] == "train" else [*argv, "--engine", "eager"])

    monkeypatch.setattr(demo, "cli", tiny)
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)  # as under `make demo`
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert [call[0] for call in calls] == ["train", "evaluate", "evaluate"]
    assert [call[call.index("--crops") + 1] for call in calls[1:]] == ["1", "10"]
    (run,) = (tmp_path / "runs").iterdir()
    for name in ("final.pt", "last.pt", "results.json", "metrics.csv", "loss.png", "top1.png", "config.yaml"):
        assert (run / name).is_file(), name
        if name != "last.pt":
            assert str(Path("runs") / run.name / name) in out, name  # listed under "where to look"
    # `make demo` runs .venv's python with `googlenet` not on PATH: the hints say how to get it there
    assert (
        f"(the commands below run in this environment: source {Path(sys.prefix) / 'bin' / 'activate'})" in out
    )
    summary = re.search(r"demo finished in \d+s: val top-1 raw ([\d.]+)%, Polyak-averaged ([\d.]+)%", out)
    assert summary is not None, out[-500:]
    results = json.loads((run / "results.json").read_text())  # the run's own figures, not others
    assert [float(value) for value in summary.groups()] == [
        pytest.approx(results[key], abs=0.05) for key in ("val_top1_raw", "val_top1_avg")
    ]


def test_demo_stops_at_the_first_failing_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "cli", lambda argv: 2)
    assert demo.main([]) == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_demo_help_and_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m googlenet.demo --help` ignored its argument and started a 30-epoch run."""
    monkeypatch.chdir(tmp_path)
    calls: list[list[str]] = []
    monkeypatch.setattr(demo, "cli", lambda argv: calls.append(argv) or 2)
    with pytest.raises(SystemExit) as done:
        demo.main(["--help"])
    assert done.value.code == 0 and "--output-dir" in capsys.readouterr().out and not calls
    assert demo.main(["-o", str(tmp_path / "mine")]) == 2
    assert calls == [["train", "--output-dir", str(tmp_path / "mine")]]
