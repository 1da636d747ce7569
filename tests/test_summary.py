"""`googlenet summary`: Table 1 measured on the model, against FACTS.md s.1 (not against another code)."""

from __future__ import annotations

import json

import pytest
import torch

import googlenet
from googlenet.cli import main
from googlenet.model.summary import naive_rows, reduction_example, table_rows, totals

# FACTS.md s.1, "computed from the channel counts, weights only, 5x5 kernels": weights and MACs per row.
FACTS_ROWS = {
    "conv1": (9_408, 118.0e6),
    "conv2+conv3": (114_688, 359.7e6),
    "inception3a": (163_328, 128.0e6),
    "inception3b": (388_096, 304.3e6),
    "inception4a": (375_552, 73.6e6),
    "inception4b": (448_512, 87.9e6),
    "inception4c": (509_440, 99.9e6),
    "inception4d": (604_672, 118.5e6),
    "inception4e": (867_328, 170.0e6),
    "inception5a": (1_042_432, 51.1e6),
    "inception5b": (1_442_816, 70.7e6),
    "fc": (1_024_000, 1.0e6),
}
# Biases per row, from Table 1's widths: one per output channel of every convolution in the row.
TABLE1_BIASES = {
    "conv1": 64,
    "conv2+conv3": 64 + 192,
    "inception3a": 64 + 96 + 128 + 16 + 32 + 32,
    "inception3b": 128 + 128 + 192 + 32 + 96 + 64,
    "inception4a": 192 + 96 + 208 + 16 + 48 + 64,
    "inception4b": 160 + 112 + 224 + 24 + 64 + 64,
    "inception4c": 128 + 128 + 256 + 24 + 64 + 64,
    "inception4d": 112 + 144 + 288 + 32 + 64 + 64,
    "inception4e": 256 + 160 + 320 + 32 + 128 + 128,
    "inception5a": 256 + 160 + 320 + 32 + 128 + 128,
    "inception5b": 384 + 192 + 384 + 48 + 128 + 128,
    "fc": 1000,
}


@pytest.fixture(scope="module")
def paper_rows():
    return {r.name: r for r in table_rows(googlenet.build_model("paper"), 224)}


@pytest.mark.parametrize("name", list(FACTS_ROWS))
def test_row_params_and_macs_match_facts(paper_rows, name: str) -> None:
    weights, macs = FACTS_ROWS[name]
    row = paper_rows[name]
    assert row.params == weights + TABLE1_BIASES[name]
    assert abs(row.macs - macs) <= 0.05e6


def test_totals_paper_and_torchvision() -> None:
    paper = totals(googlenet.build_model("paper"), 224)
    assert paper["params"] == 6_998_552
    assert paper["weights"] == 6_990_272
    assert abs(paper["macs"] - 1.58e9) < 0.01e9
    assert (paper["depth"], paper["depth_with_pooling"]) == (22, 27)
    assert paper["params_with_aux"] - paper["params"] == paper["aux1_params"] + paper["aux2_params"]
    # section 5 heads: about 3.19M weights each (FACTS s.2)
    assert abs(paper["aux1_params"] - 3.19e6) < 0.01e6 and abs(paper["aux2_params"] - 3.19e6) < 0.01e6
    tv = totals(googlenet.build_model("torchvision"), 224)
    assert tv["params"] == 6_624_904
    assert abs(tv["macs"] - 1.50e9) < 0.01e9


def test_flags_are_the_rows_where_table1_disagrees(paper_rows) -> None:
    flagged = {(name, f.split()[0]) for name, r in paper_rows.items() for f in r.flags}
    assert flagged == {
        ("conv1", "params"),
        ("conv1", "ops"),
        ("inception4c", "params"),
        ("inception5a", "ops"),
    }


def test_another_number_of_classes_is_not_flagged_against_table_1s_classifier(capsys) -> None:
    # The report of a 10-class run flagged "linear: params computed 10.2K, printed 1,000.0K".
    model = googlenet.build_model("paper", num_classes=10)
    rows = {r.name: r for r in table_rows(model)}
    assert rows["fc"].flags == [] and {n for n, r in rows.items() if r.flags} == {
        "conv1",
        "inception4c",
        "inception5a",
    }
    assert main(["summary", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert (
        "linear: Table 1's printed params and ops are for ImageNet's 1000 classes; this network has 10" in out
    )
    assert "linear: params computed" not in out
    assert main(["summary"]) == 0 and "ImageNet's 1000 classes" not in capsys.readouterr().out


def test_output_shapes_and_patches(paper_rows) -> None:
    assert paper_rows["conv1"].output_shape == (112, 112, 64) and paper_rows["conv1"].patch == "7x7/2"
    assert paper_rows["maxpool4"].output_shape == (7, 7, 832) and paper_rows["maxpool4"].patch == "3x3/2"
    assert paper_rows["avgpool"].patch == "7x7/1"
    assert paper_rows["inception5b"].branches["pool_proj"] == 128
    assert paper_rows["conv2+conv3"].branches == {"n3x3red": 64, "n3x3": 192}  # Table 1's stem widths


def test_naive_costs_more_and_paper_example() -> None:
    rows = naive_rows(googlenet.build_model("paper"), 224)
    assert len(rows) == 9
    first = rows[0]
    assert first.input_shape == (28, 28, 192)
    assert first.naive_out == 64 + 128 + 32 + 192
    assert all(r.naive_macs > r.reduced_macs for r in rows)
    example = reduction_example()
    assert example["direct_5x5_macs"] == 28 * 28 * 32 * 5 * 5 * 192
    assert example["reduced_5x5_macs"] == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16
    assert example["reduce_192_to_32_macs"] == 28 * 28 * 32 * 192


def test_naive_rows_of_a_batchnorm_model_at_a_small_input_leave_it_as_it_was() -> None:
    # inception 5a/5b see 1x1 maps at 32-62 px, which BatchNorm refuses in training mode: this was a
    # traceback from `googlenet summary --variant bn --input-size 32 --naive`
    model = googlenet.build_model("bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = naive_rows(model, 32)
    assert len(rows) == 9 and rows[-1].input_shape[:2] == (1, 1)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_cli_json(capsys) -> None:
    assert main(["summary", "--json", "--naive"]) == 0
    data = json.loads(capsys.readouterr().out)
    for row in data["rows"]:
        assert {"name", "params", "macs", "paper_params", "paper_ops", "output_shape"} <= set(row)
    assert data["total"]["params"] == 6_998_552
    assert len(data["naive"]) == 9


def test_cli_table_and_other_sizes(capsys) -> None:
    assert main(["summary", "--variant", "bn", "--input-size", "112"]) == 0
    out = capsys.readouterr().out
    assert "7,005,832 parameters" in out and "56x56x64" in out


def test_count_macs_is_shape_only_and_leaves_the_model_alone() -> None:
    """The pass runs on a meta-device copy: the largest input costs what 224 does (a real forward pass
    at 4096 px took 134 s and 5.7 GB), and the caller's weights stay where and what they were."""
    import torch

    from googlenet.model.summary import count_macs

    model = googlenet.build_model("paper", aux_logits=False)
    before = model.conv1.conv.weight.detach().clone()
    small, _ = count_macs(model, torch.zeros(1, 3, 224, 224))
    large, shapes = count_macs(model, torch.zeros(1, 3, 4096, 4096))
    assert model.conv1.conv.weight.device.type == "cpu" and torch.equal(model.conv1.conv.weight, before)
    assert shapes["inception5b"] == (1024, 128, 128)
    # Every convolution's cost grows with its output's area: (4096 / 224)^2 up to rounding of the strides.
    assert large["conv1.conv"] == small["conv1.conv"] * (2048 * 2048) // (112 * 112)
    assert large["fc"] == small["fc"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["summary", "--input-size", "16"], 1, "--input-size must be at least 32"),
        (["summary", "--input-size", "abc"], 2, "invalid int value"),
        (["summary", "--variant", "vgg"], 2, "invalid choice"),
        (["summary", "--num-classes", "0"], 1, "--num-classes must be at least 1"),
    ],
)
def test_cli_bad_arguments(capsys, argv: list[str], code: int, message: str) -> None:
    try:
        result = main(argv)
    except SystemExit as exc:  # argparse usage errors
        result = exc.code
    assert result == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
