"""The measured paths of `googlenet benchmark`, each a function of a small JSON-able spec.

Every path runs in its own process (`python -m googlenet.bench.paths SPEC`), so its peak resident
memory is its own and one backend's threads or caches cannot slow the next. A path returns a dict with
its rate (`value`, in the path's `unit`) and the process's peak RSS in MiB. Each rate is the median of
`repeats` timings after `warmup` untimed runs.

Peers are built the way their users build them: torchvision's `googlenet(weights=None)` in eval mode,
exported with `torch.onnx.export` for ONNX Runtime and OpenVINO (`openvino.Core().read_model` of that
file, compiled for "CPU" with OpenVINO's defaults, which choose bf16 on CPUs with bf16 instructions:
AMX or AVX512-BF16).
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from googlenet.signals import held_import
from googlenet.train.config import gpu_bf16
from googlenet.train.loop import head_losses, weighted_loss


def _median_rate(work: Callable[[], object], items: int, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        work()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


class CeilingProbe:
    """The machine's matrix-product rate in fp32 or bf16 by two routes to the same BLAS-3 work:
    `torch.mm` of n x n matrices (MKL for fp32 here) and a 1x1 convolution in channels_last (a GEMM of
    (N*H*W) x C x K in oneDNN), each timed one call at a time so that a path can interleave them with
    its own timings."""

    def __init__(self, precision: str, n: int = 2048, batch: int = 64, channels: int = 2048, side: int = 14):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.a, self.b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False).eval().to(dtype)
        self.conv = self.conv.to(memory_format=torch.channels_last)
        self.x = torch.randn(batch, channels, side, side, dtype=dtype).contiguous(
            memory_format=torch.channels_last
        )
        self.mm_flop = 2 * n**3
        self.conv_flop = 2 * batch * side * side * channels**2

    @classmethod
    def from_spec(cls, spec: dict[str, Any], precision: str) -> CeilingProbe:
        sizes = {key: int(spec[key]) for key in ("n", "batch", "channels", "side") if key in spec}
        return cls(precision, **sizes)

    def mm(self) -> float:
        """GFLOP/s of one `torch.mm`."""
        start = time.perf_counter()
        torch.mm(self.a, self.b)
        return self.mm_flop / (time.perf_counter() - start) / 1e9

    def conv1x1(self) -> float:
        """GFLOP/s of one 1x1 convolution."""
        with torch.inference_mode():
            start = time.perf_counter()
            self.conv(self.x)
            return self.conv_flop / (time.perf_counter() - start) / 1e9

    def warm_up(self) -> None:
        for _ in range(2):
            self.mm(), self.conv1x1()


def gemm(spec: dict[str, Any]) -> dict[str, float]:
    """The machine's matrix-product GFLOP/s in fp32 or bf16: the ceiling for convolutions.

    The best of `CeilingProbe`'s two routes. On the project's AMD machine oneDNN's fp32 kernels ran about
    twice as fast as MKL's through `torch.mm`, on the Intel one the reverse (measured; docs/performance.md),
    and the convolution paths we compare use oneDNN-like kernels, so the ceiling is the faster of the two.
    """
    probe = CeilingProbe.from_spec(spec, spec["precision"])
    probe.warm_up()
    repeats = spec.get("repeats", 5)
    mm = statistics.median(probe.mm() for _ in range(repeats))
    conv1x1 = statistics.median(probe.conv1x1() for _ in range(repeats))
    return {"value": max(mm, conv1x1), "mm": mm, "conv1x1": conv1x1}


def _torchvision_model() -> nn.Module:
    import torchvision

    return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).eval()


def _onnx_file(model: nn.Module, size: int, folder: str) -> str:
    from googlenet.infer.optimize import export_onnx

    path = str(Path(folder) / "model.onnx")
    export_onnx(model, size, path)
    return path


def peer_runner(impl: str, precision: str, size: int, folder: str) -> Callable[[Tensor], Any]:
    """A callable for one of torchvision's inference peers."""
    model = _torchvision_model()
    if impl in ("torchvision-eager", "torchvision-eager-cl"):
        if impl.endswith("-cl"):
            model = model.to(memory_format=torch.channels_last)

        def eager(x: Tensor) -> Any:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                return model(x.contiguous(memory_format=torch.channels_last) if impl.endswith("-cl") else x)

        return eager
    if impl == "torchvision-compile":
        model = model.to(memory_format=torch.channels_last)
        compiled = torch.compile(model)

        def run_compiled(x: Tensor) -> Any:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                return compiled(x.contiguous(memory_format=torch.channels_last))

        return run_compiled
    if impl == "torchvision-onnxruntime":
        ort = held_import("onnxruntime")

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            _onnx_file(model, size, folder), options, providers=["CPUExecutionProvider"]
        )
        return lambda x: session.run(None, {"images": x.numpy()})
    if impl in ("torchvision-openvino", "torchvision-openvino-f32"):
        ov = held_import("openvino")

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32"} if impl.endswith("f32") else {}
        compiled = core.compile_model(core.read_model(_onnx_file(model, size, folder)), "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x.numpy()})
    raise ValueError(f"unknown inference path {impl!r}")


def _macs(variant: str, size: int) -> int:
    from googlenet.model.googlenet import build_model
    from googlenet.model.summary import totals

    return int(totals(build_model(variant, num_classes=1000, aux_logits=False), input_size=size)["macs"])


def conv_layers(net: nn.Module, batch: int, size: int) -> list[dict[str, Any]]:
    """Each convolution's name, module, input and output shape, recorded by one forward pass at `batch` x
    `size` x `size` (benchmarks/kernel_rates.py and winograd.py time the layers one by one)."""
    layers: list[dict[str, Any]] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, inputs, output, name=name: layers.append(
                {"name": name, "conv": mod, "input": tuple(inputs[0].shape), "output": tuple(output.shape)}
            )
        )
        for name, module in net.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.inference_mode():
        net(torch.randn(batch, 3, size, size))
    for hook in hooks:
        hook.remove()
    return layers


def _runner(
    spec: dict[str, Any], precision: str, size: int, batch: int, folder: str
) -> Callable[[Tensor], Any]:
    """Ours through `googlenet.optimize` (`impl: ours`, choosing by timing at `batch`) or one of
    torchvision's peers."""
    if spec["impl"] != "ours":
        return peer_runner(spec["impl"], precision, size, folder)
    import googlenet

    model = googlenet.build_model(spec.get("variant", "paper"), num_classes=1000, aux_logits=False)
    return googlenet.optimize(
        model,
        precision,
        spec.get("backend", "eager"),
        input_size=size,
        batch_size=batch,
        fuse_1x1=spec.get("fuse_1x1", False),
        streams=spec.get("streams"),
    )


def _label(fast: Any) -> str:
    """How `optimize` ran ours (an `OptimizedModel`): "onnxruntime", "openvino+fused-1x1",
    "onnxruntime+streams-2", ..."""
    return (
        fast.backend
        + ("+fused-1x1" if fast.fuse_1x1 else "")
        + (f"+streams-{fast.streams}" if fast.streams > 1 else "")
    )


def _variant(spec: dict[str, Any]) -> str:
    return str(spec.get("variant", "paper")) if spec["impl"] == "ours" else "torchvision"


def _in_turns(
    runs: list[Callable[[Tensor], Any]], x: Tensor, spec: dict[str, Any], turns: int
) -> tuple[list[list[float]], list[float], float | None]:
    """Time `runs` in turns beside the GEMM ceiling: images/s per run and turn, the ceiling of each
    turn (GFLOP/s), and the peak RSS in MiB before the ceiling's buffers were allocated.

    After `warmup` untimed batches of each run, every turn times the ceiling (`CeilingProbe`, in this
    process) and then one batch of `calls` calls of each run, in an order rotated every turn, so the
    machine's drift over minutes slows every run and the ceiling alike.
    """
    precision, calls = spec["precision"], max(1, int(spec.get("calls", 1)))

    def batch_of_calls(run: Callable[[Tensor], Any]) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            run(x)
        return len(x) * calls / (time.perf_counter() - start)

    for _ in range(spec.get("warmup", 2)):
        for run in runs:
            batch_of_calls(run)
    peak = peak_rss_mib()
    probe = CeilingProbe.from_spec(spec.get("ceiling", {}), precision)
    probe.warm_up()
    rates: list[list[float]] = [[] for _ in runs]
    ceilings = []
    for turn in range(turns):
        time.sleep(0.05)  # let the last run's worker threads settle (OpenVINO's spin briefly)
        ceilings.append(max(probe.mm(), probe.conv1x1()))
        for i in [(turn + k) % len(runs) for k in range(len(runs))]:
            time.sleep(0.05)
            rates[i].append(batch_of_calls(runs[i]))
    return rates, ceilings, peak


def _fraction(rates: list[float], ceilings: list[float], macs: int) -> float:
    """The median over turns of (images/s x 2 x multiply-adds) / that turn's ceiling."""
    return statistics.median(r * 2 * macs / (c * 1e9) for r, c in zip(rates, ceilings, strict=True))


def infer(spec: dict[str, Any]) -> dict[str, float | None]:
    """Images/s of one inference path at `batch` x 3 x `size` x `size`, and its fraction of the GEMM
    ceiling timed beside it.

    The `gemm` section measures the ceiling once, in its own process; on a machine whose speed drifts
    by 1.5x within minutes a fraction against that figure carries the drift between the two moments.
    So each of the `repeats` timings here follows a timing of the ceiling in this process
    (`_in_turns` with one run), and `paired_fraction` is the median of the per-repetition fractions.
    `peak_rss_mib` is read before the ceiling's buffers exist, so it stays the path's own.
    """
    size, batch, precision = int(spec["size"]), int(spec["batch"]), spec["precision"]
    x = torch.randn(batch, 3, size, size)
    with tempfile.TemporaryDirectory() as folder:
        run = _runner(spec, precision, size, batch, folder)
        (rates,), ceilings, peak = _in_turns([run], x, spec, spec.get("repeats", 5))
    return {
        "value": statistics.median(rates),
        "paired_ceiling": statistics.median(ceilings),
        "paired_fraction": _fraction(rates, ceilings, _macs(_variant(spec), size)),
        "peak_rss_mib": peak,
    }


def versus(spec: dict[str, Any]) -> dict[str, Any]:
    """Ours against the peers in one process, taking turns: the issue's inference targets as ratios
    that a drifting machine cannot fake.

    Paths timed in separate processes minutes apart compare two moments of a machine whose speed can
    change by 1.5-2x in that time (measured on the project's Intel machine). Here `ours` and every
    `peers` entry are built in this process and timed by `_in_turns` beside the GEMM ceiling. The
    fastest peer is the one with the highest median rate; ours against each peer is the median over
    the turns of the same-turn ratio (`ratio_to_peer`: against the fastest), and every FLOP/s is put
    against the ceiling of its own turn. (Against the fastest peer *of each turn* would bias the ratio
    down: the largest of several noisy timings is larger than a typical one.) `peak_rss_mib` is the
    process's with every contender loaded; the `infer` section has each path's own.
    """
    size, batch, precision = int(spec["size"]), int(spec["batch"]), spec["precision"]
    labels = [str(peer.get("label", peer["impl"])) for peer in spec["peers"]]
    x = torch.randn(batch, 3, size, size)
    with tempfile.TemporaryDirectory() as folder:
        runs = [_runner(c, precision, size, batch, folder) for c in [spec["ours"], *spec["peers"]]]
        rates, ceilings, peak = _in_turns(runs, x, spec, int(spec.get("turns", 10)))
    ours, peers = rates[0], rates[1:]
    medians = [statistics.median(peer) for peer in peers]
    fastest = medians.index(max(medians))
    turn_ratios = [o / p for o, p in zip(ours, peers[fastest], strict=True)]
    peer_macs = _macs("torchvision", size)
    return {
        "value": statistics.median(ours),
        "fastest_peer": labels[fastest],
        "ratio_to_peer": statistics.median(turn_ratios),
        "turn_ratios": turn_ratios,
        "peers": dict(zip(labels, medians, strict=True)),
        "ratios": {
            label: statistics.median(o / p for o, p in zip(ours, peer, strict=True))
            for label, peer in zip(labels, peers, strict=True)
        },
        "paired_ceiling": statistics.median(ceilings),
        "paired_fraction": _fraction(ours, ceilings, _macs(_variant(spec["ours"]), size)),
        "peer_fractions": {
            label: _fraction(peer, ceilings, peer_macs) for label, peer in zip(labels, peers, strict=True)
        },
        "backend": _label(runs[0]),
        "peak_rss_mib": peak,
    }


def train(spec: dict[str, Any]) -> float:
    """Images/s of full training steps (forward with the auxiliary heads, 0.3-weighted loss, backward,
    SGD step) for torchvision's googlenet or ours, on `device` (default cpu; benchmarks/gpu.py uses
    this with cuda). Precision "bf16" (or "amp") autocasts to bf16, or to fp16 with a gradient scaler
    on a GPU without bf16."""
    size, batch, precision = int(spec["size"]), int(spec["batch"]), spec["precision"]
    device = torch.device(spec.get("device", "cpu"))
    amp = precision in ("bf16", "amp")
    half = torch.float16 if device.type == "cuda" and not gpu_bf16(device) else torch.bfloat16
    channels_last = bool(spec.get("channels_last", False))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    if spec["impl"] == "torchvision":
        import torchvision

        tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)

        def outputs(x: Tensor) -> tuple[Tensor, ...]:
            out = tv(x)
            return out.logits, out.aux_logits1, out.aux_logits2

        model: nn.Module = tv
    else:
        import googlenet

        ours = googlenet.build_model(spec.get("variant", "paper"), num_classes=1000)

        def outputs(x: Tensor) -> tuple[Tensor, ...]:
            out = ours.forward_train(x)
            assert out.aux1 is not None and out.aux2 is not None
            return out.logits, out.aux1, out.aux2

        model = ours
    model = model.to(device).to(memory_format=fmt).train()
    fused = bool(spec.get("fused_sgd", False))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4, **({"fused": True} if fused else {})
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp and half == torch.float16)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=half, enabled=amp):
            loss = weighted_loss(head_losses(outputs(x), y), aux_weight=0.3)  # section 5
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    steps = int(spec.get("steps", 2))

    def work() -> None:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return _median_rate(work, batch * steps, spec.get("repeats", 3), spec.get("warmup", 1))


def data(spec: dict[str, Any]) -> float:
    """Images/s of JPEG decoding + section-6 augmentation at `size` through a DataLoader."""
    from torch.utils.data import DataLoader

    from googlenet.data.datasets import load_image_folder
    from googlenet.data.transforms import AugmentConfig, build_train_transform

    train_set, _ = load_image_folder(
        spec["root"], build_train_transform(int(spec["size"]), AugmentConfig()), None
    )
    images = min(len(train_set), int(spec.get("images", 512)))
    subset = torch.utils.data.Subset(train_set, range(images))
    workers = int(spec["workers"])
    loaders = [DataLoader(subset, batch_size=32, num_workers=workers, persistent_workers=workers > 0)]

    def work() -> None:
        for _ in loaders[0]:
            pass

    rate = _median_rate(work, images, spec.get("repeats", 3), 1)
    loaders.clear()  # the persistent workers exit here, so that run_spec can read their peak memory
    return rate


def crops144(spec: dict[str, Any]) -> dict[str, float]:
    """Crops/s of section 7's 144-crop protocol on real JPEGs against the raw forward of the same
    (optimised) model on ready batches of the same size."""
    import googlenet
    from googlenet.data.crops import CropSpec, CropTransform
    from googlenet.data.datasets import load_image_folder
    from googlenet.evaluate.models import Member
    from googlenet.evaluate.protocol import View, crop_loader, run_views

    size, batch = int(spec["size"]), int(spec.get("batch", 144))
    _, val = load_image_folder(spec["root"], None, None)
    step = max(1, len(val.samples) // int(spec["images"]))
    samples = [(str(p), label) for p, label in val.samples[::step][: int(spec["images"])]]
    model = googlenet.build_model(
        spec.get("variant", "paper"), num_classes=len(val.classes), aux_logits=False
    )
    fast = googlenet.optimize(
        model, spec.get("precision", "fp32"), spec.get("backend", "eager"), input_size=size
    )
    x = torch.randn(batch, 3, size, size)
    member, views = Member(forward=fast), [View("1 model", 0, (0,))]
    workers = int(spec.get("workers", 1))
    # What `evaluate_views` builds, but with the loader processes kept between passes: a real
    # evaluation of thousands of images starts them once, which a timed pass of 3 images would
    # otherwise pay every time (0.06-0.2 s against a pass of 1-3 s).
    loaders = [
        crop_loader(
            samples,
            CropTransform([CropSpec(144, size)], "bilinear"),
            images_per_batch=max(1, batch // 144),
            workers=workers,
            persistent_workers=True,
        )
    ]

    def protocol_work() -> dict[str, Any]:
        return run_views(
            [member], loaders[0], views, len(val.classes), device=torch.device("cpu"), batch_size=batch
        )

    # The raw forward does as many model calls as the protocol (whose distinct crops are fewer than
    # 144 per image when crops coincide, 48 on a square image), in full batches.
    passes = protocol_work()["forward_passes"]  # also the protocol's warm-up
    calls = max(1, round(passes / batch))

    def raw_work() -> None:
        for _ in range(calls):
            fast(x)

    raw_work()
    # Raw and protocol timings alternate, and the ratio is the median of the pairs' ratios: the
    # machine's speed drifts over minutes, which separate blocks of timings would read as a ratio.
    raws, rates = [], []
    for _ in range(spec.get("repeats", 3)):
        start = time.perf_counter()
        raw_work()
        raws.append(calls * batch / (time.perf_counter() - start))
        result = protocol_work()
        rates.append(result["forward_passes"] / result["seconds"])
    loaders.clear()  # persistent loader processes exit here, so that run_spec can read their peak memory
    raw, protocol = statistics.median(raws), statistics.median(rates)
    ratio = statistics.median(p / r for p, r in zip(rates, raws, strict=True))
    return {
        "value": protocol,
        "raw_crops_s": raw,
        "ratio_to_raw": ratio,
        "backend": _label(fast),
        "forward_passes": passes,
        "raw_calls": calls,
    }


KINDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "gemm": gemm,
    "infer": infer,
    "versus": versus,
    "train": train,
    "data": data,
    "crops144": crops144,
}


def peak_rss_mib(children: bool = False) -> float | None:
    """This process's (or its ended children's largest) peak resident memory in MiB; None where the
    `resource` module is missing (Windows). Linux counts `ru_maxrss` in KiB, macOS in bytes."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one path in this process; the result with its peak RSS."""
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    value = KINDS[spec["kind"]](spec)
    result = dict(value) if isinstance(value, dict) else {"value": float(value)}
    result.setdefault("peak_rss_mib", peak_rss_mib())
    if spec["kind"] in ("data", "crops144") and int(spec.get("workers", 0)) > 0:
        # The loader processes decode in memory of their own, which RUSAGE_SELF leaves out: the largest
        # one's peak, read once they have exited (the path's loader is gone when it returns).
        gc.collect()
        result["peak_worker_rss_mib"] = peak_rss_mib(children=True)
    return result


if __name__ == "__main__":
    np.random.seed(0)
    print(json.dumps(run_spec(json.loads(sys.argv[1]))))
