"""`googlenet.optimize(model)`: the fastest way this machine has to compute a GoogLeNet's logits.

Every backend runs the rewritten inference network of `googlenet.infer.fused` (BatchNorm folded,
heads and dropout dropped, and, when asked or when it measures faster, the three 1x1 convolutions of
every Inception module fused into one) in channels_last layout:

- `eager`: PyTorch's oneDNN kernels. With `precision="bf16"` the weights and activations are bfloat16,
  which oneDNN runs on the AMX matrix units or AVX512-BF16 instructions where the CPU has them.
- `compile`: `torch.compile` with Inductor's weight freezing (constant-folds the weights into the
  graph and picks oneDNN's prepacked kernels); the first call compiles, which takes a while (tens of
  seconds on a small CPU), and so does the first call at each new batch size or input size.
- `onnxruntime`: the network exported to ONNX (opset 18) and run by ONNX Runtime's CPU (or CUDA)
  provider with all graph optimisations; fp32 only.
- `openvino`: the ONNX file compiled by OpenVINO for its CPU plugin with the precision as its
  inference-precision hint (bf16 uses AMX when present).

On the CPU, `onnxruntime` runs a batch as streams (`streams`, default and most one per thread of
`torch.get_num_threads()`): the batch is cut into that many equal slices, each computed at the same time
by a session of its own with its share of the threads, and the few images left over (fewer than the
streams) by one session on every thread. One engine on every core splits each operator between the cores,
which meet after it; GoogLeNet's 14x14 and 7x7 stages give each core little work between those meetings.
Streams need none; on the project's 2-core machine they were 2-4% faster than one engine at batch 32,
a gain of the order of the timing noise but seen at every batch of 8 or more checked (docs/performance.md,
"Streams"). A batch smaller than the streams runs on the one engine, as with `streams=1`. OpenVINO's
own form of this (its throughput mode) was tried and dropped: with it, a test-suite run crashed later
in `malloc` (a corrupted heap), twice in two runs, and never without it.

`backend="auto"` times every backend that is installed and applicable on a sample batch, the
candidates taking turns (so a machine whose speed drifts slows them alike), each sample repeating the
call until it lasts 0.1 s (a batch-1 call is a few milliseconds), and keeps the fastest median; when
the two fastest are within 5% of each other, those two are timed again over 9 samples and that decides.
The choice and the timings are in `OptimizedModel.backend`, `.timings_ms` (every candidate, one round)
and `.retimed_ms` (the two fastest timed again when they were close; the choice is the faster there),
and are logged.
ONNX Runtime and OpenVINO are optional (`pip install googlenet[fast]`).

Numerics: fp32 backends match the eager model within about 1e-5 relative (tested at 1e-4); bf16 has
about 3 significant digits, which changed 0-1% of the top-1 decisions on real images (measured with
`benchmarks/bf16_agreement.py`; docs/performance.md).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from googlenet.errors import ConfigError
from googlenet.infer.fused import FusedGoogLeNet, fuse
from googlenet.model.googlenet import MIN_INPUT_SIZE, GoogLeNet, is_whole
from googlenet.model.layers import onnx_export
from googlenet.signals import held_import, signals_held

logger = logging.getLogger("googlenet.infer")

BACKENDS: tuple[str, ...] = ("eager", "compile", "onnxruntime", "openvino")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
ONNX_OPSET = 18
CLOSE = 1.05  # "auto": candidates whose median times are within this factor are timed again, longer


# Backends that run a network exported for one input size (ONNX with a dynamic batch only).
FIXED_SIZE_BACKENDS: tuple[str, ...] = ("onnxruntime", "openvino")


@dataclass
class OptimizedModel:
    """A logits callable: normalised float N x 3 x S x S (any layout, any device) -> float32 logits.

    The input is checked before it reaches the backend, so a wrong shape is one `ValueError` whatever
    backend "auto" chose: `input_size` is the one size a backend built for a fixed size accepts (None:
    any size the network takes, 32 px and up); an empty batch gives N = 0 logits.
    """

    run: Callable[[Tensor], Tensor]
    backend: str
    precision: str
    device: torch.device
    timings_ms: dict[str, float] = field(default_factory=dict)  # per candidate, when chosen by timing
    # the two fastest timed again, longer, when they were within CLOSE of each other: the choice is the
    # faster of these (a second round is not comparable with the first, so the two are kept apart)
    retimed_ms: dict[str, float] = field(default_factory=dict)
    fuse_1x1: bool = False  # whether the three 1x1 convolutions run as one
    streams: int = 1  # engines computing slices of a batch at the same time (module docstring)
    input_size: int | None = None  # the only input side accepted (fixed-size backends), else None
    num_classes: int = 1000

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W image batch, got shape {tuple(x.shape)}")
        if not x.is_floating_point():  # raw 0-255 pixels would run through as numbers and mean nothing
            raise ValueError(f"expected a normalised floating-point batch, got {x.dtype}")
        side = self.input_size
        if side is not None and tuple(x.shape[-2:]) != (side, side):
            raise ValueError(
                f"this {self.backend} engine runs {side}x{side} input, got {x.shape[-2]}x{x.shape[-1]} "
                "(optimize(..., input_size=...) builds one for another size)"
            )
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"input must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, got {tuple(x.shape[-2:])}"
            )
        if len(x) == 0:
            return torch.zeros(0, self.num_classes, device=x.device)
        return self.run(x)

    def __repr__(self) -> str:
        return (
            f"OptimizedModel(backend={self.backend!r}, precision={self.precision!r}, device={self.device}, "
            f"fuse_1x1={self.fuse_1x1}, streams={self.streams})"
        )

    def describe(self) -> str:
        """The choice in a few words, e.g. "onnxruntime fp32, 2 streams"."""
        extras = (["1x1 fused"] if self.fuse_1x1 else []) + (
            [f"{self.streams} streams"] if self.streams > 1 else []
        )
        return f"{self.backend} {self.precision}" + "".join(f", {extra}" for extra in extras)


def available_backends(precision: str = "fp32", device: torch.device | str = "cpu") -> list[str]:
    """The backends installed here that can run `precision` on `device`."""
    device = torch.device(device)
    names = ["eager", "compile"]
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxscript"):
        if importlib.util.find_spec("onnxruntime") and precision == "fp32" and _ort_runs_on(device):
            names.append("onnxruntime")
        if importlib.util.find_spec("openvino") and device.type == "cpu":
            names.append("openvino")
    return names


def _ort_runs_on(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    ort = held_import("onnxruntime")

    return device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()


def _eager(net: FusedGoogLeNet, precision: str, device: torch.device) -> Callable[[Tensor], Tensor]:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    net = net.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            x = x.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            out = net(x).float()
        return out.clone()  # an ordinary tensor, as the other backends return (see `_compile`)

    return run


def _compile(net: FusedGoogLeNet, precision: str, device: torch.device) -> Callable[[Tensor], Tensor]:
    import torch._inductor.config as inductor_config

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    net = net.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)
    compiled = torch.compile(net, dynamic=False)

    def run(x: Tensor) -> Tensor:
        # Freezing folds the (frozen) weights into the graph: inference only, so it is set for our
        # compilations (which happen inside these calls), not for the rest of the process.
        with torch.inference_mode(), inductor_config.patch(freezing=True):
            x = x.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            out = compiled(x).float()
        # Outside inference mode an inference tensor refuses in-place updates and autograd; the clone
        # (N x classes, negligible) is an ordinary tensor whichever backend "auto" picked.
        out = out.clone()
        # Inductor's fused max pooling and ReLU drop a NaN, as ONNX Runtime's and OpenVINO's kernels
        # do (`_logits_of`): an image with a NaN or an infinity gets NaN logits, as in eager PyTorch.
        out[~torch.isfinite(x).flatten(1).all(dim=1).to(out.device)] = float("nan")
        return out

    return run


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """These loggers at WARNING (at least) inside the block, their own levels back after it."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(net: nn.Module, input_size: int, path: str | Path | io.BytesIO | None = None) -> bytes:
    """The network as an ONNX model (opset 18, dynamic batch); written to `path` when given. `net` itself is
    left as it is (exported from an fp32 eval-mode copy)."""
    net = copy.deepcopy(net).float().eval()
    example = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    # signals held: the exporter runs the model's Python from C++ (googlenet.signals); the exporter's
    # libraries log each pass at INFO, about 20 lines an export under a program's basicConfig(INFO)
    with signals_held(), onnx_export(), _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx"):
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=["images"],
            output_names=["logits"],
            # positional: torch 2.6 reads a dict here as keyed by `input_names` (KeyError on "x")
            dynamic_shapes=({0: batch},),
            optimize=True,
            verbose=False,
        )
    assert program is not None
    data = program.model_proto.SerializeToString()
    if isinstance(path, io.BytesIO):
        path.write(data)
    elif path is not None:
        from googlenet.io import atomic_open

        with atomic_open(path, "wb") as handle:
            handle.write(data)
    return data


def onnxruntime_session(
    onnx: bytes,
    device: torch.device,
    config_entries: dict[str, str] | None = None,
    threads: int | None = None,
) -> Any:
    """The ONNX Runtime session our `onnxruntime` backend runs: all graph optimisations, `threads`
    intra-op threads (default one per torch thread), CUDA or CPU provider; `config_entries` are extra
    session config entries (benchmarks/ort_spinning.py varies the spinning ones)."""
    ort = held_import("onnxruntime")

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    # ONNX Runtime's default thread spinning stays on: its threads busy-wait between the graph's operators
    # instead of sleeping and waking for each. Off, it cost 10% at batch 1 and 2% at batch 32
    # and did not speed up the 144-crop loop's PyTorch work between calls (benchmarks/ort_spinning.py,
    # saved for the Zen 4 machine; a first unsaved check had found 6-35%; docs/performance.md).
    # On the GPU `device` names (cuda:1 ran on GPU 0: the provider's default device_id is 0)
    providers: list[Any] = (
        [("CUDAExecutionProvider", {"device_id": _cuda_index(device)})]
        if device.type == "cuda"
        else ["CPUExecutionProvider"]
    )
    return ort.InferenceSession(onnx, options, providers=providers)


def _cuda_index(device: torch.device) -> int:
    """The index of the GPU `device` names ("cuda" alone: the current one)."""
    return device.index if device.index is not None else torch.cuda.current_device()


def _logits_of(run_array: Callable[[np.ndarray], np.ndarray]) -> Callable[[Tensor], Tensor]:
    """A tensor callable around a runtime's numpy one."""

    def run(x: Tensor) -> Tensor:
        array = x.detach().float().contiguous().cpu().numpy()
        logits = run_array(array)
        # ONNX Runtime's and OpenVINO's CPU kernels turn a NaN into a number (their max pooling and ReLU
        # drop it): an image with a NaN or an infinity gets NaN logits, as in PyTorch, not an answer.
        logits[~np.isfinite(array).reshape(len(array), -1).all(axis=1)] = np.nan
        return torch.from_numpy(logits).to(x.device)

    return run


def _in_streams(
    array: np.ndarray,
    streams: int,
    start: Callable[[int, np.ndarray], Callable[[], np.ndarray]],
    whole: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """`array`'s logits, `streams` equal slices at once and the rest (fewer images than streams) by `whole`.

    `start(i, slice)` sets stream i to work on its slice and returns a function that waits for its
    logits. (Ours: ONNX Runtime has no such mode.)
    """
    cut = len(array) - len(array) % streams
    waits = [start(i, part) for i, part in enumerate(np.split(array[:cut], streams))] if cut else []
    parts = [wait() for wait in waits]
    if cut < len(array):
        parts.append(whole(array[cut:]))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _onnxruntime(
    net: FusedGoogLeNet, input_size: int, device: torch.device, streams: int
) -> Callable[[Tensor], Tensor]:
    onnx = export_onnx(net, input_size)
    # With streams, the all-threads session's pool must not spin after a call while the streams compute.
    session = onnxruntime_session(onnx, device, {"session.force_spinning_stop": "1"} if streams > 1 else None)

    def whole(array: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(["logits"], {"images": array})[0])

    if streams == 1:
        return _logits_of(whole)
    threads = max(1, torch.get_num_threads() // streams)
    engines = [onnxruntime_session(onnx, device, threads=threads) for _ in range(streams)]
    pool = ThreadPoolExecutor(streams, thread_name_prefix="googlenet-stream")  # ONNX Runtime drops the GIL

    def start(i: int, part: np.ndarray) -> Callable[[], np.ndarray]:
        future = pool.submit(engines[i].run, ["logits"], {"images": part})
        return lambda: np.asarray(future.result()[0])

    return _logits_of(lambda array: _in_streams(array, streams, start, whole))


def _openvino(net: FusedGoogLeNet, input_size: int, precision: str) -> Callable[[Tensor], Tensor]:
    ov = held_import("openvino")

    core = ov.Core()
    hint = "bf16" if precision == "bf16" else "f32"
    with tempfile.TemporaryDirectory() as folder:  # OpenVINO reads ONNX from a file
        path = Path(folder) / "googlenet.onnx"
        export_onnx(net, input_size, path)
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:  # a C++ failure report of many lines
            raise _refusal(input_size, exc) from None
    try:
        compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": hint,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            },
        )
    except RuntimeError as exc:
        raise _refusal(input_size, exc) from None
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one request runs one batch at a time ("Infer Request is busy")

    def whole(array: np.ndarray) -> np.ndarray:
        with lock:
            return np.array(request.infer({0: array})[compiled.output(0)])

    return _logits_of(whole)


# Below this input size the `paper` and `bn` networks' map entering maxpool4 is 2x2: its 3x3 window
# (ceil_mode) gives PyTorch and ONNX Runtime one value, and OpenVINO refuses a window larger than its input.
OPENVINO_MIN_SIZE = 47


def _refusal(input_size: int, exc: RuntimeError) -> ConfigError:
    """OpenVINO's failure to read or compile the network, from its report of many lines, as one line."""
    why = (
        f" (below {OPENVINO_MIN_SIZE} px a 3x3 max pool meets a 2x2 map, which OpenVINO refuses)"
        if input_size < OPENVINO_MIN_SIZE
        else ""
    )
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = next((line for line in lines if "wasn't fully converted" in line), lines[0] if lines else "")
    said = said.split(". Failed operations")[0].rstrip(":. ")  # what follows is the report's own list
    return ConfigError(
        f"OpenVINO cannot take the network at input size {input_size}{why}: {said[:200]}; "
        "use another backend (--engine onnxruntime or eager)"
    )


def _build(
    net: FusedGoogLeNet, backend: str, precision: str, device: torch.device, input_size: int, streams: int = 1
) -> Callable[[Tensor], Tensor]:
    if backend == "eager":
        return _eager(net, precision, device)
    if backend == "compile":
        return _compile(net, precision, device)
    if backend == "onnxruntime":
        return _onnxruntime(net, input_size, device, streams)
    return _openvino(net, input_size, precision)


def _streams_for(backend: str, device: torch.device, streams: int | None) -> int:
    """How many streams `backend` runs on `device`: ONNX Runtime on the CPU takes `streams`, at most one
    per torch thread (default: one per thread); the other backends and the GPU run a batch as one."""
    if backend != "onnxruntime" or device.type != "cpu":
        return 1
    threads = torch.get_num_threads()
    return threads if streams is None else min(streams, threads)


def _shape_of(backend: str, size: int, model: GoogLeNet) -> dict[str, Any]:
    """`OptimizedModel`'s input_size and num_classes for `backend` run at `size`."""
    return {
        "input_size": size if backend in FIXED_SIZE_BACKENDS else None,
        "num_classes": model.fc.out_features,  # not config.num_classes: `model.fc = ...` leaves that stale
    }


def _cuda_sync(x: Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def _skip(name: str, exc: Exception) -> None:
    logger.warning(
        "backend %s skipped: %s", name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    )


def time_calls(
    runs: dict[str, Callable[[Tensor], Tensor]],
    x: Tensor,
    repeats: int = 5,
    warmup: int = 1,
    min_seconds: float = 0.1,
    max_calls: int = 50,
) -> dict[str, float]:
    """Median milliseconds of `run(x)` for each candidate, over `repeats` timed samples after `warmup`
    calls.

    The candidates take turns (one sample of each per turn), so a machine whose speed drifts over
    minutes slows all of them alike instead of whichever was timed last. A sample is as many calls as
    fill `min_seconds` by the candidate's last warm-up call (at most `max_calls`): at batch 1 a single
    call lasts a few milliseconds, too short to tell two backends apart on a noisy machine. A candidate
    that raises is left out, with a warning that says why.
    """
    live = dict(runs)
    timings: dict[str, list[float]] = {name: [] for name in live}
    calls = dict.fromkeys(live, 1)
    for turn in range(warmup + repeats):
        for name, run in list(live.items()):
            try:
                _cuda_sync(x)
                start = time.perf_counter()
                for _ in range(calls[name]):
                    run(x)
                _cuda_sync(x)
            except Exception as exc:  # noqa: BLE001 - a backend that fails is skipped, not fatal
                _skip(name, exc)
                del live[name], timings[name]
                continue
            elapsed = (time.perf_counter() - start) / calls[name]
            if turn >= warmup:
                timings[name].append(1000 * elapsed)
            elif min_seconds > 0:
                calls[name] = max(1, min(max_calls, math.ceil(min_seconds / max(elapsed, 1e-9))))
    return {name: statistics.median(values) for name, values in timings.items()}


def optimize(
    model: GoogLeNet,
    precision: str = "fp32",
    backend: str = "auto",
    *,
    input_size: int | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    candidates: Sequence[str] | None = None,
    fuse_1x1: bool | None = False,
    streams: int | None = None,
) -> OptimizedModel:
    """A fast callable with `model.eval()`'s main logits (see the module docstring).

    Args:
        model: a trained GoogLeNet (not modified).
        precision: "fp32" (matches eager within 1e-4 relative) or "bf16".
        backend: one of `BACKENDS`, or "auto" to time the available ones and keep the fastest.
        input_size: the crop size the callable will see (default 224, the paper's); ONNX exports and
            "auto" timings use it, the eager backends accept any size.
        batch_size: the batch "auto" times with.
        device: where to run (default: the model's device).
        candidates: for "auto", the backends to try (default: every available one except "compile",
            whose compilation takes minutes on a small CPU; name it to include it).
        fuse_1x1: run each Inception module's three 1x1 convolutions as one (True), apart (False, the
            default: on the project's CPU the split of the fused output costs more than the wider GEMM
            saves, for every backend; see docs/performance.md), or time both and keep the faster (None).
        streams: for `onnxruntime` on the CPU, how many slices of a batch are computed at
            once, each by an engine of its own (module docstring); default and most one per thread of
            `torch.get_num_threads()`; 1 runs every batch on one engine.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"backend: must be auto or one of {', '.join(BACKENDS)}, got {backend!r}")
    if streams is not None and not is_whole(streams, 1):
        raise ConfigError(f"streams: must be a whole number >= 1, got {streams!r}")
    if input_size is not None and not is_whole(input_size, MIN_INPUT_SIZE):
        raise ConfigError(f"input_size: must be a whole number >= {MIN_INPUT_SIZE}, got {input_size!r}")
    if not is_whole(batch_size, 1):
        raise ConfigError(f"batch_size: must be a whole number >= 1, got {batch_size!r}")
    if fuse_1x1 not in (True, False, None) or not isinstance(fuse_1x1, (bool, type(None))):
        raise ConfigError(f"fuse_1x1: must be True, False or None (time both), got {fuse_1x1!r}")
    if candidates is not None:
        if isinstance(candidates, str) or not all(isinstance(name, str) for name in candidates):
            raise ConfigError(f"candidates: must be a list of backend names, got {candidates!r}")
        unknown = [name for name in candidates if name not in BACKENDS]
        if unknown:
            raise ConfigError(f"candidates: unknown backend {unknown[0]!r} (one of {', '.join(BACKENDS)})")
        if backend != "auto":
            raise ConfigError(f"candidates: only for backend='auto' (backend={backend!r} was given)")
    try:
        device = torch.device(device) if device is not None else next(model.parameters()).device
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device: {device!r} is not a device torch knows ({exc})") from None
    size = input_size or 224  # the paper's crop
    available = available_backends(precision, device)
    forms = [False, True] if fuse_1x1 is None else [fuse_1x1]
    nets = {form: fuse(model, form).to("cpu") for form in forms}
    if backend != "auto":
        if backend not in available:
            installed = backend in available_backends("fp32", "cpu")
            why = (
                "ONNX Runtime runs fp32 only"
                if backend == "onnxruntime" and precision != "fp32" and installed
                else "OpenVINO runs on the CPU only" if backend == "openvino" and installed
                else "ONNX Runtime and OpenVINO come with googlenet[fast]"
            )  # fmt: skip
            raise ConfigError(
                f"backend {backend!r} is not available for {precision} on {device.type} here "
                f"(available: {', '.join(available)}; {why})"
            )
        if len(forms) == 1:
            count = _streams_for(backend, device, streams)
            run = _build(nets[forms[0]], backend, precision, device, size, count)
            return OptimizedModel(
                run,
                backend,
                precision,
                device,
                fuse_1x1=forms[0],
                streams=count,
                **_shape_of(backend, size, model),
            )
        names = [backend]
    else:
        names = [
            name for name in (candidates or [b for b in available if b != "compile"]) if name in available
        ]
    if not names:
        raise ConfigError(f"none of the candidate backends is available (available: {', '.join(available)})")
    logger.info(
        "optimize: building and timing %s at batch %d to choose (%s)",
        ", ".join(names), batch_size, "with and without 1x1 fusion" if len(forms) > 1 else "one form",
    )  # fmt: skip
    # its own generator: choosing a backend leaves the caller's random stream as it was
    sample = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    runs: dict[str, Callable[[Tensor], Tensor]] = {}
    choices: dict[str, tuple[str, bool, int]] = {}
    for backend_name, form in [(b, f) for b in names for f in forms]:
        name = backend_name + ("+fused-1x1" if form else "")
        count = _streams_for(backend_name, device, streams)
        choices[name] = (backend_name, form, count)
        try:
            runs[name] = _build(copy_net(nets[form]), backend_name, precision, device, size, count)
        except Exception as exc:  # noqa: BLE001 - a backend that fails here is skipped, not fatal: say why
            _skip(name, exc)
    timings = time_calls(runs, sample)
    if not timings:
        raise ConfigError("no backend could run this model here")
    ranked = sorted(timings, key=timings.__getitem__)
    if len(ranked) > 1 and timings[ranked[1]] < CLOSE * timings[ranked[0]]:
        # Five samples cannot rank two candidates this close on a machine whose speed moves by as much
        # between samples (the runtimes on the project's CPU are often 3-7% apart): time the two again,
        # longer, and decide on that.
        # The decision is theirs alone: a third candidate's first-round figure is not compared with
        # the second round's.
        retimed = time_calls({name: runs[name] for name in ranked[:2]}, sample, repeats=9)
        alive = [name for name in ranked[:2] if name in retimed]  # time_calls leaves out one that fails
        best = min(alive, key=retimed.__getitem__) if alive else ranked[0]
    else:
        retimed, best = {}, ranked[0]
    chosen, form, count = choices[best]
    fast = OptimizedModel(
        runs[best],
        chosen,
        precision,
        device,
        timings,
        retimed,
        fuse_1x1=form,
        streams=count,
        **_shape_of(chosen, size, model),
    )

    def listed(figures: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(figures.items(), key=lambda kv: kv[1]))

    logger.info(
        "optimize: %s chosen (%s%s at batch %d)",
        fast.describe(),
        listed(timings),
        f"; the two closest timed again, longer: {listed(retimed)}" if retimed else "",
        batch_size,
    )
    return fast


def copy_net(net: FusedGoogLeNet) -> FusedGoogLeNet:
    """A deep copy, so one backend's dtype or layout change does not leak into the next candidate."""
    return copy.deepcopy(net)
