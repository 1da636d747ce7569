"""`googlenet benchmark`: the plan covers every peer and path, and a small run produces real numbers."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import googlenet.bench.command as bench_command
from googlenet.bench.command import (
    SECTIONS,
    combine_rounds,
    format_rows,
    is_benchmark_json,
    peers_left_out,
    plan,
    rates_in_turns,
    run_payload,
    save_run,
    summarise,
)
from googlenet.bench.paths import run_spec
from googlenet.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _args(**overrides: object) -> argparse.Namespace:
    values = {"only": list(SECTIONS), "batch": [1, 32], "train_size": [224, 112], "compile": True, "repeats": 5, "turns": 10,
              "quick": False, "crops_repeats": 3}  # fmt: skip
    values.update(overrides)
    return argparse.Namespace(**values)


def test_quick_plan_keeps_the_baseline_the_peers_and_ours() -> None:
    full = {spec["name"] for spec in plan(_args(only=["infer"]), "/data")}
    quick = {spec["name"] for spec in plan(_args(only=["infer"], quick=True), "/data")}
    assert quick < full and len(quick) < 0.6 * len(full)
    for precision in ("fp32", "bf16"):
        assert {f"torchvision eager b32 {precision}", f"torchvision compile b32 {precision}",
                f"ours paper eager b32 {precision}"} <= quick  # fmt: skip
    assert not any(
        "channels_last" in n or "fused-1x1" in n or n.startswith("ours torchvision") for n in quick
    )


def test_plan_names_every_peer_and_baseline() -> None:
    specs = plan(_args(), "/data")
    names = {spec["name"] for spec in specs}
    for batch in (1, 32):
        for precision in ("fp32", "bf16"):
            assert f"torchvision eager b{batch} {precision}" in names
            assert f"torchvision compile b{batch} {precision}" in names
            assert f"ours paper eager b{batch} {precision}" in names
            assert f"ours torchvision auto vs peers b{batch} {precision}" in names
    assert {
        "GEMM fp32",
        "GEMM bf16",
        "train torchvision eager 224 fp32",
        "train ours paper 112 bf16",
    } <= names
    assert {"data 1 worker(s)", "data 2 worker(s)", "144 crops ours paper auto, 1 worker(s)"} <= names
    assert all(spec["baseline"] in names for spec in specs if "baseline" in spec)  # every ratio has its base
    assert len(names) == len(specs)


def test_gemm_path_and_ratios(one_thread: None) -> None:
    result = run_spec(
        {"kind": "gemm", "precision": "fp32", "n": 256, "batch": 2, "channels": 64, "side": 8, "repeats": 2}
    )
    assert result["value"] == max(result["mm"], result["conv1x1"])
    assert result["value"] > 0 and result["peak_rss_mib"] > 0
    specs = [
        {"section": "gemm", "name": "GEMM fp32", "precision": "fp32"},
        {"section": "infer", "name": "a", "precision": "fp32", "variant": "paper", "baseline": "a"},
        {"section": "infer", "name": "b", "precision": "fp32", "variant": "paper", "baseline": "a"},
    ]
    results = [
        {"value": 1000.0, "peak_rss_mib": 1.0},
        {"value": 10.0, "peak_rss_mib": 1.0},
        {"error": "boom"},
    ]
    rows = summarise(specs, results)
    assert rows[1]["ratio"] == 1.0
    assert rows[1]["ceiling_fraction"] == pytest.approx(10 * 2 * 1.583e9 / 1e12, rel=1e-3)
    assert "failed: boom" in format_rows(rows)


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_command_runs_a_section_and_saves_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--only", "gemm", "--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "GEMM fp32" in text and "GFLOP/s" in text
    saved = json.loads(out.read_text())
    assert saved["machine"]["threads"] >= 1 and len(saved["rows"]) == 2
    assert all(row["value"] > 0 for row in saved["rows"])
    # --json without a file: one JSON object on stdout instead of the table, as other commands' --json
    # (the same measurements replayed: timing them again would add 15 s and test nothing more)
    replay = iter(saved["rows"])
    monkeypatch.setattr(bench_command, "run_one", lambda spec: {"value": next(replay)["value"]})
    assert main(["benchmark", "--only", "gemm", "--quick", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in printed["rows"]] == [row["name"] for row in saved["rows"]]
    # the earlier result is replaced; any other JSON (a run's results.json, say) is refused before timing
    replay = iter(saved["rows"])
    monkeypatch.setattr(
        bench_command, "run_one", lambda spec: {"value": next(replay)["value"], "peak_rss_mib": 1.0}
    )
    assert main(["benchmark", "--only", "gemm", "--quick", "--json", str(out)]) == 0
    other = tmp_path / "results.json"
    other.write_text('{"val_top1_raw": 35.3}')
    assert main(["benchmark", "--only", "gemm", "--quick", "--json", str(other)]) == 1
    assert "exists and is not an earlier benchmark JSON" in capsys.readouterr().err
    assert other.read_text() == '{"val_top1_raw": 35.3}'
    assert is_benchmark_json(out) and is_benchmark_json(RESULTS / "benchmark-cpu.json")  # before "rounds"
    assert not is_benchmark_json(RESULTS / "ort_spinning-zen4.json")  # a script's own result


def test_bad_values_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "--repeats", "0"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["benchmark", "--only", "data", "--data-path", "/nonexistent"]) == 1
    assert "/nonexistent" in capsys.readouterr().err


def test_rounds_combine_to_medians_and_same_round_ratios() -> None:
    specs = [
        {"section": "train", "name": "base"},
        {"section": "train", "name": "ours", "baseline": "base"},
        {"section": "train", "name": "flaky", "baseline": "base"},
    ]
    rounds = [  # the machine slows down by half in round 2: the same-round ratio stays 2
        [{"value": 10.0, "peak_rss_mib": 5.0}, {"value": 20.0, "peak_rss_mib": 7.0}, {"value": 1.0, "peak_rss_mib": 1.0}],
        [{"value": 5.0, "peak_rss_mib": 6.0}, {"value": 10.0, "peak_rss_mib": 7.5}, {"error": "boom"}],
        [{"value": 10.0, "peak_rss_mib": 5.0}, {"value": 21.0, "peak_rss_mib": 7.0}, {"value": 1.0, "peak_rss_mib": 1.0}],
    ]  # fmt: skip
    combined = combine_rounds(specs, rounds)
    assert combined[0]["value"] == 10.0 and combined[0]["peak_rss_mib"] == 6.0
    assert combined[1]["round_values"] == [20.0, 10.0, 21.0] and combined[1]["value"] == 20.0
    assert combined[1]["round_ratios"] == [2.0, 2.0, 2.1]
    assert combined[2] == {"error": "boom"}
    rows = summarise(specs, combined)
    assert rows[1]["ratio"] == 2.0  # a cross-round ratio would have said 20 / 10 = 2 only by luck
    assert combine_rounds(specs, rounds[:1]) is rounds[0]
    # where the platform cannot read peak memory (no `resource`: Windows) the rows say None, not fail
    unknown = [[{"value": v, "peak_rss_mib": None} for v in (10.0, 20.0, 1.0)] for _ in range(2)]
    assert combine_rounds(specs, unknown)[0]["peak_rss_mib"] is None


def test_bf16_training_rows_are_also_compared_with_torchvision_bf16() -> None:
    """The train section's baseline is torchvision fp32; a bf16 row of ours also gets its ratio to
    torchvision's own bf16 step, within each round like the baseline ratio."""
    args = argparse.Namespace(
        only=["train"], train_size=[112], quick=True, repeats=2, compile=False, turns=3,
        crops_repeats=2, data_path=None,
    )  # fmt: skip
    specs = plan(args, root="", data_root="")
    peer = "train torchvision channels_last 112 bf16"
    assert {spec["name"] for spec in specs if spec.get("peer") == peer} == {
        "train ours torchvision 112 bf16",
        "train ours paper 112 bf16",
    }
    assert all("peer" not in run_payload(spec) for spec in specs)
    names = [spec["name"] for spec in specs]
    rounds = [
        [{"value": float(i + 1) * scale, "peak_rss_mib": 1.0} for i in range(len(specs))]
        for scale in (1.0, 0.5, 1.0)
    ]
    rows = summarise(specs, combine_rounds(specs, rounds))
    by_name = {row["name"]: row for row in rows}
    ours = by_name["train ours paper 112 bf16"]
    expected = (names.index("train ours paper 112 bf16") + 1) / (names.index(peer) + 1)
    assert ours["ratio_to_peer_row"] == pytest.approx(expected) and ours["peer_row"] == peer
    assert "ratio_to_peer_row" not in by_name["train ours paper 112 fp32"]
    assert f"vs torchvision channels_last 112 bf16: {expected:.2f}x" in format_rows(rows)
    single = summarise(specs, rounds[0])  # one round: the plain ratio of the two rows
    assert {row["name"]: row for row in single}["train ours paper 112 bf16"][
        "ratio_to_peer_row"
    ] == pytest.approx(expected)


def test_rounds_flag_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "--rounds", "0"]) == 1
    assert "--rounds" in capsys.readouterr().err


def test_save_run_records_machine_arguments_and_results(tmp_path: Path) -> None:
    out = tmp_path / "deeper" / "run.json"
    save_run(out, argparse.Namespace(sizes=[224], json=out), [{"ratio": 1.5}])
    saved = json.loads(out.read_text())
    assert saved["results"] == [{"ratio": 1.5}] and saved["args"]["sizes"] == "[224]"
    assert saved["machine"]["threads"] >= 1 and saved["torch"]


def test_crops144_path_pairs_the_raw_forward_with_the_protocols_calls(
    tmp_path: Path, one_thread: None
) -> None:
    # Three square images: 48 distinct crops each, grouped into one model call of 144, so the raw
    # forward it is compared with is one call of 144 too.
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "0.jpg")
    spec = {"section": "crops144", "name": "c", "kind": "crops144", "root": str(tmp_path), "size": 32,
            "images": 3, "variant": "torchvision", "backend": "eager", "workers": 0, "repeats": 2}  # fmt: skip
    result = run_spec(spec)
    assert result["forward_passes"] == 3 * 48 and result["raw_calls"] == 1
    assert result["backend"] == "eager" and result["value"] > 0 and result["raw_crops_s"] > 0
    assert 0 < result["ratio_to_raw"] < float("inf")  # a timing ratio of 2 repeats: its size is load's


def test_crops144_path_starts_its_loader_process_once(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timed passes reuse one loader process, as a long evaluation does, instead of paying its
    start in every 3-image pass."""
    import numpy as np
    from PIL import Image

    import googlenet.evaluate.protocol as protocol

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "0.jpg")
    starts = tmp_path / "starts.txt"
    original = protocol._worker_init

    def counted(worker_id: int) -> None:  # runs in the loader process, forked with this patch
        with open(starts, "a") as f:
            f.write(f"{worker_id}\n")
        original(worker_id)

    monkeypatch.setattr(protocol, "_worker_init", counted)
    spec = {"section": "crops144", "name": "c", "kind": "crops144", "root": str(tmp_path), "size": 32,
            "images": 2, "variant": "torchvision", "backend": "eager", "workers": 1, "repeats": 2}  # fmt: skip
    result = run_spec(spec)
    assert result["forward_passes"] == 2 * 48 and result["value"] > 0
    assert starts.read_text().splitlines() == ["0"]  # 3 passes (warm-up + 2 timed), one start
    assert result["peak_worker_rss_mib"] > 0


def test_infer_path_pairs_each_repetition_with_the_ceiling(one_thread: None) -> None:
    spec = {"kind": "infer", "impl": "ours", "variant": "torchvision", "backend": "eager", "batch": 2,
            "size": 64, "precision": "fp32", "repeats": 3, "warmup": 1,
            "ceiling": {"n": 128, "batch": 2, "channels": 32, "side": 4}}  # fmt: skip
    result = run_spec(spec)
    assert result["value"] > 0 and result["paired_ceiling"] > 0 and result["peak_rss_mib"] > 0
    from googlenet.model.googlenet import build_model
    from googlenet.model.summary import totals

    macs = totals(build_model("torchvision", num_classes=1000, aux_logits=False), input_size=64)["macs"]
    # the median of per-repetition fractions: near (not equal to) the ratio of the two medians
    assert (
        0.2 < result["paired_fraction"] / (result["value"] * 2 * macs / (result["paired_ceiling"] * 1e9)) < 5
    )
    specs = [
        {"section": "gemm", "name": "GEMM fp32", "precision": "fp32"},
        {"section": "infer", "name": "a", "precision": "fp32", "variant": "torchvision", "baseline": "a"},
    ]
    rows = summarise(specs, [{"value": 1000.0, "peak_rss_mib": 1.0}, result])
    assert rows[1]["ceiling_fraction"] == result["paired_fraction"]  # the paired figure is the one shown
    assert rows[1]["ceiling_fraction_section"] == pytest.approx(
        result["value"] * 2 * 1.498e9 / 1e12, rel=1e-3
    )


def test_versus_path_times_ours_and_the_peers_in_turns(one_thread: None) -> None:
    spec = {"kind": "versus", "batch": 2, "size": 64, "precision": "fp32", "turns": 3, "warmup": 1,
            "ours": {"impl": "ours", "variant": "torchvision", "backend": "eager"},
            "peers": [{"impl": "torchvision-eager", "label": "tv"}, {"impl": "torchvision-eager-cl", "label": "tv cl"}],
            "ceiling": {"n": 128, "batch": 2, "channels": 32, "side": 4}}  # fmt: skip
    result = run_spec(spec)
    assert set(result["peers"]) == set(result["ratios"]) == set(result["peer_fractions"]) == {"tv", "tv cl"}
    assert len(result["turn_ratios"]) == 3 and result["ratio_to_peer"] == sorted(result["turn_ratios"])[1]
    fastest = max(result["peers"], key=result["peers"].__getitem__)  # the highest median rate
    assert result["fastest_peer"] == fastest and result["ratio_to_peer"] == result["ratios"][fastest]
    assert result["backend"] == "eager" and result["paired_fraction"] > 0 and result["peak_rss_mib"] > 0
    specs = [{"section": "versus", "name": "v", "precision": "fp32", "ours": spec["ours"]}]
    rows = summarise(specs, [result])
    assert (
        rows[0]["ratio"] == result["ratio_to_peer"]
        and rows[0]["ceiling_fraction"] == result["paired_fraction"]
    )
    assert "tv cl" in format_rows(rows) and "the fastest peer" in format_rows(rows)
    combined = combine_rounds(specs, [[result], [{**result, "peers": {"tv": 1.0, "tv cl": 3.0}}]])
    assert (
        combined[0]["peers"]["tv cl"] == (result["peers"]["tv cl"] + 3.0) / 2
    )  # per-peer medians over rounds


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_gpu_script_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu.py has never met a GPU on the project's machines; `--device cpu` runs every one of
    its paths (training with and without AMP, inference at two batches and precisions) so that the day a
    GPU is lent its time is not spent on a crash."""
    import subprocess
    import sys

    import torch

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--batch", "2", "--size", "64", "--repeats", "1",
         "--warmup", "1", "--backends", "eager", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["results"]["rows"]
    assert {name for name in rows if name.startswith("train")} == {
        f"train {kind} {mode}" for kind in ("torchvision", "paper", "bn") for mode in ("fp32", "amp")
    }
    assert "infer ours paper eager b2 bf16" in rows and "infer torchvision b1 fp32" in rows
    assert all(row["rate"] > 0 for row in rows.values())
    assert "x torchvision" in done.stdout
    if not torch.cuda.is_available():
        default = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert default.returncode == 0 and "no CUDA device: nothing measured" in default.stdout


def test_rates_in_turns_calls_each_path_once_per_turn_in_order() -> None:
    calls: list[str] = []
    rates = rates_in_turns(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, turns=3, images=8
    )
    assert calls == ["a", "b"] * 3 and set(rates) == {"a", "b"}
    assert all(len(v) == 3 and all(r > 0 for r in v) for v in rates.values())


def _messages(err: str) -> list[str]:
    """stderr's lines less the per-path progress lines printed without a terminal."""
    return [line for line in err.splitlines() if not line.startswith("[")]


def _earlier_result(file: Path) -> str:
    text = json.dumps({"machine": {}, "date": "2026-12-01", "rounds": 1, "rows": [{"name": "GEMM fp32"}]})
    file.write_text(text)
    return text


def test_a_run_whose_every_path_failed_keeps_the_earlier_json_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # as `--only data --data-path FOLDER` with undecodable images: every path's process printed an error
    out = tmp_path / "prev.json"
    earlier = _earlier_result(out)
    monkeypatch.setattr(bench_command, "run_one", lambda spec: {"error": "DataError: a.jpg: not an image"})
    assert main(["benchmark", "--only", "gemm", "--repeats", "1", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "failed: DataError" in captured.out and "saved" not in captured.out
    (message,) = _messages(captured.err)
    assert "all 2 paths failed" in message and f"{out} not written" in message
    assert out.read_text() == earlier  # error rows alone do not replace a good result
    # some paths failed: saved with their rows marked, exit 1 and one line saying how many
    monkeypatch.setattr(
        bench_command,
        "run_one",
        lambda spec: {"error": "boom"} if "bf16" in spec["name"] else {"value": 5.0, "peak_rss_mib": 1.0},
    )
    assert main(["benchmark", "--only", "gemm", "--repeats", "1", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"saved {out}" in captured.out
    (message,) = _messages(captured.err)
    assert "1 of 2 paths failed" in message
    rows = json.loads(out.read_text())["rows"]
    assert [row.get("error") for row in rows] == [None, "boom"] and rows[0]["value"] == 5.0


def test_an_empty_json_file_name_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--json "$OUT"` with OUT unset: the results would have gone nowhere, with exit 0
    def never(spec: dict[str, object]) -> dict[str, object]:
        raise AssertionError("timed a path")

    monkeypatch.setattr(bench_command, "run_one", never)
    assert main(["benchmark", "--only", "gemm", "--json", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--json" in err


def test_rounds_that_disagree_on_a_label_list_each_with_its_count() -> None:
    specs = [{"section": "versus", "name": "v", "precision": "fp32"}]
    rounds = [
        [{"value": 10.0, "ratio_to_peer": r, "fastest_peer": peer, "backend": backend, "turn_ratios": [r, r],
          "peak_rss_mib": 1.0}]
        for r, peer, backend in [(1.1, "ort", "onnxruntime"), (0.9, "ov", "openvino"), (1.2, "ort", "onnxruntime")]
    ]  # fmt: skip
    (combined,) = combine_rounds(specs, rounds)
    assert combined["ratio_to_peer"] == 1.1
    assert combined["fastest_peer"] == "ort (2 of 3 rounds), ov (1)"  # not round 1's peer alone
    assert combined["backend"] == "onnxruntime (2 of 3 rounds), openvino (1)"
    assert combined["turn_ratios"] == [1.1, 1.1, 0.9, 0.9, 1.2, 1.2]  # every turn of every round
    assert statistics.median(combined["turn_ratios"]) == combined["ratio_to_peer"]
    agreeing = combine_rounds(specs, [rounds[0], rounds[2]])
    assert agreeing[0]["fastest_peer"] == "ort" and agreeing[0]["backend"] == "onnxruntime"


def test_repeats_help_says_how_many_repetitions_each_section_times(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --help had said "default 5, 2 with --quick, 3 for crops144" while training timed max(2, N // 2)
    assert main(["benchmark", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "train: max(3, N // 2) repetitions" in text and "crops144: N, default 3" in text
    # at least 3: the median of 2 was their mean, leaving no outlier out
    for repeats, timed in ((1, 3), (3, 3), (5, 3), (7, 3), (8, 4)):
        specs = plan(_args(only=["train", "data"], repeats=repeats), "/data")
        assert {spec["repeats"] for spec in specs if spec["section"] == "train"} == {timed}
        assert {spec["repeats"] for spec in specs if spec["section"] == "data"} == {repeats}


def test_peers_of_a_missing_runtime_are_left_out_with_a_line_and_in_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_command, "_installed", lambda module: module not in ("onnxruntime", "openvino"))
    specs = plan(_args(only=["infer", "versus"]), "/data")
    named = " ".join(spec["name"] for spec in specs) + json.dumps([spec.get("peers") for spec in specs])
    assert "onnxruntime" not in named and "openvino" not in named
    left_out = peers_left_out(_args(only=["versus"]))
    assert list(left_out) == ["onnxruntime", "openvino"]
    assert all('pip install "googlenet[fast]"' in reason for reason in left_out.values())
    assert peers_left_out(_args(only=["train"])) == {}  # no peer of theirs in that section
    out = tmp_path / "bench.json"
    monkeypatch.setattr(bench_command, "run_one", lambda spec: {"value": 1.0, "peak_rss_mib": 1.0})
    assert main(["benchmark", "--only", "versus", "--batch", "1", "--json", str(out)]) == 0
    (message,) = _messages(capsys.readouterr().err)
    assert "onnxruntime and openvino not installed" in message and 'pip install "googlenet[fast]"' in message
    saved = json.loads(out.read_text())
    assert saved["peers_left_out"] == left_out and is_benchmark_json(out)
    monkeypatch.setattr(bench_command, "_installed", lambda module: True)
    assert peers_left_out(_args(only=["versus"])) == {}


def test_an_interrupted_path_leaves_no_temporary_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    # subprocess.run kills the path's process when the benchmark is interrupted; the process then could
    # not remove its own temporary folder (its ONNX file's): they piled up in $TMPDIR.
    import getpass
    import os
    import subprocess
    import tempfile

    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        default_cache = default_cache_dir()  # torch's own rule, private: only checked here
    except ImportError:  # torch before 2.6 kept the rule elsewhere (and its function makes the folder)
        default_cache = os.path.join(tempfile.gettempdir(), "torchinductor_" + getpass.getuser())
    seen: list[Path] = []

    def killed_child(command: list[str], **kwargs: object) -> None:
        env = kwargs["env"]
        assert isinstance(env, dict)
        # torch.compile's builds are still cached where they were, for the next path and the next run
        assert env["TORCHINDUCTOR_CACHE_DIR"] == os.environ.get("TORCHINDUCTOR_CACHE_DIR", default_cache)
        folder = Path(env["TMPDIR"]) / "tmp-of-the-path"  # what the child's tempfile would have made
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"onnx")
        seen.append(folder.parent)
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", killed_child)
    with pytest.raises(KeyboardInterrupt):
        bench_command.run_one({"section": "infer", "name": "x", "path": "ours"})
    assert seen and not seen[0].exists() and seen[0].parent == Path(tempfile.gettempdir())


def test_the_data_section_decodes_photo_sized_jpegs_and_reports_the_loaders_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It decoded the built-in 96-pixel drawings, whose rate says little about photographs; and the
    # memory column left out the loader processes, where the decoding happens.
    from PIL import Image

    from googlenet.bench.paths import run_spec
    from googlenet.bench.photos import COLOUR_PHOTOS, ensure_photo_jpegs

    folder = ensure_photo_jpegs(tmp_path, count=14)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    assert len(names) == 2 * len(COLOUR_PHOTOS) + len(COLOUR_PHOTOS)  # 2 per photo, and one val/ each
    sizes = {Image.open(folder / name).size for name in names}
    assert sizes <= {(500, 375), (375, 500)} and (500, 375) in sizes
    again = ensure_photo_jpegs(tmp_path / "again", count=14)  # drawn from a fixed seed
    assert all((folder / n).read_bytes() == (again / n).read_bytes() for n in names)
    (folder / names[0]).write_bytes(b"changed")
    assert ensure_photo_jpegs(tmp_path, count=14) == folder and (folder / names[0]).read_bytes() != b"changed"

    specs = plan(_args(only=["data", "crops144"]), "/builtin", str(folder))
    assert {spec["root"] for spec in specs if spec["section"] == "data"} == {str(folder)}
    assert {spec["root"] for spec in specs if spec["section"] == "crops144"} == {"/builtin"}
    spec = {"kind": "data", "root": str(folder), "size": 64, "workers": 1, "repeats": 1, "images": 8}
    result = bench_command.run_one(spec)  # a fresh process, whose only children are the loader's
    assert result["value"] > 0 and result["peak_worker_rss_mib"] > 50  # a loader process holds torch
    assert "peak_worker_rss_mib" not in run_spec({**spec, "workers": 0})


def test_the_benchmark_scripts_refuse_a_count_of_zero_before_any_work() -> None:
    # `--turns 0` built the models for up to 49 s, then ended in "no median for empty data".
    from googlenet.bench.command import positive_int

    assert positive_int("3") == 3
    for text, message in (
        ("0", "must be at least 1, got 0"),
        ("-2", "got -2"),
        ("x", "invalid int value: 'x'"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive_int(text)
    script = Path(__file__).parents[1] / "benchmarks" / "lrn_backward.py"
    done = subprocess.run(
        [sys.executable, str(script), "--pairs", "0"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith(
        "error: argument --pairs: must be at least 1, got 0"
    )
    assert "Traceback" not in done.stderr


def test_peak_memory_is_read_where_the_platform_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from googlenet.bench import paths

    linux = paths.peak_rss_mib()
    assert linux is not None and linux > 10  # this process holds torch: tens of MiB at least
    monkeypatch.setattr(paths.sys, "platform", "darwin")  # macOS counts ru_maxrss in bytes, not KiB
    assert paths.peak_rss_mib() == pytest.approx(linux / 1024, rel=0.5)
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows: no resource module
    assert paths.peak_rss_mib() is None
