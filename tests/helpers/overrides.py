"""Command-line overrides the tests share."""

from __future__ import annotations

from pathlib import Path


def tiny_data(root: Path | str) -> list[str]:
    """The data overrides of the session's tiny synthetic Real-IAD set at ``root`` (tests/conftest.py tiny_realiad)."""
    return ["data=synthetic", f"data.root={root}", "data.synthetic.preset=tiny"]
