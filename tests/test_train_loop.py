"""The training loop: section 5's weighted loss, top-k counting, NaN/Inf handling, stopping, evaluation."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from googlenet.train.loop import (
    EpochMeter,
    NonFiniteLossError,
    correct_topk,
    evaluate,
    evaluate_models,
    head_losses,
    split_heads,
    train_one_epoch,
    weighted_loss,
)

CPU = torch.device("cpu")


def test_aux_weighted_loss_matches_hand_computation() -> None:
    main = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    aux1 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    aux2 = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 1])

    def ce(logits: list[float], label: int) -> float:
        return -logits[label] + math.log(sum(math.exp(v) for v in logits))

    hand_main = (ce([2, 0, 0], 0) + ce([0, 1, 0], 1)) / 2
    hand_aux1 = (ce([0, 0, 0], 0) + ce([1, 0, 0], 1)) / 2
    hand_aux2 = (ce([0, 3, 0], 0) + ce([0, 0, 0], 1)) / 2
    losses = head_losses((main, aux1, aux2), target)
    assert [x.item() for x in losses] == pytest.approx([hand_main, hand_aux1, hand_aux2], rel=1e-6)
    total = weighted_loss(losses, 0.3)  # section 5
    assert total.item() == pytest.approx(hand_main + 0.3 * (hand_aux1 + hand_aux2), rel=1e-6)
    assert weighted_loss(losses, 1.0).item() == pytest.approx(hand_main + hand_aux1 + hand_aux2, rel=1e-6)
    assert weighted_loss(head_losses(main, target), 0.3).item() == pytest.approx(hand_main, rel=1e-6)


def test_split_heads_drops_absent_aux() -> None:
    logits = torch.zeros(2, 3)
    assert split_heads(logits)[1] == []
    main, aux = split_heads((logits, None, None))
    assert main is logits and aux == []


def test_correct_topk_counts_and_caps_k() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 1, 0])
    assert correct_topk(logits, target, (1, 2)) == [1, 2]
    assert correct_topk(logits, target, (1, 5)) == [1, 3]  # only 3 classes: top-5 is everything


def test_correct_topk_counts_ties_as_evaluate_does() -> None:
    # A collapsed model: every class scores the same. torch.topk would pick an order of its own;
    # training's validation must give the expected hit, as `evaluate` does (1/10 for top-1, 5/10 for top-5).
    logits = torch.zeros(4, 10)
    target = torch.tensor([0, 3, 7, 9])
    top1, top5 = correct_topk(logits, target)
    assert top1 == pytest.approx(4 * 0.1) and top5 == pytest.approx(4 * 0.5)
    logits[0, 0] = 1.0  # image 0 right outright; the other three stay ten-way ties
    logits[1, 5] = 1.0  # image 1 now has a class above its target: top-1 miss, top-5 4/9
    top1, top5 = correct_topk(logits, target)
    assert top1 == pytest.approx(1 + 2 * 0.1) and top5 == pytest.approx(1 + 4 / 9 + 2 * 0.5)


class _Toy(nn.Module):
    """A linear classifier with two 'auxiliary heads'; can be told to emit NaN at given calls."""

    def __init__(self, nan_at: set[int] | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 3)
        self.calls = 0
        self.nan_at = nan_at or set()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.calls += 1
        out = self.fc(x)
        if self.calls in self.nan_at:
            out = out * float("nan")
        return out, self.aux(x), self.aux(x) * 2


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(4, 4, generator=generator), torch.randint(0, 3, (4,), generator=generator))
        for _ in range(n)
    ]


def test_nonfinite_loss_stops_naming_the_step_before_any_update() -> None:
    model = _Toy(nan_at={3})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    snapshot: dict[str, torch.Tensor] = {}

    def remember(result: object) -> None:
        snapshot.update({k: v.clone() for k, v in model.state_dict().items()})

    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss \(nan\) at step 3 of epoch 8 \(global step 13\)"
    ):
        train_one_epoch(
            model, _batches(5), optimizer, device=CPU, epoch=7, global_step=10, after_step=remember
        )
    # The weights are those after the last good step (step 1): the bad step touched nothing.
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshot[key])


def test_skip_nonfinite_skips_and_counts() -> None:
    model = _Toy(nan_at={2})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    meter, stopped = train_one_epoch(
        model, _batches(4), optimizer, device=CPU, epoch=0, scheduler=scheduler, skip_nonfinite=True
    )
    assert not stopped
    assert meter.skipped == 1 and meter.steps == 3 and meter.samples == 12
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)  # the schedule kept going
    assert all(torch.isfinite(p).all() for p in model.parameters())
    summary = meter.summary()
    assert set(summary) >= {"loss_main", "loss_aux1", "loss_aux2", "loss_total", "top1", "top5"}
    assert summary["skipped_steps"] == 1


def test_stop_request_finishes_the_current_step() -> None:
    model = _Toy()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen: list[int] = []
    meter, stopped = train_one_epoch(
        model,
        _batches(6),
        optimizer,
        device=CPU,
        epoch=0,
        stop_requested=lambda global_step: global_step >= 2,
        after_step=lambda result: seen.append(result.global_step),
    )
    assert stopped and seen == [1, 2] and meter.steps == 2


def test_meter_state_round_trip() -> None:
    meter = EpochMeter()
    meter.add([1.0, 2.0, 3.0], 2.5, [1, 2], 4)
    again = EpochMeter()
    again.load_state_dict(meter.state_dict())
    assert again.summary() == meter.summary()
    assert meter.summary()["loss_aux2"] == pytest.approx(3.0)
    assert meter.summary()["top5"] == pytest.approx(50.0)


def test_evaluate_reports_loss_and_accuracy() -> None:
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    images = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1, 1, 2])  # two right, two wrong
    metrics = evaluate(model, [(images[:2], target[:2]), (images[2:], target[2:])], device=CPU)
    assert metrics["top1"] == pytest.approx(50.0)
    assert metrics["samples"] == 4
    expected = nn.functional.cross_entropy(model(images), target).item()
    assert metrics["loss"] == pytest.approx(expected, rel=1e-6)
    assert model.training  # mode restored


def test_evaluate_models_reads_each_batch_once_and_matches_separate_calls() -> None:
    torch.manual_seed(0)
    models = [nn.Linear(4, 5), nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5))]
    models[1].eval()  # its mode must come back as it was, like the first one's
    data = [(torch.randn(6, 4), torch.randint(0, 5, (6,))) for _ in range(3)]
    reads = []

    def loader():  # type: ignore[no-untyped-def]
        for batch in data:
            reads.append(1)
            yield batch

    together = evaluate_models(models, loader(), device=CPU)
    assert len(reads) == len(data)  # one pass for both models
    separate = [evaluate(model, data, device=CPU) for model in models]
    assert together == separate
    assert models[0].training and not models[1].training


def test_a_long_validation_says_how_far_it_is(caplog: pytest.LogCaptureFixture) -> None:
    """A validation of ImageNet's 50,000 images ran for minutes without a line, past the promised
    line a minute, in a log file or nohup.out."""
    torch.manual_seed(0)
    data = [(torch.randn(6, 4), torch.randint(0, 5, (6,))) for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="googlenet"):
        quiet = evaluate_models([nn.Linear(4, 5)], data, device=CPU)
        assert not caplog.records
        said = evaluate_models(
            [nn.Linear(4, 5)], data, device=CPU, progress_every_s=0.0, desc="epoch 3 validation"
        )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[1].startswith("epoch 3 validation batch 2/3 | ") and "ETA" in lines[1]
    assert said[0]["samples"] == quiet[0]["samples"] == 18
    caplog.clear()  # on a terminal: the bar alone
    with caplog.at_level(logging.INFO, logger="googlenet"):
        evaluate_models([nn.Linear(4, 5)], data, device=CPU, progress=True, progress_every_s=0.0)
    assert not caplog.records


def test_the_speed_settings_keep_the_numerics() -> None:
    """channels_last and fused SGD (what `googlenet train` runs) take the same steps as NCHW and the
    plain for-loop SGD, to float rounding: the network, its heads and its updates, on three steps."""
    from googlenet.model.googlenet import build_model

    torch.manual_seed(0)
    reference = build_model("paper", num_classes=3, dropout=0.0, aux_dropout=0.0)
    fast = build_model("paper", num_classes=3, dropout=0.0, aux_dropout=0.0)
    fast.load_state_dict(reference.state_dict())
    before = [p.detach().clone() for p in reference.parameters()]
    fast.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(2, 3, 64, 64, generator=generator), torch.tensor([0, 2])) for _ in range(3)]
    for model, fused, channels_last in ((reference, False, False), (fast, True, True)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4,
                                    foreach=False, fused=fused)  # fmt: skip
        train_one_epoch(model, batches, optimizer, device=CPU, epoch=0, channels_last=channels_last)
    apart = max(
        (a - b).abs().max().item() for a, b in zip(reference.parameters(), fast.parameters(), strict=True)
    )
    moved = max((a - b).abs().max().item() for a, b in zip(reference.parameters(), before, strict=True))
    assert moved > 1e-3 and apart < 1e-3 * moved  # the steps moved the weights, both ways alike


def test_an_epoch_of_skipped_steps_has_no_loss_rather_than_zero() -> None:
    from googlenet.train.loop import EpochMeter

    meter = EpochMeter(skipped=5, steps=5)  # every step non-finite and skipped
    summary = meter.summary()
    assert all(math.isnan(summary[key]) for key in ("loss_total", "top1", "top5")), summary


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), (torch.float16, True)), ((7, 0), (torch.float16, True)),
                                                      ((8, 0), (torch.bfloat16, False)), ((9, 0), (torch.bfloat16, False))])  # fmt: skip
def test_amp_auto_on_a_gpu_is_fp16_where_bf16_is_emulated(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: tuple[torch.dtype, bool]
) -> None:
    """--amp-dtype auto: bf16 on compute capability 8.0 and later, else fp16 with a GradScaler. On a T4 or
    V100 `torch.cuda.is_bf16_supported()` says True (it can hold a bf16 tensor; bf16 is emulated and
    cuDNN has no bf16 convolutions there), so asking it chose bf16 everywhere. Simulated GPU."""
    from googlenet.train.loop import autocast_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_for(torch.device("cuda", 0), True, "auto") == expected
    assert autocast_for(torch.device("cuda", 0), True, "bf16") == (torch.bfloat16, False)  # asked for: kept
