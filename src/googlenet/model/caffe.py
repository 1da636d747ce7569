"""The reference Caffe GoogLeNet (BVLC `bvlc_googlenet`) as weights for the `paper` variant.

Two files carry those weights: the `.caffemodel` itself (a protobuf `NetParameter`) and the ONNX model
zoo's `googlenet-*.onnx`, converted from it through Caffe2 (deploy-only: no auxiliary heads). Both name
their layers as the reference prototxt does; `CAFFE_LAYERS` maps each name to our module, one line each,
and every tensor is shape-checked against the model before anything is loaded.

The Caffe network is the paper's layout exactly (biased convolutions + ReLU, the two LRNs, 5x5 third
branches, ceil-mode max pools, aux heads pooling 5x5/3), so only the input convention differs:
Caffe feeds BGR pixels in 0-255 minus the mean (104, 117, 123) with no scaling. We flip conv1's input
channels so the model reads RGB, and record Caffe's mean subtraction in the checkpoint's metadata as
`mean = (123, 117, 104) / 255`, `std = 1 / 255` on our 0-1 RGB input, which is the same arithmetic:
(x / 255 - m / 255) / (1 / 255) = x - m. Evaluation and prediction then need no extra flags.

No Caffe install and no protoc are needed: the subset of `caffe.proto` we read (NetParameter with both
the current `layer` and the legacy V1 `layers` field, LayerParameter, V1LayerParameter, BlobProto,
BlobShape) is declared below as a `FileDescriptorProto` and turned into message classes at run time.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from googlenet.errors import CheckpointError
from googlenet.io import require_file
from googlenet.model import table1
from googlenet.model.googlenet import VARIANTS, GoogLeNet, build_model
from googlenet.model.weights import (
    NO_HEADS_TO_BUILD,
    _load_state,
    file_classes,
    imagenet_meta,
    layout_difference,
)

# bvlc_googlenet/train_val.prototxt: `mean_value: 104, 117, 123` (B, G, R) on 0-255 pixels, no scale.
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
PIXEL_SCALE = 255.0


def _caffe_layers() -> dict[str, str]:
    """Reference layer name -> our module prefix (each owns a `.weight` and a `.bias`)."""
    layers = {
        "conv1/7x7_s2": "conv1.conv",
        "conv2/3x3_reduce": "conv2.conv",  # Figure 3's 1x1 before the stem's 3x3
        "conv2/3x3": "conv3.conv",
    }
    for key in table1.INCEPTION:  # "3a" ... "5b"
        caffe, ours = f"inception_{key}", f"inception{key}"
        layers[f"{caffe}/1x1"] = f"{ours}.branch1.conv"
        layers[f"{caffe}/3x3_reduce"] = f"{ours}.branch2.0.conv"
        layers[f"{caffe}/3x3"] = f"{ours}.branch2.1.conv"
        layers[f"{caffe}/5x5_reduce"] = f"{ours}.branch3.0.conv"
        layers[f"{caffe}/5x5"] = f"{ours}.branch3.1.conv"
        layers[f"{caffe}/pool_proj"] = f"{ours}.branch4.1.conv"
    for loss, aux in (("loss1", "aux1"), ("loss2", "aux2")):  # section 5: on 4a and on 4d
        layers[f"{loss}/conv"] = f"{aux}.conv.conv"
        layers[f"{loss}/fc"] = f"{aux}.fc1"
        layers[f"{loss}/classifier"] = f"{aux}.fc2"
    layers["loss3/classifier"] = "fc"
    return layers


CAFFE_LAYERS: dict[str, str] = _caffe_layers()
AUX_PREFIXES = ("loss1/", "loss2/")
CLASSIFIER = "loss3/classifier"

Blobs = dict[str, list[np.ndarray]]

# --- caffe.proto, the subset we read -------------------------------------------------------------------

# V1LayerParameter.LayerType, as numbered in caffe.proto (legacy files store the type as this enum).
_V1_LAYER_TYPES = {
    "NONE": 0, "ACCURACY": 1, "BNLL": 2, "CONCAT": 3, "CONVOLUTION": 4, "DATA": 5, "DROPOUT": 6,
    "EUCLIDEAN_LOSS": 7, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MULTINOMIAL_LOGISTIC_LOSS": 16, "POOLING": 17,
    "RELU": 18, "SIGMOID": 19, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "TANH": 23,
    "WINDOW_DATA": 24, "ELTWISE": 25, "POWER": 26, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "HINGE_LOSS": 28,
    "MEMORY_DATA": 29, "ARGMAX": 30, "THRESHOLD": 31, "DUMMY_DATA": 32, "SLICE": 33, "MVN": 34,
    "ABSVAL": 35, "SILENCE": 36, "CONTRASTIVE_LOSS": 37, "EXP": 38, "DECONVOLUTION": 39,
}  # fmt: skip


def _older(version: str, than: tuple[int, ...]) -> bool:
    """Whether a dotted version string ("4.24.4", "5.29.0rc1") is older than `than`."""
    parts = [int(m.group()) if (m := re.match(r"\d+", piece)) else 0 for piece in version.split(".")]
    return tuple(parts[: len(than)]) < than


@lru_cache(maxsize=1)
def _net_parameter_class() -> type:
    """`caffe.NetParameter` (subset), built from a descriptor in a private pool."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise CheckpointError(
            "reading a .caffemodel needs protobuf: pip install 'googlenet[caffe]'"
        ) from None
    # tensorboard, a dependency, brings any protobuf from 3.19 on; 4.21 lacks GetMessageClass and
    # 4.22-4.24.4 crashed (pyproject.toml's [caffe] note): refused by name, not an AttributeError
    from google.protobuf import __version__ as protobuf_version

    if not hasattr(message_factory, "GetMessageClass") or _older(protobuf_version, (4, 25)):
        raise CheckpointError(
            f"reading a .caffemodel needs protobuf 4.25 or later (this is {protobuf_version}): "
            "pip install 'googlenet[caffe]'"
        )
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="googlenet/caffe_subset.proto", package="caffe", syntax="proto2"
    )

    def message(name: str, fields: list[tuple[str, int, int, int, str, bool]]) -> Any:
        proto = file.message_type.add(name=name)
        for field_name, number, type_, label, type_name, packed in fields:
            field = proto.field.add(name=field_name, number=number, type=type_, label=label)
            if type_name:
                field.type_name = type_name
            if packed:
                field.options.packed = True
        return proto

    OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", [("dim", 1, F.TYPE_INT64, REP, "", True)])
    message("BlobProto", [
        ("num", 1, F.TYPE_INT32, OPT, "", False),
        ("channels", 2, F.TYPE_INT32, OPT, "", False),
        ("height", 3, F.TYPE_INT32, OPT, "", False),
        ("width", 4, F.TYPE_INT32, OPT, "", False),
        ("data", 5, F.TYPE_FLOAT, REP, "", True),
        ("shape", 7, F.TYPE_MESSAGE, OPT, ".caffe.BlobShape", False),
        ("double_data", 8, F.TYPE_DOUBLE, REP, "", True),
    ])  # fmt: skip
    message("LayerParameter", [
        ("name", 1, F.TYPE_STRING, OPT, "", False),
        ("type", 2, F.TYPE_STRING, OPT, "", False),
        ("blobs", 7, F.TYPE_MESSAGE, REP, ".caffe.BlobProto", False),
    ])  # fmt: skip
    v1 = message("V1LayerParameter", [
        ("name", 4, F.TYPE_STRING, OPT, "", False),
        ("type", 5, F.TYPE_ENUM, OPT, ".caffe.V1LayerParameter.LayerType", False),
        ("blobs", 6, F.TYPE_MESSAGE, REP, ".caffe.BlobProto", False),
    ])  # fmt: skip
    enum = v1.enum_type.add(name="LayerType")
    for name, number in _V1_LAYER_TYPES.items():
        enum.value.add(name=name, number=number)
    message("NetParameter", [
        ("name", 1, F.TYPE_STRING, OPT, "", False),
        ("layers", 2, F.TYPE_MESSAGE, REP, ".caffe.V1LayerParameter", False),  # legacy (V1) files
        ("layer", 100, F.TYPE_MESSAGE, REP, ".caffe.LayerParameter", False),
    ])  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def _blob_array(blob: Any, where: str) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # legacy 4-d blob: num x channels x height x width
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.data if len(blob.data) else blob.double_data
    count = len(values)
    if any(d < 0 for d in shape):
        raise CheckpointError(f"{where} has a negative dimension in its shape {shape}")
    if count != math.prod(shape):  # Python's integers: a product of huge dimensions cannot wrap to 0
        raise CheckpointError(f"{where} holds {count} values for shape {shape}")
    return np.fromiter(values, dtype=np.float32, count=count).reshape(shape)


def read_caffemodel(path: str | os.PathLike[str]) -> Blobs:
    """Every layer with learned blobs in a `.caffemodel`: name -> [weight, bias] as float32 arrays.

    Reads the current `layer` field and the legacy V1 `layers` field alike.
    """
    net_class = _net_parameter_class()
    file = Path(path)
    require_file(file)
    net = net_class()
    try:
        net.ParseFromString(file.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends: not a caffemodel
        raise CheckpointError(f"{file}: not a readable .caffemodel ({type(exc).__name__})") from None
    out: Blobs = {}
    for layer in [*net.layer, *net.layers]:
        if not len(layer.blobs):
            continue
        if layer.name in out:
            raise CheckpointError(f"{file}: layer {layer.name!r} has weights twice")
        out[layer.name] = [
            _blob_array(blob, f"{file}: {layer.name} blob {i}") for i, blob in enumerate(layer.blobs)
        ]
    if not out:
        raise CheckpointError(f"{file}: no layer with weights (not a .caffemodel?)")
    return out


# Caffe2's naming in the ONNX zoo file: `<layer>_w_0` and `<layer>_b_0` (older exports drop the `_0`).
_ONNX_NAME = re.compile(r"^(?P<layer>.+)_(?P<kind>[wb])(?:_0)?$")


def read_onnx_zoo(path: str | os.PathLike[str]) -> Blobs:
    """The initializers of the ONNX model zoo's GoogLeNet grouped per Caffe layer: name -> [weight, bias].

    A fully connected weight used by a Gemm without `transB` is stored transposed; it is turned back into
    Caffe's (out, in) layout here.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise CheckpointError("reading an ONNX file needs onnx: pip install 'googlenet[fast]'") from None
    file = Path(path)
    require_file(file)
    try:
        proto = onnx.load_model_from_string(file.read_bytes())
    except Exception as exc:  # noqa: BLE001 - any decoding failure means this is not an ONNX model
        raise CheckpointError(f"{file}: not a readable ONNX model ({type(exc).__name__})") from None
    transposed = set()
    for node in proto.graph.node:
        if node.op_type == "Gemm" and len(node.input) > 1:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            if not trans_b:
                transposed.add(node.input[1])
    parts: dict[str, dict[str, np.ndarray]] = {}
    for tensor in proto.graph.initializer:
        match = _ONNX_NAME.match(tensor.name)
        if match is None:
            continue  # shape constants and the like
        if tensor.data_location == onnx.TensorProto.EXTERNAL:  # the zoo's file holds its weights inside
            raise CheckpointError(
                f"{file}: initializer {tensor.name!r} refers to an external data file; only weights stored "
                "inside the ONNX file are read"
            )
        try:
            array = np.asarray(numpy_helper.to_array(tensor), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - data that does not fit its dims, strings: not weights
            raise CheckpointError(
                f"{file}: initializer {tensor.name!r} is not a readable array of numbers ({type(exc).__name__})"
            ) from None
        if tensor.name in transposed:
            array = array.T
        parts.setdefault(match["layer"], {})[match["kind"]] = array
    if not parts:
        if any(prop.key == "googlenet.meta" for prop in proto.metadata_props):  # export.META_KEY
            raise CheckpointError(
                f"{file}: an ONNX export of `googlenet export`, not weights to read; give the .pt it was "
                "exported from"
            )
        raise CheckpointError(f"{file}: no `<layer>_w_0` initializers (not the ONNX zoo's GoogLeNet?)")
    out: Blobs = {}
    for layer, tensors in parts.items():
        if "w" not in tensors or "b" not in tensors:
            missing = "weight" if "w" not in tensors else "bias"
            raise CheckpointError(f"{file}: layer {layer!r} has no {missing} initializer")
        out[layer] = [tensors["w"], tensors["b"]]
    return out


def read_reference(path: str | os.PathLike[str], kind: str) -> Blobs:
    """`read_caffemodel` (kind "caffe") or `read_onnx_zoo` (kind "onnx")."""
    return read_caffemodel(path) if kind == "caffe" else read_onnx_zoo(path)


# --- mapping onto the model ---------------------------------------------------------------------------


def _fit(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`array` in `shape`, dropping the leading 1s of Caffe's legacy 4-d blobs; None if it cannot fit."""
    dims = tuple(array.shape)
    while len(dims) > len(shape) and dims[0] == 1:
        dims = dims[1:]
    return array.reshape(dims) if dims == shape else None


def reference_num_classes(blobs: Mapping[str, list[np.ndarray]], source: str) -> int:
    """Width of the main classifier (`loss3/classifier`) in the file."""
    if CLASSIFIER not in blobs:
        raise CheckpointError(f"{source}: no layer {CLASSIFIER!r} (not the reference GoogLeNet?)")
    weight = blobs[CLASSIFIER][0]
    dims = [d for d in weight.shape]
    while len(dims) > 2 and dims[0] == 1:
        dims = dims[1:]
    return file_classes(source, int(dims[0]))


def has_aux_heads(blobs: Mapping[str, list[np.ndarray]]) -> bool:
    """Whether the file holds the auxiliary classifiers' layers (`loss1/...`, `loss2/...`)."""
    return any(name.startswith(AUX_PREFIXES) for name in blobs)


def reference_state_dict(
    blobs: Mapping[str, list[np.ndarray]], model: GoogLeNet, source: str
) -> dict[str, Tensor]:
    """Our state dict for `model` from reference blobs, conv1 flipped from BGR to RGB.

    One-line `CheckpointError` for a model that is not the paper's layout, a layer the file lacks or
    has extra, a layer without weight and bias, or a tensor whose shape differs from ours.
    """
    c = model.config
    differs = layout_difference(c, VARIANTS["paper"])  # the file's heads pool 5x5/3, as the paper's
    if differs is not None:
        raise CheckpointError(
            f"{source}: the reference Caffe GoogLeNet fits only the 'paper' layout; this model has {differs}"
        )
    if c.transform_input:  # its input is Caffe's
        raise CheckpointError(
            f"{source}: the reference Caffe GoogLeNet needs a model with transform_input=False"
        )
    classes = reference_num_classes(blobs, source)
    if classes != c.num_classes:
        raise CheckpointError(f"{source}: file has {classes} classes but the model has {c.num_classes}")
    unknown = sorted(set(blobs) - set(CAFFE_LAYERS))
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} layer(s) this network does not have (first {unknown[0]!r}); "
            "not the reference GoogLeNet?"
        )
    with_aux = model.aux1 is not None
    if with_aux and not has_aux_heads(blobs):
        raise CheckpointError(
            f"{source}: the file has no auxiliary heads; build the model with aux_logits=False"
        )
    own = model.state_dict()
    state: dict[str, Tensor] = {}
    for name, prefix in CAFFE_LAYERS.items():
        if name.startswith(AUX_PREFIXES) and not with_aux:
            continue  # an inference model drops the heads the file was trained with
        if name not in blobs:
            raise CheckpointError(f"{source}: layer {name!r} (our {prefix}) is missing from the file")
        if len(blobs[name]) != 2:
            raise CheckpointError(
                f"{source}: layer {name!r} has {len(blobs[name])} blobs, expected weight and bias"
            )
        for array, what in zip(blobs[name], ("weight", "bias"), strict=True):
            key = f"{prefix}.{what}"
            shape = tuple(own[key].shape)
            fitted = _fit(array, shape)
            if fitted is None:
                raise CheckpointError(
                    f"{source}: {name} {what} has shape {tuple(array.shape)} but our {key} is {shape}"
                )
            state[key] = torch.from_numpy(np.array(fitted, dtype=np.float32))  # a writable copy
    # Caffe's conv1 reads B, G, R; ours reads R, G, B.
    state["conv1.conv.weight"] = state["conv1.conv.weight"].flip(1).contiguous()
    return state


def caffe_meta(model: GoogLeNet, source: str, kind: str) -> dict[str, Any]:
    """Checkpoint metadata for converted reference weights: Caffe's preprocessing on our RGB 0-1 input."""
    meta = imagenet_meta(model)  # bvlc_googlenet's synset order is the sorted wnid order of the shipped table
    mean_rgb = CAFFE_MEAN_BGR[::-1]
    meta.update(
        {
            # Caffe: x_bgr * 255 - mean_bgr. Ours: (x_rgb - mean) / std with conv1 flipped to RGB.
            "mean": [m / PIXEL_SCALE for m in mean_rgb],
            "std": [1.0 / PIXEL_SCALE] * 3,
            "channel_order": "RGB",
            "weights": f"{kind}:{Path(source).name}",
            "conversion": (
                "reference Caffe bvlc_googlenet: conv1 input channels flipped from BGR to RGB; Caffe's "
                "0-255 pixels minus mean (104, 117, 123) BGR, unscaled, expressed as mean/std on 0-1 RGB"
            ),
        }
    )
    return meta


def load_reference(model: GoogLeNet, path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Load a `.caffemodel` (kind "caffe") or the ONNX zoo file ("onnx") into `model`; returns its meta."""
    return _load_blobs(model, read_reference(path, kind), path, kind)


def _load_blobs(model: GoogLeNet, blobs: Blobs, path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    _load_state(path, model, reference_state_dict(blobs, model, str(path)))
    return caffe_meta(model, str(path), kind)


def reference_model(
    path: str | os.PathLike[str], kind: str, aux_logits: bool | None = None
) -> tuple[GoogLeNet, dict[str, Any]]:
    """Build the `paper` model a reference file describes (its classes; aux heads if it has them)."""
    blobs = read_reference(path, kind)
    if aux_logits and not has_aux_heads(blobs):
        raise CheckpointError(f"{path}: {NO_HEADS_TO_BUILD}")
    with_aux = has_aux_heads(blobs) if aux_logits is None else aux_logits
    model = build_model("paper", num_classes=reference_num_classes(blobs, str(path)), aux_logits=with_aux)
    return model, _load_blobs(model, blobs, path, kind)
