"""The measured paths of `googlenet benchmark`, each a function of a small JSON-able spec.

Every path runs in its own process (`python -m googlenet.bench.paths SPEC`), so its peak resident
memory is its own and one backend's threads or caches cannot slow the next. A path returns a dict with
its rate (`value`, in the path's `unit`) and the process's peak RSS in MiB. Each rate is the median of
`repeats` timings after `warmup` untimed runs.

Peers are built the way their users build them: torchvision's `googlenet(weights=None)` in eval mode,
exported with `torch.onnx.export` for ONNX Runtime and OpenVINO (`openvino.Core().read_model` of that
file, compiled for "CPU" with OpenVINO's defaults, which choose bf16 on AMX machines).
"""

from __future__ import annotations

import json
import resource
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


def gemm(spec: dict[str, Any]) -> dict[str, float]:
    """The machine's matrix-product GFLOP/s in fp32 or bf16: the ceiling for convolutions.

    The best of two routes to the same BLAS-3 work: `torch.mm` of n x n matrices (MKL for fp32 here)
    and a 1x1 convolution in channels_last (a GEMM of (N*H*W) x C x K in oneDNN). On the project's CPU
    oneDNN's fp32 kernels run about twice as fast as MKL's through `torch.mm` (measured), and the
    convolution paths we compare use oneDNN-like kernels, so the ceiling is the faster of the two.
    """
    n = int(spec.get("n", 2048))
    repeats = spec.get("repeats", 5)
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    mm = _median_rate(lambda: torch.mm(a, b), 2 * n**3, repeats, 2) / 1e9
    batch, channels, side = (
        int(spec.get("batch", 64)),
        int(spec.get("channels", 2048)),
        int(spec.get("side", 14)),
    )
    conv = nn.Conv2d(channels, channels, 1, bias=False).eval().to(dtype).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv1x1 = _median_rate(lambda: conv(x), 2 * batch * side * side * channels**2, repeats, 2) / 1e9
    return {"value": max(mm, conv1x1), "mm": mm, "conv1x1": conv1x1}


def _torchvision_model() -> nn.Module:
    import torchvision

    return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).eval()


def _onnx_file(model: nn.Module, size: int, folder: str) -> str:
    from googlenet.infer.optimize import export_onnx

    path = str(Path(folder) / "model.onnx")
    export_onnx(model, size, path)
    return path


def _peer_runner(impl: str, precision: str, size: int, folder: str) -> Callable[[Tensor], Any]:
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
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            _onnx_file(model, size, folder), options, providers=["CPUExecutionProvider"]
        )
        return lambda x: session.run(None, {"images": x.numpy()})
    if impl in ("torchvision-openvino", "torchvision-openvino-f32"):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32"} if impl.endswith("f32") else {}
        compiled = core.compile_model(core.read_model(_onnx_file(model, size, folder)), "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x.numpy()})
    raise ValueError(f"unknown inference path {impl!r}")


def infer(spec: dict[str, Any]) -> float:
    """Images/s of one inference path at `batch` x 3 x `size` x `size`."""
    size, batch, precision = int(spec["size"]), int(spec["batch"]), spec["precision"]
    x = torch.randn(batch, 3, size, size)
    with tempfile.TemporaryDirectory() as folder:
        if spec["impl"] == "ours":
            import googlenet

            model = googlenet.build_model(spec.get("variant", "paper"), num_classes=1000, aux_logits=False)
            run: Callable[[Tensor], Any] = googlenet.optimize(
                model,
                precision,
                spec.get("backend", "eager"),
                input_size=size,
                fuse_1x1=spec.get("fuse_1x1", False),
            )
        else:
            run = _peer_runner(spec["impl"], precision, size, folder)
        calls = max(1, int(spec.get("calls", 1)))

        def work() -> None:
            for _ in range(calls):
                run(x)

        return _median_rate(work, batch * calls, spec.get("repeats", 5), spec.get("warmup", 2))


def train(spec: dict[str, Any]) -> float:
    """Images/s of full training steps (forward with the auxiliary heads, 0.3-weighted loss, backward,
    SGD step) for torchvision's googlenet or ours."""
    size, batch, precision = int(spec["size"]), int(spec["batch"]), spec["precision"]
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
    model = model.to(memory_format=fmt).train()
    fused = bool(spec.get("fused_sgd", False))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4, **({"fused": True} if fused else {})
    )
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = weighted_loss(head_losses(outputs(x), y), aux_weight=0.3)  # section 5
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    steps = int(spec.get("steps", 2))

    def work() -> None:
        for _ in range(steps):
            step()

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
    loader = DataLoader(subset, batch_size=32, num_workers=workers, persistent_workers=workers > 0)

    def work() -> None:
        for _ in loader:
            pass

    return _median_rate(work, images, spec.get("repeats", 3), 1)


def crops144(spec: dict[str, Any]) -> dict[str, float]:
    """Crops/s of section 7's 144-crop protocol on real JPEGs against the raw forward of the same
    (optimised) model on ready batches of the same size."""
    import googlenet
    from googlenet.data.crops import CropSpec
    from googlenet.data.datasets import load_image_folder
    from googlenet.evaluate.models import Member
    from googlenet.evaluate.protocol import View, evaluate_views

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

    def protocol_work() -> dict[str, Any]:
        return evaluate_views(
            [member],
            samples,
            [CropSpec(144, size)],
            views,
            len(val.classes),
            batch_size=batch,
            workers=workers,
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
    raw, protocol = statistics.median(raws), statistics.median(rates)
    ratio = statistics.median(p / r for p, r in zip(rates, raws, strict=True))
    return {
        "value": protocol,
        "raw_crops_s": raw,
        "ratio_to_raw": ratio,
        "backend": fast.backend,
        "forward_passes": passes,
        "raw_calls": calls,
    }


KINDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "gemm": gemm,
    "infer": infer,
    "train": train,
    "data": data,
    "crops144": crops144,
}


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one path in this process; the result with its peak RSS."""
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    value = KINDS[spec["kind"]](spec)
    result = dict(value) if isinstance(value, dict) else {"value": float(value)}
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


if __name__ == "__main__":
    np.random.seed(0)
    print(json.dumps(run_spec(json.loads(sys.argv[1]))))
