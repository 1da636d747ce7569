"""Shared fixtures: the real-image data in ../shared (skipped when absent, required in CI)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from googlenet.data.synthetic import ensure_builtin

# The suite started in the background by a shell without job control (`make test &` in a script, a CI
# runner that does so) inherits SIGINT ignored, and Python then has no KeyboardInterrupt to give; the
# package rightly leaves an ignored signal ignored (`googlenet.signals.catchable`). The tests of Ctrl-C
# and SIGTERM check the state a terminal gives, so the suite starts from it, and so do its subprocesses.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

# Hypothesis's property tests draw the same examples on every run (a CI run that fails on a rare input
# fails on every rerun, and a green one stays green) and keep no example database in the repository.
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("googlenet", derandomize=True, database=None)
    _hypothesis_settings.load_profile("googlenet")
except ImportError:  # a user's environment without the dev extras: those tests skip
    pass

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session", autouse=True)
def _subprocess_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The processes the tests start keep their temporary files in the session's own folder (pytest
    keeps the last three), not in /tmp: torchrun's agents left six `torchelastic_*` log folders there
    per run, for good."""
    import tempfile

    # This process's own temporary folder stays where it was (looked up, and so fixed, first):
    # multiprocessing removes its folder there at exit, after pytest's clean-up, and printed a traceback
    # when it was in the session's folder.
    tempfile.gettempdir()
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("subprocess-tmp"))
    yield
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before


@pytest.fixture(autouse=True)
def _single_thread_determinism() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses `shared_data` carries the `shared` marker (`pytest -m shared` runs them)."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; tests using it skip on a user's fresh clone but fail in CI when it is missing."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("GOOGLENET_REQUIRE_SHARED", "") not in ("", "0"):
            pytest.fail(f"{SHARED_DATA} is missing but GOOGLENET_REQUIRE_SHARED is set (CI)")
        pytest.skip(f"{SHARED_DATA} not present (a fresh clone without the shared data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Imports a script of `benchmarks/` by name (they are not a package), to test its functions."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test's tiny models on one thread: on a machine shared with other jobs, two OpenMP threads
    spinning for two busy cores run them several times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_data(root: Path) -> Path:
    """Three classes of the built-in data at 64 px: 4 training and 1 validation image each."""
    source = ensure_builtin(root / "cache", image_size=64, train_per_class=4, val_per_class=1)
    for split in ("train", "val"):
        for name in ("disc", "ring", "square"):
            shutil.copytree(source / split / name, root / "data" / split / name)
    return root / "data"


@pytest.fixture(autouse=True)
def _no_stale_console_handler() -> Iterator[None]:
    """Each test that runs a command in-process starts without the console handler an earlier one added
    (the handler follows sys.stderr, so this is isolation, not a fix for a stale stream)."""
    yield
    import logging

    root = logging.getLogger("googlenet")
    for handler in [h for h in root.handlers if getattr(h, "_googlenet_console", False)]:
        root.removeHandler(handler)
