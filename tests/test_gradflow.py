"""Gradient-flow recording: per-layer norms at the chosen steps, before clipping, kept across a resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import make_tiny_data
from googlenet.errors import ConfigError
from googlenet.model.weights import read_checkpoint
from googlenet.train.config import TrainConfig, resolve
from googlenet.train.engine import fit
from googlenet.train.gradflow import (
    GradNormRecorder,
    load_grad_norms,
    measured_layers,
    plot_grad_norms,
    plot_grad_split,
    save_grad_norms,
    split_profile,
    split_stage_table,
    trunk_profile,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.aux1 = nn.Linear(4, 2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x).mean(dim=(2, 3))
        return self.fc(f) + 0.5 * self.aux1(f)


def _step(model: nn.Module, recorder: GradNormRecorder, step: int) -> None:
    recorder.arm(step)
    model.zero_grad(set_to_none=True)
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    recorder.commit(step)


def test_recorder_takes_the_first_and_every_nth_step_with_exact_norms(tmp_path: Path) -> None:
    model = Tiny()
    recorder = GradNormRecorder(model, every=3)
    for step in range(1, 7):
        _step(model, recorder, step)
    assert sorted({r["step"] for r in recorder.rows}) == [1, 3, 6]
    assert [r["layer"] for r in recorder.rows if r["step"] == 6] == ["conv", "aux1", "fc"]
    assert [r["aux"] for r in recorder.rows if r["step"] == 6] == [False, True, False]
    expected = torch.cat([model.fc.weight.grad.flatten(), model.fc.bias.grad.flatten()]).norm().item()
    fc6 = next(r for r in recorder.rows if r["step"] == 6 and r["layer"] == "fc")
    assert fc6["norm"] == pytest.approx(expected, rel=1e-5)  # step 6 was the last backward pass

    recorder.write(tmp_path)
    loaded = load_grad_norms(tmp_path)
    assert [(r["step"], r["layer"], r["aux"]) for r in loaded] == [
        (r["step"], r["layer"], r["aux"]) for r in recorder.rows
    ]
    assert (tmp_path / "grad_norms.json").is_file()
    # after every epoch the CSV gets the new rows appended; the JSON waits for the run's end
    (tmp_path / "grad_norms.json").unlink()
    for step in range(7, 13):
        _step(model, recorder, step)
        recorder.write(tmp_path, final=False)
    _step(model, recorder, 12)  # a step taken again (after a resume) replaces its rows
    recorder.write(tmp_path, final=False)
    assert [(r["step"], r["layer"]) for r in load_grad_norms(tmp_path)] == [
        (r["step"], r["layer"]) for r in recorder.rows
    ]
    assert sorted({r["step"] for r in recorder.rows}) == [1, 3, 6, 9, 12]
    assert not (tmp_path / "grad_norms.json").exists()
    # an append cut short by a kill: its partial last line is dropped (those steps come again)
    with open(tmp_path / "grad_norms.csv", "a") as handle:
        handle.write("15,2,fc,Fal")
    assert len(load_grad_norms(tmp_path)) == len(recorder.rows)
    recorder.truncate(3)
    assert max(r["step"] for r in recorder.rows) == 3
    recorder.write(tmp_path)  # rewritten whole after a truncation
    assert len(load_grad_norms(tmp_path)) == len(recorder.rows) and (tmp_path / "grad_norms.json").is_file()
    recorder.close()
    _step(model, recorder, 9)  # hooks removed: nothing more is recorded
    assert max(r["step"] for r in recorder.rows) == 3


def test_norms_leave_out_the_fp16_loss_scale_and_skip_overflowed_steps() -> None:
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(2, 3, 8, 8)
    plain = GradNormRecorder(model, every=1)
    plain.arm(1)
    model(x).square().sum().backward()
    plain.commit(1)
    plain.close()
    scale = {"value": 1024.0}
    scaled = GradNormRecorder(model, every=1, loss_scale=lambda: scale["value"])
    for step, factor in ((1, 1024.0), (2, float("inf"))):  # step 2 overflows: GradScaler skips it
        scaled.arm(step)
        model.zero_grad(set_to_none=True)
        (model(x).square().sum() * factor).backward()
        scaled.commit(step)
    assert {r["step"] for r in scaled.rows} == {1}
    assert [r["norm"] for r in scaled.rows] == pytest.approx([r["norm"] for r in plain.rows], rel=1e-5)


def test_the_auxiliary_part_is_taken_through_the_loss_scale_as_the_whole_is() -> None:
    """In fp16 the unscaled auxiliary loss's gradient underflowed (0 here; 1.45% off at conv1 in a
    larger test) while the whole gradient came through the GradScaler's scale."""

    class TwoHeads(Tiny):
        def forward(self, x: torch.Tensor) -> Any:
            f = self.conv(x).mean(dim=(2, 3))
            return self.fc(f), self.aux1(f)

    torch.manual_seed(0)
    reference, x = TwoHeads(), torch.randn(2, 3, 8, 8)
    _, aux = reference(x)
    grads = torch.autograd.grad(aux.sum() * 1e-6, [reference.conv.weight, reference.conv.bias])
    expected = torch.cat([g.flatten() for g in grads]).norm().item()
    model = TwoHeads().half()
    model.load_state_dict({k: v.half() for k, v in reference.state_dict().items()})
    recorder = GradNormRecorder(model, every=1, loss_scale=lambda: 1024.0)
    recorder.arm(1)
    main, aux = model(x.half())
    aux_loss = aux.sum() * 1e-6
    recorder.split(aux_loss)
    ((main.sum() + aux_loss) * 1024.0).backward()
    recorder.commit(1)
    conv = next(r for r in recorder.rows if r["layer"] == "conv")
    assert conv["norm_aux"] == pytest.approx(expected, rel=1e-3)


def test_profile_and_plot_leave_out_the_auxiliary_heads(tmp_path: Path) -> None:
    rows = [
        {"step": s, "depth": d, "layer": name, "aux": name.startswith("aux"), "norm": n}
        for s in (1, 10)
        for d, (name, n) in enumerate((("conv1.conv", 1.0), ("aux1.fc", 5.0), ("fc", 4.0)))
    ]
    assert trunk_profile(rows) == {"conv1.conv": 1.0, "fc": 4.0}
    save_grad_norms(tmp_path, rows, 10)
    plot_grad_norms({"a": rows, "b": load_grad_norms(tmp_path)}, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grad_norms_every_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="grad_norms_every"):
        resolve({}, {"run.grad_norms_every": -1})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("gradflow"))


def _tiny(data: Path, out: Path, **flags: Any) -> TrainConfig:
    base = {
        "data.data_path": str(data), "data.workers": 0, "data.train_eval_samples": 0, "model.input_size": 64,
        "optim.batch_size": 4, "run.epochs": 2, "run.seed": 0, "run.deterministic": True,
        "run.progress": False, "run.output_dir": str(out), "run.grad_norms_every": 2,
        "optim.clip_grad_norm": 1e-3, "model.lrn": False,
    }  # fmt: skip
    return resolve({}, {**base, **flags})


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_training_records_every_layer_before_clipping_and_resume_keeps_them(
    tiny_data: Path, tmp_path: Path, one_thread: None
) -> None:
    fit(_tiny(tiny_data, tmp_path / "straight"))
    rows = load_grad_norms(tmp_path / "straight")
    assert sorted({r["step"] for r in rows}) == [1, 2, 4, 6]  # 3 steps per epoch, 2 epochs
    checkpoint = read_checkpoint(tmp_path / "straight" / "final.pt")
    assert checkpoint["model_config"]["lrn"] is False  # --no-lrn reached the model
    from googlenet.model.googlenet import build_from_config

    model = build_from_config(checkpoint["model_config"])
    layers = [name for name, _ in measured_layers(model)]
    assert [r["layer"] for r in rows if r["step"] == 6] == layers  # every conv and linear, aux heads too
    assert any(r["aux"] for r in rows)
    # Clipped at 1e-3 overall, yet each layer's recorded norm is the raw one.
    assert sum(r["norm"] ** 2 for r in rows if r["step"] == 1) ** 0.5 > 1e-2
    # Each step is split into the main loss's and the auxiliary losses' parts, on the same weights.
    last = {r["layer"]: r for r in rows if r["step"] == 6}
    above = [name for name in layers if name.startswith(("inception4e", "inception5", "fc"))]
    below = [name for name in layers if name.startswith(("conv", "inception3", "inception4a"))]
    assert all(
        last[n]["norm_aux"] == 0 and last[n]["norm_main"] == pytest.approx(last[n]["norm"]) for n in above
    )
    heads = [name for name in layers if name.startswith("aux")]
    assert all(last[n]["norm_main"] == pytest.approx(0, abs=1e-6 * last[n]["norm"]) for n in heads)
    assert all(last[n]["norm_aux"] == pytest.approx(last[n]["norm"], rel=1e-4) for n in heads)
    for name in below:  # both reach the stem; the parts add up as vectors (triangle inequality)
        main, aux, whole = last[name]["norm_main"], last[name]["norm_aux"], last[name]["norm"]
        assert main > 0 and aux > 0 and abs(main - aux) <= whole * (1 + 1e-4) <= (main + aux) * (1 + 1e-4)
    assert split_profile(rows) and plot_grad_split(rows, tmp_path / "split.png")
    assert (tmp_path / "straight" / "grad_split.png").is_file()
    table = {row["stage"]: row for row in split_stage_table(rows)}
    assert table["inception5b"]["aux"] == 0 and table["inception3a"]["aux/main"] > 0
    assert table["inception5b"]["cosine"] == "" and -1.001 <= table["inception3a"]["cosine"] <= 1.001
    assert table["inception5b"]["whole/main"] == pytest.approx(1.0, rel=1e-4)  # no auxiliary loss reaches it
    assert (
        (tmp_path / "straight" / "grad_split.csv")
        .read_text()
        .startswith("stage,main,aux,aux/main,cosine,whole/main\n")
    )

    fit(_tiny(tiny_data, tmp_path / "resumed", **{"run.stop_after_steps": 4}))
    fit(_tiny(tiny_data, tmp_path / "resumed"), resume=tmp_path / "resumed")
    resumed = load_grad_norms(tmp_path / "resumed")
    assert [(r["step"], r["layer"]) for r in resumed] == [(r["step"], r["layer"]) for r in rows]
    for a, b in zip(resumed, rows, strict=True):
        assert a["norm"] == pytest.approx(b["norm"], rel=1e-4)
