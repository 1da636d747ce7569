"""Checkpoints and weight files: our format, torchvision equivalence, one-line errors, safe loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision

import googlenet
from googlenet.io import safe_load, sha256_file
from googlenet.model.weights import model_from_file, read_checkpoint
from test_interop import random_blobs, write_caffemodel


def _randomise_bn_statistics(model: torch.nn.Module) -> None:
    """Make BatchNorm do real work in eval mode, so equivalence is not trivially true."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(shape, generator=generator) * 0.1)


def _torchvision_file(tmp_path: Path, **options: bool) -> tuple[torch.nn.Module, Path]:
    """torchvision's GoogLeNet (eval mode, BatchNorm statistics randomised) and its state dict saved as
    torchvision's googlenet-*.pth files are."""
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, init_weights=True, **options).eval()
    _randomise_bn_statistics(reference)
    path = tmp_path / "googlenet-random.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.mark.parametrize("transform_input", [False, True])
@pytest.mark.parametrize("aux_logits", [True, False])
def test_torchvision_variant_equals_torchvision(
    tmp_path: Path, transform_input: bool, aux_logits: bool
) -> None:
    reference, path = _torchvision_file(tmp_path, aux_logits=True, transform_input=transform_input)

    ours = googlenet.build_model("torchvision", aux_logits=aux_logits, transform_input=transform_input)
    meta = googlenet.load_weights(ours, path)
    assert meta["class_names"][0] == "tench" and meta["wnids"][0] == "n01440764"  # as `predict` names them
    assert model_from_file(path)[1]["class_names"] == meta["class_names"]
    ours.eval()
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
    assert (got - expected).abs().max().item() <= 1e-5
    assert sum(p.numel() for n, p in ours.named_parameters() if not n.startswith("aux")) == 6_624_904


def test_a_state_dict_without_batchnorm_counters_loads_as_torchvision_loads_it(tmp_path: Path) -> None:
    # Files written before PyTorch 0.4.1, and stripped state dicts, have no num_batches_tracked.
    reference, path = _torchvision_file(tmp_path, aux_logits=False, transform_input=False)
    state = {k: v for k, v in torch.load(path, weights_only=True).items() if "num_batches_tracked" not in k}
    torch.save(state, path)
    torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).load_state_dict(state)
    ours = googlenet.build_model("torchvision", aux_logits=False)
    googlenet.load_weights(ours, path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours.eval()(x) - reference(x)).abs().max().item() <= 1e-5


def test_torchvision_file_gets_the_input_scaling_its_weights_were_trained_with(tmp_path: Path) -> None:
    # torchvision's weights were ported from TF and expect [-1, 1] pixels: torchvision builds the model
    # with transform_input=True for them. Either way we load them, preprocessing by the returned meta
    # must give torchvision's pretrained model's logits.
    pretrained, path = _torchvision_file(tmp_path, aux_logits=False, transform_input=True)
    pixels = torch.rand(2, 3, 224, 224)

    def normalised(meta: dict) -> torch.Tensor:
        mean, std = torch.tensor(meta["mean"]).view(1, 3, 1, 1), torch.tensor(meta["std"]).view(1, 3, 1, 1)
        return (pixels - mean) / std

    with torch.no_grad():
        expected = pretrained(normalised({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}))
        built, meta = model_from_file(
            path
        )  # as torchvision builds it: transform_input on, ImageNet's mean/std
        assert built.config.transform_input and meta["mean"] == [0.485, 0.456, 0.406]
        plain = googlenet.build_model("torchvision", aux_logits=False)
        plain_meta = googlenet.load_weights(plain, path)  # no transform_input: the meta scales to [-1, 1]
        assert plain_meta["mean"] == [0.5] * 3 and plain_meta["std"] == [0.5] * 3
        for model, model_meta in ((built, meta), (plain, plain_meta)):
            got = model.eval()(normalised(model_meta))
            assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()
    # A converted file keeps the setting: it loads back only into a model that has it.
    converted = tmp_path / "converted.pt"
    googlenet.save_checkpoint(converted, built, meta)
    with pytest.raises(
        googlenet.CheckpointError, match="transform_input=True but the model has transform_input=False"
    ):
        googlenet.load_weights(googlenet.build_model("torchvision", aux_logits=False), converted)


def test_a_checkpoint_that_safe_loading_would_refuse_is_never_written(tmp_path: Path) -> None:
    import numpy as np

    model = googlenet.build_model("bn", num_classes=2, aux_logits=False)
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match=r"entry epochs\[1\] is a numpy.ndarray"):
        googlenet.save_checkpoint(path, model, epochs=[1, np.zeros(2)])
    with pytest.raises(ValueError, match=r"entry meta\['top1'\] is a numpy.float64"):
        googlenet.save_checkpoint(path, model, meta={"top1": np.float64(0.5)})
    with pytest.raises(ValueError, match="state_dict does not fit the model"):
        googlenet.save_checkpoint(path, model, state_dict={"fc.weight": torch.zeros(2, 1024)})
    assert not path.exists()


def test_a_checkpoint_of_torchvisions_reference_script_is_read_as_its_model(tmp_path: Path) -> None:
    """references/classification/train.py saves {"model", "optimizer", "lr_scheduler", "epoch", "args"},
    its flags an argparse.Namespace: every command refused it as holding "Python objects that could run
    code", and without "args" as neither our checkpoint nor a torchvision state dict."""
    import argparse

    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=10)
    optimizer = torch.optim.SGD(tv.parameters(), lr=0.1, momentum=0.9)
    script = {"model": tv.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
              "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 30).state_dict(),
              "args": argparse.Namespace(model="googlenet", weights="IMAGENET1K_V1", lr=0.1)}  # fmt: skip
    torch.save(script, tmp_path / "checkpoint.pth")
    if not hasattr(torch.serialization, "safe_globals"):  # torch 2.4: refused, as any class in a file
        pytest.skip("torch.serialization.safe_globals came with torch 2.5")
    model, _ = model_from_file(tmp_path / "checkpoint.pth")
    ours = googlenet.build_model("torchvision", num_classes=10, aux_logits=False, transform_input=True)
    googlenet.load_weights(ours, tmp_path / "checkpoint.pth")
    for loaded in (model.state_dict(), ours.state_dict()):
        assert loaded.keys() == tv.state_dict().keys()
        assert all(torch.equal(loaded[k], v) for k, v in tv.state_dict().items())
    # any other class in a file is still refused, with the Namespace beside it
    script["args"] = argparse.Namespace(fn=os.system)
    torch.save(script, tmp_path / "evil.pth")
    with pytest.raises(googlenet.CheckpointError, match="could run code"):
        model_from_file(tmp_path / "evil.pth")


def test_torchvision_file_into_paper_variant_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.googlenet(weights=None, init_weights=True).state_dict(), path)
    for variant in ("paper", "bn"):
        with pytest.raises(googlenet.CheckpointError, match="fits only variant 'torchvision'") as info:
            googlenet.load_weights(googlenet.build_model(variant), path)
        assert "\n" not in str(info.value)
    with pytest.raises(googlenet.CheckpointError, match="1000 classes but the model has 10"):
        googlenet.load_weights(googlenet.build_model("torchvision", num_classes=10), path)


@pytest.mark.parametrize(
    ("override", "named"),
    [({"bn_eps": 1e-5}, "bn_eps=1e-05 (the file's network has 0.001)"),
     ({"lrn": True}, "lrn=True (the file's network has False)"),
     ({"maxpool4_kernel": 3}, "maxpool4_kernel=3 (the file's network has 2)"),
     ({"aux_adaptive_pool": False}, "aux_adaptive_pool=False (the file's network has True)")],
)  # fmt: skip
def test_torchvision_file_into_the_torchvision_variant_with_another_layout_is_refused(
    tmp_path: Path, override: dict[str, object], named: str
) -> None:
    # Every tensor fits these models, which compute other logits from them: they loaded without a word.
    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.googlenet(weights=None, init_weights=True).state_dict(), path)
    model = googlenet.build_model("torchvision", **override)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(googlenet.CheckpointError) as info:
        googlenet.load_weights(model, path)
    assert (
        str(info.value)
        == f"{path}: a torchvision GoogLeNet weight file needs torchvision's layout; this model has {named}"
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # left unchanged


@pytest.mark.parametrize("variant", ["paper", "bn"])
def test_a_bare_state_dict_of_the_model_loads_strictly_with_no_made_up_metadata(
    tmp_path: Path, variant: str
) -> None:
    # The most common idiom: torch.save(model.state_dict(), path). The `bn` variant's keys are
    # torchvision's, its 5x5 kernels are not: it was refused as "a torchvision weight file".
    source = googlenet.build_model(variant, num_classes=3)
    path = tmp_path / "state.pt"
    torch.save(source.state_dict(), path)
    model = googlenet.build_model(variant, num_classes=3)
    assert googlenet.load_weights(model, path) == {"bare_state_dict": True}
    assert all(torch.equal(value, model.state_dict()[k]) for k, value in source.state_dict().items())
    # Strict: without a config beside the weights, only an exact fit is loaded.
    for other in (
        googlenet.build_model(variant, num_classes=3, aux_logits=False),
        googlenet.build_model(variant, num_classes=4),
    ):
        before = {k: v.clone() for k, v in other.state_dict().items()}
        with pytest.raises(
            googlenet.CheckpointError, match=r"bare state dict .* does not fit the model"
        ) as info:
            googlenet.load_weights(other, path)
        assert "\n" not in str(info.value)
        assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(googlenet.CheckpointError, match="a bare state dict, with no model config"):
        model_from_file(path)


def test_a_bare_state_dict_of_the_torchvision_variant_is_a_torchvision_file(tmp_path: Path) -> None:
    # Its keys and shapes are torchvision's own: the documented ambiguity, resolved as torchvision's file.
    source = googlenet.build_model("torchvision", num_classes=3, aux_logits=False)
    path = tmp_path / "state.pt"
    torch.save(source.state_dict(), path)
    meta = googlenet.load_weights(googlenet.build_model("torchvision", num_classes=3, aux_logits=False), path)
    assert "bare_state_dict" not in meta and meta["mean"] == [0.5, 0.5, 0.5]


def test_checkpoint_round_trip_with_metadata(tmp_path: Path) -> None:
    model = googlenet.build_model("paper", num_classes=3)
    meta = {"class_names": ["a", "b", "c"], "input_size": 64, "resize_size": 73}
    digest = googlenet.save_checkpoint(tmp_path / "m.pt", model, meta=meta)
    assert digest == sha256_file(tmp_path / "m.pt")
    loaded, got_meta = googlenet.load_checkpoint_model(tmp_path / "m.pt")
    assert got_meta["class_names"] == ["a", "b", "c"]
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # An inference model without heads may load a training checkpoint (heads dropped).
    bare, _ = googlenet.load_checkpoint_model(tmp_path / "m.pt", aux_logits=False)
    assert bare.aux1 is None
    assert torch.equal(bare.fc.weight, model.fc.weight)


def test_a_classifier_replaced_by_hand_is_saved_as_the_model_it_now_is(tmp_path: Path) -> None:
    # torchvision's fine-tuning idiom leaves config.num_classes at 10: the file said 10 and did not load.
    model = googlenet.build_model("bn", num_classes=10, aux_logits=False)
    model.fc = torch.nn.Linear(1024, 5)
    googlenet.save_checkpoint(tmp_path / "ft.pt", model)
    loaded, meta = googlenet.load_checkpoint_model(tmp_path / "ft.pt")
    assert loaded.config.num_classes == 5 and len(meta["class_names"]) == 5
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    # With auxiliary heads every classifier must agree; else nothing is written.
    heads = googlenet.build_model("bn", num_classes=10)
    heads.fc = torch.nn.Linear(1024, 5)
    with pytest.raises(
        googlenet.CheckpointError,
        match=r"disagree .* \(fc 5, aux1\.fc2 10, aux2\.fc2 10\); .*reset_classifier",
    ) as info:
        googlenet.save_checkpoint(tmp_path / "heads.pt", heads)
    assert "\n" not in str(info.value) and not (tmp_path / "heads.pt").exists()
    heads.aux1.fc2, heads.aux2.fc2 = torch.nn.Linear(1024, 5), torch.nn.Linear(1024, 5)
    googlenet.save_checkpoint(tmp_path / "heads.pt", heads)
    assert googlenet.load_checkpoint_model(tmp_path / "heads.pt")[0].aux2.fc2.out_features == 5
    heads.fc = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(1024, 5))
    with pytest.raises(googlenet.CheckpointError, match=r"model\.fc is a Sequential, not the Linear"):
        googlenet.save_checkpoint(tmp_path / "seq.pt", heads)
    heads.reset_classifier(5)  # what the message says: it replaces a hand-made classifier too
    googlenet.save_checkpoint(tmp_path / "seq.pt", heads)
    assert googlenet.load_checkpoint_model(tmp_path / "seq.pt")[0].fc.out_features == 5


def test_model_from_file_reads_our_checkpoint_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`evaluate`, `predict`, `export --convert` and fine-tuning load any weight file through
    `model_from_file`: one of our checkpoints is read (and hashed) once, not once to recognise it and
    again to build the model from it."""
    model = googlenet.build_model("paper", num_classes=3)
    googlenet.save_checkpoint(tmp_path / "m.pt", model, meta={"class_names": ["a", "b", "c"]})
    loads: list[str] = []
    original = torch.load

    def counted(file: object, *args: object, **kwargs: object) -> object:
        loads.append(Path(str(file)).name)
        return original(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", counted)
    loaded, meta = model_from_file(tmp_path / "m.pt", aux_logits=False)
    assert loads == ["m.pt"]
    assert meta["class_names"] == ["a", "b", "c"] and loaded.aux1 is None
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_checkpoint_is_plain_data(tmp_path: Path) -> None:
    googlenet.save_checkpoint(tmp_path / "m.pt", googlenet.build_model("bn", num_classes=2))
    obj = torch.load(tmp_path / "m.pt", weights_only=True)
    assert obj["format"] == "googlenet" and obj["model_config"]["variant"] == "bn"
    assert read_checkpoint(tmp_path / "m.pt")["format_version"] == 1


@pytest.mark.parametrize(
    ("saved", "target", "message"),
    [
        (("paper", 10, True), ("bn", 10, True), "variant='paper' but the model has variant='bn'"),
        (("paper", 10, True), ("paper", 5, True), "num_classes=10 but the model has num_classes=5"),
        (("paper", 10, False), ("paper", 10, True), "no auxiliary heads"),
    ],
)
def test_incompatible_checkpoint_is_a_one_line_error(
    tmp_path: Path, saved: tuple, target: tuple, message: str
) -> None:
    path = tmp_path / "ckpt.pt"
    googlenet.save_checkpoint(
        path, googlenet.build_model(saved[0], num_classes=saved[1], aux_logits=saved[2])
    )
    model = googlenet.build_model(target[0], num_classes=target[1], aux_logits=target[2])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(googlenet.CheckpointError, match=message) as info:
        googlenet.load_weights(model, path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # unchanged


def test_a_key_that_names_no_weights_is_a_config_error(tmp_path: Path) -> None:
    # key="meta" used to load the metadata as weights: "the file has no auxiliary heads; build the model ..."
    path = tmp_path / "m.pt"
    googlenet.save_checkpoint(path, googlenet.build_model("bn", num_classes=2))
    message = r"key must be 'state_dict' or 'averaged_state_dict', got 'meta'"
    for load in (
        lambda: googlenet.load_weights(googlenet.build_model("bn", num_classes=2), path, key="meta"),
        lambda: googlenet.load_checkpoint_model(path, key="meta"),
        lambda: model_from_file(path, key="meta"),
    ):
        with pytest.raises(googlenet.ConfigError, match=message):
            load()
    with pytest.raises(googlenet.ConfigError, match=r"aux_logits must be None .* got 1"):
        googlenet.load_checkpoint_model(path, aux_logits=1)  # type: ignore[arg-type]


def test_heads_asked_of_a_file_without_them_say_which_argument_to_change(tmp_path: Path) -> None:
    # The functions that build the model: the caller built nothing, so "build the model" was no advice.
    ours = tmp_path / "ours.pt"
    googlenet.save_checkpoint(ours, googlenet.build_model("paper", num_classes=2, aux_logits=False))
    tv = tmp_path / "tv.pth"
    torch.save(googlenet.build_model("torchvision", num_classes=2, aux_logits=False).state_dict(), tv)
    caffe = write_caffemodel(
        tmp_path / "ref.caffemodel", random_blobs(aux=False, num_classes=2), legacy=False
    )
    for load in (
        lambda: googlenet.load_checkpoint_model(ours, aux_logits=True),
        lambda: model_from_file(ours, aux_logits=True),
        lambda: model_from_file(tv, aux_logits=True),
        lambda: model_from_file(caffe, aux_logits=True),
    ):
        with pytest.raises(
            googlenet.CheckpointError, match="no auxiliary heads; pass aux_logits=False, or leave it out"
        ):
            load()
    assert googlenet.load_checkpoint_model(ours)[0].aux1 is None  # leaving it out works
    # load_weights into a model the caller built keeps its advice
    with pytest.raises(googlenet.CheckpointError, match="build the model with aux_logits=False"):
        googlenet.load_weights(googlenet.build_model("paper", num_classes=2), ours)


def test_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    model = googlenet.build_model("paper", num_classes=4)
    path = tmp_path / "bad.pt"
    googlenet.save_checkpoint(path, model)
    # a file whose tensor does not fit (save_checkpoint refuses to write one)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["inception3a.branch1.conv.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(checkpoint, path)
    with pytest.raises(googlenet.CheckpointError, match=r"inception3a\.branch1\.conv\.weight has shape"):
        googlenet.load_weights(googlenet.build_model("paper", num_classes=4), path)


def test_heads_that_disagree_with_fc_say_where_the_class_count_came_from(tmp_path: Path) -> None:
    # A torchvision state dict whose fc was cut to 10 classes while the aux heads keep 1000.
    state = googlenet.build_model("torchvision", num_classes=1000).state_dict()
    state["fc.weight"], state["fc.bias"] = torch.zeros(10, 1024), torch.zeros(10)
    path = tmp_path / "cut.pth"
    torch.save(state, path)
    with pytest.raises(googlenet.CheckpointError, match=r"aux1\.fc2\.weight .* fc\.weight's 10 classes"):
        model_from_file(path)


class _Payload:
    def __reduce__(self):  # runs os.system on unpickling, if anything unpickles it
        return (os.system, (f"touch {self.marker}",))

    def __init__(self, marker: str) -> None:
        self.marker = marker


def test_crafted_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "googlenet", "state_dict": _Payload(str(marker))}, path)
    with pytest.raises(googlenet.CheckpointError, match="refused") as info:
        googlenet.load_weights(googlenet.build_model("paper"), path)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    # A raw pickle that is not a torch file at all is refused too.
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(googlenet.CheckpointError):
        safe_load(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_unreadable_files_are_one_line_errors(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(googlenet.CheckpointError) as info:
        googlenet.load_weights(googlenet.build_model("paper"), path)
    assert "\n" not in str(info.value) and "x.pt" in str(info.value)


def test_a_file_that_is_not_a_torch_save_says_so(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(googlenet.CheckpointError, match="not a PyTorch checkpoint") as info:
        googlenet.load_weights(googlenet.build_model("paper", num_classes=2), path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_truncated_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    googlenet.save_checkpoint(path, googlenet.build_model("paper", num_classes=2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(googlenet.CheckpointError, match=r"t\.pt: truncated or corrupt") as info:
        googlenet.load_weights(googlenet.build_model("paper", num_classes=2), path)
    assert "\n" not in str(info.value)


def test_atomic_writes_go_through_a_symlink_and_never_replace_a_pipe(tmp_path: Path) -> None:
    from googlenet.io import atomic_open

    (tmp_path / "real.txt").write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    with atomic_open(link, "w") as handle:
        handle.write("new\n")
    assert link.is_symlink() and (tmp_path / "real.txt").read_text() == "new\n"  # the link stays a link
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # as a device (/dev/null): an os.replace would swap it for a plain file
    with pytest.raises(OSError, match="not a regular file"), atomic_open(fifo, "w") as handle:
        handle.write("x")
    assert fifo.is_fifo() and not list(tmp_path.glob(".pipe.*"))
    # a file replaced keeps its permissions: a private report stays private
    os.chmod(tmp_path / "real.txt", 0o600)
    with atomic_open(tmp_path / "real.txt", "w") as handle:
        handle.write("newer\n")
    assert (tmp_path / "real.txt").stat().st_mode & 0o777 == 0o600


def test_atomic_writes_work_without_fchmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from googlenet.io import atomic_open

    monkeypatch.delattr(os, "fchmod")  # Windows before Python 3.13
    with atomic_open(tmp_path / "a.txt", "w") as handle:
        handle.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").read_text() == "x" and (
        tmp_path / "a.txt"
    ).stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_atomic_write_names_its_file_and_a_long_legal_name_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk fails the write or the fsync with an OSError naming no file: the message said only
    "No space left on device". And a 250-byte name is legal, but the temporary name built on it was not."""
    import errno

    from googlenet import io as gio
    from googlenet.io import atomic_open

    target = tmp_path / "config.yaml"
    target.write_text("before\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(gio.os, "fsync", full)
        with pytest.raises(OSError) as info, atomic_open(target, "w") as handle:
            handle.write("after\n")
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert target.read_text() == "before\n" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
    for long in (tmp_path / ("a" * 246 + ".txt"), tmp_path / ("é" * 126 + ".pt")):  # 250 and 255 bytes
        with atomic_open(long, "w") as handle:
            handle.write("x")
        assert long.read_text() == "x"
    # an error without an errno (PIL's "cannot write mode ... as PNG") keeps its type and message
    with pytest.raises(ValueError, match="not a file error"), atomic_open(tmp_path / "v.txt", "w"):
        raise ValueError("not a file error")


def test_atomic_save_keeps_previous_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "keep.pt"
    googlenet.save_checkpoint(path, googlenet.build_model("paper", num_classes=2))
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        googlenet.model.weights.atomic_save({"x": Unsaveable()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]  # no temporary file left behind


def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (mode 0600); the final file gets 0666 less the umask, like open()."""
    path = tmp_path / "perm.pt"
    googlenet.save_checkpoint(path, googlenet.build_model("paper", num_classes=2))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_averaged_key_loads_the_averaged_weights(tmp_path: Path) -> None:
    """key="averaged_state_dict" (evaluate/predict/export's --averaged) reads the averaged copy, not the raw one."""
    raw = googlenet.build_model("bn", num_classes=3)
    average = googlenet.build_model("bn", num_classes=3)
    with torch.no_grad():
        average.fc.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    path = tmp_path / "m.pt"
    googlenet.save_checkpoint(path, raw, averaged_state_dict=average.state_dict())
    for key, expected in (("state_dict", raw), ("averaged_state_dict", average)):
        for loaded in (
            googlenet.load_checkpoint_model(path, key=key)[0],
            model_from_file(path, key=key)[0],
        ):
            assert torch.equal(loaded.fc.bias, expected.fc.bias)
        target = googlenet.build_model("bn", num_classes=3)
        googlenet.load_weights(target, path, key=key)
        assert torch.equal(target.fc.bias, expected.fc.bias)


@pytest.mark.parametrize("variant", ["paper", "bn"])
def test_a_bare_state_dict_named_by_its_variant_builds_its_model(tmp_path: Path, variant: str) -> None:
    """`torch.save(model.state_dict())` of ours, heads or not: with its layout named, the model the file
    fits is built (classes from fc, heads from the keys) and the metadata says it is bare."""
    for heads in (True, False):
        source = googlenet.build_model(variant, num_classes=5, aux_logits=heads)
        path = tmp_path / f"{variant}-{heads}.pt"
        torch.save(source.state_dict(), path)
        model, meta = model_from_file(path, variant=variant)
        assert model.config.variant == variant and (model.aux1 is not None) == heads
        assert meta["bare_state_dict"] is True and meta["class_names"] == ["0", "1", "2", "3", "4"]
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in source.state_dict().items())
        inference, _ = model_from_file(path, aux_logits=False, variant=variant)
        assert inference.aux1 is None
    other = "bn" if variant == "paper" else "paper"
    with pytest.raises(googlenet.CheckpointError, match="weights do not fit the model"):
        model_from_file(path, variant=other)


def test_a_torchvision_model_trained_from_scratch_takes_imagenet_normalised_input(tmp_path: Path) -> None:
    """torchvision builds googlenet(weights=None) with transform_input=False: its state dict is taken as
    the released file's ([-1, 1] input) unless told otherwise, and then gives torchvision's own output."""
    torch.manual_seed(0)
    source = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=7)
    for (
        module
    ) in source.modules():  # BatchNorm statistics of real activations: outputs that tell inputs apart
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        source.train()(torch.randn(8, 3, 96, 96))
    source.eval()
    path = tmp_path / "scratch.pth"
    torch.save(source.state_dict(), path)
    model, meta = model_from_file(path, transform_input=False)
    assert meta["mean"] == list(googlenet.model.weights.IMAGENET_MEAN) and "aux_heads_untrained" not in meta
    x = torch.randn(2, 3, 96, 96)  # already ImageNet-normalised, as torchvision's transforms give it
    torch.testing.assert_close(model.eval()(x), source(x), rtol=1e-4, atol=1e-5)
    released, _ = model_from_file(path)
    assert released.config.transform_input and not torch.allclose(released.eval()(x), source(x), atol=1e-3)
    with pytest.raises(googlenet.ConfigError, match="applies to a torchvision GoogLeNet state dict"):
        model_from_file(_ours(tmp_path), transform_input=False)


def _ours(tmp_path: Path) -> Path:
    path = tmp_path / "ours.pt"
    model = googlenet.build_model("paper", num_classes=3)
    googlenet.save_checkpoint(path, model, googlenet.model.weights.default_meta(model))
    return path


def test_state_dicts_that_are_no_googlenet_say_what_they_are(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(googlenet.CheckpointError, match=r"another network, not a GoogLeNet .*conv1\.weight"):
        model_from_file(tmp_path / "r18.pth", variant="bn")
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    torch.save({f"module.{k}": v for k, v in tv.state_dict().items()}, tmp_path / "ddp.pth")
    with pytest.raises(googlenet.CheckpointError, match=r"every key begins with 'module\.'.*model\.module"):
        model_from_file(tmp_path / "ddp.pth")


def test_a_weight_file_cannot_ask_for_a_huge_model_or_pass_integers_for_weights(tmp_path: Path) -> None:
    state = googlenet.build_model("torchvision", num_classes=3, aux_logits=False).state_dict()
    # a 1,000,000-class classifier with no inputs: 4 MB on disk, a 4 GB model had it been built
    huge = {**state, "fc.weight": torch.empty(1_000_000, 0), "fc.bias": torch.zeros(1_000_000)}
    torch.save(huge, tmp_path / "huge.pt")
    with pytest.raises(googlenet.CheckpointError, match=r"huge\.pt: its classifier has 1,000,000 outputs"):
        model_from_file(tmp_path / "huge.pt")
    whole = {k: v.to(torch.int64) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(whole, tmp_path / "ints.pt")
    with pytest.raises(
        googlenet.CheckpointError, match=r"ints\.pt: \S+ holds torch.int64 values, not floating"
    ):
        model_from_file(tmp_path / "ints.pt")
    with pytest.raises(googlenet.ConfigError, match="num_classes must be at most 100,000"):
        googlenet.build_model("paper", num_classes=100_001)


def test_a_digest_index_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "final.pt"
    googlenet.save_checkpoint(path, googlenet.build_model("paper", num_classes=2, aux_logits=False))
    (tmp_path / "checkpoints.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(googlenet.CheckpointError) as info:
        safe_load(path)
    assert "\n" not in str(info.value) and "checkpoints.json" in str(info.value)
