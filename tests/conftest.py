"""Shared fixtures: the real-image data in ../shared (skipped when absent, required in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _single_thread_determinism() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; tests using it skip on a user's fresh clone but fail in CI when it is missing."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("GOOGLENET_REQUIRE_SHARED"):
            pytest.fail(f"{SHARED_DATA} is missing but GOOGLENET_REQUIRE_SHARED is set (CI)")
        pytest.skip(f"{SHARED_DATA} not present (a fresh clone without the shared data)")
    return SHARED_DATA
