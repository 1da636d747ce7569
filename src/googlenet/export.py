"""`googlenet export`: a trained network for other runtimes (ONNX, TorchScript), and foreign weight files
(the reference Caffe model, the ONNX model zoo's GoogLeNet, torchvision's) as our checkpoint.

    googlenet export --checkpoint runs/x/final.pt --format onnx --output googlenet.onnx
    googlenet export --checkpoint runs/x/final.pt --format torchscript --output googlenet.ts
    googlenet export --convert bvlc_googlenet.caffemodel --output bvlc_googlenet.pt

Exported networks are inference networks: the auxiliary heads of section 5 are "discarded at inference
time", so they are left out, and the graph maps a normalised N x 3 x S x S batch (dynamic N, S the
checkpoint's input size) to N x classes logits. The normalisation and class names travel inside the file
(ONNX `metadata_props["googlenet.meta"]`, TorchScript extra file `meta.json`), as JSON. Before the file
is written, its bytes are loaded by their own runtime (ONNX Runtime, `torch.jit.load`) and run on a
random batch beside PyTorch: the largest absolute difference is reported, and a difference that is not
finite or above 1e-3 of the logits' scale stops the export (`--no-verify` skips the check). Files are
written atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from googlenet.errors import CheckpointError, ConfigError
from googlenet.infer.optimize import OPENVINO_MIN_SIZE
from googlenet.io import atomic_open, check_output, json_text, sha256_file
from googlenet.model.googlenet import GoogLeNet, build_from_config
from googlenet.model.weights import (
    default_meta,
    imagenet_labels,
    load_checkpoint_model,
    model_from_file,
    save_checkpoint,
)
from googlenet.signals import held_import, signals_held

FORMATS: tuple[str, ...] = ("checkpoint", "onnx", "torchscript")
_SUFFIX_FORMATS = {
    ".onnx": "onnx",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".jit": "torchscript",
}
# Names PyTorch uses for its own files: a checkpoint when no --format says otherwise (TorchScript files
# are often called .pt too, so these never contradict --format).
_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
META_KEY = "googlenet.meta"  # ONNX metadata_props key; TorchScript extra file "meta.json"
VERIFY_BATCH = 2


def inference_network(model: GoogLeNet) -> GoogLeNet:
    """A float32, eval-mode copy of `model` without the auxiliary heads (section 5: training only)."""
    net = build_from_config(replace(model.config, aux_logits=False))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("aux1.", "aux2."))}
    net.load_state_dict(state, strict=True)
    return net.float().eval()


def _export_meta(model: GoogLeNet, meta: dict[str, Any]) -> str:
    """What a runtime needs besides the graph: layout, classes, input size, normalisation. What the
    checkpoint leaves out is what `evaluate` and `predict` assume for it (`default_meta`)."""
    keep = ("class_names", "wnids", "input_size", "resize_size", "mean", "std", "interpolation", "weights",
            "source_sha256")  # fmt: skip
    defaults = default_meta(model, int(meta.get("input_size") or 224))
    payload = {
        k: meta[k] if meta.get(k) is not None else defaults[k] for k in keep if k in meta or k in defaults
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    names = payload.get("class_names")
    if isinstance(names, list) and names == [str(i) for i in range(1000)]:  # as predict names them
        payload.update(imagenet_labels())
    payload["model_config"] = replace(model.config, aux_logits=False).as_dict()
    payload["input"] = (
        "images: N x 3 x S x S float32, S = input_size, as googlenet predict makes them: the image with its "
        "EXIF orientation applied and any transparency composited on white, in RGB; its shorter side "
        "resized to resize_size with `interpolation`, antialiased (PIL's Image.resize, torchvision's "
        "Resize; not cv2.resize's INTER_LINEAR), the longer side int(resize_size * long / short); the "
        "centre S x S square at offsets round((extent - S) / 2); then (pixel / 255 - mean) / std. "
        "examples/onnx_predict.py in the googlenet repository does all of it"
    )
    payload["output"] = (
        "logits: N x len(class_names); their softmax is predict's probability (one crop, one model)"
    )
    return json.dumps(payload)


def export_onnx_bytes(model: GoogLeNet, meta: dict[str, Any], input_size: int) -> bytes:
    """The inference network as ONNX (opset 18, dynamic batch) with the metadata in `metadata_props`."""
    try:
        onnx = held_import("onnx")
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxscript: pip install 'googlenet[fast]'") from None
    from googlenet.infer.optimize import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = export_onnx(inference_network(model), input_size)
        except ImportError as exc:  # the dynamo exporter needs onnxscript
            raise ConfigError(
                f"ONNX export needs onnx and onnxscript ({exc.name or exc} is missing): "
                "pip install 'googlenet[fast]'"
            ) from None
    proto = onnx.load_model_from_string(data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, _export_meta(model, meta)
    proto.producer_name = "googlenet"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_torchscript_bytes(model: GoogLeNet, meta: dict[str, Any], input_size: int) -> bytes:
    """The inference network traced to TorchScript (any batch size), with `meta.json` as an extra file."""
    net = inference_network(model)
    example = torch.randn(VERIFY_BATCH, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        # The input checks in `forward` are Python conditions on static sizes: the tracer warns that it
        # records their outcome, which is right for the channel count and the input size it was traced at.
        warnings.simplefilter("ignore")
        with signals_held():  # the tracer runs the model's Python from C++: see googlenet.signals
            traced = torch.jit.trace(net, example, check_trace=False)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in favour of torch.export
        torch.jit.save(traced, buffer, _extra_files={"meta.json": _export_meta(model, meta)})
    return buffer.getvalue()


def _reference_logits(model: GoogLeNet, x: Tensor) -> Tensor:
    with torch.no_grad():
        return inference_network(model)(x)


def verify_onnx(data: bytes, model: GoogLeNet, input_size: int, batch: int = VERIFY_BATCH + 1) -> float:
    """Max |ONNX Runtime - PyTorch| over the logits of a random batch (a batch size not traced at)."""
    try:
        ort = held_import("onnxruntime")
    except ImportError:
        raise ConfigError(
            "checking the ONNX file needs onnxruntime (pip install 'googlenet[fast]') or --no-verify"
        ) from None
    x = torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (got,) = session.run(None, {name: x.numpy()})
    return _difference(torch.from_numpy(got), _reference_logits(model, x), "onnxruntime")


def verify_torchscript(
    data: bytes, model: GoogLeNet, input_size: int, batch: int = VERIFY_BATCH + 1
) -> float:
    """Max |torch.jit.load(file) - PyTorch| over the logits of a random batch (a batch size not traced at)."""
    x = torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.no_grad():
        got = loaded(x)
    return _difference(got, _reference_logits(model, x), "torch.jit.load")


VERIFY_TOLERANCE = 1e-3  # of the logits' scale: float32 graphs agree to about 1e-5 of it


def _difference(got: Tensor, reference: Tensor, runtime: str) -> float:
    """Max |got - reference|; a `CheckpointError` (nothing is written) when it is not finite or above
    `VERIFY_TOLERANCE` x max(1, max |reference|)."""
    difference = float((got - reference).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    if not difference <= VERIFY_TOLERANCE * scale:  # NaN too
        raise CheckpointError(
            f"not written: the exported graph in {runtime} differs from PyTorch by {difference:.3g} on logits of "
            f"scale {scale:.3g} (non-finite weights or outputs?); --no-verify writes it unchecked"
        )
    return difference


def export_model(
    model: GoogLeNet,
    meta: dict[str, Any],
    output: str | os.PathLike[str],
    fmt: str,
    verify: bool = True,
) -> dict[str, Any]:
    """Write `model` to `output` as `fmt` ("checkpoint", "onnx" or "torchscript"); returns a summary.

    ONNX and TorchScript outputs leave the auxiliary heads out; a checkpoint keeps whatever `model` has.
    With `verify`, the written graph is run by its own runtime and compared with PyTorch
    (`max_abs_diff` in the summary).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    broken = next(
        (
            name
            for name, t in model.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ),
        None,
    )
    if broken is not None:  # its every output would be NaN, and the check against PyTorch NaN too
        raise CheckpointError(
            f"{broken} holds NaN or infinite values: broken weights, not exported to {output}"
        )
    input_size = int(meta.get("input_size", 224))
    summary: dict[str, Any] = {
        "format": fmt,
        "output": str(output),
        "variant": model.config.variant,
        "num_classes": model.config.num_classes,
        "input_size": input_size,
        "mean": meta.get("mean"),
        "std": meta.get("std"),
    }
    if fmt == "checkpoint":
        summary["aux_heads"] = model.aux1 is not None
        summary["sha256"] = save_checkpoint(output, model, meta, written_by=WRITTEN_BY)
        summary["bytes"] = Path(output).stat().st_size
        return summary
    if fmt == "onnx":
        from googlenet.infer.optimize import ONNX_OPSET

        data = export_onnx_bytes(model, meta, input_size)
        summary.update(opset=ONNX_OPSET, input="images", output_name="logits", dynamic_axes={"images": [0]})
        check = verify_onnx
    else:
        data = export_torchscript_bytes(model, meta, input_size)
        summary.update(dynamic_axes={"input": [0]})
        check = verify_torchscript
    summary["aux_heads"] = False
    if verify:
        summary["verified_with"] = "onnxruntime" if fmt == "onnx" else "torch.jit.load"
        summary["max_abs_diff"] = check(data, model, input_size)
    try:
        with atomic_open(output, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise CheckpointError(f"cannot write {output}: {exc.strerror or exc}") from None
    summary["bytes"] = len(data)
    summary["sha256"] = sha256_file(output)
    return summary


def resolve_format(fmt: str | None, output: str) -> str:
    """`--format`, or the output's extension when it is not given (.onnx; .ts/.torchscript/.jit;
    .pt/.pth/.ckpt for our checkpoint). One-line errors: a format that contradicts .onnx or a TorchScript
    extension, ONNX into .pt/.pth/.ckpt, and no format with an extension that names none (`-o
    model.png` would get a checkpoint)."""
    if Path(output).is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a file name")
    suffix = Path(output).suffix.lower()
    implied = _SUFFIX_FORMATS.get(suffix)
    if fmt is not None:
        if implied is not None and fmt != implied:
            raise ConfigError(f"--format {fmt} contradicts --output {output} (a {implied} extension)")
        if suffix in _TORCH_SUFFIXES and fmt == "onnx":  # .pt holds a checkpoint or TorchScript, never ONNX
            raise ConfigError(
                f"--format onnx contradicts --output {output} (a PyTorch extension); name it .onnx"
            )
        return fmt
    if implied is not None:
        return implied
    if suffix in _TORCH_SUFFIXES:
        return "checkpoint"
    raise ConfigError(
        f"--output {output}: cannot tell the format from {suffix or 'a name without an extension'}; "
        "name it .pt, .onnx or .ts, or pass --format"
    )


# An entry in the checkpoints this command writes, so a later export may replace them and nothing else.
WRITTEN_BY = "googlenet export"


def _is_earlier_export(file: Path) -> bool:
    """Whether the file is one this command wrote, so a new export may replace it: an ONNX model with
    producer "googlenet" and our metadata entry, a TorchScript archive with our `meta.json`, or a
    checkpoint carrying `written_by: WRITTEN_BY`. Anything else (the ONNX zoo's googlenet-9.onnx, a zip
    that happens to hold a code/ folder, a run's final.pt copied elsewhere) survives an `--output`
    given by mistake."""
    try:
        with open(file, "rb") as handle:
            first = handle.read(1)
        if first == b"\x08":  # a ModelProto starts with its ir_version tag
            try:
                onnx = held_import("onnx")
            except ImportError:
                return False
            proto = onnx.load_model(str(file), load_external_data=False)
            return proto.producer_name == "googlenet" and any(p.key == META_KEY for p in proto.metadata_props)
        if not zipfile.is_zipfile(file):
            return False
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            if any(name.split("/", 1)[-1].startswith("code/") for name in names):
                extra = [name for name in names if name.split("/", 1)[-1] == "extra/meta.json"]
                return bool(extra) and "model_config" in json.loads(archive.read(extra[0]))
        saved = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a file no reader makes sense of is not ours to replace
        return False
    return isinstance(saved, dict) and saved.get("written_by") == WRITTEN_BY


def register(subparsers: argparse._SubParsersAction) -> None:
    """`googlenet export`'s flags."""
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript, or convert Caffe / ONNX-zoo / torchvision weights",
        description=(
            "Write a checkpoint as ONNX (opset 18, dynamic batch) or TorchScript, without the auxiliary "
            "heads, checked against PyTorch before it is written; or convert a foreign weight file "
            "(bvlc_googlenet.caffemodel, the ONNX model zoo's googlenet, a torchvision .pth) into our "
            "checkpoint with its preprocessing metadata."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="FILE", help="our checkpoint")
    source.add_argument(
        "--convert",
        metavar="FILE",
        help="a foreign weight file: .caffemodel (paper variant), the ONNX zoo's GoogLeNet (paper, no aux "
        "heads) or a torchvision GoogLeNet state dict",
    )
    parser.add_argument("--output", "-o", required=True, metavar="FILE", help="file to write")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="default: from the output's extension (.pt/.pth/.ckpt checkpoint, .onnx, .ts)",
    )
    parser.add_argument(
        "--averaged",
        action="store_true",
        help="use a training checkpoint's averaged weights (Polyak, section 6) instead of the raw ones",
    )
    parser.add_argument(
        "--variant",
        choices=("paper", "bn"),
        help="the layout of a bare --convert state dict of ours (torch.save(model.state_dict())), which "
        "carries no config",
    )
    parser.add_argument(
        "--no-transform-input",
        dest="transform_input",
        action="store_false",
        help="the --convert torchvision state dict comes from a model torchvision built with "
        "transform_input=False (trained from scratch): ImageNet-normalised input, not the [-1, 1] of its "
        "released weights",
    )
    parser.add_argument("--no-aux", action="store_true", help="leave the auxiliary heads out of a checkpoint")
    parser.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `googlenet export` from parsed flags: write the checkpoint (or the converted foreign file) in the
    chosen format and print what was written; the exit code. `ConfigError` for a flag that does not apply."""
    fmt = resolve_format(args.format, args.output)
    key = "averaged_state_dict" if args.averaged else "state_dict"
    aux = False if args.no_aux or fmt != "checkpoint" else None
    source = args.checkpoint or args.convert
    if args.no_aux and fmt != "checkpoint":
        raise ConfigError(f"--no-aux applies to checkpoint output; {fmt} never holds the auxiliary heads")
    if args.no_verify and fmt == "checkpoint":
        raise ConfigError("--no-verify applies to ONNX and TorchScript output; a checkpoint is not verified")
    check_output(
        "--output", args.output, inputs={"--convert" if args.convert else "--checkpoint": source},
        replaceable=_is_earlier_export, kind="an earlier export (ONNX, TorchScript or an exported checkpoint)",
    )  # fmt: skip
    if args.checkpoint and (args.variant or not args.transform_input):
        flag = "--variant" if args.variant else "--no-transform-input"
        raise ConfigError(f"{flag} applies to --convert (a checkpoint of ours carries its own config)")
    if args.checkpoint:
        model, meta = load_checkpoint_model(args.checkpoint, aux_logits=aux, key=key)
    else:
        if args.averaged:
            raise ConfigError("--averaged applies to our training checkpoints (--checkpoint), not --convert")
        model, meta = model_from_file(
            args.convert, aux_logits=aux, variant=args.variant, transform_input=args.transform_input
        )
        if meta.get("bare_state_dict"):  # what the file lacked is written into the export: say so
            print(f"googlenet export: warning: {args.convert}: a bare state dict carries no class names, input "
                  "size or normalisation: written as classes 0..N-1 (ImageNet's at 1000), 224 px and "
                  "ImageNet's mean/std", file=sys.stderr)  # fmt: skip
    meta = {**meta, "source_sha256": sha256_file(source)}  # which file an export came from
    summary = {"source": source, **export_model(model, meta, args.output, fmt, verify=not args.no_verify)}
    if meta.get("weights"):
        summary["weights"] = meta["weights"]
    size = int(meta.get("input_size", 224))
    if fmt == "onnx" and model.config.variant in ("paper", "bn") and size < OPENVINO_MIN_SIZE:
        print(f"googlenet export: warning: OpenVINO cannot compile this file: below {OPENVINO_MIN_SIZE} px "
              f"({size} here) maxpool4's 3x3 window meets a 2x2 map, which it refuses; ONNX Runtime runs "
              "it", file=sys.stderr)  # fmt: skip
    if args.json:
        print(json_text(summary))
    else:
        line = f"wrote {summary['output']} ({fmt}, {summary['variant']}, {summary['num_classes']} classes"
        if "max_abs_diff" in summary:
            line += f", max |{summary['verified_with']} - PyTorch| = {summary['max_abs_diff']:.2e}"
        if meta.get("weights"):
            line += f"; {meta['weights']}"
        print(line + ")")
    return 0
