"""Files are written whole or not at all."""

import os
import stat

import pytest

from mtfcdd.core import atomic_io
from mtfcdd.core.atomic_io import write_bytes_atomic


def test_write_creates_folders_and_readable_file(tmp_path):
    path = write_bytes_atomic(tmp_path / "a" / "b.bin", b"data")
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(path, b"new")
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
