"""Lightning checkpoints written whole or not at all, on any local filesystem."""

from __future__ import annotations

import io
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mtfcdd.core.atomic_io import write_bytes_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into memory, then ``mtfcdd.core.atomic_io.write_bytes_atomic``: a temporary file next to the
    target, fsync, rename. Lightning's own transaction stages the file in the system temp folder and *copies* it
    into place when that folder is on another filesystem, so a kill during the copy would truncate ``last.ckpt``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(path, buffer.getvalue())
