"""Ensembles the paper's way (section 7): N members trained from the same initial weights, differing only
in sampling (crop and photometric settings, `googlenet.train.config.ensemble_member`) and image order.

Each member is an ordinary run in `<ensemble>/member-<k>/`; `ensemble.json` lists them. A member that
already finished is kept; one with a `last.pt` continues from it, so `--resume <ensemble>` picks the
whole ensemble up where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from googlenet.errors import GoogLeNetError
from googlenet.train import distributed as ddp
from googlenet.train.checkpoint import RESUME_MUTABLE, load_training_state
from googlenet.train.config import (
    TrainConfig,
    dump_yaml,
    ensemble_member,
    from_dict,
    inert_overrides,
    read_run_config,
)
from googlenet.train.runs import (
    RunFolder,
    check_before_locking,
    check_new_run_folder,
    finished_results,
    write_ensemble,
)

logger = logging.getLogger("googlenet.train")

# fit_one(member config, last.pt to continue or None) -> that run's results
FitOne = Callable[[TrainConfig, Path | None], dict[str, Any]]


def fit_ensemble(
    config: TrainConfig,
    root: Path,
    resuming: bool,
    env: ddp.DistEnv,
    fit_one: FitOne,
) -> dict[str, Any]:
    """Train (or continue) the `config.run.ensemble` members under `root`; the ensemble's results.

    `fit_one(member_config, last_pt_or_None)` trains one member. A continued member keeps its own
    last.pt's configuration except what a resumed run may change (RESUME_MUTABLE), taken from `config`.
    """
    check_before_locking(root, first=env.is_main, new=not resuming)
    folder = RunFolder(root, enabled=env.is_main)  # locked for the whole ensemble, members run in turn
    try:
        if not resuming:
            check_new_run_folder(root)
        ddp.barrier()  # every process has looked before the first writes config.yaml (its temporary
        config.run.output_dir = str(root)  # file made a late look say "holds other files")
        if not (
            resuming
            and all(_trained(root / f"member-{k}", config) is not None for k in range(config.run.ensemble))
        ):
            folder.write_text("config.yaml", dump_yaml(config, "googlenet train: ensemble configuration"))
        return _fit_members(config, root, env, fit_one)
    except (GoogLeNetError, KeyboardInterrupt):
        folder.close()
        folder.discard_if_unused()  # a bad input or a signal stopped member 0 before it wrote anything
        raise
    finally:
        folder.close()


def _trained(folder: Path, config: TrainConfig) -> dict[str, Any] | None:
    """Member `folder`'s results when it finished at least `config.run.epochs` epochs (a resume leaves
    it be); None when it has more to train (a larger --epochs trains it on, as a single run)."""
    result = finished_results(folder)
    return result if result is not None and int(result.get("epochs", 0)) >= config.run.epochs else None


def _fit_members(config: TrainConfig, root: Path, env: ddp.DistEnv, fit_one: FitOne) -> dict[str, Any]:
    members: list[dict[str, Any]] = []
    status = "completed"
    signal: str | None = None  # the signal that interrupted a member: the command exits 128 + it
    trained_any = False
    for k in range(config.run.ensemble):
        folder = root / f"member-{k}"
        member, overrides = ensemble_member(config, k, started=(folder / "last.pt").is_file())
        if (folder / "config.yaml").is_file():
            # A member already begun keeps the sampling it began with, which an older version's table
            # may have set otherwise than today's (scale_min 0.35 where it is 0.5 now): recorded and
            # logged as the member's own config.yaml has it.
            begun = read_run_config(folder / "config.yaml")
            overrides = {key: begun.get(key) for key in overrides}
            inert = inert_overrides(begun, config, overrides)
        else:
            inert = inert_overrides(member, config, overrides)
        member.run.output_dir = str(folder)
        result = _trained(folder, config)
        if result is not None:
            logger.info(
                "ensemble member-%d (%d of %d) already trained (%s)", k, k + 1, config.run.ensemble, folder
            )
        else:
            resume_k = folder / "last.pt" if (folder / "last.pt").is_file() else None
            if resume_k is not None:
                member = from_dict(load_training_state(resume_k)["train_state"]["config"])
                for key in RESUME_MUTABLE - {"run.output_dir"}:  # what the continuation may change
                    section, name = key.split(".")
                    setattr(getattr(member, section), name, config.get(key))
            acting = {key: value for key, value in overrides.items() if key not in inert}
            logger.info("ensemble member-%d (%d of %d): sampling %s%s, data seed %s", k, k + 1, config.run.ensemble,
                        _as_flags(acting) or "as configured",
                        f" ({_as_flags({key: overrides[key] for key in inert})}: no effect on this recipe)"
                        if inert else "", member.run.data_seed)  # fmt: skip
            result = fit_one(member, resume_k)
            trained_any = True
        members.append(
            {
                "member": k,
                "folder": folder.name,
                "final": f"{folder.name}/final.pt" if result.get("status") == "completed" else None,
                "sampling": overrides,
                # of those, the ones that change nothing on this recipe (`inert_overrides`)
                "sampling_without_effect": inert,
                "data_seed": member.run.data_seed,
                "init_sha256": result.get("init_sha256"),
                "status": result.get("status"),
                **{
                    key: result.get(key)
                    for key in ("val_top1_avg", "val_top5_avg", "val_top1_raw", "val_top5_raw")
                },
            }
        )
        if result.get("status") != "completed":
            status = str(result.get("status"))
            signal = result.get("signal")
            break
    summary = {
        "status": status,
        "ensemble": config.run.ensemble,
        "seed": config.run.seed,
        "note": "section 7: same initial weights (init_sha256), different sampling and image order",
    }
    if signal:
        summary["signal"] = signal
    if env.is_main and (trained_any or not (root / "ensemble.json").is_file()):  # a resume with nothing to
        write_ensemble(root, members, summary)  # train leaves the folder as it was, as a single run's
    return {**summary, "output_dir": str(root), "members": members}


def _as_flags(overrides: dict[str, Any]) -> str:
    """A member's sampling settings as the flags that give them, e.g. "--no-random-interpolation"."""
    from googlenet.train.engine import flag_names

    names = flag_names()
    words = []
    for key, value in overrides.items():
        flag = names.get(key, f"--set {key}=")
        if isinstance(value, bool):  # a --X / --no-X pair
            words.append(flag if value else flag.replace("--", "--no-", 1))
        else:
            words.append(f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}")
    return " ".join(words)
