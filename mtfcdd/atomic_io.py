"""Atomic file writes: a file a run writes is either complete or absent, never partial."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to a temporary file next to ``path``, fsync, chmod ``mode``, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    """A text file streamed into a temporary file next to ``path``: :meth:`commit` fsyncs it and renames it onto
    ``path``; :meth:`abort` deletes it. Until the commit, ``path`` does not change."""

    def __init__(self, path: Path, mode: int = 0o644) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self.temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
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
