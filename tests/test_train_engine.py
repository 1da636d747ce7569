"""End-to-end training on tiny data: the run folder, exact resume, NaN handling, signals, ensembles."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import googlenet.train.engine as engine
import googlenet.train.loop as loop
from conftest import make_tiny_data
from googlenet.cli import main
from googlenet.data.synthetic import CLASSES
from googlenet.errors import ConfigError
from googlenet.io import sha256_file
from googlenet.model.googlenet import build_model
from googlenet.model.weights import load_checkpoint_model
from googlenet.train import NonFiniteLossError, TrainConfig, fit, resolve
from googlenet.train.config import flatten, load_yaml
from googlenet.train.runs import METRIC_COLUMNS


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("builtin"))


def tiny(data: Path, out: Path, **flags: Any) -> TrainConfig:
    """12 training images, global batch 4: 3 steps per epoch at 64x64 (the smallest size with aux heads)."""
    base = {
        "data.data_path": str(data),
        "data.workers": 0,
        "data.train_eval_samples": 6,
        "model.input_size": 64,
        "optim.batch_size": 4,
        "run.epochs": 2,
        "run.seed": 0,
        "run.deterministic": True,
        "run.progress": False,
        "run.output_dir": str(out),
        "average.start": 0.5,
    }
    return resolve({}, {**base, **flags})


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a checkpoint (tensors and plain values), with its path."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}/{key}")
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}/{index}")
    else:
        yield prefix, obj


def _assert_identical_training_state(a: Path, b: Path) -> None:
    left = torch.load(a, weights_only=True)
    right = torch.load(b, weights_only=True)
    compared = 0
    for key in ("state_dict", "averaged_state_dict"):
        assert left[key].keys() == right[key].keys()
        for name, tensor in left[key].items():
            assert torch.equal(tensor, right[key][name]), f"{key}.{name} differs"
            compared += 1
    for part in ("optimizer", "scheduler", "rng"):
        lhs = dict(_tensors(left["train_state"][part]))
        rhs = dict(_tensors(right["train_state"][part]))
        assert lhs.keys() == rhs.keys()
        for name, value in lhs.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, rhs[name]), f"{part}{name} differs"
            else:
                assert value == rhs[name], f"{part}{name} differs"
    for key in ("epoch", "step", "global_step", "averaged_updates"):
        assert left["train_state"][key] == right["train_state"][key]
    assert compared > 100


def test_run_folder_after_a_tiny_run_on_builtin_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLENET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    config = resolve(
        {},
        {"data.builtin_image_size": 64, "data.builtin_train_per_class": 2, "data.builtin_val_per_class": 1,
         "data.workers": 0, "optim.batch_size": 4, "run.epochs": 2, "schedule.lr_warmup_epochs": 0.5,
         "run.seed": 1, "run.output_dir": str(out), "run.progress": False, "average.start": 0},
    )  # fmt: skip
    assert config.data.dataset == "builtin" and config.model.input_size == 64  # the preset applies
    results = fit(config)
    assert results["status"] == "completed"
    assert results["versions"]["torch"] == torch.__version__  # what a bit-identical rerun also needs
    names = {p.name for p in out.iterdir()}
    assert names >= {"config.yaml", "metrics.csv", "tensorboard", "loss.png", "top1.png", "lr.png", "last.pt",
                     "final.pt", "train.log", "results.json", "checkpoints.json"}  # fmt: skip
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    for png in ("loss.png", "top1.png", "lr.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    saved = resolve(load_yaml(out / "config.yaml"), {})
    assert saved.run.seed == 1 and saved.optim.batch_size == 4 and saved.data.dataset == "builtin"

    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == list(METRIC_COLUMNS)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    for column in ("loss_main", "loss_aux1", "loss_aux2", "loss_total", "val_top1_raw", "val_top1_avg",
                   "train_eval_top1_raw", "train_eval_top1_avg", "lr", "img_per_s", "epoch_time_s"):  # fmt: skip
        assert rows[-1][column] != "", column

    stored = json.loads((out / "results.json").read_text())
    for key in ("val_top1_raw", "val_top5_raw", "val_top1_avg", "val_top5_avg", "epochs", "wall_time_s",
                "img_per_s", "skipped_bad_files"):  # fmt: skip
        assert key in stored, key
    assert stored["epochs"] == 2 and stored["skipped_bad_files"] == 0
    # the run's rate: all images over all training seconds (two equal epochs: the harmonic mean)
    rates = [float(row["img_per_s"]) for row in rows]
    assert stored["img_per_s"] == pytest.approx(2 / (1 / rates[0] + 1 / rates[1]), rel=1e-5)  # CSV: 7 digits

    sums = json.loads((out / "checkpoints.json").read_text())
    for name in ("last.pt", "final.pt"):
        assert sums[name]["sha256"] == sha256_file(out / name)

    # final.pt: the averaged model with everything needed to use it, loadable with weights_only=True.
    raw = torch.load(out / "final.pt", weights_only=True)
    assert raw["meta"]["class_names"] == sorted(CLASSES)  # folder order
    assert raw["meta"]["input_size"] == 64 and raw["meta"]["variant"] == "paper"
    assert "polyak average" in raw["meta"]["weights"]
    assert set(raw["meta"]["metrics"]) == {"val_top1_raw", "val_top5_raw", "val_top1_avg", "val_top5_avg"}
    last = torch.load(out / "last.pt", weights_only=True)
    for name, tensor in raw["state_dict"].items():
        assert torch.equal(tensor, last["averaged_state_dict"][name])
    model, meta = load_checkpoint_model(out / "final.pt", aux_logits=False)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10) and meta["resize_size"] == 73

    log = (out / "train.log").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log

    # A second run into the same folder is refused: --resume is the way to continue it.
    with pytest.raises(Exception, match="already holds a run"):
        fit(config)


def test_evaluate_builtin_scores_the_images_the_run_held_out(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GOOGLENET_CACHE", str(tmp_path / "cache"))
    config = resolve(
        {},
        {"data.builtin_image_size": 64, "data.builtin_train_per_class": 2, "data.builtin_val_per_class": 1,
         "data.workers": 0, "optim.batch_size": 4, "run.epochs": 1, "run.seed": 1,
         "run.output_dir": str(tmp_path / "run"), "run.progress": False},
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="googlenet.data"):
        fit(config)
    assert "drawing the built-in data once: 30 images of 64 px" in caplog.text
    final = str(tmp_path / "run" / "final.pt")
    assert main(["evaluate", "--checkpoint", final, "--dataset", "builtin", "--engine", "off", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 10  # the run's 1 per class, not the default drawing's 30
    assert len(list((tmp_path / "cache").glob("synthetic-*"))) == 1  # nothing drawn anew
    # data.builtin_seed draws other images (it was fixed at 0); evaluate follows the run's recipe again
    other = resolve(
        {}, {**flatten(config.as_dict()), "data.builtin_seed": 3, "run.output_dir": str(tmp_path / "other")}
    )
    fit(other)
    assert len(list((tmp_path / "cache").glob("synthetic-*"))) == 2
    final = str(tmp_path / "other" / "final.pt")
    assert main(["evaluate", "--checkpoint", final, "--dataset", "builtin", "--engine", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 10
    assert len(list((tmp_path / "cache").glob("synthetic-*"))) == 2  # the seed-3 drawing, not a third


def test_a_runs_own_normalisation_is_used_and_recorded_for_evaluation(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --mean/--std (ImageNet's statistics could not be changed, nor normalisation switched off)
    from googlenet.train.distributed import DistEnv
    from googlenet.train.inputs import build_data

    flags = {
        "run.epochs": 1,
        "average.start": 0,
        "augment.mean": [0.2, 0.3, 0.4],
        "augment.std": [0.5, 0.5, 0.5],
    }
    config = tiny(tiny_data, tmp_path / "run", **flags)
    data = build_data(config, DistEnv())
    for transform in (data.train.transform, data.val.transform):
        (normalize,) = [step for step in transform.transforms if type(step).__name__ == "Normalize"]
        assert (normalize.mean, normalize.std) == ([0.2, 0.3, 0.4], [0.5, 0.5, 0.5])
    trained = fit(config)
    meta = torch.load(tmp_path / "run" / "final.pt", weights_only=True)["meta"]
    assert (meta["mean"], meta["std"]) == ([0.2, 0.3, 0.4], [0.5, 0.5, 0.5])
    final = str(tmp_path / "run" / "final.pt")
    argv = ["evaluate", "--checkpoint", final, "--data-path", str(tiny_data), "--engine", "off", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["top1_accuracy"] == pytest.approx(trained["val_top1_avg"])
    # --test-only on the run (which refuses --mean/--std) normalised with ImageNet's statistics
    loss = float(_history(tmp_path / "run")[-1]["val_loss_avg"])
    for resume in (tmp_path / "run", tmp_path / "run" / "final.pt"):
        scored = fit(tiny(tiny_data, tmp_path / "unused", **{"run.test_only": True}), resume=resume)
        assert scored.get("val_top1_avg", scored.get("val_top1")) == pytest.approx(trained["val_top1_avg"])
        assert scored.get("val_loss_avg", scored.get("val_loss")) == pytest.approx(loss, rel=1e-5), resume


def test_resume_mid_epoch_is_bit_identical(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="googlenet")
    straight = fit(tiny(tiny_data, tmp_path / "straight"))
    assert straight["status"] == "completed" and straight["global_step"] == 6

    resumed = tmp_path / "a resumed run"  # a space: the stop line quotes the folder for the shell
    first = fit(tiny(tiny_data, resumed, **{"run.stop_after_steps": 2}))
    assert first["status"] == "stopped"
    assert (
        f"stopped in epoch 1/2 after 2 of its 3 steps; resume with googlenet train --resume '{resumed}'"
        in caplog.text
    )
    state = torch.load(resumed / "last.pt", weights_only=True)["train_state"]
    assert (state["epoch"], state["step"], state["global_step"]) == (0, 2, 2)
    second = fit(tiny(tiny_data, resumed), resume=resumed / "last.pt")
    assert second["status"] == "completed"
    assert "last.pt: 0 of 2 epoch(s) done, 2 step(s) into epoch 1" in caplog.text
    caplog.clear()
    fit(tiny(tiny_data, resumed), resume=resumed / "last.pt")  # a finished run
    assert (
        "2 of 2 epoch(s) done" in caplog.text
        and "nothing left to train: give --epochs above 2" in caplog.text
    )
    recorded = (resumed / "config.yaml").read_bytes()
    fewer = tiny(tiny_data, resumed, **{"run.epochs": 1})
    caplog.clear()
    fit(fewer, resume=resumed / "last.pt")  # nothing to train: the run's config stays its own
    assert (resumed / "config.yaml").read_bytes() == recorded
    assert (
        "2 of 1 epoch(s) done; nothing left to train: give --epochs above 2" in caplog.text
    )  # said "above 1"

    _assert_identical_training_state(tmp_path / "straight" / "last.pt", resumed / "last.pt")
    a = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The history is continued, not duplicated, and the epoch metrics agree.
    for column in ("loss_total", "val_top1_raw", "val_top1_avg"):
        assert [r[column] for r in _history(tmp_path / "straight")] == [r[column] for r in _history(resumed)]


def test_balanced_batches_resume_bit_identical_and_name_a_missing_class(
    tiny_data: Path, tmp_path: Path
) -> None:
    balanced = {"data.balance_class": "disc", "data.balance_share": 0.25}  # one disc in every batch of 4
    straight = fit(tiny(tiny_data, tmp_path / "straight", **balanced))
    assert straight["status"] == "completed"
    fit(tiny(tiny_data, tmp_path / "resumed", **balanced, **{"run.stop_after_steps": 4}))
    fit(tiny(tiny_data, tmp_path / "resumed", **balanced), resume=tmp_path / "resumed" / "last.pt")
    _assert_identical_training_state(tmp_path / "straight" / "last.pt", tmp_path / "resumed" / "last.pt")
    with pytest.raises(ConfigError, match=r"data.balance_class: no class 'cat' in the training set \(disc"):
        fit(tiny(tiny_data, tmp_path / "missing", **{"data.balance_class": "cat"}))
    with pytest.raises(ConfigError, match=r"data.balance_share must be in \(0, 1\), got 1.0"):
        tiny(tiny_data, tmp_path / "share", **{"data.balance_class": "disc", "data.balance_share": 1.0})


def _history(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_resume_after_an_epoch_is_bit_identical_with_batchnorm(tiny_data: Path, tmp_path: Path) -> None:
    # The BN variant also exercises the recomputed BN statistics of the averaged model (average from epoch 0).
    flags = {"model.variant": "bn", "average.start": 0, "average.bn_batches": 2}
    fit(tiny(tiny_data, tmp_path / "straight", **flags))
    stopped = fit(tiny(tiny_data, tmp_path / "resumed", **flags, **{"run.stop_after_steps": 3}))
    assert stopped["status"] == "stopped" and stopped["epochs"] == 1
    finished = fit(tiny(tiny_data, tmp_path / "resumed", **flags), resume=tmp_path / "resumed")
    _assert_identical_training_state(tmp_path / "straight" / "last.pt", tmp_path / "resumed" / "last.pt")
    # Resuming a finished run has nothing to do: its final.pt and results.json stay as they are.
    files = {
        name: (tmp_path / "resumed" / name).read_bytes() for name in ("final.pt", "results.json", "last.pt")
    }
    again = fit(tiny(tiny_data, tmp_path / "resumed", **flags), resume=tmp_path / "resumed")
    assert again == {**json.loads(files["results.json"]), "output_dir": str(tmp_path / "resumed"),
                     "last_checkpoint": str(tmp_path / "resumed" / "last.pt"),
                     "final_checkpoint": str(tmp_path / "resumed" / "final.pt")}  # fmt: skip
    assert again["val_top1_avg"] == finished["val_top1_avg"]
    assert all((tmp_path / "resumed" / name).read_bytes() == data for name, data in files.items())


def test_a_longer_resume_keeps_its_average_and_each_epoch_logs_the_rate_it_trained_at(
    tiny_data: Path, tmp_path: Path
) -> None:
    flags = {"schedule.lr_step_size": 1, "schedule.lr_gamma": 0.5, "model.aux_logits": False}
    fit(tiny(tiny_data, tmp_path / "run", **flags))  # 2 epochs, averaging from the second (0.5 x 2)
    longer = fit(tiny(tiny_data, tmp_path / "run", **flags, **{"run.epochs": 3}), resume=tmp_path / "run")
    rows = _history(tmp_path / "run")
    assert [float(row["lr"]) for row in rows] == pytest.approx([0.01, 0.005, 0.0025])  # not the next epoch's
    # 0.5 of 3 epochs would start at epoch 2 (0-based) and skip epoch 1: the started average keeps its start.
    assert [int(row["averaged_steps"]) for row in rows] == [0, 3, 6] and longer["averaged_steps"] == 6
    meta = torch.load(tmp_path / "run" / "final.pt", weights_only=True)["meta"]
    assert meta["weights"] == "polyak average of 6 snapshots from epoch 2"  # 1-based, as the log lines
    # The resolved configuration records the start kept (it said 0.5, epoch 3 of a fresh 3-epoch run)
    # and, given back, trains the same run
    recorded = load_yaml(tmp_path / "run" / "config.yaml")
    assert recorded["average.start"] == 1.0
    again = fit(resolve(recorded, {"run.output_dir": str(tmp_path / "again")}))
    assert again["averaged_steps"] == 6
    final = torch.load(tmp_path / "run" / "final.pt", weights_only=True)["state_dict"]
    fresh = torch.load(tmp_path / "again" / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(final[k], fresh[k]) for k in final)


def test_resume_refuses_other_training_images(tiny_data: Path, tmp_path: Path) -> None:
    fit(tiny(tiny_data, tmp_path / "run", **{"run.stop_after_steps": 2}))
    fewer = tmp_path / "fewer"
    shutil.copytree(tiny_data, fewer)
    next(path for path in sorted((fewer / "train").rglob("*")) if path.is_file()).unlink()
    with pytest.raises(ConfigError, match=r"trained on 12 images and the data now holds 11"):
        fit(tiny(fewer, tmp_path / "run"), resume=tmp_path / "run")


def test_resume_refuses_a_changed_recipe(tiny_data: Path, tmp_path: Path) -> None:
    fit(tiny(tiny_data, tmp_path / "run", **{"run.stop_after_steps": 2}))
    with pytest.raises(Exception, match=r"cannot resume with optim.lr=0.5; the run was started with 0.01"):
        fit(tiny(tiny_data, tmp_path / "run", **{"optim.lr": 0.5}), resume=tmp_path / "run")


def _inject(monkeypatch: pytest.MonkeyPatch, at_call: int, action: str) -> None:
    """Make the loss of the `at_call`-th training step NaN, or raise SIGTERM during it."""
    original = loop.head_losses
    calls = {"n": 0}

    def patched(*args: Any, **kwargs: Any) -> list[torch.Tensor]:
        calls["n"] += 1
        losses = original(*args, **kwargs)
        if calls["n"] == at_call:
            if action == "nan":
                return [losses[0] * float("nan"), *losses[1:]]
            signal.raise_signal(signal.SIGHUP if action == "sighup" else signal.SIGTERM)
        return losses

    monkeypatch.setattr(loop, "head_losses", patched)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    _inject(monkeypatch, at_call=5, action="nan")  # epoch 1, step 1
    with pytest.raises(NonFiniteLossError) as info:
        fit(tiny(tiny_data, out))
    message = str(info.value)
    assert "non-finite loss (nan) at step 2 of epoch 2 (global step 5)" in message  # as the log counts
    assert f"last good checkpoint {out / 'last.pt'}" in message and "\n" not in message
    state = torch.load(out / "last.pt", weights_only=True)["train_state"]
    assert (state["epoch"], state["step"]) == (1, 0)  # the end of epoch 0, untouched
    assert json.loads((out / "checkpoints.json").read_text())["last.pt"]["sha256"] == sha256_file(
        out / "last.pt"
    )


def test_skip_nonfinite_continues(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, at_call=2, action="nan")
    results = fit(tiny(tiny_data, tmp_path / "run", **{"optim.skip_nonfinite": True, "run.epochs": 1,
                                                       "average.start": 0}))  # fmt: skip
    assert results["status"] == "completed" and results["skipped_steps"] == 1


@pytest.mark.parametrize("action", ["sigterm", "sighup"])
def test_sigterm_finishes_the_step_saves_and_exits_cleanly(
    action: str,
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    """SIGHUP too (an ssh session dropped): it ended the run at once, the epoch's steps unsaved."""
    out = tmp_path / "run"
    _inject(monkeypatch, at_call=2, action=action)
    before = signal.getsignal(signal.SIGTERM)

    def unhandled(signum: int, frame: object) -> None:  # rather than the hang-up ending pytest itself
        raise AssertionError("SIGHUP reached the process's own handler: the run did not catch it")

    previous_hup = signal.signal(signal.SIGHUP, unhandled)
    request.addfinalizer(lambda: signal.signal(signal.SIGHUP, previous_hup))
    argv = ["train", "--data-path", str(tiny_data), "-j", "0", "--input-size", "64", "-b", "4", "--epochs", "2",
            "--seed", "0", "--deterministic", "--no-progress", "--output-dir", str(out), "--json"]  # fmt: skip
    assert main(argv) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # our handler is gone again
    results = json.loads(capsys.readouterr().out)
    assert results["status"] == "interrupted" and results["signal"] == "SIGTERM"
    state = torch.load(out / "last.pt", weights_only=True)["train_state"]
    assert (state["epoch"], state["step"], state["global_step"]) == (0, 2, 2)  # step 2 was finished
    assert not (out / "final.pt").exists()
    assert signal.getsignal(signal.SIGHUP) is unhandled  # and given back
    if action == "sighup":
        return
    # ... and the CLI resumes it to the end.
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "final.pt").is_file()


def test_a_failure_of_the_machine_mid_run_is_written_to_train_log(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out of memory (or a full /dev/shm, a lost mount) after training began: the console said why,
    train.log, which the README says keeps the reason, did not."""
    original, calls = loop.head_losses, {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError(
                "DefaultCPUAllocator: can't allocate memory: you tried to allocate 31457280 bytes."
            )
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "head_losses", failing)
    out = tmp_path / "run"
    argv = ["train", "--data-path", str(tiny_data), "-j", "0", "--input-size", "64", "-b", "4", "--epochs", "1",
            "--seed", "0", "--no-progress", "--output-dir", str(out)]  # fmt: skip
    assert main(argv) == 1
    assert "out of memory (an allocation of 30 MiB failed)" in capsys.readouterr().err
    last = (out / "train.log").read_text().splitlines()[-1]
    assert "ERROR googlenet.train: stopped: RuntimeError: DefaultCPUAllocator: can't allocate memory" in last


def test_sigterm_during_the_evaluation_keeps_the_epoch_and_resumes_bit_identical(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # torchrun (and Slurm) kill 30 s after their SIGTERM: a long validation must not hold the checkpoint.
    straight = fit(tiny(tiny_data, tmp_path / "straight"))
    original, calls = loop.correct_topk, {"n": 0}

    def signalled(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # in an evaluation, not a training step
            calls["n"] += 1
            if calls["n"] == 1:  # the first validation batch of epoch 1
                signal.raise_signal(signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "correct_topk", signalled)
    out = tmp_path / "resumed"
    with caplog.at_level(logging.INFO, logger="googlenet"):
        first = fit(tiny(tiny_data, out))
    assert first["status"] == "interrupted" and calls["n"] == 1  # the evaluation stopped at once
    assert "interrupted in epoch 1/2's evaluation (its 3 steps are done)" in caplog.text
    state = torch.load(out / "last.pt", weights_only=True)["train_state"]
    assert (state["epoch"], state["step"], state["global_step"]) == (0, 3, 3) and state["history"] == []
    monkeypatch.setattr(loop, "correct_topk", original)
    assert fit(tiny(tiny_data, out), resume=out)["status"] == "completed"
    _assert_identical_training_state(tmp_path / "straight" / "last.pt", out / "last.pt")
    untimed = [
        {k: v for k, v in row.items() if k not in ("img_per_s", "epoch_time_s")} for row in _history(out)
    ]
    assert (
        untimed
        == [
            {k: v for k, v in row.items() if k not in ("img_per_s", "epoch_time_s")}
            for row in _history(tmp_path / "straight")
        ]
        and straight["status"] == "completed"
    )


def test_sigterm_during_an_ensemble_exits_with_the_signal(
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="googlenet")
    out = tmp_path / "ensemble"
    _inject(monkeypatch, at_call=2, action="sigterm")  # member 0's second step
    argv = ["train", "--data-path", str(tiny_data), "-j", "0", "--input-size", "64", "-b", "4", "--epochs", "1",
            "--seed", "0", "--no-progress", "--ensemble", "2", "--output-dir", str(out), "--json"]  # fmt: skip
    assert main(argv) == 128 + signal.SIGTERM
    # the hint resumes the ensemble (every member), not member-0 alone
    assert (
        f"resume with googlenet train --resume {out}\n" in caplog.text + "\n"
        and "--resume " + str(out / "member-0") not in caplog.text
    )
    results = json.loads(capsys.readouterr().out)
    assert results["status"] == "interrupted" and results["signal"] == "SIGTERM"
    assert json.loads((out / "ensemble.json").read_text())["signal"] == "SIGTERM"
    assert (out / "member-0" / "last.pt").is_file() and not (out / "member-1").exists()
    # The ensemble's config.yaml, where a resume reads the recipe of the members not yet begun, edited
    # in between: member 1 trained at another lr than member 0, unsaid. Now refused, naming the key.
    config_file = out / "config.yaml"
    as_written = config_file.read_text()
    assert "\n  lr: 0.01\n" in as_written
    config_file.write_text(as_written.replace("\n  lr: 0.01\n", "\n  lr: 0.05\n"))
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert (
        "config.yaml: optim.lr is 0.05 there, but member-0 began with 0.01" in err and "\n" not in err.strip()
    )
    assert not (out / "member-1").exists()


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_ensemble_members_share_initial_weights(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, torch.Tensor]] = []  # every network the engine builds, as built

    def recording(*args: Any, **kwargs: Any) -> Any:
        model = build_model(*args, **kwargs)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(engine, "build_model", recording)
    out = tmp_path / "ensemble"
    results = fit(tiny(tiny_data, out, **{"run.ensemble": 2, "run.epochs": 1, "average.start": 0}))
    assert results["status"] == "completed"
    # section 7: the same initial weights, tensor for tensor (not only the fingerprint the engine records)
    assert len(built) == 2 and built[0].keys() == built[1].keys()
    assert all(torch.equal(built[0][k], built[1][k]) for k in built[0])
    index = json.loads((out / "ensemble.json").read_text())
    members = index["members"]
    assert [m["final"] for m in members] == ["member-0/final.pt", "member-1/final.pt"]
    assert members[0]["init_sha256"] == members[1]["init_sha256"]
    assert members[0]["data_seed"] != members[1]["data_seed"]
    assert members[1]["sampling"] == {"augment.random_interpolation": False}
    assert members[1]["sampling_without_effect"] == []
    member1 = yaml.safe_load((out / "member-1" / "config.yaml").read_text())
    assert member1["augment"]["random_interpolation"] is False
    a = torch.load(out / "member-0" / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "member-1" / "final.pt", weights_only=True)["state_dict"]
    assert not torch.equal(a["fc.weight"], b["fc.weight"])  # different orders and sampling
    # A resume with nothing to train leaves the folder as it was (it rewrote ensemble.json from today's
    # sampling table, which an older version's members may not have trained with).
    kept = {name: (out / name).read_bytes() for name in ("ensemble.json", "config.yaml")}
    again = tiny(tiny_data, out, **{"run.ensemble": 2, "run.epochs": 1, "average.start": 0})
    assert fit(again, resume=out)["status"] == "completed"
    assert {name: (out / name).read_bytes() for name in kept} == kept
    # The sampling recorded is the member's own (as its config.yaml has it), not today's table's.
    recorded = (out / "member-1" / "config.yaml").read_text()
    (out / "member-1" / "config.yaml").write_text(
        recorded.replace("random_interpolation: false", "random_interpolation: true")
    )
    (out / "ensemble.json").unlink()
    fit(again, resume=out)
    assert json.loads((out / "ensemble.json").read_text())["members"][1]["sampling"] == {
        "augment.random_interpolation": True
    }
    (out / "member-1" / "config.yaml").write_text(recorded)
    # A larger --epochs trains every finished member on, as it does a single run.
    longer = fit(tiny(tiny_data, out, **{"run.ensemble": 2, "run.epochs": 2, "average.start": 0}), resume=out)
    assert [len(_history(out / f"member-{k}")) for k in (0, 1)] == [2, 2] and longer["status"] == "completed"


def test_a_signal_while_the_closing_files_are_written_says_how_to_finish(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Ctrl-C after the last epoch, while final.pt was written, said only "interrupted"."""
    out = tmp_path / "run"
    real_save_final = engine._save_final

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_save_final", interrupted)
    with caplog.at_level(logging.INFO, logger="googlenet"), pytest.raises(KeyboardInterrupt):
        fit(tiny(tiny_data, out, **{"run.epochs": 1}))
    assert f"last.pt holds every step trained; resume with googlenet train --resume {out}" in caplog.text
    monkeypatch.setattr(engine, "_save_final", real_save_final)
    assert fit(tiny(tiny_data, out, **{"run.epochs": 1}), resume=out)["status"] == "completed"
    assert (out / "final.pt").is_file()


def test_test_only_evaluates_a_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained = fit(tiny(tiny_data, out, **{"run.epochs": 1, "average.start": 0}))
    results = fit(tiny(tiny_data, tmp_path / "unused", **{"run.test_only": True}), resume=out / "last.pt")
    assert results["val_top1_raw"] == pytest.approx(trained["val_top1_raw"])
    assert results["val_top1_avg"] == pytest.approx(trained["val_top1_avg"])
    only_final = fit(tiny(tiny_data, tmp_path / "unused", **{"run.test_only": True}), resume=out / "final.pt")
    assert only_final["val_top1"] == pytest.approx(trained["val_top1_avg"])  # final.pt holds the average
    assert "polyak average" in only_final["weights"]
    (out / "last.pt").unlink()  # a run folder with only its final model (copied, say) evaluates that
    folder = fit(tiny(tiny_data, tmp_path / "unused", **{"run.test_only": True}), resume=out)
    assert folder["checkpoint"] == str(out / "final.pt") and folder["val_top1"] == only_final["val_top1"]
    val_only = tmp_path / "val-only"  # evaluation reads val/ alone: no train/, or a broken one, serves
    shutil.copytree(tiny_data / "val", val_only / "val")
    (val_only / "train" / "emptied-class").mkdir(parents=True)
    alone = tiny(val_only, tmp_path / "unused", **{"run.test_only": True})
    assert fit(alone, resume=out)["val_top1"] == only_final["val_top1"]
    # An undecodable file is left out of the figures, scanned for first or not (not replaced by the
    # next image as in training, which would count that image twice).
    first_class = sorted(p for p in (val_only / "val").iterdir())[0]
    (first_class / "zz-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    for scan in (True, False):
        flags = {"run.test_only": True, "data.scan_bad_files": scan}
        scored = fit(tiny(val_only, tmp_path / "unused", **flags), resume=out)
        assert (scored["val_top1"], scored["samples"]) == (only_final["val_top1"], folder["samples"]), scan


def test_test_only_does_not_score_an_average_with_stale_batchnorm_statistics(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Mid-epoch, a BN variant's average holds the raw model's BN statistics (recomputed at epochs' ends).
    stop = {"average.start": 0, "average.bn_batches": 2, "run.stop_after_steps": 2}
    fit(tiny(tiny_data, tmp_path / "bn", **{"model.variant": "bn", **stop}))
    test_only = {"run.test_only": True}
    results = fit(tiny(tiny_data, tmp_path / "unused", **test_only), resume=tmp_path / "bn")
    assert "val_top1_raw" in results and "val_top1_avg" not in results
    assert "stopped mid-epoch" in results["averaged_note"]
    assert main(["train", "--resume", str(tmp_path / "bn"), "--test-only", "--no-progress"]) == 0
    assert "averaged weights not scored: the run stopped mid-epoch" in capsys.readouterr().out
    fit(tiny(tiny_data, tmp_path / "paper", **stop))  # no BatchNorm: its average is complete as it is
    results = fit(tiny(tiny_data, tmp_path / "unused", **test_only), resume=tmp_path / "paper")
    assert "val_top1_avg" in results and "averaged_note" not in results


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_a_fine_tuning_run_resumes_from_anywhere_without_its_source_file(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit(tiny(tiny_data, tmp_path / "source", **{"run.epochs": 1}))
    monkeypatch.chdir(tmp_path)
    relative = {"model.init_from": "source/final.pt"}
    straight = fit(tiny(tiny_data, tmp_path / "straight", **relative))
    fit(tiny(tiny_data, tmp_path / "resumed", **relative, **{"run.stop_after_steps": 2}))
    assert (
        f"init_from: {tmp_path / 'source' / 'final.pt'}" in (tmp_path / "resumed" / "config.yaml").read_text()
    )
    (tmp_path / "source" / "final.pt").rename(tmp_path / "moved.pt")  # last.pt holds the weights now
    monkeypatch.chdir(tmp_path / "source")  # another working directory
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--no-progress"]) == 0
    _assert_identical_training_state(tmp_path / "straight" / "last.pt", tmp_path / "resumed" / "last.pt")
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert resumed["init_sha256"] == straight["init_sha256"] is not None


def test_a_fine_tuning_ensemble_resumes_without_its_source_file(tiny_data: Path, tmp_path: Path) -> None:
    one_epoch = {"run.epochs": 1, "average.start": 0}
    fit(tiny(tiny_data, tmp_path / "source", **one_epoch))
    source = {"model.init_from": str(tmp_path / "source" / "final.pt"), "run.ensemble": 2}
    out = tmp_path / "ensemble"
    assert fit(tiny(tiny_data, out, **source, **one_epoch))["status"] == "completed"
    (tmp_path / "source" / "final.pt").rename(
        tmp_path / "moved.pt"
    )  # each member's last.pt holds its weights
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0  # the recorded config
    assert [len(_history(out / f"member-{k}")) for k in (0, 1)] == [2, 2]


def _fine_tuning_source(data: Path, root: Path, **flags: Any) -> tuple[dict[str, Any], Path]:
    """A one-epoch source run's --init-from setting, and a copy of `data` with a class renamed (so that
    the source's classifiers are not copied). `flags`: more settings of the source run."""
    fit(tiny(data, root / "source", **{"run.epochs": 1, "average.method": "none", **flags}))
    other = root / "other-classes"
    shutil.copytree(data, other)
    for split in ("train", "val"):
        first = sorted((other / split).iterdir())[0]
        first.rename(first.with_name("zz-" + first.name))
    return {"model.init_from": str(root / "source" / "final.pt")}, other


def test_init_lr_mult_0_freezes_the_copied_layers(tiny_data: Path, tmp_path: Path) -> None:
    init, other = _fine_tuning_source(tiny_data, tmp_path)
    source = torch.load(tmp_path / "source" / "final.pt", weights_only=True)["state_dict"]
    frozen = {**init, "optim.init_lr_mult": 0.0, "run.epochs": 1, "average.method": "none"}
    assert fit(tiny(other, tmp_path / "frozen", **frozen))["status"] == "completed"
    tuned = torch.load(tmp_path / "frozen" / "final.pt", weights_only=True)["state_dict"]
    for name in ("conv1.conv.weight", "inception5b.branch4.1.conv.bias"):
        assert torch.equal(tuned[name], source[name]), name
    assert not torch.equal(tuned["fc.weight"], source["fc.weight"])  # re-initialised, and trained
    state = torch.load(tmp_path / "frozen" / "last.pt", weights_only=True)["train_state"]
    assert [g["name"] for g in state["optimizer"]["param_groups"]] == ["weights"]  # frozen ones left out
    assert "fc.weight" not in state["init_copied"] and "conv1.conv.weight" in state["init_copied"]
    # The same classes: the classifiers are copied too, and freezing would leave nothing to train.
    with pytest.raises(ConfigError, match="freezes every layer"):
        fit(tiny(tiny_data, tmp_path / "all", **init, **{"optim.init_lr_mult": 0.0}))
    with pytest.raises(ConfigError, match="give --init-from"):
        fit(tiny(tiny_data, tmp_path / "none", **{"optim.init_lr_mult": 0.5}))


def test_init_lr_mult_0_freezes_batchnorm_statistics_too(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bn = {"model.variant": "bn", "run.epochs": 1}
    init, other = _fine_tuning_source(tiny_data, tmp_path, **bn)
    source = torch.load(tmp_path / "source" / "final.pt", weights_only=True)["state_dict"]
    # Polyak's recomputation of BatchNorm statistics (update_bn) runs too: the frozen ones stay.
    frozen = {**bn, **init, "optim.init_lr_mult": 0.0, "average.start": 0}
    assert fit(tiny(other, tmp_path / "frozen", **frozen))["status"] == "completed"
    for file, key in (
        ("final.pt", "state_dict"),
        ("last.pt", "state_dict"),
        ("last.pt", "averaged_state_dict"),
    ):
        tuned = torch.load(tmp_path / "frozen" / file, weights_only=True)[key]
        tuned = {k.removeprefix("module."): v for k, v in tuned.items() if k != "n_averaged"}
        assert tuned.keys() == source.keys(), (file, key)  # a plain BatchNorm model's keys, counters too
        for name in ("conv1.bn.running_mean", "conv1.bn.running_var", "inception5b.branch1.bn.running_var",
                     "aux2.conv.bn.running_mean", "inception4a.branch3.1.bn.num_batches_tracked"):  # fmt: skip
            assert torch.equal(tuned[name], source[name]), (file, key, name)
        assert not torch.equal(tuned["fc.weight"], source["fc.weight"])
    # The run's checkpoints load wherever a plain model's do.
    assert (
        main(["train", "--test-only", "--resume", str(tmp_path / "frozen"), "--json", "--no-progress"]) == 0
    )
    tested = json.loads(capsys.readouterr().out)  # the averaged model as the run itself scored it
    recorded = json.loads((tmp_path / "frozen" / "results.json").read_text())
    assert tested["val_top1_avg"] == pytest.approx(recorded["val_top1_avg"])
    assert main(["evaluate", "--checkpoint", str(tmp_path / "frozen" / "final.pt"), "--data-path", str(other),
                 "--json", "--no-progress", "-j", "0", "--engine", "eager"]) == 0  # fmt: skip


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_init_lr_mult_scales_the_copied_layers_and_resumes_bit_identical(
    tiny_data: Path, tmp_path: Path
) -> None:
    init, other = _fine_tuning_source(tiny_data, tmp_path)
    scaled = {**init, "optim.init_lr_mult": 0.1}
    fit(tiny(other, tmp_path / "straight", **scaled))
    state = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["train_state"]
    assert [(g["name"], g["initial_lr"]) for g in state["optimizer"]["param_groups"]] == [
        ("weights", 0.01),
        ("copied weights", pytest.approx(0.001)),
    ]
    fit(tiny(other, tmp_path / "resumed", **scaled, **{"run.stop_after_steps": 2}))
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--no-progress"]) == 0
    _assert_identical_training_state(tmp_path / "straight" / "last.pt", tmp_path / "resumed" / "last.pt")
    recipe = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)["meta"]["recipe"]
    assert "copied weights lr x0.1 weight decay" in recipe["optimizer"]


def test_a_stopped_run_resumes_with_its_own_config_file_given_back(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data-path", str(tiny_data), "-j", "0", "--input-size", "64", "-b", "4", "--epochs", "2",
            "--seed", "0", "--no-progress", "--output-dir", str(out), "--stop-after-steps", "2"]  # fmt: skip
    assert main(argv) == 0
    assert "stop_after_steps: 2" in (out / "config.yaml").read_text()  # the stop point is recorded ...
    # A config file naming another stop sets it (it was dropped unsaid), and one naming another
    # folder is refused as --output-dir is
    stop4, elsewhere = tmp_path / "stop4.yaml", tmp_path / "elsewhere.yaml"
    stop4.write_text("run:\n  stop_after_steps: 4\n")
    elsewhere.write_text(f"run:\n  output_dir: {tmp_path / 'other'}\n")
    assert main(["train", "--resume", str(out), "--config", str(elsewhere), "--no-progress"]) == 1
    assert "a resumed run continues in its own folder" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--config", str(stop4), "--no-progress"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["train_state"]["global_step"] == 4
    assert not (out / "final.pt").exists()
    # ... and belongs to the run that stopped: given back with --config it is not a new stop point.
    assert main(["train", "--resume", str(out), "--config", str(out / "config.yaml"), "--no-progress"]) == 0
    assert (out / "final.pt").is_file()


def test_a_stopped_runs_last_line_names_the_epoch_its_figures_are_from(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3 steps an epoch: stopped at step 2 nothing was validated; at step 4 the figures are epoch 1's.
    argv = ["train", "--data-path", str(tiny_data), "-j", "0", "--input-size", "64", "-b", "4", "--epochs", "2",
            "--seed", "0", "--no-progress", "--output-dir", str(tmp_path / "run")]  # fmt: skip
    assert main([*argv, "--stop-after-steps", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("stopped before epoch 1 ended, so nothing was validated yet;"), last
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress", "--stop-after-steps", "4"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("stopped: val top-1 (epoch 1, the last one finished) raw "), last
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("completed: val top-1 raw "), last


def test_a_signal_on_the_last_step_stops_before_the_evaluation_and_a_resume_completes_with_exit_0(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _inject(monkeypatch, at_call=6, action="sigterm")  # 2 epochs of 3 steps: the last one
    argv = ["train", "--data-path", str(tiny_data), "-j", "0", "--input-size", "64", "-b", "4", "--epochs", "2",
            "--seed", "0", "--no-progress", "--output-dir", str(tmp_path / "run"), "--json"]  # fmt: skip
    assert main(argv) == 128 + signal.SIGTERM  # the step is finished; the evaluation waits for the resume
    results = json.loads(capsys.readouterr().out)
    assert results["status"] == "interrupted" and not (tmp_path / "run" / "final.pt").exists()
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]
    assert (state["epoch"], state["step"], len(state["history"])) == (1, 3, 1)
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["status"] == "completed" and (tmp_path / "run" / "final.pt").is_file()
    assert len(_history(tmp_path / "run")) == 2


def test_bf16_autocast_without_aux_heads(tiny_data: Path, tmp_path: Path) -> None:
    # --amp on CPU is bf16 autocast; --no-aux trains the main head alone (loss = main).
    out = tmp_path / "run"
    results = fit(tiny(tiny_data, out, **{"run.amp": True, "model.aux_logits": False, "run.epochs": 1,
                                         "average.method": "ema", "average.start": 0}))  # fmt: skip
    assert results["status"] == "completed"
    row = _history(out)[0]
    assert row["loss_aux1"] == "" and row["loss_main"] == row["loss_total"]
    assert math.isfinite(float(row["loss_total"]))
    meta = torch.load(out / "final.pt", weights_only=True)["meta"]
    assert "ema average" in meta["weights"] and meta["recipe"]["amp"] is True
    assert not any(k.startswith("aux") for k in torch.load(out / "final.pt", weights_only=True)["state_dict"])


def test_init_flag_reaches_the_model_and_its_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    # --init caffe: bvlc_googlenet's initialisation (bias 0.2) instead of the paper variant's He (bias 0).
    out = tmp_path / "run"
    flags = {"run.epochs": 1, "optim.lr": 1e-9, "model.init": "caffe"}  # one epoch that barely moves them
    assert fit(tiny(tiny_data, out, **flags))["status"] == "completed"
    checkpoint = torch.load(out / "final.pt", weights_only=True)
    assert checkpoint["model_config"]["init"] == "caffe"
    bias = checkpoint["state_dict"]["inception3a.branch1.conv.bias"]
    assert torch.allclose(bias, torch.full_like(bias, 0.2), atol=1e-5)


def test_bias_flags_reach_the_optimiser_and_the_recipe(tiny_data: Path, tmp_path: Path) -> None:
    # Caffe's bvlc_googlenet: biases at twice the lr with no weight decay.
    out = tmp_path / "run"
    flags = {"run.epochs": 1, "optim.bias_lr_mult": 2.0, "optim.bias_weight_decay": 0.0}
    assert fit(tiny(tiny_data, out, **flags))["status"] == "completed"
    state = torch.load(out / "last.pt", weights_only=True)["train_state"]["optimizer"]
    weights, biases = state["param_groups"]
    assert (weights["name"], biases["name"]) == ("weights", "biases")
    assert biases["initial_lr"] == pytest.approx(2 * weights["initial_lr"])
    assert biases["weight_decay"] == 0.0 and weights["weight_decay"] == pytest.approx(2e-4)
    final = torch.load(out / "final.pt", weights_only=True)
    assert "biases lr x2.0 weight decay 0.0" in final["meta"]["recipe"]["optimizer"]


def test_plots_mark_chance_and_whole_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    from googlenet.train.runs import RunFolder, class_balance

    lines: list[tuple[float, str]] = []
    draw_line = Axes.axhline
    monkeypatch.setattr(
        Axes, "axhline", lambda self, y, **kw: lines.append((y, kw["label"])) or draw_line(self, y, **kw)
    )
    history = [
        {"epoch": e, "loss_main": 2.3 - e / 10, "val_top1_raw": 10.0 + e, "lr": 0.01} for e in range(3)
    ]
    with RunFolder(tmp_path) as run:
        run.plot(history, num_classes=10)
    assert lines == [
        (pytest.approx(math.log(10)), "chance, one head: ln 10 = 2.30"),
        (10.0, "chance: 100/10 = 10%"),
    ]
    lines.clear()
    with RunFolder(tmp_path) as run:  # 10 + 1 validation images: a model that learnt nothing scores 90.9%
        run.plot(history, num_classes=2, val_balance=class_balance([10, 1]))
    entropy = -(10 / 11) * math.log(10 / 11) - (1 / 11) * math.log(1 / 11)
    assert lines == [
        (pytest.approx(entropy), "no learning, one head: class-prior entropy 0.30 (imbalanced val)"),
        (pytest.approx(100 * 10 / 11), "majority class: 90.9% (imbalanced val)"),
    ]
    lines.clear()
    with RunFolder(tmp_path) as run:
        run.plot(history)  # classes unknown: no line
    assert not lines and {p.name for p in tmp_path.glob("*.png")} == {"loss.png", "top1.png", "lr.png"}


def test_log_lines_and_digests_carry_the_utc_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.log and checkpoints.json said local time with no offset: two machines' logs, or one either
    side of a daylight-saving change, could not be put in order."""
    import re
    import time

    from googlenet.io import record_digest
    from googlenet.train.runs import RunFolder, _our_log

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +0530: neither UTC nor a whole hour
    time.tzset()
    try:
        run = RunFolder(tmp_path / "run")
        run.attach_log()
        logging.getLogger("googlenet.train").info("an epoch")
        run.close()
        (tmp_path / "run" / "last.pt").write_bytes(b"x")
        record_digest(tmp_path / "run" / "last.pt", "0" * 64, 1)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    line = (tmp_path / "run" / "train.log").read_text().splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\+0530 INFO googlenet.train: an epoch", line), (
        line
    )
    assert _our_log(tmp_path / "run" / "train.log")
    written = json.loads((tmp_path / "run" / "checkpoints.json").read_text())["last.pt"]["written"]
    assert written.endswith("+05:30"), written


def test_another_torchrun_process_adds_its_warnings_to_the_first_ones_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from googlenet.train.runs import RunFolder

    log = logging.getLogger("googlenet.data.datasets")
    first = RunFolder(tmp_path / "run")
    first.attach_log()
    other = RunFolder(tmp_path / "run", enabled=False, rank=1)
    other.attach_log()
    log.info("the first process's progress")
    log.warning("skipping a bad image: b.jpg: cannot identify image file")
    other.log_to_file(logging.ERROR, "stopped: not this process's to write")
    other.close()
    first.close()
    lines = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO googlenet.data.datasets: the first process's progress",
        "WARNING googlenet.data.datasets: skipping a bad image: b.jpg: cannot identify image file",
        "WARNING googlenet.data.datasets [process 1]: skipping a bad image: b.jpg: cannot identify image file",
    ]
    # A node that does not see the run folder (no shared file system) keeps them on its stderr only.
    elsewhere = RunFolder(tmp_path / "not-here", enabled=False, rank=2)
    elsewhere.attach_log()
    log.warning("skipping a bad image: c.jpg")
    elsewhere.close()
    assert not (tmp_path / "not-here").exists() and "Logging error" not in capsys.readouterr().err


def test_a_train_log_that_cannot_be_written_is_said_once_without_a_traceback(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full disk under train.log: logging printed "--- Logging error ---" and a traceback per record."""
    from googlenet.train.runs import RunFolder

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.log").symlink_to("/dev/full")  # every write: No space left on device
    run = RunFolder(tmp_path / "run")
    run.attach_log()
    log = logging.getLogger("googlenet.data.datasets")
    with caplog.at_level(logging.INFO, logger="googlenet"):
        for k in range(3):
            log.warning("skipping a bad image: %d.jpg", k)
    run.close()
    said = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert said == [f"{tmp_path / 'run' / 'train.log'}: cannot write (No space left on device); the run's "
                    "log goes on on the console only"]  # fmt: skip
    assert "Logging error" not in capsys.readouterr().err and "2.jpg" in caplog.text
    # a malformed record is logging's own report (our mistake), and the log goes on
    (tmp_path / "other").mkdir()
    run = RunFolder(tmp_path / "other")
    run.attach_log()
    with monkeypatch.context() as patch:  # (pytest's own capture fails the test on a malformed record)
        patch.setattr(logging.getLogger("googlenet"), "propagate", False)
        log.warning("bad %d", "x")
        log.warning("after it")
    run.close()
    assert "after it" in (tmp_path / "other" / "train.log").read_text()


def test_a_run_folder_removes_what_a_killed_checkpoint_write_left_and_nothing_else(tmp_path: Path) -> None:
    """A SIGKILL during a checkpoint write leaves `.last.pt.XXXX.tmp` (as large as the model and its
    optimiser state), which nothing removed; another command's temporary file is not ours to remove."""
    from googlenet.train.runs import RunFolder

    (tmp_path / "run").mkdir()
    for name in (".last.pt.k3j_x9.tmp", ".final.pt.0a1b2c.tmp", ".report.html.q9w8e7.tmp", "notes.tmp"):
        (tmp_path / "run" / name).write_bytes(b"x")
    RunFolder(tmp_path / "run").close()  # not a run's folder (no config.yaml): nothing removed
    assert len([p for p in (tmp_path / "run").iterdir() if p.name != ".lock"]) == 4
    (tmp_path / "run" / "config.yaml").write_text("run: {}\n")
    RunFolder(tmp_path / "run").close()
    left = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name != ".lock")
    assert left == [".report.html.q9w8e7.tmp", "config.yaml", "notes.tmp"]


def test_an_output_dir_that_is_a_dangling_or_looping_link_is_named_as_such(tmp_path: Path) -> None:
    from googlenet.train.runs import RunFolder

    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for name, target in (("dangling", tmp_path / "gone"), ("loop", tmp_path / "loop")):
        with pytest.raises(ConfigError, match=f"a symbolic link to {target}, which is no folder"):
            RunFolder(tmp_path / name)


def test_a_new_run_goes_on_in_a_folder_where_its_first_write_was_killed(tmp_path: Path) -> None:
    from googlenet.train.runs import check_new_run_folder

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".config.yaml.k3j_x9.tmp").write_text("half a config")  # SIGKILL before the rename
    check_new_run_folder(tmp_path / "run")
    (tmp_path / "run" / ".notes.k3j_x9.tmp").write_text("the user's")
    with pytest.raises(ConfigError, match=r"holds other files \(\.notes\.k3j_x9\.tmp\)"):
        check_new_run_folder(tmp_path / "run")


def test_a_run_folder_whose_name_is_not_utf8_trains_without_tensorboard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TensorBoard's file layer died on such a name (UnicodeEncodeError) after the setup files were written."""
    from googlenet.train.runs import RunFolder

    run = RunFolder(tmp_path / "run\udcfc")  # the byte 0xfc: Latin-1 ü
    with caplog.at_level(logging.WARNING, logger="googlenet"):
        run.open_tensorboard()
        run.epoch_scalars({"epoch": 0, "global_step": 1, "lr": 0.01})
    run.close()
    assert "the name is not valid UTF-8; no TensorBoard logs" in caplog.text
    # a valid UTF-8 name that an ASCII locale decoded into surrogates says what to change
    caplog.clear()
    run = RunFolder(tmp_path / "run-\udcc3\udca9")  # "é" in UTF-8, as an ASCII locale decodes it
    with caplog.at_level(logging.WARNING, logger="googlenet"):
        run.open_tensorboard()
    run.close()
    assert "cannot spell the name; a UTF-8 locale or PYTHONUTF8=1 can" in caplog.text


def test_an_imagenet_run_keeps_the_wordnet_ids_for_evaluate(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A miniature ImageNet tree as torchvision's ImageNet leaves it: meta.bin and <split>/<wnid>/ folders.
    names = {"disc": "n01440764", "ring": "n01443537", "square": "n01484850"}
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for name, wnid in names.items():
            shutil.copytree(tiny_data / split / name, root / split / wnid)
    torch.save(({wnid: (name,) for name, wnid in names.items()}, []), root / "meta.bin")
    results = fit(tiny(root, tmp_path / "run", **{"data.dataset": "imagenet", "run.epochs": 1}))
    _, meta = load_checkpoint_model(results["final_checkpoint"])
    assert meta["class_names"] == ["disc", "ring", "square"] and meta["wnids"] == list(names.values())
    # Without the ids, a val folder named by WordNet id did not match the model's readable names.
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", results["final_checkpoint"], "--data-path", str(root / "val"),
                 "--engine", "off", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["images"] == 3


WNIDS = {"disc": "n01440764", "ring": "n01443537", "square": "n01484850"}
IMAGENET_NAMES = ["tench", "goldfish", "great white shark"]


def _wordnet_folders(tiny_data: Path, root: Path) -> Path:
    """`tiny_data` with its class folders named by ILSVRC WordNet ids, as an extracted ImageNet tree."""
    for split in ("train", "val"):
        for name, wnid in WNIDS.items():
            shutil.copytree(tiny_data / split / name, root / split / wnid)
    return root


def test_class_folders_named_by_wordnet_id_get_their_imagenet_names(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An extracted ImageNet tree (or a part of one, as Imagenette) in ImageFolder layout: the run's
    # classes were the bare ids, so `predict` and `evaluate` showed "n01440764", not "tench".
    root = _wordnet_folders(tiny_data, tmp_path / "imagenet-folders")
    results = fit(tiny(root, tmp_path / "run", **{"run.epochs": 1}))
    _, meta = load_checkpoint_model(results["final_checkpoint"])
    assert meta["class_names"] == IMAGENET_NAMES and meta["wnids"] == list(WNIDS.values())
    capsys.readouterr()
    code, printed = (
        main(["train", "--resume", str(tmp_path / "run"), "--test-only", "-j", "0", "--no-progress"]),
        capsys.readouterr(),
    )
    assert code == 0, printed.err
    assert main(["evaluate", "--checkpoint", results["final_checkpoint"], "--data-path", str(root / "val"),
                 "--engine", "off", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["images"] == 3
    # ablate's test-time arms label the same folders by those ids (they refused them, after the training)
    from googlenet.ablate.study import StudyPlan, eval_samples

    plan = StudyPlan(tmp_path / "study", arms=("full",), seeds=(0,), base={"data.data_path": str(root)})
    assert len(eval_samples(plan, meta["class_names"], meta["wnids"])) == 3


def test_a_run_that_named_its_classes_by_wordnet_id_still_resumes_and_fine_tunes(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run of an earlier version named its classes by the ids: it is still evaluated and resumed on the
    # same folders (named from then on), and its classifiers still fit them as an --init-from file.
    from googlenet.model.weights import read_checkpoint
    from googlenet.train.finetune import init_from

    root = _wordnet_folders(tiny_data, tmp_path / "imagenet-folders")
    old = tmp_path / "old-run"
    fit(tiny(root, old, **{"run.epochs": 1}))
    shutil.copytree(old, tmp_path / "new-run")  # as this version wrote it
    for name in ("last.pt", "final.pt"):
        checkpoint = read_checkpoint(old / name)
        checkpoint["meta"]["class_names"] = list(WNIDS.values())
        del checkpoint["meta"]["wnids"]
        torch.save(checkpoint, old / name)
    (old / "checkpoints.json").unlink()  # the digests of the files as written
    model, wnids = build_model("paper", num_classes=3), list(WNIDS.values())
    kept = init_from(model, old / "final.pt", classes=IMAGENET_NAMES, wnids=wnids)
    assert not [k for k in kept if k.startswith("fc.")]
    assert [k for k in init_from(model, old / "final.pt", classes=IMAGENET_NAMES) if k.startswith("fc.")]
    capsys.readouterr()  # an ensemble of a member named by id and one by name (refused: "class 0 is ...")
    members = [str(tmp_path / "new-run" / "final.pt"), str(old / "final.pt")]
    for order in (members, members[::-1]):
        code, printed = main(["evaluate", "--checkpoint", *order, "--data-path", str(root), "--engine", "off",
                              "-j", "0", "--json"]), capsys.readouterr()  # fmt: skip
        assert code == 0 and json.loads(printed.out)["images"] == 3, printed.err
    argv = ["train", "--resume", str(old), "-j", "0", "--no-progress"]
    capsys.readouterr()
    code, printed = main([*argv, "--test-only"]), capsys.readouterr()
    assert code == 0, printed.err
    # a setting that run's config.yaml lacks (it came later) is its default, not "differs" ...
    (old / "config.yaml").write_text(
        "".join(
            line
            for line in (old / "config.yaml").read_text().splitlines(True)
            if "lr_warmup_method" not in line
        )
    )
    code, printed = (
        main([*argv, "--test-only", "--lr-warmup-method", "linear", "--no-nesterov"]),
        capsys.readouterr(),
    )
    assert code == 0, printed.err
    # ... and a boolean flag is named as it was given
    code, printed = main([*argv, "--test-only", "--nesterov"]), capsys.readouterr()
    assert code == 1 and "do not apply: --nesterov (drop them)" in printed.err, printed.err
    code, printed = main([*argv, "--epochs", "2"]), capsys.readouterr()
    assert code == 0, printed.err
    assert load_checkpoint_model(old / "final.pt")[1]["class_names"] == IMAGENET_NAMES


def test_freeze_batchnorm_takes_sync_batchnorm_layers_too() -> None:
    from torch import nn

    from googlenet.model.googlenet import build_model
    from googlenet.train.finetune import FrozenBatchNorm2d, freeze_batchnorm

    model = nn.SyncBatchNorm.convert_sync_batchnorm(build_model("bn", num_classes=3))  # --sync-bn's model
    names = {name for name, _ in model.named_parameters() if not name.startswith("fc.")}
    frozen = freeze_batchnorm(model, names)
    assert len(frozen) == 59 and all(isinstance(model.get_submodule(n), FrozenBatchNorm2d) for n in frozen)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_test_only_on_an_ensemble_folder_says_what_to_give(tmp_path: Path) -> None:
    # it said "no last.pt or final.pt to evaluate", though --resume takes an ensemble's folder elsewhere
    from googlenet.errors import CheckpointError
    from googlenet.train.evaluation import evaluate_checkpoint

    (tmp_path / "member-0").mkdir()
    (tmp_path / "member-0" / "final.pt").write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"an ensemble; --test-only evaluates one member \(--resume .*member-0\)"
    ):
        evaluate_checkpoint(None, tmp_path, None, torch.device("cpu"))  # type: ignore[arg-type]


def test_an_imagenet_run_from_the_official_archives_trains_and_is_scored_from_another_copy(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from googlenet.model.weights import read_checkpoint
    from imagenet_archives import LEAVES, official_archives

    data = tmp_path / "ilsvrc"
    official_archives(data, monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "imagenet.yaml"  # "~" in a config file is the user's home, as on the command line
    config.write_text("data:\n  dataset: imagenet\n  data_path: ~/ilsvrc\n")
    tiny = ["-j", "0", "--input-size", "64", "-b", "4", "--epochs", "1", "--stop-after-steps", "1",
            "--no-progress"]  # fmt: skip
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "run"), *tiny]) == 0
    meta = read_checkpoint(tmp_path / "run" / "last.pt")["meta"]
    assert meta["wnids"] == [wnid for _, wnid, _ in LEAVES]
    assert meta["class_names"] == ["tench", "goldfish", "great white shark"]
    # Another copy of the data (a node's own disk): --test-only reads it as ImageNet, as --resume would.
    shutil.copytree(data, tmp_path / "copy")
    argv = ["train", "--resume", str(tmp_path / "run"), "--test-only", "--data-path", str(tmp_path / "copy")]
    capsys.readouterr()
    code, printed = main([*argv, "-j", "0", "--no-progress"]), capsys.readouterr()
    assert code == 0 and "on 6 images" in printed.out, printed.err  # as a folder: "other names"


def test_resuming_a_last_pt_of_an_older_version_says_what_it_may_have_done_otherwise() -> None:
    """Its files cannot tell whether its lr column is one epoch ahead, or whether --no-photometric kept
    the lighting noise there: both changed before the state's version did."""
    from googlenet.train.checkpoint import TRAIN_STATE_VERSION
    from googlenet.train.engine import older_run_notes

    assert TRAIN_STATE_VERSION == 2
    no_photometric = resolve({}, {"augment.photometric": False})
    notes = older_run_notes({"version": 1, "history": [{"epoch": 0}]}, no_photometric)
    assert len(notes) == 2 and "one epoch ahead" in notes[0] and "lighting 0.1" in notes[1]
    assert older_run_notes({"version": 1}, resolve({}, {})) == []  # nothing trained, nothing changed
    assert older_run_notes({"version": 2, "history": [{"epoch": 0}]}, no_photometric) == []


def test_the_data_line_says_what_each_epoch_leaves_out_and_that_top5_says_nothing(
    tiny_data: Path, tmp_path: Path
) -> None:
    """12 images at batch 5 left 2 out of every epoch unsaid; with 3 classes top-5 is 100% by construction."""
    fit(
        tiny(
            tiny_data, tmp_path / "run", **{"optim.batch_size": 5, "run.epochs": 1, "model.aux_logits": False}
        )
    )
    log = (tmp_path / "run" / "train.log").read_text()
    assert "2 steps per epoch (2 image(s) left out of each epoch, other ones each time)" in log
    assert "; top-5 is always 100% with 5 classes or fewer" in log
    rate = re.search(r"\| train ([0-9.e+]+) img/s \| epoch [0-9.]+s with val, ETA", log)
    assert rate and float(rate.group(1)) > 0, log
    from googlenet.train.epochs import rate_text

    assert [rate_text(v) for v in (0.42, 9.96, 10.4, 229.4)] == [
        "0.42",
        "10",
        "10",
        "229",
    ]  # 0.4 printed as 0
    assert (
        log.splitlines()[-1].split(": ", 1)[1].startswith("completed: val top-1 raw ")
    )  # the closing line too


def test_a_log_without_a_bar_gets_progress_lines_within_an_epoch(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redirected or under nohup, an epoch (hours on ImageNet) wrote no line until it ended."""
    monkeypatch.setattr(engine, "PROGRESS_LINE_EVERY_S", 0.0)  # every step, here
    fit(
        tiny(
            tiny_data, tmp_path / "run", **{"run.epochs": 1, "run.progress": True, "model.aux_logits": False}
        )
    )
    log = (tmp_path / "run" / "train.log").read_text()
    lines = re.findall(
        r"epoch 1 step (\d)/3 \((\d+)%\) \| loss [0-9.]+ \| lr 0.01 \| [0-9.]+ img/s \| epoch ETA 0:00:\d\d",
        log,
    )
    assert lines == [("1", "33"), ("2", "67"), ("3", "100")], log


def test_an_ensemble_extended_twice_resumes_each_time(tiny_data: Path, tmp_path: Path) -> None:
    """A member resumed with more epochs records its kept average start (average.start 0 where the
    ensemble's file says 0.5): the next resume took that for an edit of the file and refused."""
    out = tmp_path / "ensemble"
    argv = ["train", "--data-path", str(tiny_data), "-j", "0", "--input-size", "64", "-b", "4", "--no-aux",
            "--seed", "0", "--no-progress", "--ensemble", "2", "--output-dir", str(out),
            "--train-eval-samples", "0", "--average-start", "0.5"]  # fmt: skip
    assert main([*argv, "--epochs", "1"]) == 0
    for epochs in ("2", "3"):
        assert main(["train", "--resume", str(out), "--epochs", epochs, "--no-progress"]) == 0
    assert json.loads((out / "member-1" / "results.json").read_text())["epochs"] == 3


def test_loader_processes_are_kept_between_epochs_where_they_start_slowly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import multiprocessing

    import googlenet.train.inputs as inputs

    for method, kept in (("fork", False), ("spawn", True), ("forkserver", True)):  # forkserver: Python 3.14
        monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False, m=method: m)
        assert inputs.keeps_workers(2) is kept and not inputs.keeps_workers(0), method


@pytest.mark.parametrize("variant", ["paper", "bn"])
def test_kept_loader_processes_train_the_same_run_and_stop_with_it(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """Under spawn or forkserver a run keeps its loader processes from epoch to epoch (each start imports
    PyTorch anew: 7.5 s an epoch of a small run there, 1 s with them kept); kept here under fork, to
    run fast. The run is bit-identical to one without loader processes, the processes start once per
    loader (`bn`'s pass over one batch for its averaged statistics stops the training loader's early,
    so it starts anew), and none is left when the run ends."""
    import multiprocessing
    import os

    import googlenet.train.inputs as inputs

    if multiprocessing.get_start_method() != "fork":  # its counter is a local function: forked, not pickled
        pytest.skip("counts forked loader processes; the spawn test below runs the real thing")
    starts = tmp_path / "starts"
    starts.mkdir()

    original = inputs.ignore_stop_signals

    def counted(worker_id: int) -> None:
        (starts / str(os.getpid())).touch()
        original(worker_id)

    flags = {"model.variant": variant, "run.epochs": 4, "average.bn_batches": 1}
    plain = fit(tiny(tiny_data, tmp_path / "plain", **flags))
    monkeypatch.setattr(inputs, "ignore_stop_signals", counted)
    monkeypatch.setattr(engine, "keeps_workers", lambda workers: workers > 0)
    kept = fit(tiny(tiny_data, tmp_path / "kept", **flags, **{"data.workers": 2}))
    assert multiprocessing.active_children() == []
    _assert_identical_training_state(tmp_path / "plain" / "last.pt", tmp_path / "kept" / "last.pt")
    assert (kept["val_top1_raw"], kept["val_top1_avg"]) == (plain["val_top1_raw"], plain["val_top1_avg"])
    left, right = (
        torch.load(tmp_path / run / "final.pt", weights_only=True)["state_dict"] for run in ("plain", "kept")
    )
    assert all(torch.equal(left[key], right[key]) for key in left)
    # 2 processes a loader: training, validation, the training subset's evaluation, once for the run
    # (started anew every epoch before); `bn`'s one-batch pass at the end of epoch 3 (the first averaged)
    # stops training's, which starts anew for epoch 4
    assert len(list(starts.iterdir())) == (6 if variant == "paper" else 8)


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_a_run_under_spawn_keeps_its_loader_processes_and_trains_as_under_fork(tmp_path: Path) -> None:
    """The real thing: loader processes started by spawn (macOS's and Windows' start method) receive the
    dataset and sampler pickled, are kept between epochs, and the run's weights are fork's."""
    import os
    import subprocess
    import sys

    data = make_tiny_data(tmp_path / "data")
    program = (
        "import multiprocessing, os, sys\n"
        "from googlenet.data.datasets import ignore_stop_signals\n"
        "def counted(worker_id):\n"  # at module level: spawn's processes receive it pickled
        "    open(os.path.join(os.environ['STARTS'], str(os.getpid())), 'w').close()\n"
        "    ignore_stop_signals(worker_id)\n"
        "if __name__ == '__main__':\n"
        "    multiprocessing.set_start_method(sys.argv[1], force=True)\n"
        "    import googlenet.train.inputs\n"
        "    from googlenet.cli import main\n"
        "    googlenet.train.inputs.ignore_stop_signals = counted\n"
        "    sys.exit(main(['train', '--data-path', sys.argv[2], '-o', sys.argv[3], '-j', '2', '--epochs', '3',\n"
        "                   '--input-size', '64', '-b', '4', '--seed', '0', '--deterministic', '--no-progress',\n"
        "                   '--train-eval-samples', '6']))\n"
    )
    script = tmp_path / "run.py"
    script.write_text(program)
    starts = {}
    for method in ("fork", "spawn"):
        folder = tmp_path / f"starts-{method}"
        folder.mkdir()
        done = subprocess.run([sys.executable, str(script), method, str(data), str(tmp_path / method)],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "STARTS": str(folder)})  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        starts[method] = len(list(folder.iterdir()))
    # 2 processes for each of 3 loaders (training, validation, the training subset's evaluation): once
    # for the run under spawn; every epoch under fork, where a start costs milliseconds
    assert starts == {"fork": 18, "spawn": 6}
    left, right = (
        torch.load(tmp_path / m / "final.pt", weights_only=True)["state_dict"] for m in ("fork", "spawn")
    )
    assert all(torch.equal(left[key], right[key]) for key in left)


def test_an_epoch_resumed_mid_way_counts_its_time_before_the_stop(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """metrics.csv's epoch_time_s (and the ETA drawn from it) of a resumed epoch counted the new session
    only, while its img/s counted both: 2.9 img/s over 288 images (100 s) in an epoch of "29.8 s"."""
    import time

    slow = engine._Trainer._after_step

    def after_step(self: Any, result: Any) -> None:
        time.sleep(1.0)  # the first session's two steps take 2 s or more
        slow(self, result)

    monkeypatch.setattr(engine._Trainer, "_after_step", after_step)
    run = tmp_path / "run"
    assert fit(tiny(tiny_data, run, **{"run.stop_after_steps": 2}))["status"] == "stopped"
    monkeypatch.undo()
    assert fit(tiny(tiny_data, run), resume=run / "last.pt")["status"] == "completed"
    with open(run / "metrics.csv", newline="") as handle:
        first = next(csv.DictReader(handle))
    training_s = 12 / float(first["img_per_s"])  # 3 steps of 4 images, over both sessions
    assert float(first["epoch_time_s"]) >= max(2.0, training_s)
