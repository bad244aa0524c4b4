"""What belongs to a sweep rather than to one run: the Optuna study's storage."""

from __future__ import annotations

from pathlib import Path


def optuna_storage(path: str) -> str:
    """SQLite URL of an Optuna study database at ``path``, creating its folder (Optuna does not)."""
    db = Path(path).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"
