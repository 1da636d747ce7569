"""The inference engine: fused network and every backend give the eval-mode model's logits."""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

import googlenet
from extras import missing, require
from googlenet.errors import ConfigError
from googlenet.infer import available_backends, export_onnx, fuse, optimize
from googlenet.infer.fused import FusedInception

SIZE = 64


def _trained_like(variant: str) -> googlenet.GoogLeNet:
    """A model whose BatchNorm layers are not the identity (random statistics and affine terms)."""
    torch.manual_seed(0)
    model = googlenet.build_model(variant, num_classes=7)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("fuse_1x1", [True, False])
@pytest.mark.parametrize("variant", ["paper", "bn", "torchvision"])
def test_fused_network_matches_eval_model(variant: str, fuse_1x1: bool, one_thread: None) -> None:
    model = _trained_like(variant)
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
        got = fuse(model, fuse_1x1)(x)
    assert _relative(got, expected) < 1e-5


def test_fusion_stacks_the_three_1x1_convolutions_and_leaves_the_model_alone() -> None:
    model = _trained_like("bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse(model)
    module = fused.inception3a
    assert isinstance(module, FusedInception)
    spec = model.inception3a.spec
    assert module.splits == [spec.n1x1, spec.n3x3red, spec.n5x5red]
    assert module.reduce.weight.shape == (spec.n1x1 + spec.n3x3red + spec.n5x5red, 192, 1, 1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_openvino_refusing_a_small_input_is_one_line_and_auto_goes_on(one_thread: None) -> None:
    """Below 47 px OpenVINO refuses the paper network's graph (maxpool4's 3x3 window over a 2x2 map):
    `--engine openvino` was a C++ failure report as a traceback."""
    if "openvino" not in available_backends("fp32"):
        missing("openvino is not installed (pip install googlenet[fast])")
    model = googlenet.build_model("paper", num_classes=3).eval()
    with pytest.raises(ConfigError) as info:
        optimize(model, backend="openvino", input_size=40)
    text = str(info.value)
    assert "\n" not in text and "input size 40 (below 47 px" in text and "--engine onnxruntime" in text
    assert "Model wasn't fully converted; use another backend" in text
    fast = optimize(model, backend="auto", input_size=40)
    assert fast.backend != "openvino"
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert _relative(fast(x), model(x)) < 1e-4


@pytest.mark.parametrize("variant", ["paper", "bn"])
@pytest.mark.parametrize(
    "backend", ["eager", "onnxruntime", "openvino", pytest.param("compile", marks=pytest.mark.slow)]
)
def test_fp32_backends_match_eager_within_1e_4(variant: str, backend: str, one_thread: None) -> None:
    if backend not in available_backends("fp32"):
        missing(f"{backend} is not installed (pip install googlenet[fast])")
    model = _trained_like(variant)
    x = torch.randn(5, 3, SIZE, SIZE)  # a batch size the export never saw: the batch is dynamic
    with torch.no_grad():
        expected = model(x)
    torch.manual_seed(11)
    fast = optimize(model, backend=backend, input_size=SIZE)
    drawn = torch.rand(3)
    torch.manual_seed(11)
    assert torch.equal(drawn, torch.rand(3))  # building it left the caller's random stream alone
    assert fast.backend == backend and fast.precision == "fp32"
    got = fast(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert _relative(got, expected) < 1e-4
    # An image with a NaN gets NaN logits, the others theirs (OpenVINO's kernels drop NaN by themselves).
    spoilt = x.clone()
    spoilt[1, 0, 3, 3] = float("nan")
    answer = fast(spoilt)
    assert answer[1].isnan().all() and _relative(answer[[0, 2, 3, 4]], expected[[0, 2, 3, 4]]) < 1e-4
    # Two threads at once (OpenVINO's one request used to refuse the second: "Infer Request is busy").
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: [fast(x) for _ in range(5)], range(2)))
    assert all(_relative(logits, expected) < 1e-4 for calls in both for logits in calls)
    # The input is checked before the backend sees it: the same errors whichever backend "auto" keeps.
    assert fast(x[:0]).shape == (0, 7)
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        fast(x[0])
    other = torch.randn(2, 3, SIZE + 32, SIZE + 32)
    if backend in ("eager", "compile"):  # takes any size (compile: compiling again)
        assert fast(other).shape == (2, 7)
    else:  # an ONNX export runs the size it was made for
        with pytest.raises(ValueError, match=f"runs {SIZE}x{SIZE} input, got {SIZE + 32}x{SIZE + 32}"):
            fast(other)


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_streams_give_the_one_engine_logits_at_every_batch_size(one_thread: None) -> None:
    backend, precision = "onnxruntime", "fp32"
    if backend not in available_backends(precision):
        missing(f"{backend} is not installed (pip install googlenet[fast])")
    model = _trained_like("bn")
    torch.set_num_threads(3)  # one per stream (the fixture restores the count)
    one = optimize(model, precision, backend, input_size=SIZE, streams=1)
    three = optimize(model, precision, backend, input_size=SIZE, streams=3)
    assert (one.streams, three.streams) == (1, 3) and three.describe() == f"{backend} {precision}, 3 streams"
    for n in (1, 2, 3, 7):  # fewer images than streams, exactly as many, and a remainder
        x = torch.randn(n, 3, SIZE, SIZE)
        got, expected = three(x), one(x)
        assert got.shape == (n, 7)
        assert _relative(got, expected) < 1e-5


def test_a_batch_is_cut_into_equal_slices_and_the_rest_runs_on_every_thread() -> None:
    import numpy as np

    from googlenet.infer.optimize import _in_streams

    seen: list[tuple[str, list[int]]] = []

    def start(i: int, part: np.ndarray) -> Callable[[], np.ndarray]:
        seen.append((f"stream {i}", part.tolist()))
        return lambda: part * 10

    def whole(part: np.ndarray) -> np.ndarray:
        seen.append(("whole", part.tolist()))
        return part * 10

    assert _in_streams(np.arange(8), 3, start, whole).tolist() == [0, 10, 20, 30, 40, 50, 60, 70]
    assert seen == [("stream 0", [0, 1]), ("stream 1", [2, 3]), ("stream 2", [4, 5]), ("whole", [6, 7])]
    seen.clear()
    assert _in_streams(np.arange(2), 3, start, whole).tolist() == [0, 10]
    assert seen == [("whole", [0, 1])]


def test_streams_default_to_one_per_thread_for_onnxruntime_on_the_cpu(one_thread: None) -> None:
    from googlenet.infer.optimize import _streams_for

    cpu = torch.device("cpu")
    assert _streams_for("onnxruntime", cpu, None) == 1  # one thread here (the fixture)
    torch.set_num_threads(2)
    assert [_streams_for(b, cpu, None) for b in ("onnxruntime", "openvino", "eager", "compile")] == [
        2,
        1,
        1,
        1,
    ]
    assert _streams_for("onnxruntime", torch.device("cuda"), None) == 1
    assert _streams_for("onnxruntime", cpu, 4) == 2  # at most one per thread
    assert _streams_for("onnxruntime", cpu, 1) == 1
    assert optimize(_trained_like("paper"), backend="eager", streams=4).streams == 1
    with pytest.raises(ConfigError, match="streams"):
        optimize(_trained_like("paper"), backend="eager", streams=0)


def test_bf16_eager_stays_close_to_fp32(one_thread: None) -> None:
    model = _trained_like("paper")  # with LRN, which has no bf16 kernel of its own
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
    got = optimize(model, precision="bf16", backend="eager", input_size=SIZE)(x)
    assert got.dtype == torch.float32
    assert _relative(got, expected) < 3e-2


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_auto_times_the_candidates_and_keeps_the_fastest(one_thread: None) -> None:
    model = _trained_like("bn")
    fast = optimize(model, input_size=SIZE, batch_size=2)
    candidates = [b for b in available_backends("fp32") if b != "compile"]
    assert set(fast.timings_ms) == set(candidates)
    decided_on = fast.retimed_ms or fast.timings_ms  # the two closest again, when they were close
    assert fast.backend == min(decided_on, key=decided_on.__getitem__)
    assert set(fast.retimed_ms) <= set(candidates) and len(fast.retimed_ms) in (0, 2)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert _relative(fast(x), model(x)) < 1e-4


def test_bad_arguments_are_config_errors() -> None:
    model = _trained_like("paper")
    with pytest.raises(ConfigError, match="precision"):
        optimize(model, precision="fp16")
    with pytest.raises(ConfigError, match="backend"):
        optimize(model, backend="tensorrt")
    if importlib.util.find_spec("onnxruntime") is not None:
        with pytest.raises(ConfigError, match=r"not available .*; ONNX Runtime runs fp32 only"):
            optimize(model, precision="bf16", backend="onnxruntime")  # installed: not "comes with [fast]"
    with pytest.raises(TypeError, match="GoogLeNet"):
        fuse(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    # each argument named in its own words, before any work (they were taken as 224, timed an empty
    # batch, dropped a misspelt backend, or failed deep in torch's exporter)
    mistakes: list[tuple[dict[str, Any], str]] = [
        ({"input_size": 0}, "input_size: must be a whole number >= 32, got 0"),
        ({"input_size": 16, "backend": "eager"}, "input_size: must be a whole number >= 32, got 16"),
        ({"batch_size": 0}, "batch_size: must be a whole number >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size: must be a whole number >= 1, got 2.5"),
        ({"candidates": ["eager", "onnxrt"]}, "candidates: unknown backend 'onnxrt'"),
        ({"candidates": "eager"}, "candidates: must be a list of backend names, got 'eager'"),
        ({"candidates": ["eager"], "backend": "eager"}, "candidates: only for backend='auto'"),
        ({"fuse_1x1": "yes"}, "fuse_1x1: must be True, False or None (time both), got 'yes'"),
        ({"device": "gpu"}, "device: 'gpu' is not a device torch knows"),
    ]
    for arguments, message in mistakes:
        with pytest.raises(ConfigError, match=re.escape(message)):
            optimize(model, **arguments)


def test_auto_can_time_the_1x1_fusion_both_ways(one_thread: None) -> None:
    model = _trained_like("bn")
    fast = optimize(model, backend="eager", input_size=SIZE, batch_size=2, fuse_1x1=None)
    assert set(fast.timings_ms) == {"eager", "eager+fused-1x1"}
    decided_on = fast.retimed_ms or fast.timings_ms
    assert fast.fuse_1x1 == (min(decided_on, key=decided_on.__getitem__) == "eager+fused-1x1")
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert _relative(fast(x), model(x)) < 1e-4
    assert not optimize(model, backend="eager").fuse_1x1


def test_two_candidates_within_5_percent_are_timed_again_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    module = sys.modules["googlenet.infer.optimize"]  # the package's `optimize` is the function
    calls: list[tuple[list[str], int]] = []
    answers = [{"eager": 10.0, "eager+fused-1x1": 10.4}, {"eager+fused-1x1": 9.0, "eager": 10.0}]

    def fake(runs: dict[str, object], x: torch.Tensor, repeats: int = 5) -> dict[str, float]:
        calls.append((sorted(runs), repeats))
        return answers[len(calls) - 1]

    monkeypatch.setattr(module, "time_calls", fake)
    fast = optimize(_trained_like("bn"), backend="eager", input_size=SIZE, batch_size=2, fuse_1x1=None)
    assert calls == [(["eager", "eager+fused-1x1"], 5), (["eager", "eager+fused-1x1"], 9)]
    assert fast.fuse_1x1 and fast.retimed_ms == {"eager": 10.0, "eager+fused-1x1": 9.0}
    assert fast.timings_ms == {"eager": 10.0, "eager+fused-1x1": 10.4}  # the first round, kept apart
    calls.clear()
    answers[0] = {"eager": 10.0, "eager+fused-1x1": 10.6}  # 6% apart: the first timing decides
    assert not optimize(
        _trained_like("bn"), backend="eager", input_size=SIZE, batch_size=2, fuse_1x1=None
    ).fuse_1x1
    assert len(calls) == 1
    calls.clear()  # a third candidate's first-round figure is not weighed against the second round's
    answers[:] = [{"eager": 10.0, "eager+fused-1x1": 10.3, "compile": 10.8, "compile+fused-1x1": 20.0},
                  {"eager": 11.5, "eager+fused-1x1": 11.2}]  # fmt: skip
    fast = optimize(_trained_like("bn"), candidates=["eager", "compile"], input_size=SIZE, batch_size=2,
                    fuse_1x1=None)  # fmt: skip
    assert fast.backend == "eager" and fast.fuse_1x1
    assert fast.timings_ms["compile"] == 10.8 and set(fast.retimed_ms) == {"eager", "eager+fused-1x1"}
    calls.clear()  # one of the two fails when timed again (time_calls leaves it out): the other is kept
    answers[:] = [{"eager": 10.0, "eager+fused-1x1": 10.3}, {"eager+fused-1x1": 11.0}]
    fast = optimize(_trained_like("bn"), backend="eager", input_size=SIZE, batch_size=2, fuse_1x1=None)
    assert fast.fuse_1x1 and fast.retimed_ms == {"eager+fused-1x1": 11.0}


def test_the_engine_refuses_raw_pixels_and_returns_ordinary_tensors(one_thread: None) -> None:
    model = _trained_like("bn")
    fast = optimize(model, backend="eager", input_size=SIZE)
    with pytest.raises(ValueError, match=r"floating-point batch, got torch\.uint8"):
        fast(torch.randint(0, 256, (2, 3, SIZE, SIZE), dtype=torch.uint8))
    out = fast(torch.randn(2, 3, SIZE, SIZE))
    assert not out.is_inference()  # usable as a model's output is: in-place updates, autograd
    out -= out.max()
    weight = torch.ones(1, requires_grad=True)
    (out * weight).sum().backward()
    assert weight.grad is not None


def test_an_empty_batch_gets_the_classifiers_width(one_thread: None) -> None:
    model = _trained_like("bn")
    model.fc = torch.nn.Linear(1024, 3)  # torchvision's fine-tuning idiom: config.num_classes stays 7
    fast = optimize(model, backend="eager", input_size=SIZE)
    assert fast(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 3)
    assert fast(torch.zeros(0, 3, SIZE, SIZE)).shape == (0, 3)  # was (0, 7)


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_export_onnx_leaves_the_callers_model_as_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    require("onnxscript")
    model = googlenet.build_model("bn", num_classes=10, aux_logits=False).train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with caplog.at_level(logging.INFO):  # a program's basicConfig(level=INFO)
        export_onnx(model, SIZE, tmp_path / "m.onnx")
    assert model.training and (tmp_path / "m.onnx").stat().st_size > 0
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())
    # ... and prints none of the exporter's INFO lines (about 20 an export), its loggers' levels kept
    assert not [r.name for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir"))]
    assert logging.getLogger("onnxscript").level == logging.NOTSET


def test_candidates_are_timed_in_turns_and_a_failing_one_is_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from googlenet.infer.optimize import time_calls

    calls: list[str] = []

    def recorder(name: str, fail_on: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            calls.append(name)
            if fail_on is not None and calls.count(name) == fail_on:
                raise RuntimeError(f"{name} broke\nsecond line")
            return x

        return run

    timings = time_calls({"a": recorder("a"), "b": recorder("b", fail_on=2), "c": recorder("c")},
                         torch.zeros(1), repeats=3, warmup=1, min_seconds=0)  # fmt: skip
    assert calls == ["a", "b", "c", "a", "b", "c", "a", "c", "a", "c"]  # turns; b dropped at its 2nd call
    assert set(timings) == {"a", "c"} and all(t >= 0 for t in timings.values())
    assert "backend b skipped: b broke" in caplog.text and "second line" not in caplog.text


def test_a_short_call_is_timed_as_a_sample_of_several() -> None:
    """At batch 1 one call is a few milliseconds: a sample repeats it until it fills `min_seconds`."""
    from googlenet.infer.optimize import time_calls

    counts = {"slow": 0, "quick": 0}

    def sleeper(name: str, seconds: float) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            counts[name] += 1
            time.sleep(seconds)
            return x

        return run

    timings = time_calls({"slow": sleeper("slow", 0.2), "quick": sleeper("quick", 0.01)},
                         torch.zeros(1), repeats=2, warmup=1, min_seconds=0.15, max_calls=4)  # fmt: skip
    assert counts["slow"] == 1 + 2 * 1  # one warm-up call; 0.2 s already fills a sample
    # ceil(0.15 / a 10-37 ms call) >= 4, capped at max_calls; 3 where a loaded machine wakes the timed
    # warm-up call's 10 ms sleep more than 40 ms late (a sample of several calls either way)
    assert counts["quick"] in (1 + 2 * 3, 1 + 2 * 4)
    assert timings["slow"] >= 200 and 10 <= timings["quick"] < 200  # per call, not per sample


def test_onnxruntime_session_runs_on_the_gpu_the_device_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device cuda:1 --engine onnxruntime` ran on GPU 0: the CUDA provider was named without its
    device_id (whose default is 0). Simulated: a stand-in onnxruntime records the providers asked for."""
    import sys
    from types import SimpleNamespace

    import googlenet.infer.optimize  # noqa: F401 - the module (the package's `optimize` is the function)

    optimize_module = sys.modules["googlenet.infer.optimize"]

    asked: list[object] = []

    class Options:
        def add_session_config_entry(self, key: str, value: str) -> None:
            pass

    fake = SimpleNamespace(
        SessionOptions=Options,
        GraphOptimizationLevel=SimpleNamespace(ORT_ENABLE_ALL=99),
        InferenceSession=lambda onnx, options, providers: asked.append(providers),
    )
    monkeypatch.setattr(optimize_module, "held_import", lambda name: fake)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    optimize_module.onnxruntime_session(b"", torch.device("cuda", 1))
    optimize_module.onnxruntime_session(b"", torch.device("cuda"))
    optimize_module.onnxruntime_session(b"", torch.device("cpu"))
    assert asked == [[("CUDAExecutionProvider", {"device_id": 1})], [("CUDAExecutionProvider", {"device_id": 3})],
                     ["CPUExecutionProvider"]]  # fmt: skip
