"""Typed training configuration: paper defaults, YAML round trip, precedence, one-line errors, the CLI."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from googlenet.cli import build_parser, main
from googlenet.errors import ConfigError
from googlenet.train.command import build_config
from googlenet.train.config import (
    BUILTIN_PRESET,
    ENSEMBLE_SAMPLING,
    TrainConfig,
    dump_yaml,
    ensemble_member,
    from_dict,
    inert_overrides,
    load_yaml,
    resolve,
)


def test_defaults_are_the_paper_recipe() -> None:
    config = TrainConfig()
    assert config.optim.momentum == 0.9  # section 6
    assert config.schedule.lr_scheduler == "step"
    assert config.schedule.lr_gamma == 0.96 and config.schedule.lr_step_size == 8  # section 6
    assert config.optim.aux_weight == 0.3  # section 5
    assert config.average.method == "polyak"  # section 6
    assert (config.optim.lr, config.optim.batch_size, config.optim.weight_decay) == (0.01, 32, 2e-4)  # Caffe
    assert (config.augment.scale_min, config.augment.ratio_min, config.augment.ratio_max) == (
        0.08,
        3 / 4,
        4 / 3,
    )
    assert config.model.variant == "paper" and config.model.input_size == 224
    assert config.optim.label_smoothing == 0.0


def test_every_default_number_cites_its_source() -> None:
    source = (Path(__file__).resolve().parents[1] / "src/googlenet/train/config.py").read_text()
    body = source.split("class ModelSection", 1)[1].split("class TrainConfig", 1)[0]
    for line in body.splitlines():
        stripped = line.strip()
        if ": " in stripped and " = " in stripped and not stripped.startswith(("#", '"')):
            previous = body.splitlines()[body.splitlines().index(line) - 1].strip()
            assert "#" in stripped or previous.startswith("#"), f"no source comment: {stripped}"


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = resolve(
        {},
        {"optim.lr": 0.05, "model.variant": "bn", "data.data_path": "/data", "augment.std": [0.5, 0.5, 0.5]},
    )
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(config, "a header\nsecond line"))
    again = from_dict(__import__("yaml").safe_load(path.read_text()))
    assert again == config
    assert load_yaml(path)["optim.lr"] == 0.05


def test_exponents_without_a_point_are_floats(tmp_path: Path) -> None:
    # YAML 1.2 and JSON read 1e-2 as a number; PyYAML's YAML 1.1 would make it the string "1e-2".
    path = tmp_path / "config.yaml"
    path.write_text(
        "optim:\n  lr: 1e-2\n  weight_decay: 2E-4\nrun:\n  data_seed: 12\nmodel:\n  variant: 1e3x\n"
    )
    values = load_yaml(path)
    assert (values["optim.lr"], values["optim.weight_decay"]) == (0.01, 2e-4)
    assert values["run.data_seed"] == 12 and values["model.variant"] == "1e3x"  # ints and words unchanged


def test_merge_keys_still_work_and_may_be_overridden(tmp_path: Path) -> None:
    # `<<:` is not a duplicate key: an anchor's values merge, and a key after it overrides the merged one.
    path = tmp_path / "config.yaml"
    path.write_text("optim:\n  <<: {lr: 0.02, momentum: 0.8}\n  lr: 0.03\n")
    assert load_yaml(path) == {"optim.lr": 0.03, "optim.momentum": 0.8}


def test_builtin_preset_only_without_data() -> None:
    builtin = resolve({}, {})
    assert builtin.data.dataset == "builtin"
    for key, value in BUILTIN_PRESET.items():
        assert builtin.get(key) == value
    folder = resolve({}, {"data.data_path": "/somewhere"})
    assert folder.data.dataset == "folder"
    assert folder.model.input_size == 224 and folder.run.epochs == 250  # the paper recipe untouched


def test_builtin_preset_trains_in_bf16_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import googlenet.train.config as config_module

    for native in (True, False):
        monkeypatch.setattr(config_module, "native_bf16", lambda native=native: native)
        assert resolve({}, {}).run.amp is native  # the built-in data's preset
        assert resolve({}, {"data.data_path": "/d"}).run.amp is False  # the paper's recipe: fp32
        assert resolve({}, {"run.amp": False}).run.amp is False  # --no-amp
        assert resolve({}, {"run.device": "cuda"}).run.amp is False  # a GPU run: fp32 unless --amp


def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    import googlenet.train.config as config_module

    real_open = builtins.open
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(
        builtins, "open", lambda f, *a, **k: real_open(cpuinfo if f == "/proc/cpuinfo" else f, *a, **k)
    )
    try:
        for flags, expected in (("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True),
                                ("fpu avx512f avx512bw", False)):  # fmt: skip
            cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
            config_module.native_bf16.cache_clear()
            assert config_module.native_bf16() is expected
        # Arm's "Features" line (Graviton 3 has bf16): --amp warned there that bf16 was emulated
        for text, expected in (("Features\t: fp asimd sve bf16\n", True), ("Features\t: fp asimd\n", False),
                               ("processor\t: 0\n", None)):  # fmt: skip
            cpuinfo.write_text(text)
            assert config_module.cpu_bf16() is expected
    finally:  # the real machine's answer for the tests after this one
        monkeypatch.undo()
        config_module.native_bf16.cache_clear()


def test_flags_override_file_override_preset(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.03\n  batch_size: 16\nrun:\n  epochs: 5\n")
    config = resolve(load_yaml(path), {"optim.lr": 0.07})
    assert config.optim.lr == 0.07  # flag
    assert config.optim.batch_size == 16 and config.run.epochs == 5  # file
    assert config.model.input_size == BUILTIN_PRESET["model.input_size"]  # preset


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optim:\n  lrr: 0.1\n", "unknown config key 'optim.lrr'"),
        ("optimiser:\n  lr: 0.1\n", "unknown section 'optimiser'"),
        ("optim:\n  lr: fast\n", "optim.lr must be float, got 'fast'"),
        ("optim:\n  batch_size: 3.5\n", "optim.batch_size must be int"),
        ("model:\n  aux_logits: 1\n", "model.aux_logits must be bool"),
        ("optim:\n  lr: -1\n", "optim.lr must be > 0"),
        ("optim:\n  momentum: 1.5\n", "optim.momentum must be in [0, 1)"),
        ("optim:\n  bias_weight_decay: -1\n", "optim.bias_weight_decay must be >= 0"),
        ("optim:\n  bias_lr_mult: 0\n", "optim.bias_lr_mult must be > 0"),
        ("model:\n  variant: resnet\n", "model.variant must be one of paper, bn, torchvision"),
        ("model:\n  input_size: 48\n", "model.input_size must be between 64 and 4096 with auxiliary heads"),
        ("average:\n  start: 2.5\n", "average.start must be a fraction in [0, 1) or a whole epoch number"),
        (
            "average:\n  start: 5\nrun:\n  epochs: 2\n",
            "is epoch 6 of a 2-epoch run: averaging would never start",
        ),
        (
            "average:\n  start: 0.9\nrun:\n  epochs: 1\n",
            "is epoch 2 of a 1-epoch run",
        ),  # rounds up to the end
        ("data:\n  dataset: imagenet\n", "data.dataset 'imagenet' needs a data path"),
        ("- just\n- a list\n", "expected a mapping of sections"),
        ("optim: [1, 2\n", "not valid YAML"),
        ("augment:\n  std: [0.2, 0, 0.2]\n", "augment.std must be > 0 for each channel, got [0.2, 0.0, 0.2]"),
        ("augment:\n  mean: [0.5, 0.5]\n", "augment.mean must be three numbers (R G B), got [0.5, 0.5]"),
        ("augment:\n  mean: 0.5\n", "augment.mean must be a list of float, got 0.5"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(load_yaml(path), {})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_range_error_names_the_file_that_set_the_value(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: -3\n  momentum: 0.5\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: optim.lr must be > 0"):
        build_config(_parse(["--config", str(path)]))
    # The flag replaced the file's value: the error is the flag's, with no file named.
    with pytest.raises(ConfigError, match=r"^optim.momentum must be in \[0, 1\)"):
        build_config(_parse(["--config", str(path), "--lr", "0.1", "--momentum", "2"]))


def test_a_cosine_floor_above_a_scaled_group_is_refused(tmp_path: Path) -> None:
    (tmp_path / "init.pt").write_bytes(b"")  # validation only checks that the file is there
    init = {"model.init_from": str(tmp_path / "init.pt"), "schedule.lr_scheduler": "cosine"}
    with pytest.raises(ConfigError, match=r"lr_min \(0.001\) must be below .*the lowest: 0.0001"):
        resolve({}, {**init, "optim.init_lr_mult": 0.01, "schedule.lr_min": 0.001})
    resolve({}, {**init, "optim.init_lr_mult": 0.01, "schedule.lr_min": 0.00001})
    resolve({}, {**init, "optim.init_lr_mult": 0.0, "schedule.lr_min": 0.001})  # frozen: no group to rise
    with pytest.raises(ConfigError, match=r"the lowest: 0\.0005"):
        resolve({}, {"schedule.lr_scheduler": "cosine", "optim.bias_lr_mult": 0.05, "schedule.lr_min": 0.001})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_yaml(tmp_path / "nope.yaml")


def test_no_aux_allows_32px() -> None:
    assert resolve({}, {"model.aux_logits": False, "model.input_size": 32}).model.input_size == 32


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["train", *argv])


def test_cli_flags_map_onto_config_keys() -> None:
    args = _parse(
        ["--data-path", "/d", "--epochs", "3", "-b", "64", "--lr", "0.1", "--wd", "1e-4", "--lr-scheduler",
         "cosine", "--lr-warmup-epochs", "1", "-j", "2", "--amp", "--average", "ema",
         "--average-start", "0.25", "--ema-decay", "0.99", "--no-random-interpolation",
         "--lighting", "0", "--no-flip", "--scale-min", "0.2", "--on-bad", "abort",
         "--seed", "7", "--deterministic", "--device", "cpu", "--no-channels-last", "--aux-weight", "0.5",
         "--bias-lr-mult", "2", "--bias-weight-decay", "0", "--norm-weight-decay", "0", "--variant", "bn",
         "--mean", "0", "0", "0", "--std", "1", "1", "1"]
    )  # fmt: skip
    config, resume = build_config(args)
    assert resume is None
    assert config.data.data_path == "/d" and config.data.dataset == "folder"
    assert (config.run.epochs, config.optim.batch_size, config.optim.lr) == (3, 64, 0.1)
    assert config.optim.weight_decay == 1e-4 and config.schedule.lr_scheduler == "cosine"
    assert config.schedule.lr_warmup_epochs == 1 and config.data.workers == 2
    assert config.run.amp and config.model.aux_logits and config.average.method == "ema"
    assert config.average.start == 0.25 and config.average.ema_decay == 0.99
    assert config.augment.random_crop and not config.augment.random_interpolation
    assert config.augment.photometric and config.augment.lighting == 0 and not config.augment.flip
    assert config.augment.scale_min == 0.2 and config.data.on_bad == "abort"
    assert config.run.seed == 7 and config.run.deterministic and config.run.device == "cpu"
    assert not config.model.channels_last and config.optim.aux_weight == 0.5
    assert (config.optim.bias_lr_mult, config.optim.bias_weight_decay, config.optim.norm_weight_decay) == (
        2,
        0,
        0,
    )
    assert (config.augment.mean, config.augment.std) == ([0, 0, 0], [1, 1, 1])  # normalisation off
    assert config.model.input_size == 224  # untouched: the paper recipe when data is given
    # The switches that turn a part off (their own settings then do not apply, and are refused)
    off, _ = build_config(_parse(["--data-path", "/d", "--no-aux", "--no-random-crop", "--no-photometric"]))
    assert not (off.model.aux_logits or off.augment.random_crop or off.augment.photometric)


def test_cli_reports_config_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--lr", "0", "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "googlenet train: error: optim.lr must be > 0, got 0.0"


def test_cli_config_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.03\nrun:\n  epochs: 4\n")
    config, _ = build_config(_parse(["--config", str(path), "--epochs", "6"]))
    assert config.optim.lr == 0.03 and config.run.epochs == 6


def test_no_test_only_turns_off_a_config_files_test_only(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  test_only: true\n")
    config, _ = build_config(_parse(["--config", str(path), "--no-test-only"]))
    assert config.run.test_only is False


def test_set_overrides_any_key_over_the_file_and_refuses_a_flags_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  builtin_train_per_class: 50\n  builtin_val_per_class: 5\n")
    argv = ["--config", str(path), "--set", "data.builtin_train_per_class=20", "--set", "model.lrn=false"]
    config, _ = build_config(_parse(argv))
    assert (config.data.builtin_train_per_class, config.data.builtin_val_per_class) == (20, 5)
    assert config.model.lrn is False
    with pytest.raises(ConfigError, match=r"--set run.epochs=\.\.\. and that key's own flag"):
        build_config(_parse(["--set", "run.epochs=3", "--epochs", "2"]))
    with pytest.raises(ConfigError, match=r"--set: data\.builtin_val_per_class must be int"):
        build_config(_parse(["--set", "data.builtin_val_per_class=x"]))
    # a key whose flag would be refused as changing nothing is refused by --set too (it passed unsaid)
    with pytest.raises(
        ConfigError, match=r"--set average\.ema_decay=\.\.\. does not apply: only --average ema"
    ):
        build_config(_parse(["--set", "average.ema_decay=0.5"]))
    with pytest.raises(ConfigError, match=r"--ema-decay does not apply"):
        build_config(_parse(["--ema-decay", "0.5"]))
    path.write_text(
        "average:\n  ema_decay: 0.5\n"
    )  # a file is not checked: a run's config.yaml holds every key
    assert build_config(_parse(["--config", str(path)]))[0].average.ema_decay == 0.5


def test_ensemble_members_differ_in_sampling_not_init() -> None:
    config = resolve({}, {"run.seed": 5, "run.ensemble": 7})
    members = [ensemble_member(config, k) for k in range(7)]
    assert [m.run.data_seed for m, _ in members] == [5, 6, 7, 8, 9, 10, 11]
    assert all(m.run.seed == 5 for m, _ in members)  # same initial weights
    assert [set(overrides) for _, overrides in members] == [set(entry) for entry in ENSEMBLE_SAMPLING]
    assert not members[1][0].augment.random_interpolation
    assert members[0][0].augment == config.augment
    # "Larger patches" only ever raise the minimum: the built-in recipe's 50% stays, the paper's 8% -> 35%
    assert config.augment.scale_min == 0.5 and members[2][0].augment.scale_min == 0.5
    paper = resolve({}, {"data.data_path": "/d", "run.ensemble": 7})
    assert [ensemble_member(paper, k)[0].augment.scale_min for k in (0, 2, 6)] == [0.08, 0.35, 0.2]


def test_sampling_overrides_that_change_nothing_are_named() -> None:
    """ensemble.json and the log name a member's settings that leave its training as member 0's."""

    def inert(config: TrainConfig) -> list[list[str]]:
        members = [ensemble_member(config, k) for k in range(7)]
        return [inert_overrides(member, config, overrides) for member, overrides in members]

    paper = resolve({}, {"data.data_path": "/d", "run.ensemble": 7})
    # on the paper's recipe every member's settings act, but member 6's "no lighting noise", which
    # its own "no photometric distortion" already includes
    assert inert(paper) == [[]] * 6 + [["augment.lighting"]]
    builtin = resolve({}, {"run.ensemble": 7})  # patches from 50% already: "at least 35%" is 50%
    assert inert(builtin)[2] == ["augment.scale_min"] and inert(builtin)[1] == []
    assert inert(builtin)[5] == ["augment.scale_min"]
    assert inert(builtin)[6] == ["augment.lighting", "augment.scale_min"]
    # random patches off (the fixed-crop recipe, detect train's regions): the patch range never acts,
    # and "no random patches" is what the recipe already does
    fixed = resolve({}, {"data.data_path": "/d", "run.ensemble": 7, "augment.random_crop": False})
    assert inert(fixed)[2] == ["augment.scale_min"] and inert(fixed)[4] == ["augment.random_crop"]
    assert inert(fixed)[6] == ["augment.lighting", "augment.scale_min"] and inert(fixed)[3] == []


def test_a_config_file_of_shared_or_deep_nesting_is_one_short_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 8 levels of YAML aliases, 10 each: 400 bytes that are 10^8 elements; the full repr took 3.9 GB
    lines = ["model:", "  input_size: [&l0 [0]"]
    for level in range(1, 8):
        lines.append(f"    , &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    lines.append("    , *l7]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert main(["train", "--config", str(bomb), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 600 and "model.input_size must be int, got [[0], [[0]" in err
    deep = tmp_path / "deep.yaml"
    deep.write_text("model: {input_size: " + "[" * 5000 + "]" * 5000 + "}\n")
    assert main(["train", "--config", str(deep), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid YAML (nested too deeply)" in err, err
    assert main(["train", "--set", "model.input_size=" + "[" * 5000 + "]" * 5000, "--epochs", "1"]) == 1
    assert "the value is not valid YAML" in capsys.readouterr().err
