"""The reference Caffe GoogLeNet's weights into the `paper` variant: .caffemodel (current and V1 formats)
and the ONNX model zoo's file.

No real file can be downloaded here, so the tests write files with the reference layer names and random
weights of the reference shapes: caffemodels with a small protobuf wire-format encoder written here from
caffe.proto's field numbers (independent of the reader's descriptor), and a runnable ONNX graph of the
deploy network built with onnx.helper. The converted model is then compared with an independent
computation of the Caffe network on BGR 0-255 pixels minus the mean (a functional forward pass here, and
ONNX Runtime for the ONNX file).
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import googlenet
from extras import require
from googlenet.cli import main
from googlenet.data.crops import normalize
from googlenet.model.caffe import CAFFE_LAYERS, reference_state_dict
from googlenet.model.weights import weight_file_kind

NUM_CLASSES = 10
MEAN_BGR = (104.0, 117.0, 123.0)

# The reference network's learned layers with their Caffe blob shapes, written out by hand from
# bvlc_googlenet's prototxt: name -> (out, in, kernel) for convolutions, (out, in) for inner products.
INCEPTION = {  # in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def reference_shapes(aux: bool = True, num_classes: int = NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "conv1/7x7_s2": (64, 3, 7, 7),
        "conv2/3x3_reduce": (64, 64, 1, 1),
        "conv2/3x3": (192, 64, 3, 3),
    }
    for key, (c, n1, r3, n3, r5, n5, pp) in INCEPTION.items():
        p = f"inception_{key}/"
        shapes |= {
            p + "1x1": (n1, c, 1, 1),
            p + "3x3_reduce": (r3, c, 1, 1),
            p + "3x3": (n3, r3, 3, 3),
            p + "5x5_reduce": (r5, c, 1, 1),
            p + "5x5": (n5, r5, 5, 5),
            p + "pool_proj": (pp, c, 1, 1),
        }
    if aux:
        for loss, c in (("loss1", 512), ("loss2", 528)):
            shapes |= {
                f"{loss}/conv": (128, c, 1, 1),
                f"{loss}/fc": (1024, 2048),
                f"{loss}/classifier": (num_classes, 1024),
            }
    shapes["loss3/classifier"] = (num_classes, 1024)
    return shapes


def random_blobs(
    aux: bool = True, seed: int = 0, num_classes: int = NUM_CLASSES
) -> dict[str, list[np.ndarray]]:
    """He-scaled random weights and small random biases: activations stay alive through all 22 layers."""
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shape in reference_shapes(aux, num_classes).items():
        fan_in = int(np.prod(shape[1:]))
        gain = 1.0 if "classifier" in name else 2.0
        weight = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(gain / fan_in))
        bias = (rng.standard_normal(shape[0]) * 0.1).astype(np.float32)
        blobs[name] = [weight, bias]
    return blobs


# --- a protobuf wire-format encoder, from caffe.proto's field numbers ------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:  # wire type 0: varint
    return _varint(number << 3) + _varint(value)


def _blob(array: np.ndarray, legacy: bool, double: bool = False) -> bytes:
    if legacy:  # num, channels, height, width (fields 1-4), padded to 4-d with leading 1s
        dims = (1,) * (4 - array.ndim) + array.shape
        out = b"".join(_int_field(i + 1, d) for i, d in enumerate(dims))
    else:  # shape (field 7): BlobShape.dim (field 1), packed int64
        out = _field(7, _field(1, b"".join(_varint(d) for d in array.shape)))
    if double:  # double_data (field 8), packed
        return out + _field(8, array.astype("<f8").tobytes())
    return out + _field(5, array.astype("<f4").tobytes())  # data (field 5), packed float


V1_TYPES = {"Convolution": 4, "InnerProduct": 14, "Pooling": 17, "SoftmaxWithLoss": 21, "Data": 5}


def write_caffemodel(path: Path, blobs: dict[str, list[np.ndarray]], legacy: bool) -> Path:
    """A NetParameter: layers in the reference's order plus a few without weights, as Caffe writes them."""
    layers: list[tuple[str, str, list[np.ndarray]]] = [("data", "Data", [])]
    for name, arrays in blobs.items():
        kind = "InnerProduct" if arrays[0].ndim == 2 else "Convolution"
        layers.append((name, kind, arrays))
        if name == "conv1/7x7_s2":
            layers.append(("pool1/3x3_s2", "Pooling", []))
    layers.append(("loss3/loss3", "SoftmaxWithLoss", []))
    net = _field(1, b"GoogleNet")
    for name, kind, arrays in layers:
        if legacy:  # V1LayerParameter in NetParameter.layers (field 2): name 4, type 5 (enum), blobs 6
            body = _field(4, name.encode()) + _int_field(5, V1_TYPES[kind])
            body += b"".join(_field(6, _blob(a, True, double=name == "conv1/7x7_s2")) for a in arrays)
            net += _field(2, body)
        else:  # LayerParameter in NetParameter.layer (field 100): name 1, type 2, blobs 7
            body = _field(1, name.encode()) + _field(2, kind.encode())
            body += b"".join(_field(7, _blob(a, False)) for a in arrays)
            net += _field(100, body)
    path.write_bytes(net)
    return path


# --- the Caffe network, computed independently ------------------------------------------------------------


def caffe_forward(
    blobs: dict[str, list[np.ndarray]], x_bgr: Tensor
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """bvlc_googlenet's deploy/train_val graph on BGR 0-255 pixels minus the mean: (logits, loss1, loss2)."""
    t = {name: [torch.from_numpy(a) for a in arrays] for name, arrays in blobs.items()}

    def conv(name: str, x: Tensor, stride: int = 1, pad: int = 0) -> Tensor:
        return F.relu(F.conv2d(x, t[name][0], t[name][1], stride, pad))

    def pool(x: Tensor, k: int, s: int, pad: int = 0) -> Tensor:
        return F.max_pool2d(x, k, s, pad, ceil_mode=True)  # Caffe's pooling rounds up

    def lrn(x: Tensor) -> Tensor:
        return F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)

    def head(loss: str, x: Tensor) -> Tensor | None:
        if f"{loss}/conv" not in t:
            return None
        x = conv(f"{loss}/conv", F.avg_pool2d(x, 5, 3))
        x = F.relu(F.linear(x.flatten(1), *t[f"{loss}/fc"]))
        return F.linear(x, *t[f"{loss}/classifier"])

    x = lrn(pool(conv("conv1/7x7_s2", x_bgr, 2, 3), 3, 2))
    x = pool(lrn(conv("conv2/3x3", conv("conv2/3x3_reduce", x), 1, 1)), 3, 2)
    aux1 = aux2 = None
    for key in INCEPTION:
        if key in ("4a", "5a"):
            x = pool(x, 3, 2)
        p = f"inception_{key}/"
        x = torch.cat(
            [
                conv(p + "1x1", x),
                conv(p + "3x3", conv(p + "3x3_reduce", x), 1, 1),
                conv(p + "5x5", conv(p + "5x5_reduce", x), 1, 2),
                conv(p + "pool_proj", pool(x, 3, 1, 1)),
            ],
            1,
        )
        if key == "4a":
            aux1 = head("loss1", x)
        if key == "4d":
            aux2 = head("loss2", x)
    x = F.avg_pool2d(x, 7, 1)  # pool5/7x7_s1
    return F.linear(x.flatten(1), *t["loss3/classifier"]), aux1, aux2


def caffe_input(pixels: Tensor) -> Tensor:
    """uint8 RGB N x 3 x H x W -> Caffe's input: BGR, float, minus the per-channel mean, no scaling."""
    mean = torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    return pixels.flip(1).float() - mean


def _pixels(n: int = 2, size: int = 224) -> Tensor:
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )


def _close(got: Tensor, expected: Tensor, rel: float = 1e-4) -> None:
    scale = expected.abs().max().item()
    assert scale > 1.0  # the comparison means something: the logits are far from zero
    assert (got - expected).abs().max().item() <= rel * scale


@pytest.fixture(scope="module")
def blobs() -> dict[str, list[np.ndarray]]:
    return random_blobs()


@pytest.fixture(scope="module")
def caffe_reference(blobs: dict[str, list[np.ndarray]]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    with torch.no_grad():
        return caffe_forward(blobs, caffe_input(_pixels()))


def test_every_reference_layer_maps_to_one_paper_parameter_pair() -> None:
    shapes = reference_shapes()
    assert set(CAFFE_LAYERS) == set(shapes)
    own = googlenet.build_model("paper", num_classes=NUM_CLASSES).state_dict()
    targets = {f"{prefix}.{what}" for prefix in CAFFE_LAYERS.values() for what in ("weight", "bias")}
    assert targets == set(own)  # every parameter of the paper variant comes from exactly one Caffe blob
    for name, prefix in CAFFE_LAYERS.items():
        assert tuple(own[f"{prefix}.weight"].shape) == shapes[name], name


@pytest.mark.parametrize("legacy", [False, True], ids=["layer", "v1-layers"])
def test_caffemodel_loads_and_matches_caffe(
    tmp_path: Path, blobs: dict[str, list[np.ndarray]], caffe_reference: tuple, legacy: bool
) -> None:
    path = write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", blobs, legacy)
    assert weight_file_kind(path) == "caffe"
    model = googlenet.build_model("paper", num_classes=NUM_CLASSES)
    meta = googlenet.load_weights(model, path)
    state = model.state_dict()
    for name, prefix in CAFFE_LAYERS.items():
        weight = torch.from_numpy(blobs[name][0])
        if name == "conv1/7x7_s2":
            weight = weight.flip(1)  # BGR -> RGB
        assert torch.equal(state[f"{prefix}.weight"], weight), name
        assert torch.equal(state[f"{prefix}.bias"], torch.from_numpy(blobs[name][1])), name
    # Caffe's preprocessing, carried by the metadata: (x / 255 - mean) / std == 255 x - mean_rgb.
    assert meta["mean"] == pytest.approx([123 / 255, 117 / 255, 104 / 255])
    assert meta["std"] == pytest.approx([1 / 255] * 3)
    pixels = _pixels()
    with torch.no_grad():
        out = model.eval().forward_train(normalize(pixels, meta["mean"], meta["std"]))
    logits, aux1, aux2 = caffe_reference
    _close(out.logits, logits)
    _close(out.aux1, aux1)
    _close(out.aux2, aux2)


def test_caffemodel_without_flip_would_differ(
    blobs: dict[str, list[np.ndarray]], caffe_reference: tuple
) -> None:
    """The BGR flip matters: the same weights fed RGB without it give different logits."""
    model = googlenet.build_model("paper", num_classes=NUM_CLASSES, aux_logits=False).eval()
    state = reference_state_dict(blobs, model, "mem")
    state["conv1.conv.weight"] = state["conv1.conv.weight"].flip(1)
    model.load_state_dict(state)
    with torch.no_grad():
        wrong = model(_pixels().float() - torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1))
    assert (wrong - caffe_reference[0]).abs().max() > 1e-2 * caffe_reference[0].abs().max()


def _onnx_zoo_file(path: Path, blobs: dict[str, list[np.ndarray]]) -> Path:
    """The deploy network as the ONNX zoo stores it: Caffe2 names (`<layer>_w_0`), data_0 -> prob_1."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = iter(range(10_000))

    def tmp() -> str:
        return f"t{next(counter)}"

    def conv(name: str, x: str, stride: int = 1, pad: int = 0) -> str:
        w, b = blobs[name]
        inits.extend([numpy_helper.from_array(w, f"{name}_w_0"), numpy_helper.from_array(b, f"{name}_b_0")])
        y, r = tmp(), tmp()
        k = w.shape[-1]
        nodes.append(helper.make_node("Conv", [x, f"{name}_w_0", f"{name}_b_0"], [y], kernel_shape=[k, k],
                                      strides=[stride] * 2, pads=[pad] * 4))  # fmt: skip
        nodes.append(helper.make_node("Relu", [y], [r]))
        return r

    def pool(x: str, k: int, s: int, pad: int = 0) -> str:
        y = tmp()
        nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4,
                                      ceil_mode=1))  # fmt: skip
        return y

    def lrn(x: str) -> str:
        y = tmp()
        nodes.append(helper.make_node("LRN", [x], [y], size=5, alpha=1e-4, beta=0.75, bias=1.0))
        return y

    x = lrn(pool(conv("conv1/7x7_s2", "data_0", 2, 3), 3, 2))
    x = pool(lrn(conv("conv2/3x3", conv("conv2/3x3_reduce", x), 1, 1)), 3, 2)
    for key in INCEPTION:
        if key in ("4a", "5a"):
            x = pool(x, 3, 2)
        p = f"inception_{key}/"
        branches = [
            conv(p + "1x1", x),
            conv(p + "3x3", conv(p + "3x3_reduce", x), 1, 1),
            conv(p + "5x5", conv(p + "5x5_reduce", x), 1, 2),
            conv(p + "pool_proj", pool(x, 3, 1, 1)),
        ]
        y = tmp()
        nodes.append(helper.make_node("Concat", branches, [y], axis=1))
        x = y
    pooled, flat = tmp(), tmp()
    nodes.append(helper.make_node("AveragePool", [x], [pooled], kernel_shape=[7, 7], strides=[1, 1]))
    nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
    w, b = blobs["loss3/classifier"]
    inits += [
        numpy_helper.from_array(w, "loss3/classifier_w_0"),
        numpy_helper.from_array(b, "loss3/classifier_b_0"),
    ]
    nodes.append(
        helper.make_node("Gemm", [flat, "loss3/classifier_w_0", "loss3/classifier_b_0"], ["logits"], transB=1)
    )
    nodes.append(helper.make_node("Softmax", ["logits"], ["prob_1"], axis=1))
    graph = helper.make_graph(
        nodes,
        "googlenet",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [None, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, NUM_CLASSES]),
         helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [None, NUM_CLASSES])],
        inits,
    )  # fmt: skip
    # IR 7, the oldest opset 13 allows: onnx's default is its newest IR, which an older ONNX Runtime
    # refuses (onnx 1.23 writes IR 14; onnxruntime 1.23, the last for Python 3.10, reads up to 11)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="onnx-caffe2", ir_version=7
    )
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_zoo_file_matches_onnxruntime(tmp_path: Path, blobs: dict[str, list[np.ndarray]]) -> None:
    ort = require("onnxruntime")
    path = _onnx_zoo_file(tmp_path / "googlenet-9.onnx", blobs)
    assert weight_file_kind(path) == "onnx"
    pixels = _pixels()
    session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    expected, _ = session.run(None, {"data_0": caffe_input(pixels).numpy()})

    with pytest.raises(
        googlenet.CheckpointError, match="no auxiliary heads; build the model with aux_logits=False"
    ):
        googlenet.load_weights(googlenet.build_model("paper", num_classes=NUM_CLASSES), path)
    model = googlenet.build_model("paper", num_classes=NUM_CLASSES, aux_logits=False)
    meta = googlenet.load_weights(model, path)
    with torch.no_grad():
        got = model.eval()(normalize(pixels, meta["mean"], meta["std"]))
    _close(got, torch.from_numpy(expected))
    # And the model the file describes: paper variant, no heads, its classes.
    built, _ = googlenet.model.weights.model_from_file(path)
    assert built.config.variant == "paper" and built.aux1 is None and built.config.num_classes == NUM_CLASSES


def test_onnx_gemm_without_transb_is_transposed(tmp_path: Path) -> None:
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    from googlenet.model.caffe import read_onnx_zoo

    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "loss3/classifier_w_0", "loss3/classifier_b_0"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "loss3/classifier_w_0"), numpy_helper.from_array(np.zeros(3, np.float32), "loss3/classifier_b_0")],
    )  # fmt: skip
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    assert np.array_equal(read_onnx_zoo(path)["loss3/classifier"][0], w.T)


# --- one-line errors --------------------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_layer_is_named(blobs: dict[str, list[np.ndarray]]) -> None:
    model = googlenet.build_model("paper", num_classes=NUM_CLASSES)
    partial = {k: v for k, v in blobs.items() if k != "inception_4c/5x5"}
    with pytest.raises(googlenet.CheckpointError) as info:
        reference_state_dict(partial, model, "x.caffemodel")
    assert "'inception_4c/5x5' (our inception4c.branch3.1.conv) is missing" in _one_line(info)


def test_misshaped_layer_is_named(blobs: dict[str, list[np.ndarray]]) -> None:
    model = googlenet.build_model("paper", num_classes=NUM_CLASSES)
    wrong = dict(blobs)
    wrong["inception_3a/5x5"] = [np.zeros((32, 16, 3, 3), np.float32), blobs["inception_3a/5x5"][1]]
    with pytest.raises(googlenet.CheckpointError) as info:
        reference_state_dict(wrong, model, "x.caffemodel")
    assert "inception_3a/5x5 weight has shape (32, 16, 3, 3) but our inception3a.branch3.1.conv.weight is (32, 16, 5, 5)" in _one_line(info)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "variant",
            "fits only the 'paper' layout; this model has bn_eps=1e-05 (the file's network has None)",
        ),
        # the message named the variant, 'paper' here too, where a layout field differed
        (
            "layout",
            "fits only the 'paper' layout; this model has maxpool4_kernel=2 (the file's network has 3)",
        ),
        ("classes", "file has 10 classes but the model has 7"),
        ("extra", "1 layer(s) this network does not have (first 'fc8')"),
        ("blobs", "layer 'conv2/3x3' has 1 blobs, expected weight and bias"),
    ],
)
def test_incompatible_files_are_one_line_errors(
    blobs: dict[str, list[np.ndarray]], change: str, message: str
) -> None:
    model = googlenet.build_model("paper", num_classes=NUM_CLASSES)
    data = dict(blobs)
    if change == "variant":
        model = googlenet.build_model("bn", num_classes=NUM_CLASSES)
    elif change == "layout":
        model = googlenet.build_model("paper", num_classes=NUM_CLASSES, maxpool4_kernel=2)
    elif change == "classes":
        model = googlenet.build_model("paper", num_classes=7)
    elif change == "extra":
        data["fc8"] = blobs["loss3/classifier"]
    else:
        data["conv2/3x3"] = blobs["conv2/3x3"][:1]
    with pytest.raises(googlenet.CheckpointError) as info:
        reference_state_dict(data, model, "x.caffemodel")
    assert message in _one_line(info)


def test_unreadable_files(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.caffemodel"
    garbage.write_bytes(b"\xff\xff\xff\xff not protobuf")
    with pytest.raises(googlenet.CheckpointError, match=r"not a readable \.caffemodel") as info:
        googlenet.load_weights(googlenet.build_model("paper"), garbage)
    _one_line(info)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(_field(1, b"net"))
    with pytest.raises(googlenet.CheckpointError, match="no layer with weights"):
        googlenet.load_weights(googlenet.build_model("paper"), empty)
    bad_onnx = tmp_path / "broken.onnx"
    bad_onnx.write_bytes(b"\x08\x07garbage\xff")
    # without the `fast` extra (torch before 2.6 cannot have it) the file is refused for the missing package
    expected = (
        r"not a readable ONNX model|no `<layer>_w_0`"
        if importlib.util.find_spec("onnx")
        else r"needs onnx: pip install"
    )
    with pytest.raises(googlenet.CheckpointError, match=expected):
        googlenet.load_weights(googlenet.build_model("paper"), bad_onnx)
    truncated = tmp_path / "short.caffemodel"
    blob = (
        _int_field(1, 1)
        + _int_field(2, 1)
        + _int_field(3, 1)
        + _int_field(4, 4)
        + _field(5, struct.pack("<3f", 1, 2, 3))
    )
    truncated.write_bytes(_field(2, _field(4, b"conv1/7x7_s2") + _field(6, blob)))
    with pytest.raises(googlenet.CheckpointError, match="conv1/7x7_s2 blob 0 holds 3 values for shape"):
        googlenet.load_weights(googlenet.build_model("paper"), truncated)


# --- end to end: convert, evaluate with the checkpoint's normalisation ------------------------------------


def test_convert_cli_then_evaluate_path_uses_caffe_preprocessing(
    tmp_path: Path, blobs: dict[str, list[np.ndarray]], caffe_reference: tuple, capsys: pytest.CaptureFixture
) -> None:
    from googlenet.evaluate.models import load_ensemble
    from googlenet.evaluate.protocol import member_probs

    source = write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", blobs, legacy=False)
    out = tmp_path / "bvlc.pt"
    assert main(["export", "--convert", str(source), "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["format"] == "checkpoint" and summary["variant"] == "paper" and summary["aux_heads"] is True
    )
    assert summary["num_classes"] == NUM_CLASSES

    ensemble = load_ensemble([out])  # what `googlenet evaluate/predict --checkpoint` build
    member = ensemble.members[0]
    assert member.mean == pytest.approx((123 / 255, 117 / 255, 104 / 255))
    with torch.no_grad():
        probs = member_probs(member, _pixels(), batch_size=2)
    expected = torch.softmax(caffe_reference[0], dim=-1)
    assert (probs - expected).abs().max().item() <= 1e-4
    # The .caffemodel also works directly as --weights (converted on the fly, always the paper variant).
    direct = load_ensemble(weights=source)
    assert direct.members[0].mean == member.mean and direct.sources == [str(source)]


def test_cli_conversion_errors_are_one_line(tmp_path: Path, blobs: dict[str, list[np.ndarray]]) -> None:
    partial = {k: v for k, v in blobs.items() if not k.startswith("inception_5b/")}
    source = write_caffemodel(tmp_path / "partial.caffemodel", partial, legacy=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "googlenet",
            "export",
            "--convert",
            str(source),
            "--output",
            str(tmp_path / "x.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "layer 'inception_5b/1x1' (our inception5b.branch1.conv) is missing from the file" in result.stderr
    assert not (tmp_path / "x.pt").exists()


def test_missing_packages_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from googlenet.model import caffe

    path = write_caffemodel(
        tmp_path / "m.caffemodel", {"conv2/3x3": random_blobs()["conv2/3x3"]}, legacy=False
    )
    caffe._net_parameter_class.cache_clear()
    monkeypatch.setitem(sys.modules, "google.protobuf", None)  # as if protobuf were not installed
    try:
        with pytest.raises(
            googlenet.CheckpointError, match=r"needs protobuf: pip install 'googlenet\[caffe\]'"
        ):
            caffe.read_caffemodel(path)
    finally:
        caffe._net_parameter_class.cache_clear()
    monkeypatch.delitem(sys.modules, "google.protobuf")
    from google.protobuf import message_factory

    monkeypatch.delattr(message_factory, "GetMessageClass")  # protobuf 4.21, which tensorboard allows
    try:
        with pytest.raises(googlenet.CheckpointError, match=r"needs protobuf 4.25 or later \(this is "):
            caffe.read_caffemodel(path)
    finally:
        caffe._net_parameter_class.cache_clear()
    monkeypatch.setitem(sys.modules, "onnx", None)
    onnx_file = tmp_path / "g.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    with pytest.raises(googlenet.CheckpointError, match=r"needs onnx: pip install 'googlenet\[fast\]'"):
        googlenet.load_weights(googlenet.build_model("paper"), onnx_file)


def _classifier_only(shape: tuple[int, ...]) -> bytes:
    """A NetParameter whose one layer, loss3/classifier, has a blob of `shape` and no values."""
    dims = b"".join(_varint(d & (2**64 - 1)) for d in shape)  # int64 as protobuf writes it
    blob = _field(7, _field(1, dims))
    return _field(100, _field(1, b"loss3/classifier") + _field(2, b"InnerProduct") + _field(7, blob))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2**32, 2**32), "holds 0 values for shape (4294967296, 4294967296)"),  # an int64 product of 0
        ((-1, 5, 0), "has a negative dimension in its shape (-1, 5, 0)"),
        ((10**7, 0), "its classifier has 10,000,000 outputs"),  # 59 bytes asking for a 38 GB model
    ],
)
def test_a_crafted_caffemodel_is_one_line(tmp_path: Path, shape: tuple[int, ...], message: str) -> None:
    require("google.protobuf")
    path = tmp_path / "odd.caffemodel"
    path.write_bytes(_classifier_only(shape))
    with pytest.raises(googlenet.CheckpointError, match=re.escape(message)) as info:
        googlenet.model.weights.model_from_file(path)
    assert str(path) in _one_line(info)


def test_an_onnx_file_reads_no_external_data_and_no_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    from googlenet.model.caffe import read_onnx_zoo

    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"SECRETSECRETSECR")
    leak = numpy_helper.from_array(np.zeros(4, np.float32), "loss3/classifier_b_0")
    leak.ClearField("raw_data")
    leak.data_location = onnx.TensorProto.EXTERNAL
    leak.external_data.add(key="location", value="secret.bin")
    text = helper.make_tensor("loss3/classifier_w_0", onnx.TensorProto.STRING, [1], [b"x"])
    for tensors, message in (
        ([numpy_helper.from_array(np.zeros((4, 2), np.float32), "loss3/classifier_w_0"), leak],
         "refers to an external data file"),
        ([text, numpy_helper.from_array(np.zeros(4, np.float32), "loss3/classifier_b_0")],
         "'loss3/classifier_w_0' is not a readable array of numbers"),
    ):  # fmt: skip
        graph = helper.make_graph([], "g", [], [], tensors)
        path = tmp_path / "m.onnx"
        path.write_bytes(helper.make_model(graph).SerializeToString())
        with pytest.raises(googlenet.CheckpointError, match=re.escape(message)) as info:
            read_onnx_zoo(path)
        assert str(path) in _one_line(info)
