"""Shared fixtures: a tiny synthetic Real-IAD set, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtfcdd.data.synthetic import ensure_synthetic


@pytest.fixture(scope="session")
def tiny_realiad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a synthetic Real-IAD set (preset ``tiny``, seed 0, flat layout: 2 categories incl. audiojack,
    64 px, all JSON sets). Shared by the whole session: treat it as read-only."""
    return ensure_synthetic(tmp_path_factory.mktemp("realiad") / "tiny", preset="tiny", seed=0, layout="flat")
