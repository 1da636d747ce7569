"""`googlenet export` (ONNX through ONNX Runtime, TorchScript through torch.jit.load, both against PyTorch)
and the torch.hub entry point of a local clone."""

from __future__ import annotations

import copy
import json
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

import googlenet
from extras import require
from googlenet.cli import main
from googlenet.errors import CheckpointError
from googlenet.io import sha256_file
from googlenet.model.weights import default_meta

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # small inputs keep the export fast; the graph is the same at 224


def _checkpoint(
    tmp_path: Path, variant: str = "paper", averaged: bool = False
) -> tuple[Path, googlenet.GoogLeNet]:
    """A checkpoint whose logits are far from zero (the default classifier init is tiny), aux heads included.
    `averaged`: the checkpoint also holds averaged weights, which differ from the raw ones (classifier
    biases shifted by up to 2), and the model returned is the averaged one."""
    model = googlenet.build_model(variant, num_classes=10)
    with torch.no_grad():
        for module in model.modules():  # He init everywhere, so features differ between inputs
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        model.fc.weight.normal_(std=0.05)
        model.fc.bias.normal_(std=0.5)
        for module in model.modules():  # BatchNorm doing real work in eval mode
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(std=0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{variant}.pt"
    extra: dict[str, Any] = {}
    if averaged:
        average = copy.deepcopy(model)
        with torch.no_grad():
            average.fc.bias.add_(torch.linspace(-2.0, 2.0, 10))
        extra["averaged_state_dict"] = average.state_dict()
    googlenet.save_checkpoint(path, model, default_meta(model, SIZE), **extra)
    return path, (average if averaged else model).eval()


def _export(args: list[str], capsys: pytest.CaptureFixture) -> dict[str, Any]:
    assert main(["export", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _inputs(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


def test_onnx_export_matches_pytorch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    onnx = require("onnx")
    ort = require("onnxruntime")
    source, model = _checkpoint(tmp_path)
    out = tmp_path / "googlenet.onnx"
    summary = _export(["--checkpoint", str(source), "--output", str(out)], capsys)  # format from .onnx
    assert summary["format"] == "onnx" and summary["aux_heads"] is False
    assert summary["max_abs_diff"] <= 1e-4

    proto = onnx.load(out)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (graph_input,) = proto.graph.input
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch dimension
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert not any("aux" in t.name for t in proto.graph.initializer)
    # `paper`'s LRN in its export form on every torch release (layers.onnx_export): no fractional Pow
    assert "Pow" not in {node.op_type for node in proto.graph.node}
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["googlenet.meta"])
    assert meta["input_size"] == SIZE and meta["mean"] == pytest.approx(
        list(googlenet.model.weights.IMAGENET_MEAN)
    )

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = _inputs(batch)
        (got,) = session.run(None, {graph_input.name: x.numpy()})
        with torch.no_grad():
            expected = model(x)
        assert expected.abs().max() > 1.0
        assert (torch.from_numpy(got) - expected).abs().max().item() <= 1e-4
    # given back as weights: said to be our export (it said "not the ONNX zoo's GoogLeNet?")
    with pytest.raises(
        CheckpointError, match=r"an ONNX export of `googlenet export`, not weights to read; give the \.pt"
    ):
        googlenet.load_weights(googlenet.build_model("bn", num_classes=10), out)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_matches_pytorch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    variant = "bn"  # BatchNorm in eval mode inside the trace; the paper variant goes through ONNX above
    source, model = _checkpoint(tmp_path, variant, averaged=True)
    out = tmp_path / "googlenet.ts"
    summary = _export(
        ["--checkpoint", str(source), "--format", "torchscript", "--output", str(out), "--averaged"], capsys
    )
    assert summary["format"] == "torchscript" and summary["max_abs_diff"] <= 1e-4
    files = {"meta.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=files)
    assert json.loads(files["meta.json"])["model_config"]["variant"] == variant
    assert not any(name.startswith("aux") for name, _ in loaded.named_parameters())
    x = _inputs(5)  # traced at batch 2
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    assert expected.abs().max() > 1.0
    assert (got - expected).abs().max().item() <= 1e-4
    # without --averaged, the raw weights: not the averaged model's logits
    raw = _export(["--checkpoint", str(source), "--format", "torchscript", "--output", str(out)], capsys)
    assert raw["max_abs_diff"] <= 1e-4
    with torch.no_grad():
        assert (torch.jit.load(str(out))(x) - expected).abs().max().item() > 0.5


def test_checkpoint_export_drops_training_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source, _ = _checkpoint(tmp_path, averaged=True)
    out = tmp_path / "slim.pt"
    summary = _export(["--checkpoint", str(source), "--output", str(out), "--no-aux"], capsys)
    assert summary["format"] == "checkpoint" and summary["aux_heads"] is False
    loaded, meta = googlenet.load_checkpoint_model(out)
    assert loaded.aux1 is None and meta["input_size"] == SIZE
    with zipfile.ZipFile(out) as archive:  # torch.save's format; nothing but the model travels
        assert archive.namelist()
    assert "averaged_state_dict" not in torch.load(out, weights_only=True)

    # An earlier export is replaced; a trained checkpoint given as --output by mistake is not.
    _export(["--checkpoint", str(source), "--output", str(out)], capsys)
    assert googlenet.load_checkpoint_model(out)[0].aux1 is not None
    (tmp_path / "elsewhere").mkdir()
    trained, _ = _checkpoint(tmp_path / "elsewhere")  # a run's final.pt, copied out of its folder
    before = trained.read_bytes()
    assert main(["export", "--checkpoint", str(source), "--output", str(trained)]) == 1
    assert "exists and is not an earlier export" in capsys.readouterr().err
    assert trained.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing.pt", "--output", "x.onnx"], "missing.pt: no such file"),
        (["--checkpoint", "{src}", "--output", "{src}"], "is also --checkpoint; it would be overwritten"),
        (
            ["--checkpoint", "{plain}", "--output", "x.ts", "--averaged"],
            "holds one set of weights",
        ),  # a final.pt
        (
            ["--convert", "{src}", "--output", "x.pt", "--averaged"],
            "--averaged applies to our training checkpoints",
        ),
        (["--checkpoint", "{src}", "--output", "x.png"], "cannot tell the format from .png"),
        (
            ["--checkpoint", "{src}", "--output", "x.onnx", "--format", "torchscript"],
            "contradicts --output x.onnx",
        ),
        (
            ["--checkpoint", "{src}", "--output", "x.pt", "--format", "onnx"],
            "--format onnx contradicts --output x.pt (a PyTorch extension)",
        ),
    ],
)
def test_export_errors_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    src, _ = _checkpoint(tmp_path, averaged=True)
    plain = tmp_path / "plain.pt"
    googlenet.save_checkpoint(plain, googlenet.build_model("paper", num_classes=3))
    args = [a.format(src=src, plain=plain) for a in args]
    assert main(["export", *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "x.ts").exists()


# --- torch.hub ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.hub tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_hub_lists_and_builds_without_network(no_network: None) -> None:
    # (torch.hub.list reads GitHub repositories only; a local clone is loaded directly.)
    model = torch.hub.load(str(REPO), "googlenet", source="local", variant="bn", num_classes=7)
    assert model.config.variant == "bn" and model.config.num_classes == 7 and model.aux1 is not None
    paper = torch.hub.load(str(REPO), "googlenet", source="local", aux_logits=False, dropout=0.5)
    assert paper.config.variant == "paper" and paper.aux1 is None and paper.config.dropout == 0.5
    with torch.no_grad():
        assert paper.eval()(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 1000)


def test_hub_loads_local_weights(tmp_path: Path, no_network: None) -> None:
    source, model = _checkpoint(tmp_path, "bn")
    loaded = torch.hub.load(str(REPO), "googlenet", source="local", weights=str(source), aux_logits=False)
    assert loaded.config.variant == "bn" and loaded.aux1 is None
    x = _inputs(2)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
    meta = torch.hub.load(str(REPO), "model_meta", source="local", weights=str(source))
    assert meta["input_size"] == SIZE
    with pytest.raises(googlenet.CheckpointError, match="holds variant='bn', not 'paper'"):
        torch.hub.load(str(REPO), "googlenet", source="local", weights=str(source), variant="paper")
    with pytest.raises(googlenet.ConfigError, match="never downloads"):
        torch.hub.load(str(REPO), "googlenet", source="local", weights="https://example.com/g.pth")
    with pytest.raises(googlenet.ConfigError, match="no weights are downloaded"):
        torch.hub.load(str(REPO), "googlenet", source="local", pretrained=True)


def test_hub_entry_points_and_dependencies() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert all(importlib.util.find_spec(name) is not None for name in module.dependencies)
    assert callable(module.googlenet) and callable(module.model_meta)


def test_convert_torchvision_weight_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torchvision = pytest.importorskip("torchvision")
    source = tmp_path / "googlenet-random.pth"
    torch.save(torchvision.models.googlenet(weights=None, init_weights=True).state_dict(), source)
    out = tmp_path / "tv.pt"
    summary = _export(["--convert", str(source), "--output", str(out)], capsys)
    assert summary["variant"] == "torchvision" and summary["aux_heads"] is True
    model, meta = googlenet.load_checkpoint_model(out)
    assert model.config.num_classes == 1000 and meta["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_the_format_comes_from_the_flag_or_the_extension() -> None:
    from googlenet.export import resolve_format

    assert resolve_format(None, "m.onnx") == "onnx" and resolve_format(None, "m.TS") == "torchscript"
    assert resolve_format(None, "m.pt") == "checkpoint" and resolve_format(None, "m.pth") == "checkpoint"
    assert resolve_format("torchscript", "m.pt") == "torchscript"  # TorchScript files are often .pt
    assert resolve_format("onnx", "model") == "onnx"
    with pytest.raises(googlenet.ConfigError, match="cannot tell the format"):
        resolve_format(None, "model")


def test_export_of_a_last_pt_says_which_of_its_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = googlenet.build_model("paper", num_classes=10)
    last = tmp_path / "last.pt"
    state = {"epoch": 3, "step": 2, "global_step": 14, "averaged_updates": 5}
    googlenet.save_checkpoint(last, model, default_meta(model, SIZE), train_state=state,
                              averaged_state_dict=model.state_dict())  # fmt: skip
    for flags, which in (([], "raw"), (["--averaged"], "averaged")):
        assert main(["export", "--checkpoint", str(last), "-o", str(tmp_path / "m.pt"), *flags]) == 0
        assert (
            f"; {which} weights of a training checkpoint after 3 epoch(s) and 2 step(s))"
            in capsys.readouterr().out
        )
    googlenet.save_checkpoint(
        last, model, default_meta(model, SIZE), train_state=state
    )  # averaging not begun
    assert main(["export", "--checkpoint", str(last), "-o", str(tmp_path / "m.pt"), "--averaged"]) == 1
    assert "no averaged weights yet" in capsys.readouterr().err
    # The averaged copy exists from the first step but holds the initial weights until averaging starts,
    # and a BN variant's copy stopped mid-epoch has stale statistics: refused as `train --test-only` does.
    for changed, message in (({"averaged_updates": 0}, "no averaged weights yet"),
                             ({"averaged_bn_current": False}, "statistics are stale")):  # fmt: skip
        googlenet.save_checkpoint(last, model, default_meta(model, SIZE), train_state={**state, **changed},
                                  averaged_state_dict=model.state_dict())  # fmt: skip
        assert main(["export", "--checkpoint", str(last), "-o", str(tmp_path / "m.pt"), "--averaged"]) == 1
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(("variant", "extra"), [("paper", {}), ("torchvision", {"transform_input": True})])
def test_a_torchscript_file_runs_in_the_dtype_it_is_given(
    tmp_path: Path, variant: str, extra: dict[str, Any]
) -> None:
    """LRN's window matrix and torchvision's re-normalisation were traced as CPU float32 constants: the
    file failed in bf16 ("Input type ... and weight type ... should be the same"), and so would it on a
    GPU. Now they follow the input, and LRN keeps its input's dtype outside training."""
    model = googlenet.build_model(variant, num_classes=4, aux_logits=False, **extra).eval()
    source = tmp_path / "model.pt"
    googlenet.save_checkpoint(source, model, default_meta(model, 96))
    out = tmp_path / "model.ts"
    assert main(["export", "--checkpoint", str(source), "--output", str(out)]) == 0
    loaded = torch.jit.load(str(out)).to(torch.bfloat16)
    assert 'value="cpu"' not in str(loaded.inlined_graph)
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        got = loaded(x.bfloat16())
        eager = copy.deepcopy(model).to(torch.bfloat16)(x.bfloat16())
    assert got.dtype == torch.bfloat16 and torch.equal(got.argmax(1), eager.argmax(1))


def test_export_replaces_only_files_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Any file starting with byte 0x08 passed for an earlier ONNX export, the ONNX zoo's file too, and
    any zip holding a code/ folder for an earlier TorchScript one: all were overwritten."""
    source, _ = _checkpoint(tmp_path)
    precious = tmp_path / "precious.onnx"
    precious.write_bytes(b"\x08\x01important data, not ONNX")
    backup = tmp_path / "backup.ts"
    with zipfile.ZipFile(backup, "w") as archive:
        archive.writestr("proj/code/a.py", "print('mine')")
    for target in (precious, backup):
        before = target.read_bytes()
        assert main(["export", "--checkpoint", str(source), "--output", str(target)]) == 1
        assert "exists and is not an earlier export" in capsys.readouterr().err
        assert target.read_bytes() == before
    ours = tmp_path / "ours.ts"
    for _ in range(2):  # an earlier export of ours is replaced
        assert main(["export", "--checkpoint", str(source), "--output", str(ours)]) == 0
    capsys.readouterr()


def test_exported_metadata_holds_what_predict_assumes(tmp_path: Path) -> None:
    """A checkpoint saved with class names only exported `mean: null, std: null` beside an `input` text
    naming them; the file now carries the defaults evaluate and predict apply to it."""
    model = googlenet.build_model("bn", num_classes=3, aux_logits=False)
    sparse = tmp_path / "sparse.pt"
    googlenet.save_checkpoint(sparse, model, {"class_names": ["a", "b", "c"]})
    out = tmp_path / "sparse.ts"
    assert main(["export", "--checkpoint", str(sparse), "--output", str(out)]) == 0
    files = {"meta.json": ""}
    torch.jit.load(str(out), _extra_files=files)
    meta = json.loads(files["meta.json"])
    assert meta["class_names"] == ["a", "b", "c"] and meta["mean"] == [0.485, 0.456, 0.406]
    assert meta["input_size"] == 224 and meta["resize_size"] == 256 and meta["interpolation"] == "bilinear"


def test_an_export_whose_outputs_are_not_finite_is_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Finite but overflowing weights gave NaN logits: "max |onnxruntime - PyTorch| = nan", exit 0."""
    model = googlenet.build_model("bn", num_classes=3, aux_logits=False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.fill_(1e-30)
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(1e5)
    source = tmp_path / "overflow.pt"
    googlenet.save_checkpoint(source, model, default_meta(model, 96))
    assert main(["export", "--checkpoint", str(source), "--output", str(tmp_path / "x.ts")]) == 1
    err = capsys.readouterr().err
    assert "not written: the exported graph in torch.jit.load differs from PyTorch by nan" in err
    assert not (tmp_path / "x.ts").exists()


def test_an_onnx_file_of_another_producer_is_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Every ModelProto passed for an earlier export of ours (the ONNX zoo's googlenet-9.onnx too): only
    one with our producer and metadata entry is replaced now."""
    require("onnx")
    require("onnxruntime")
    import onnx

    source, _ = _checkpoint(tmp_path)
    ours = tmp_path / "ours.onnx"
    assert main(["export", "--checkpoint", str(source), "--output", str(ours)]) == 0
    assert (
        main(["export", "--checkpoint", str(source), "--output", str(ours), "--no-verify"]) == 0
    )  # ours: replaced
    proto = onnx.load_model(str(ours))
    proto.producer_name = "onnx-caffe2"
    foreign = tmp_path / "googlenet-9.onnx"
    onnx.save_model(proto, str(foreign))
    before = foreign.read_bytes()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(source), "--output", str(foreign), "--no-verify"]) == 1
    assert "exists and is not an earlier export" in capsys.readouterr().err and foreign.read_bytes() == before


def test_converting_a_bare_state_dict_says_what_it_assumed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`export --convert F --variant bn` wrote the defaults into the file without a word (predict warned)."""
    source = googlenet.build_model("bn", num_classes=5, aux_logits=False)
    torch.save(source.state_dict(), tmp_path / "bare.pt")
    args = ["export", "--convert", str(tmp_path / "bare.pt"), "--output", str(tmp_path / "out.pt")]
    assert main([*args, "--variant", "bn"]) == 0
    assert "a bare state dict carries no class names, input size or normalisation" in capsys.readouterr().err
    _, meta = googlenet.load_checkpoint_model(tmp_path / "out.pt")
    assert meta["class_names"] == ["0", "1", "2", "3", "4"] and meta["bare_state_dict"] is True


def _photo(width: int, height: int, seed: int) -> Any:
    """A smooth, structured RGB picture (upsampled noise), so that crops and orientations differ."""
    import numpy as np
    from PIL import Image

    coarse = np.random.default_rng(seed).integers(
        0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8
    )
    return Image.fromarray(coarse).resize((width, height), Image.BICUBIC)


def test_the_deploy_example_reproduces_predict_from_the_onnx_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """examples/onnx_predict.py, which reads only the exported file and its metadata (NumPy, Pillow, ONNX
    Runtime), gives predict's top-5 and probabilities on the images a plain recipe gets wrong: a phone
    photo stored rotated (EXIF orientation 6), a PNG whose transparent half hides red, a wide picture
    (the truncated longer side and rounded crop offset). The README's recipe left out the first three."""
    import subprocess
    import sys

    from PIL import Image

    require("onnxruntime")
    require("onnxscript")
    model = googlenet.build_model("bn", num_classes=10, aux_logits=False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        model.fc.weight.normal_(std=0.5)  # logits that follow the pixels, so a wrong pixel shows ...
        model.fc.bias.zero_()
        model.fc.bias.copy_(-model.eval()(torch.rand(8, 3, SIZE, SIZE) * 4 - 2).mean(0))  # ... around 0
    source = tmp_path / "model.pt"
    googlenet.save_checkpoint(source, model, {**default_meta(model, SIZE), "class_names": list("abcdefghij")})
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(source), "--output", str(onnx_file)]) == 0
    onnx = require("onnx")
    meta = json.loads({p.key: p.value for p in onnx.load(onnx_file).metadata_props}["googlenet.meta"])
    assert meta["source_sha256"] == sha256_file(source) and meta["output"].startswith("logits")
    assert "EXIF orientation" in meta["input"] and "antialiased" in meta["input"]  # the recipe's steps
    capsys.readouterr()  # given back as a checkpoint: it said "not a PyTorch checkpoint (neither ...)"
    assert main(["predict", str(source), "--checkpoint", str(onnx_file)]) == 1
    assert "an ONNX file, not a PyTorch checkpoint; for an export of `googlenet export` give the .pt" in (
        capsys.readouterr().err
    )
    images = tmp_path / "images"
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to display
    _photo(300, 200, 1).save(images / "phone.jpg", exif=exif, quality=95)
    rgba = _photo(120, 90, 2).convert("RGBA")
    rgba.paste((255, 0, 0, 0), (60, 0, 120, 90))  # transparent, hiding red
    rgba.save(images / "logo.png")
    _photo(500, 281, 3).save(images / "wide.png")
    paths = [str(images / name) for name in ("phone.jpg", "logo.png", "wide.png")]
    capsys.readouterr()
    assert main(["predict", *paths, "--checkpoint", str(source), "--topk", "5", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    predicted = predicted["predictions"] if isinstance(predicted, dict) else predicted
    done = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_predict.py"), str(onnx_file), *paths],
                          capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    example = [json.loads(line) for line in done.stdout.splitlines()]
    for ours, theirs in zip(predicted, example, strict=True):
        assert [entry["class"] for entry in ours["top"]] == [name for name, _ in theirs["top"]], (
            ours,
            theirs,
        )
        for entry, (_, probability) in zip(ours["top"], theirs["top"], strict=True):
            # PIL's and torchvision's antialiased resizes round a pixel a grey level apart here and there
            # (0.0002-0.004 here, on logits chosen to follow the pixels closely)
            assert entry["probability"] == pytest.approx(probability, abs=1e-2)
    # the test can tell: without the EXIF step the phone photo's probabilities move by far more
    naive = tmp_path / "naive.py"
    naive.write_text((REPO / "examples" / "onnx_predict.py").read_text().replace(
        "ImageOps.exif_transpose(Image.open(path))", "Image.open(path)"))  # fmt: skip
    done = subprocess.run([sys.executable, str(naive), str(onnx_file), paths[0]], capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    wrong = dict(json.loads(done.stdout)["top"])
    right = {entry["class"]: entry["probability"] for entry in predicted[0]["top"]}
    assert max(abs(wrong.get(name, 0.0) - p) for name, p in right.items()) > 0.1  # 0.89 here


def test_an_onnx_export_openvino_cannot_compile_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Below 47 px the `paper` network's ONNX file runs in ONNX Runtime but OpenVINO refuses it
    (maxpool4's 3x3 window over a 2x2 map); `export` wrote it without a word."""
    require("onnxscript")
    model = googlenet.build_model("paper", num_classes=3, aux_logits=False)
    source = tmp_path / "small.pt"
    googlenet.save_checkpoint(source, model, default_meta(model, 40))
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(source), "--output", str(tmp_path / "small.onnx")]) == 0
    err = capsys.readouterr().err
    assert "warning: OpenVINO cannot compile this file: below 47 px (40 here)" in err, err
    openvino = require("openvino")
    with pytest.raises(Exception, match="wasn't fully converted"):  # the claim, checked on OpenVINO itself
        openvino.Core().compile_model(str(tmp_path / "small.onnx"), "CPU")
