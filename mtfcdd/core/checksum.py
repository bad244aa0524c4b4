"""File checksums: what export's metadata, ``results.json`` and the server's ``/info`` name a checkpoint by."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(path: str | Path | None) -> dict[str, str] | None:
    """``{"path": absolute path, "sha256": hex}`` of a checkpoint file (None for None): how ``results.json`` names
    the checkpoints it tested and ``/info`` the ones it serves, so that the two can be matched."""
    if path is None:
        return None
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}
