"""Atomic file writes: a file a run writes is either complete or absent, never partial."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"
"""Suffix of the temporary files the writers below create next to their target (``.<name>.<random>.tmp``)."""


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that a writer killed before its rename (SIGKILL cannot be caught) left in
    ``folder``; returns them. Only for a folder no other process is writing to."""
    stale = sorted(Path(folder).glob(f".*{TEMPORARY_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to a temporary file next to ``path``, fsync, chmod ``mode``, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


class AtomicTextFile:
    """A text file streamed into a temporary file next to ``path``: ``commit`` fsyncs it and renames it onto
    ``path``; ``abort`` deletes it. Until the commit, ``path`` does not change."""

    def __init__(self, path: Path, mode: int = 0o644) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self.temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=TEMPORARY_SUFFIX, dir=self.path.parent
        )
        self.mode = mode
        self.stream = os.fdopen(handle, "w", encoding="utf-8", newline="")

    def commit(self) -> Path:
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.chmod(self.temporary, self.mode)
        os.replace(self.temporary, self.path)
        return self.path

    def abort(self) -> None:
        if not self.stream.closed:
            self.stream.close()
        Path(self.temporary).unlink(missing_ok=True)
