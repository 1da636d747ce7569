"""Small building blocks: a convolution followed by ReLU (paper) or by BatchNorm and ReLU (variants).

Every convolution in GoogLeNet, "including those inside the Inception modules, use[s] rectified linear
activation" (section 5). The module keeps the names `conv` and `bn` so the `state_dict` keys match
torchvision's `BasicConv2d` (`conv1.conv.weight`, `conv1.bn.running_mean`), which makes loading
torchvision's weight files a key-for-key copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Convolution -> [BatchNorm] -> ReLU.

    `bn_eps=None` gives the paper's block: a biased convolution and ReLU. A number gives the
    BatchNorm variants' block: an unbiased convolution, BatchNorm with that epsilon, ReLU (BatchNorm
    came in 2015, after the paper; see `googlenet.model.googlenet.VARIANTS`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bn_eps: float | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2  # "same" padding: 7x7 pad 3, 5x5 pad 2, 3x3 pad 1 (FACTS s.1)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bn_eps is None
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps) if bn_eps is not None else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Convolution, then BatchNorm when the block has one, then ReLU."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x)


_onnx_exports = 0  # googlenet's own ONNX exports in progress (`onnx_export`)


@contextlib.contextmanager
def onnx_export() -> Iterator[None]:
    """Mark an ONNX export of ours, so LRN writes its export form (`normalise`) and its plain forward.
    `torch.onnx.is_in_onnx_export()` says so by itself only from about torch 2.7: before, it did not see
    the dynamo-based exporter, and the exported network kept a fractional `Pow` (OpenVINO runs the
    `paper` network 1.9-2.8x slower with it) and, for an input needing a gradient, the training path."""
    global _onnx_exports
    _onnx_exports += 1
    try:
        yield
    finally:
        _onnx_exports -= 1


def _functorch_active() -> bool:
    """Whether a `torch.func` transform is running (its grad and vmap need an autograd.Function with
    `setup_context`, and its higher orders what autograd derives itself). torch has no public name for
    this; a release without the private one is taken as "no"."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def _in_onnx_export() -> bool:
    return _onnx_exports > 0 or torch.onnx.is_in_onnx_export()


def _fp16(x: Tensor) -> bool:
    """Whether LRN's sum of squares of `x` would be computed in float16: fp16 input, or fp16 autocast on
    `x`'s device (GPU `--amp` where bf16 is not native)."""
    if x.dtype == torch.float16:
        return True
    if torch.compiler.is_compiling():
        return False
    try:
        kind = x.device.type
        return torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.float16
    except RuntimeError:  # a device without autocast ("meta": the memory checks' dry runs)
        return False


def _window(x: Tensor, band_like: Callable[[Tensor], Tensor]) -> Tensor:
    """The channel-window sums of x^2 (a 1x1 convolution with the 0/1 band `band_like(squares)`, made
    in the squares' dtype: a TorchScript trace then records no constant dtype). Under fp16 they are formed
    in float32 with autocast off: fp16 holds at most 65504, so an activation above 256 (Caffe's 0-255
    scaling reaches that in conv1) squared to inf, and the band's zeros times inf made every channel of
    that pixel NaN. bf16 and float32 keep their dtype (bf16 has float32's range; AMX for bf16)."""
    if _fp16(x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            squares = x.float().square()
            return F.conv2d(squares, band_like(squares))
    squares = x * x
    return F.conv2d(squares, band_like(squares))  # under bf16 autocast: bf16, on AMX


def normalise(x: Tensor, base: Tensor, beta: float) -> Tensor:
    """x * base ** -beta, LRN's output from its normaliser's base (float32; cast back to x's dtype).

    In an ONNX export with beta = 0.75 (the reference Caffe model's, which `paper` uses) it is written
    as x / (sqrt(b) * sqrt(sqrt(b))), the same value to float rounding: OpenVINO runs a fractional
    `Pow` (and `Reciprocal`, which it turns into one) far slower than `Sqrt` and `Div`. PyTorch's own
    `pow` is faster than the chain (one pass over memory instead of three), so eager inference and
    training keep it. Measured gains are in docs/performance.md.
    """
    if beta == 0.75 and _in_onnx_export():
        root = base.sqrt()
        return x / (root * root.sqrt()).to(x.dtype)
    return x * base.pow(-beta).to(x.dtype)


class _LRNFunction(torch.autograd.Function):
    """LRN with a hand-written backward pass (used while training).

    Autograd's backward through the forward's chain of element-wise operations needs about twice the
    forward's memory passes and a second `pow`. With y = x * d^-beta and
    d = k + alpha / n * (B x^2) (B: the band matrix), the gradient has the closed form
        dL/dx = g * d^-beta - (2 * alpha * beta / n) * x * (B^T (g * x * d^(-beta - 1))),
    one band convolution and a few element-wise operations; the forward saves d^(-beta - 1).
    Measured on the project's CPU under bf16 autocast, batch 32: LRN forward + backward 1.8-1.9x
    faster on 112x112x64 and 56x56x192 inputs (the second is lrn2's map; lrn1 runs after max pool 1, on
    56x56x64). No library has a fused LRN
    backward, so we write it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, band: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        """y = x * d^-beta (d as in the class docstring); saves what `backward` needs."""
        window = _window(x, lambda like: band.to(like.dtype))
        wide = torch.promote_types(window.dtype, torch.float32)  # float32, or float64 for float64 input
        d = window.to(wide).mul_(alpha / size).add_(k)
        scale = d.pow(-beta)
        ratio = d.reciprocal_().mul_(scale)  # d ** (-beta - 1), in d's memory
        scale = scale.to(x.dtype)
        ctx.save_for_backward(x, band, scale, ratio)
        ctx.coefficient = 2 * alpha * beta / size
        ctx.window_dtype = window.dtype
        return x * scale

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        """The closed-form gradient with respect to `x` (class docstring); None for the other inputs."""
        if torch.is_grad_enabled():  # backward(create_graph=True): a second derivative is coming
            raise RuntimeError(
                "LocalResponseNorm's closed-form backward gives first derivatives only; for higher-order "
                "ones (a gradient penalty, a Hessian) set closed_form_backward = False on the model's "
                "LocalResponseNorm layers (googlenet.model.layers)"
            )
        x, band, scale, ratio = ctx.saved_tensors
        weighted = (grad * x).to(ratio.dtype).mul_(ratio).to(ctx.window_dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):  # the forward's dtype, explicitly
            spread = F.conv2d(weighted, band.to(ctx.window_dtype).transpose(0, 1))
        grad_x = torch.addcmul(grad * scale, x, spread.to(x.dtype), value=-ctx.coefficient)
        return grad_x, None, None, None, None, None


class LocalResponseNorm(nn.LocalResponseNorm):
    """Across-channel local response normalisation (Figure 3's "LocalRespNorm"; Table 1 has no LRN
    rows), computed faster.

    The same function as `torch.nn.LocalResponseNorm` (tested to float rounding, values and gradients):
    y_c = x_c * (k + alpha / n * sum of x^2 over the n channels around c) ** -beta.
    PyTorch's CPU kernel builds a 5-D view and runs a 3-D average pool, slow in both directions and with
    no bfloat16 kernel. Here the channel-window sum of squares is a 1x1 convolution with a fixed 0/1 band
    matrix, one GEMM per pixel block on oneDNN's kernels (AMX under bf16 autocast); the normaliser is
    then formed in float32, because under bf16 the term alpha / n * sum (about 1e-3) would vanish next
    to k = 1. When a gradient is needed the backward pass is the closed form of `_LRNFunction`. No
    library offers a faster LRN, so we write this one.

    The closed form gives first derivatives only: a backward pass with `create_graph=True` through it
    raises. `closed_form_backward = False` (on a layer, or on the class) lets autograd differentiate
    `composed` instead, to any order; under `torch.func` transforms (grad, vmap, jacrev) and inside
    torch.compile and torch.export that is what runs anyway.
    """

    closed_form_backward: bool = True

    def _band(self, channels: int, like: Tensor) -> Tensor:
        """The [out, in] 0/1 matrix of torch's window: in - out from -(size // 2) to (size - 1) // 2.
        Made from `like` (`new_ones`), not with a device or dtype of its own: a TorchScript trace would
        record those as constants, and the file would run on the exporting device and dtype only."""
        ones = like.new_ones((channels, channels))
        return ones.triu(-(self.size // 2)).tril((self.size - 1) // 2).view(channels, channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """LRN of `x`: through `_LRNFunction` when a gradient is needed (and not while tracing, exporting
        or compiling), else `composed`; an input that is not 4-D goes to `torch.nn.LocalResponseNorm`."""
        if x.dim() != 4:
            return super().forward(x)
        # Tracers (TorchScript, ONNX, torch.compile and torch.export) take the plain forward: theirs to
        # differentiate; before torch 2.6 dynamo could neither ask about functorch nor trace the closed
        # form's in-place steps.
        compiling = getattr(torch.compiler, "is_compiling", lambda: False)()
        tracing = torch.jit.is_tracing() or _in_onnx_export() or compiling
        wanted = self.closed_form_backward and torch.is_grad_enabled() and x.requires_grad
        if wanted and not tracing and not _functorch_active():
            band = self._band(x.shape[1], x)
            return _LRNFunction.apply(x, band, self.size, self.alpha, self.beta, self.k)
        out = self.composed(x)
        jit = torch.jit.is_tracing() or _in_onnx_export()  # one graph whatever the grad mode (trace's check)
        if jit or not (torch.is_grad_enabled() and x.requires_grad):
            # Inference keeps the input's dtype, as every other layer does: a network cast to bf16 (not
            # autocast) would otherwise feed its next convolution float32. Under autocast that
            # convolution casts to bf16 anyway, and max pooling commutes with the rounding: the same
            # results. `type_as`, not a dtype, so that a TorchScript trace records no constant dtype.
            out = out.type_as(x)
        return out

    def composed(self, x: Tensor) -> Tensor:
        """The forward as plain tensor operations (what inference, tracing and export see; autograd
        differentiates it step by step, which `benchmarks/lrn_backward.py` compares with the closed form)."""
        window = _window(x, lambda like: self._band(x.shape[1], like))
        wide = window.to(torch.promote_types(window.dtype, torch.float32))  # float64 stays float64
        return normalise(x, self.k + (self.alpha / self.size) * wide, self.beta)
