"""`googlenet ablate`: the statistics against scipy, the plan, the run commands, the outputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from googlenet.ablate.results import write_study
from googlenet.ablate.stats import (
    format_markdown,
    holm,
    mean_ci,
    paired_t,
    plot_effects,
    summarise,
    write_tables,
)
from googlenet.ablate.study import ARM_NAMES, StudyPlan, errors_of, train_command
from googlenet.cli import main
from googlenet.errors import ConfigError, DataError
from googlenet.train.config import parse_set
from googlenet.train.gradflow import save_grad_norms


def test_mean_ci_is_the_t_interval() -> None:
    values = [31.0, 35.5, 29.0, 33.0]
    mean, low, high = mean_ci(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert mean == pytest.approx(32.125)
    assert math.isnan(mean_ci([3.0])[1])


def test_paired_t_is_scipys_ttest_rel_and_undefined_without_variance() -> None:
    a, b = [40.0, 42.0, 39.5], [38.0, 41.0, 39.0]
    t, p = paired_t(a, b)
    reference = stats.ttest_rel(a, b)
    assert (t, p) == pytest.approx((reference.statistic, reference.pvalue))
    assert all(math.isnan(x) for x in paired_t([2.0, 3.0], [1.0, 2.0]))  # constant difference
    assert all(math.isnan(x) for x in paired_t([2.0], [1.0]))
    # The same shift in decimal is not always the same in binary (100 - 34.8 vs 100 - 34.4 ...): no
    # t of 1e14 and p of 1e-28 for it, which would be starred as significant.
    errors = [100 - accuracy for accuracy in (34.8, 36.2, 47.2)]
    shifted = [100 - (accuracy - 0.4) for accuracy in (34.8, 36.2, 47.2)]
    assert len({x - y for x, y in zip(shifted, errors, strict=True)}) > 1  # the rounding is there
    assert all(math.isnan(x) for x in paired_t(shifted, errors))


def test_holm_adjusts_in_order_and_skips_nan() -> None:
    adjusted = holm([0.01, math.nan, 0.04, 0.03])
    assert adjusted[0] == pytest.approx(0.03)  # 3 x 0.01
    assert adjusted[3] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted[2] == pytest.approx(0.06)  # max(1 x 0.04, previous)
    assert math.isnan(adjusted[1])


def _errors() -> dict[str, dict[int, dict[str, float]]]:
    return {
        "full": {
            0: {"top1": 40.0, "top5": 10.0},
            1: {"top1": 42.0, "top5": 11.0},
            2: {"top1": 41.0, "top5": 9.0},
        },
        "no-aux": {
            0: {"top1": 45.0, "top5": 12.0},
            1: {"top1": 46.5, "top5": 13.0},
            2: {"top1": 45.2, "top5": 9.5},
        },
        "bn": {0: {"top1": 30.0, "top5": 5.0}, 2: {"top1": 33.0, "top5": 6.0}},
    }


def test_summarise_pairs_by_seed_over_the_common_seeds(tmp_path: Path) -> None:
    rows = summarise(_errors(), {"full": "full", "no-aux": "full", "bn": "full"})
    by = {(r["arm"], r["metric"]): r for r in rows}
    diffs = [5.0, 4.5, 4.2]
    assert by["no-aux", "top1"]["effect"] == pytest.approx(sum(diffs) / 3)
    assert by["no-aux", "top1"]["p"] == pytest.approx(
        stats.ttest_rel([45.0, 46.5, 45.2], [40.0, 42.0, 41.0]).pvalue
    )
    assert by["no-aux", "top1"]["significant"]
    assert by["bn", "top1"]["n"] == 2  # seed 1 missing: paired over seeds 0 and 2
    assert by["bn", "top1"]["effect"] == pytest.approx(-9.0)
    # A reference run missing: the arm's mean error is over the same seeds as its effect and its n.
    errors = _errors()
    del errors["full"][1]
    by = {(r["arm"], r["metric"]): r for r in summarise(errors, {"full": "full", "no-aux": "full"})}
    assert by["no-aux", "top1"]["n"] == 2 and by["no-aux", "top1"]["mean_error"] == pytest.approx(45.1)
    assert by["no-aux", "top1"]["mean_error"] - by["full", "top1"]["mean_error"] == pytest.approx(
        by["no-aux", "top1"]["effect"]
    )
    assert math.isnan(by["full", "top1"]["effect"])
    text = format_markdown(rows, "demo")
    assert "| `no-aux` | `full` | 3 |" in text and "ttest_rel" in text
    write_tables(tmp_path, rows, {"plan": {}}, "demo")
    plot_effects(rows, tmp_path / "ablation.png")
    import matplotlib.pyplot as plt

    captured: dict[str, bool] = {}
    original_close = plt.close
    with pytest.MonkeyPatch.context() as patch:  # look at the figure before it is closed
        patch.setattr(plt, "close", lambda fig: captured.update(inverted=fig.axes[0].yaxis_inverted()))
        plot_effects(rows, tmp_path / "again.png")
    original_close("all")
    assert captured["inverted"]  # the table's first arm at the top
    data = json.loads((tmp_path / "ablation.json").read_text())
    assert data["rows"][0]["effect"] is None  # NaN is written as null
    assert (tmp_path / "ablation.csv").read_text().startswith("arm,kind,metric,n,")
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    # a write that fails half way (a full disk, `ulimit -f`) leaves the earlier plot whole
    from matplotlib.figure import Figure

    before = (tmp_path / "ablation.png").read_bytes()

    def half_then_full(self: Figure, fname: Any, **kwargs: Any) -> None:
        fname.write(before[: len(before) // 2])
        raise OSError(27, "File too large")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", half_then_full)
        with pytest.raises(OSError, match="File too large"):
            plot_effects(rows, tmp_path / "ablation.png")
    plt.close("all")
    assert (tmp_path / "ablation.png").read_bytes() == before


def test_an_error_interval_stays_within_0_and_100() -> None:
    errors = {"full": {0: {"top1": 99.0, "top5": 1.0}, 1: {"top1": 79.0, "top5": 3.0}}}
    by = {r["metric"]: r for r in summarise(errors, {"full": "full"})}
    assert (by["top1"]["ci_low"], by["top1"]["ci_high"]) == (0.0, 100.0)  # the t-interval: [-38, 216]
    assert by["top5"]["ci_low"] == 0.0 and by["top5"]["ci_high"] > 3
    assert by["top1"]["mean_error"] == 89.0


def test_runs_keep_the_users_thread_counts_and_log_a_command_that_reruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ablate` set OMP_NUM_THREADS to cpu_count() // runs over the user's own, whatever CPUs `taskset`
    left it, and logged `--data-path my data` unquoted."""
    import subprocess

    import googlenet.ablate.study as study

    seen: list[dict[str, str]] = []

    class Child:
        def wait(self) -> int:
            return 1

    def popen(command: list[str], **kwargs: object) -> Child:
        seen.append(dict(kwargs["env"]))  # type: ignore[call-overload]
        return Child()

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(study, "cores", lambda: 1)  # one CPU of the machine's (taskset)
    plan = StudyPlan(tmp_path / "my study", arms=("full",), seeds=(0,))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    study.run_training(plan, progress=False)
    monkeypatch.delenv("OMP_NUM_THREADS")
    study.run_training(plan, progress=False)
    assert [(env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) for env in seen] == [("3", "3"), ("1", "1")]
    log = (tmp_path / "my study" / "runs" / "full" / "seed-0.log").read_text()
    assert f"--output-dir '{tmp_path / 'my study' / 'runs' / 'full' / 'seed-0'}'" in log, log


def test_plan_checks_arms_and_seeds_and_builds_each_run_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown arm"):
        StudyPlan(tmp_path, arms=("full", "nope")).check()
    with pytest.raises(ConfigError, match="'full'"):
        StudyPlan(tmp_path, arms=("no-aux",)).check()
    with pytest.raises(ConfigError, match="seeds"):
        StudyPlan(tmp_path, seeds=(1, 1)).check()
    with pytest.raises(ConfigError, match="full given twice"):  # two trainings in one folder
        StudyPlan(tmp_path, arms=("full", "full")).check()
    # arms that train the very run `full` trains are refused, not reported as "+0.00" effects
    with pytest.raises(ConfigError, match="no-lrn, bn change nothing"):
        StudyPlan(tmp_path, base={"model.variant": "bn"}).check()
    with pytest.raises(ConfigError, match="no-polyak change nothing"):
        StudyPlan(tmp_path, arms=("full", "no-polyak"), base={"average.method": "none"}).check()
    with pytest.raises(ConfigError, match="aux-weight-1 change nothing"):  # no heads to weigh
        StudyPlan(tmp_path, arms=("full", "aux-weight-1"), base={"model.aux_logits": False}).check()
    with pytest.raises(
        ConfigError, match="no-photometric change nothing"
    ):  # its lighting 0 does nothing then
        StudyPlan(tmp_path, arms=("full", "no-photometric"), base={"augment.photometric": False}).check()
    empty = tmp_path / "empty"
    empty.mkdir()  # every run would fail on it: refused before the first starts
    with pytest.raises(DataError, match="missing split folder"):
        StudyPlan(tmp_path, base={"data.data_path": str(empty)}).check()
    plan = StudyPlan(tmp_path, base={"run.epochs": 1})
    plan.check()
    assert set(ARM_NAMES) >= {"full", "no-aux", "no-polyak", "no-lrn", "no-dropout", "bn", "fixed-crop"}
    assert plan.config_of("no-lrn", 2) == {"run.epochs": 1, "model.lrn": False, "run.seed": 2}
    command = train_command(plan, "bn", 1)
    assert command[1:4] == ["-m", "googlenet", "train"]
    assert command[command.index("--output-dir") + 1] == str(tmp_path / "runs" / "bn" / "seed-1")
    folder = plan.run_dir("bn", 1)
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"x")
    assert "--resume" in train_command(plan, "bn", 1)  # an interrupted run continues
    plan.torchrun = 2
    assert train_command(plan, "bn", 0)[1:5] == ["-m", "googlenet", "train", "--nproc-per-node=2"]
    with pytest.raises(ConfigError, match=r"batch size 7 \(arm full\) is not divisible by --torchrun 2"):
        StudyPlan(tmp_path, base={"optim.batch_size": 7}, torchrun=2).check()  # every run would fail on it


def test_a_failed_run_says_why_and_an_interrupted_one_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from googlenet.ablate import study

    plan = StudyPlan(tmp_path, base={"run.epochs": 1})
    for code, expected in (
        (
            1,
            "failed (exit 1: no such data folder (--data-path); see ",
        ),  # the run's own line, not only the log's name
        (143, "interrupted (exit 143, see "),
    ):
        script = (
            f"print('googlenet train: error: no such data folder (--data-path)'); raise SystemExit({code})"
        )
        monkeypatch.setattr(
            study, "train_command", lambda *args, script=script: [sys.executable, "-c", script]
        )
        assert study.run_one(plan, "full", 0, threads=1)["status"].startswith(expected)


def test_the_same_setup_error_in_two_arms_leaves_the_other_runs_unstarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A data set smaller than the batch made each of the study's runs start up to fail alike."""
    from googlenet.ablate import study

    started: list[tuple[str, int]] = []
    script = "print('googlenet train: error: batch size 32 is larger than the training set (6)'); raise SystemExit(1)"

    def command(plan: StudyPlan, arm: str, seed: int) -> list[str]:
        started.append((arm, seed))
        return [sys.executable, "-c", script]

    monkeypatch.setattr(study, "train_command", command)
    plan = StudyPlan(tmp_path, arms=("full", "no-aux", "no-lrn"), seeds=(0, 1), base={"run.epochs": 1})
    outcomes = study.run_training(plan, progress=False)
    assert started == [("full", 0), ("no-aux", 0)] and len(outcomes) == 6
    left = [o for o in outcomes if o["status"].startswith("not started (two arms failed before training with: "
                                                           "batch size 32 is larger")]  # fmt: skip
    assert len(left) == 4 and "; the runs not yet started are left out" in caplog.text


def test_a_run_trained_with_other_settings_is_not_reused(tmp_path: Path) -> None:
    """A finished or interrupted run whose recorded overrides resolve to another config than this call's
    is refused by name (reusing it would put a 1-epoch run in a 2-epoch table); the same settings pass."""
    import yaml

    from googlenet.ablate.study import check_existing

    earlier = StudyPlan(tmp_path, arms=("full", "no-aux"), seeds=(0,), base={"run.epochs": 1})
    folder = earlier.run_dir("full", 0)
    folder.mkdir(parents=True)
    overrides = {"run": {"epochs": 1, "seed": 0}}
    (folder.parent / "seed-0.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "last.pt").write_bytes(b"x")  # interrupted: it would be resumed
    check_existing(earlier)
    check_existing(StudyPlan(tmp_path, arms=("full",), seeds=(0, 1), base={"run.epochs": 1}))
    with pytest.raises(ConfigError, match=r"seed-0: trained with run\.epochs=1 \(this call: 2\)"):
        check_existing(StudyPlan(tmp_path, arms=("full",), seeds=(0,), base={"run.epochs": 2}))
    with pytest.raises(ConfigError, match=r"optim\.lr=0\.01 \(this call: 0\.1\)"):
        check_existing(StudyPlan(tmp_path, seeds=(0,), base={"run.epochs": 1, "optim.lr": 0.1}))
    # the precision the run recorded counts too: the built-in preset's depends on the machine
    (folder / "config.yaml").write_text(yaml.safe_dump({"run": {"amp": True}}))
    with pytest.raises(ConfigError, match=r"run\.amp=True \(this call: False\)"):
        check_existing(
            StudyPlan(tmp_path, arms=("full",), seeds=(0,), base={"run.epochs": 1, "run.amp": False})
        )
    check_existing(StudyPlan(tmp_path, arms=("full",), seeds=(0,), base={"run.epochs": 1, "run.amp": True}))
    (folder / "config.yaml").unlink()
    (folder / "last.pt").unlink()  # neither finished nor started: nothing to protect
    check_existing(StudyPlan(tmp_path, arms=("full",), seeds=(0,), base={"run.epochs": 2}))


def test_a_folder_that_is_not_a_study_is_never_written_into(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o naming a training run or a data split would put runs/ and the tables among its files (a
    split's runs/ became a class)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "final.pt").write_bytes(b"a checkpoint")
    (tmp_path / "file").write_text("x")
    for folder, message in ((run, "holds other files than an earlier study's (final.pt)"),
                            (tmp_path / "file", "is a file, not a study folder")):  # fmt: skip
        code = main(["ablate", "-o", str(folder), "--arms", "full", "--seeds", "0", "--epochs", "1"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in run.iterdir()) == ["final.pt"]
    # a study's own folder (here a report-only call's: no finished run) is no "other folder"
    (run / "final.pt").unlink()
    (run / "runs").mkdir()
    (run / "study.json").write_text("{}")
    assert (
        main(["ablate", "-o", str(run), "--arms", "full", "--seeds", "0", "--epochs", "1", "--report-only"])
        == 1
    )
    assert "no finished run of this study" in capsys.readouterr().err


def test_settings_that_stop_a_run_early_are_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--set run.stop_after_steps=2`: every run "stopped", and the study reported "failed (exit 0)"."""
    for setting in ("run.stop_after_steps=2", "run.test_only=true"):
        code = main(["ablate", "-o", str(tmp_path / "s"), "--arms", "full", "--seeds", "0", "--set", setting])
        err = capsys.readouterr().err
        assert code == 1 and "does not apply to a study" in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_a_study_folder_with_a_killed_writes_leftover_is_still_the_studys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study killed (SIGKILL) while atomic_open wrote its table leaves `.ablation.csv.<random>.tmp`:
    rerunning the same command must go on, not call its own folder someone else's."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "study.json").write_text("{}")
    (tmp_path / ".ablation.csv.k3j_x9.tmp").write_text("half a tab")
    args = ["ablate", "-o", str(tmp_path), "--arms", "full", "--seeds", "0", "--epochs", "1", "--report-only"]
    assert main(args) == 1
    assert "no finished run of this study" in capsys.readouterr().err
    (tmp_path / ".notes.k3j_x9.tmp").write_text("the user's")  # not a leftover of one of ours
    assert main(args) == 1
    assert "holds other files than an earlier study's (.notes.k3j_x9.tmp)" in capsys.readouterr().err


def test_errors_of_prefers_the_averaged_weights() -> None:
    done = {"status": "completed", "val_top1_avg": 60.0, "val_top5_avg": 90.0, "val_top1_raw": 50.0,
            "val_top5_raw": 80.0}  # fmt: skip
    assert errors_of(done) == {"top1": 40.0, "top5": 10.0}
    assert errors_of({**done, "val_top1_avg": None, "val_top5_avg": None}) == {"top1": 50.0, "top5": 20.0}
    assert errors_of({**done, "status": "interrupted"}) is None


def test_parse_set_reads_yaml_values() -> None:
    assert parse_set(["data.builtin_train_per_class=40", "model.lrn=false", "model.dropout=null"]) == {
        "data.builtin_train_per_class": 40, "model.lrn": False, "model.dropout": None}  # fmt: skip
    with pytest.raises(ConfigError):
        parse_set(["epochs"])


def test_write_study_from_finished_run_folders(tmp_path: Path) -> None:
    plan = StudyPlan(tmp_path, arms=("full", "no-aux", "no-polyak"), seeds=(0, 1), test_time=False)
    for arm, seed, top1 in (("full", 0, 60.0), ("full", 1, 62.0), ("no-aux", 0, 55.0), ("no-aux", 1, 58.0)):
        folder = plan.run_dir(arm, seed)
        folder.mkdir(parents=True)
        (folder / "final.pt").write_bytes(b"")
        results = {"status": "completed", "val_top1_avg": top1, "val_top5_avg": 95.0, "epochs": 1,
                   "val_top1_raw": top1 - 3 * (seed + 1), "val_top5_raw": 94.0}  # fmt: skip
        (folder / "results.json").write_text(json.dumps(results))
        norm = 2.0 if arm == "full" else 1.0
        rows = [{"step": step, "depth": d, "layer": name, "aux": False, "norm": norm * (step if name == "fc" else 1)}
                for step in (1, 4) for d, name in enumerate(("conv1.conv", "inception3a.branch1.conv", "fc"))]  # fmt: skip
        save_grad_norms(folder, rows, 4)
    summary = write_study(plan, "t")
    stages = (tmp_path / "gradflow.csv").read_text().splitlines()
    assert stages[0] == "stage,with auxiliary heads (full),without (no-aux),ratio"
    assert stages[1:] == ["conv1,2,1,2", "inception3a,2,1,2", "fc,8,4,2"]  # step 1 left out
    effect = next(r for r in summary["rows"] if r["arm"] == "no-aux" and r["metric"] == "top1")
    assert effect["effect"] == pytest.approx(4.5)
    # no-polyak trains nothing: it is the full runs' raw weights, paired with them seed by seed
    assert not plan.run_dir("no-polyak", 0).exists()
    assert summary["errors"]["no-polyak"] == {
        "0": {"top1": 43.0, "top5": 6.0},
        "1": {"top1": 44.0, "top5": 6.0},
    }
    assert summary["runs"]["no-polyak/seed-1"]["status"] == "completed (raw weights of full/seed-1)"
    effect = next(r for r in summary["rows"] if r["arm"] == "no-polyak" and r["metric"] == "top1")
    assert effect["effect"] == pytest.approx(4.5)  # 3 and 6 points more error without the average
    assert {p.name for p in tmp_path.iterdir()} >= {
        "ablation.md",
        "ablation.csv",
        "ablation.json",
        "ablation.png",
    }
    # the same folder studied again without no-aux: its runs/no-aux are not this study's gradient flow
    write_study(StudyPlan(tmp_path, arms=("full", "no-polyak"), seeds=(0, 1), test_time=False), "t")
    assert (tmp_path / "gradflow.csv").read_text().splitlines()[0] == "stage,with auxiliary heads (full)"


def test_report_only_counts_the_seeds_with_results_and_names_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from googlenet.cli import main

    plan = StudyPlan(tmp_path, arms=("full", "no-polyak"), seeds=(0, 1), test_time=False)
    for seed, top1 in ((0, 60.0), (1, 62.0)):
        folder = plan.run_dir("full", seed)
        folder.mkdir(parents=True)
        (folder / "final.pt").write_bytes(b"")
        (folder / "results.json").write_text(json.dumps({"status": "completed", "val_top1_avg": top1,
            "val_top5_avg": 9.0, "val_top1_raw": top1 + 1, "val_top5_raw": 9.5, "epochs": 1}))  # fmt: skip
    argv = ["ablate", "-o", str(tmp_path), "--arms", "full", "no-polyak", "--seeds", "0", "1", "5",
            "--epochs", "1", "--no-test-time", "--report-only"]  # fmt: skip
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0 and "### ablation: 2 seed(s), built-in data" in out  # it said 3
    assert "warning: seed(s) 5 have no finished run; the tables leave them out" in err


def test_an_interrupted_study_says_how_to_continue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import googlenet.ablate.study as study
    from googlenet.cli import main

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "run_training", interrupted)
    code = main(["ablate", "-o", str(tmp_path / "s"), "--arms", "full", "--seeds", "0", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 130 and "run the same command again to continue it" in err, err


def test_cli_refuses_bad_arms_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "googlenet", "ablate", "-o", str(tmp_path / "s"), "--arms", "full", "nope"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unknown arm" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 6 training subprocesses twice over, on a shared 2-core machine
def test_a_tiny_study_end_to_end_and_rerun_reuses_it(tmp_path: Path) -> None:
    from conftest import make_tiny_data

    data = make_tiny_data(tmp_path)
    command = [
        sys.executable, "-m", "googlenet", "ablate", "-o", str(tmp_path / "study"), "--data-path", str(data),
        "--arms", "full", "no-aux", "no-polyak", "--seeds", "0", "1", "--epochs", "1", "--set", "model.input_size=64",
        "--set", "optim.batch_size=4", "--set", "data.workers=0", "--set", "data.train_eval_samples=0",
        "--grad-norms-every", "1", "--test-limit", "3", "--json",
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1500)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = json.loads(first.stdout)["rows"]
    assert {r["arm"] for r in rows} >= {"full", "no-aux", "no-polyak", "full-1crop", "crops-10", "crops-144"}
    assert (tmp_path / "study" / "gradflow.png").is_file()
    split = (tmp_path / "study" / "gradflow-split.csv").read_text().splitlines()
    assert split[0] == "stage,main,aux,aux/main,cosine,whole/main" and split[1].startswith(
        "conv1,"
    )  # the full arm's split
    second = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1500)
    assert second.returncode == 0
    assert second.stderr.count(": reused") == 4  # full and no-aux x 2 seeds, none trained again
    assert not (tmp_path / "study" / "runs" / "no-polyak").exists()  # read from the full runs
    assert json.loads(second.stdout)["rows"] == rows  # nothing retrained, same numbers


@pytest.mark.slow  # over 15 s on a 2-core CPU: the slow tier (CI runs it)
def test_averaging_leaves_the_training_trajectory_alone(tmp_path: Path) -> None:
    """What lets `no-polyak` read the full runs' raw weights instead of training its own: the same
    seed trains to the same raw weights with and without averaging (bn variant: BN statistics are
    recomputed for the average after every epoch, under a forked RNG)."""
    import torch

    from conftest import make_tiny_data
    from googlenet.train import fit, resolve

    data = make_tiny_data(tmp_path)
    weights = {}
    for method in ("polyak", "none"):
        out = tmp_path / method
        flags = {"data.data_path": str(data), "run.output_dir": str(out), "model.variant": "bn",
                 "model.input_size": 64, "optim.batch_size": 4, "run.epochs": 2, "run.progress": False,
                 "data.workers": 0, "data.train_eval_samples": 0, "average.method": method, "average.start": 0,
                 "run.seed": 5}  # fmt: skip
        assert fit(resolve({}, flags))["status"] == "completed"
        weights[method] = torch.load(out / "last.pt", weights_only=True)["state_dict"]
    assert weights["polyak"].keys() == weights["none"].keys()
    for name, tensor in weights["polyak"].items():
        assert torch.equal(tensor, weights["none"][name]), name


def test_an_interrupted_study_stops_its_runs_and_starts_no_new_one() -> None:
    import signal
    import subprocess
    import sys

    from googlenet.ablate.study import _Children

    children = _Children()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    children.live.add(sleeper)
    children.interrupt()
    assert sleeper.wait(timeout=30) == -signal.SIGTERM  # SIGTERM: a run saves last.pt and stops
    assert children.stopping  # run_one starts no further run


def test_a_saved_study_without_its_checkpoints_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its runs finished but their final.pt were not kept: --report-only said "run it first", and a run
    then tried to train each one again, failed on "holds a finished run" and wrote into the folder."""
    run = tmp_path / "runs" / "full" / "seed-0"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"status": "completed", "val_top1_avg": 50.0, "val_top5_avg": 90.0}')
    (tmp_path / "study.json").write_text("{}")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for extra in (["--report-only"], []):
        code = main(
            ["ablate", "-o", str(tmp_path), "--arms", "full", "--seeds", "0", "--epochs", "1", *extra]
        )
        err = capsys.readouterr().err
        assert (
            code == 1
            and err.count("\n") == 1
            and "finished (results.json) but its final.pt is not there" in err
        )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_saved_studys_plots_are_redrawn_from_its_saved_rows(tmp_path: Path) -> None:
    import shutil

    root = Path(__file__).resolve().parents[1]
    study = tmp_path / "study"
    shutil.copytree(root / "benchmarks" / "results" / "ablation-cifar10-mini-bn12", study)
    (study / "ablation.png").unlink()
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "redraw_ablation_plots.py"), str(study)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert (
        f"redrew {study / 'ablation.png'}" in done.stdout
        and f"redrew {study / 'gradflow.png'}" in done.stdout
    )
    assert (study / "ablation.png").read_bytes()[:4] == b"\x89PNG"
